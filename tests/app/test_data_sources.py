"""Users point a task at their own data without writing Python.

The loaders of :mod:`multiml.data` are tested directly (every layout, every error), then
through the CLI: a task YAML in the user's own config directory (``--config-dir``) whose
``data`` block names a loader, run exactly as the README shows.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from multiml import StoreGate
from multiml.data import generate_two_step, load_npy, load_npz, load_two_step, load_zarr

N = 300
SPLIT = (180, 240)  # [0.6, 0.2, 0.2] of N
PHASE_SLICES = {"train": slice(0, 180), "valid": slice(180, 240), "test": slice(240, N)}


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return generate_two_step(num_events=N, seed=1)


def fresh() -> StoreGate:
    return StoreGate(backend="numpy", data_id="mine")


def assert_loaded(sg: StoreGate, arrays: dict[str, np.ndarray], names: dict[str, str]) -> None:
    """``sg`` holds ``arrays[source]`` as ``names[source] -> var``, split 180/60/60."""
    assert sg.get_metadata()["sizes"] == {"train": 180, "valid": 60, "test": 60}
    assert sorted(sg.get_var_names("train")) == sorted(names.values())
    for source, var in names.items():
        for phase, rows in PHASE_SLICES.items():
            got = sg.get_data(var, phase)
            np.testing.assert_array_equal(got, arrays[source][rows])
            assert got.dtype == arrays[source].dtype


def file_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------- files
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, arrays: dict[str, np.ndarray]) -> Path:
    """Every layout a user may have: .npy per variable, .npz plain and pre-split, a zarr
    store written by StoreGate's zarr backend, a plain zarr group, a pre-split zarr group."""
    import zarr

    root = tmp_path_factory.mktemp("user") / "data"
    root.mkdir()
    for name, array in arrays.items():
        np.save(root / f"{name}.npy", array)
    np.savez(root / "events.npz", **arrays)
    np.savez(
        root / "split.npz",
        **{f"{p}/{n}": a[rows] for n, a in arrays.items() for p, rows in PHASE_SLICES.items()},
    )
    sg = StoreGate(
        backend="zarr", backend_args={"output_dir": str(root / "store.zarr")}, data_id="events"
    )
    for name, array in arrays.items():
        sg.add_data(name, array, phase=(0.6, 0.2, 0.2))
    sg.compile()
    plain = zarr.open_group(root / "plain.zarr", mode="w")
    for name, array in arrays.items():
        plain.create_array(name, data=array)
    split = zarr.open_group(root / "split.zarr", mode="w")
    for phase, rows in PHASE_SLICES.items():
        group = split.create_group(phase)
        for name, array in arrays.items():
            group.create_array(name, data=array[rows])
    return root


SAME = {"towers": "towers", "kinematics": "kinematics", "label": "label"}


def test_npy_files_split_by_phase(data_dir: Path, arrays: dict[str, np.ndarray]) -> None:
    sg = fresh()
    load_npy(sg, {n: str(data_dir / f"{n}.npy") for n in SAME}, phase=[0.6, 0.2, 0.2])
    assert_loaded(sg, arrays, SAME)


def test_npy_files_already_split(
    data_dir: Path, arrays: dict[str, np.ndarray], tmp_path: Path
) -> None:
    files: dict[str, dict[str, str]] = {}
    for phase, rows in PHASE_SLICES.items():
        for name in ("towers", "label"):
            path = tmp_path / f"{phase}_{name}.npy"
            np.save(path, arrays[name][rows])
            files.setdefault(phase, {})[name] = str(path)
    sg = fresh()
    load_npy(sg, files, phase=None)
    assert_loaded(sg, arrays, {"towers": "towers", "label": "label"})


def test_npy_memory_mapped_and_relative_to_the_working_directory(
    data_dir: Path, arrays: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(data_dir.parent)
    sg = fresh()
    load_npy(sg, {"towers": "data/towers.npy"}, phase=[0.6, 0.2, 0.2], mmap=True)
    np.testing.assert_array_equal(sg.get_data("towers", "test"), arrays["towers"][240:])


def test_home_directory_is_expanded(
    data_dir: Path, arrays: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(data_dir))
    monkeypatch.chdir("/")
    sg = fresh()
    load_npz(sg, "~/events.npz", phase=[0.6, 0.2, 0.2])
    assert_loaded(sg, arrays, SAME)


def test_shuffle_keeps_variables_aligned(data_dir: Path, arrays: dict[str, np.ndarray]) -> None:
    sg = fresh()
    files = {n: str(data_dir / f"{n}.npy") for n in ("towers", "label")}
    load_npy(sg, files, phase=[0.6, 0.2, 0.2], shuffle=5)
    towers = sg.get_data("towers", "all")
    label = sg.get_data("label", "all")
    assert not np.array_equal(towers, arrays["towers"])  # permuted ...
    order = [int(np.flatnonzero((arrays["towers"] == row).all(axis=1))[0]) for row in towers]
    assert sorted(order) == list(range(N))
    np.testing.assert_array_equal(label, arrays["label"][order])  # ... identically


def test_npz_plain_names_split_by_phase(data_dir: Path, arrays: dict[str, np.ndarray]) -> None:
    sg = fresh()
    load_npz(sg, str(data_dir / "events.npz"), phase=[0.6, 0.2, 0.2])
    assert_loaded(sg, arrays, SAME)


def test_npz_pre_split_names_keep_their_split(
    data_dir: Path, arrays: dict[str, np.ndarray]
) -> None:
    sg = fresh()
    load_npz(sg, str(data_dir / "split.npz"), phase=None)
    assert_loaded(sg, arrays, SAME)


@pytest.mark.parametrize("npz", ["events.npz", "split.npz"])
def test_npz_picks_and_renames_arrays(
    data_dir: Path, arrays: dict[str, np.ndarray], npz: str
) -> None:
    sg = fresh()
    load_npz(sg, str(data_dir / npz), phase=[0.6, 0.2, 0.2], var_names={"towers": "x"})
    assert_loaded(sg, arrays, {"towers": "x"})
    sg = fresh()
    load_npz(sg, str(data_dir / npz), phase=[0.6, 0.2, 0.2], var_names=["label"])
    assert_loaded(sg, arrays, {"label": "label"})


def test_zarr_store_written_by_storegate(data_dir: Path, arrays: dict[str, np.ndarray]) -> None:
    store = data_dir / "store.zarr"
    before = file_digests(store)
    sg = fresh()
    load_zarr(sg, str(store))
    assert_loaded(sg, arrays, SAME)
    assert file_digests(store) == before  # the user's store is only read


def test_zarr_store_never_compiled_is_not_modified(tmp_path: Path) -> None:
    path = tmp_path / "raw.zarr"
    source = StoreGate(backend="zarr", backend_args={"output_dir": str(path)}, data_id="a")
    source.add_data("x", np.arange(10.0), phase=(0.6, 0.2, 0.2))
    del source
    before = file_digests(path)
    sg = fresh()
    load_zarr(sg, str(path))
    assert sg.get_metadata()["sizes"] == {"train": 6, "valid": 2, "test": 2}
    assert file_digests(path) == before


def test_zarr_store_with_several_datasets(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "two.zarr"
    source = StoreGate(backend="zarr", backend_args={"output_dir": str(path)}, data_id="a")
    source.add_data("x", np.arange(10.0), phase=(0.6, 0.2, 0.2))
    source.set_data_id("b")
    source.add_data("x", np.arange(20.0), phase=(0.5, 0.25, 0.25))
    source.compile()
    with pytest.raises(ValueError, match=r"holds data_ids \['a', 'b'\]; choose one with data_id"):
        load_zarr(fresh(), str(path))
    sg = fresh()
    load_zarr(sg, str(path), data_id="b", var_names={"x": "y"})
    assert sg.get_metadata()["sizes"] == {"train": 10, "valid": 5, "test": 5}
    assert sg.get_var_names("train") == ["y"]
    with pytest.raises(KeyError, match=r"no data_id 'c'; it holds \['a', 'b'\]"):
        load_zarr(fresh(), str(path), data_id="c")


def test_plain_zarr_group_split_by_phase(data_dir: Path, arrays: dict[str, np.ndarray]) -> None:
    sg = fresh()
    load_zarr(sg, str(data_dir / "plain.zarr"), phase=[0.6, 0.2, 0.2])
    assert_loaded(sg, arrays, SAME)


def test_zarr_group_with_phase_groups(data_dir: Path, arrays: dict[str, np.ndarray]) -> None:
    sg = fresh()
    load_zarr(sg, str(data_dir / "split.zarr"), var_names=["towers", "label"])
    assert_loaded(sg, arrays, {"towers": "towers", "label": "label"})


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda d: load_npy(fresh(), {"towers": str(d / "nope.npy")}),
            FileNotFoundError,
            r"load_npy: the file of variable 'towers', .*nope\.npy, does not exist",
        ),
        (
            lambda d: load_npz(fresh(), str(d / "nope.npz")),
            FileNotFoundError,
            r"load_npz: .*nope\.npz does not exist",
        ),
        (
            lambda d: load_zarr(fresh(), str(d / "nope.zarr")),
            FileNotFoundError,
            r"load_zarr: .*nope\.zarr does not exist",
        ),
        (
            lambda d: load_npz(fresh(), str(d / "events.npz"), var_names=["towers", "nope"]),
            KeyError,
            r"no array\(s\) \['nope'\]; the file holds \['kinematics', 'label', 'towers'\]",
        ),
        (
            lambda d: load_zarr(fresh(), str(d / "store.zarr"), var_names=["nope"]),
            KeyError,
            r"no variable\(s\) \['nope'\]; it holds \['kinematics', 'label', 'towers'\]",
        ),
        (
            lambda d: load_zarr(fresh(), str(d / "plain.zarr"), var_names=["nope"]),
            KeyError,
            r"no variable\(s\) \['nope'\]",
        ),
        (
            lambda d: load_npz(fresh(), str(d / "events.npz"), phase=None),
            ValueError,
            r"events\.npz: give 'phase'",
        ),
        (
            lambda d: load_npy(
                fresh(), {"towers": str(d / "towers.npy"), "k": str(d / "split.npz")}
            ),
            ValueError,
            r".",  # not an .npy file: numpy's own error
        ),
        (
            lambda d: load_npz(fresh(), str(d / "events.npz"), phase=[0.5, 0.1, 0.1]),
            ValueError,
            r"sum to 1",
        ),
    ],
)
def test_loader_errors_name_the_problem(
    data_dir: Path, call: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call(data_dir)


def test_rows_that_do_not_line_up_change_nothing(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", x=np.zeros(10), y=np.zeros(9))
    sg = fresh()
    with pytest.raises(ValueError, match=r"different numbers of rows: \{'x': 10, 'y': 9\}"):
        load_npz(sg, str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "bad_split.npz", **{"train/x": np.zeros(4), "train/y": np.zeros(3)})
    with pytest.raises(ValueError, match=r"\(train\): variables have different numbers"):
        load_npz(sg, str(tmp_path / "bad_split.npz"))
    assert sg.get_var_names("train") == []  # nothing was added


def test_npz_mixing_both_namings_is_an_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "mixed.npz", **{"train/x": np.zeros(4), "y": np.zeros(4)})
    with pytest.raises(ValueError, match=r"mixes per-phase arrays"):
        load_npz(fresh(), str(tmp_path / "mixed.npz"))


def test_empty_zarr_group_is_an_error(tmp_path: Path) -> None:
    import zarr

    zarr.open_group(tmp_path / "empty.zarr", mode="w")
    with pytest.raises(ValueError, match=r"holds no arrays"):
        load_zarr(fresh(), str(tmp_path / "empty.zarr"))


def test_synthetic_module_examples() -> None:
    import doctest

    import multiml.data.synthetic

    result = doctest.testmod(multiml.data.synthetic)
    assert result.attempted >= 2 and result.failed == 0


def test_synthetic_two_step_is_deterministic() -> None:
    a, b = fresh(), fresh()
    load_two_step(a, num_events=100, seed=4)
    load_two_step(b, num_events=100, seed=4)
    for var in ("towers", "kinematics", "label"):
        np.testing.assert_array_equal(a.get_data(var, "all"), b.get_data(var, "all"))
    c = fresh()
    load_two_step(c, num_events=100, seed=5)
    assert not np.array_equal(a.get_data("towers", "all"), c.get_data("towers", "all"))
    assert a.get_metadata()["sizes"] == {"train": 60, "valid": 20, "test": 20}
    with pytest.raises(ValueError, match="num_events=0"):
        generate_two_step(num_events=0)


# ---------------------------------------------------------------- through the CLI
TASK_YAML = """\
name: {name}
data:
{data}
steps:
  classification:
    subtasks:
      mlp:
        task:
          _target_: multiml.task.pytorch.PytorchClassificationTask
          input_var_names: towers
          output_var_names: signal_prob
          true_var_names: label
          model: MLPBlock
          model_args: {{layers: [16, 8, 2]}}
          optimizer: Adam
          num_epochs: 2
metrics:
  default: {{pred_var_name: signal_prob, true_var_name: label}}
"""

SOURCES = {
    "npy": """\
  _target_: multiml.data.load_npy
  files: {towers: data/towers.npy, label: data/label.npy}
  phase: [0.6, 0.2, 0.2]""",
    "npz": """\
  _target_: multiml.data.load_npz
  path: data/events.npz
  phase: [0.6, 0.2, 0.2]""",
    "npz_split": """\
  _target_: multiml.data.load_npz
  path: data/split.npz""",
    "zarr_storegate": """\
  _target_: multiml.data.load_zarr
  path: data/store.zarr
  data_id: events""",
    "zarr_plain": """\
  _target_: multiml.data.load_zarr
  path: data/plain.zarr
  phase: [0.6, 0.2, 0.2]""",
}


def write_task(user_dir: Path, name: str, data: str) -> None:
    conf = user_dir / "my_conf" / "task"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / f"{name}.yaml").write_text(TASK_YAML.format(name=name, data=data))


@pytest.mark.slow
def test_cli_runs_on_each_data_source(cli_many, data_dir: Path) -> None:
    """The same data from five sources: every run loads the same split and gets the same
    result, bit for bit — so each run trained on the user's data."""
    user_dir = data_dir.parent
    for name, data in SOURCES.items():
        write_task(user_dir, name, data)
    runs = cli_many(
        [
            (["--config-dir", "my_conf", f"task={name}", f"hydra.run.dir=runs/{name}"], user_dir)
            for name in SOURCES
        ]
    )
    values = {}
    for name, run in zip(SOURCES, runs, strict=True):
        run.check()
        assert re.search(
            rf"data '{name}': {{'train': 180, 'valid': 60, 'test': 60}}", run.output
        ), run.output[-2000:]
        result = run.result()
        assert result["task_ids"] == ["classification"]
        values[name] = result["metric_value"]
    assert len(set(values.values())) == 1, values


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            "  _target_: multiml.data.load_npy\n  files: {towers: data/nope.npy}",
            r"task=missing: loading task.data failed: load_npy: the file of variable "
            r"'towers', .*/data/nope\.npy, does not exist",
        ),
        (
            "  _target_: multiml.data.load_npz\n  path: data/events.npz\n"
            "  var_names: [towers, nope]",
            r"task=missing: loading task.data failed: .*events\.npz: no array\(s\) "
            r"\['nope'\]; the file holds \['kinematics', 'label', 'towers'\]",
        ),
    ],
    ids=["missing-file", "missing-variable"],
)
def test_cli_data_errors_are_clear(cli, data_dir: Path, data: str, expected: str) -> None:
    user_dir = data_dir.parent
    write_task(user_dir, "missing", data)
    run = cli(["--config-dir", "my_conf", "task=missing", "hydra.run.dir=runs/bad"], user_dir)
    message = run.config_error()
    assert re.search(expected, message), message
