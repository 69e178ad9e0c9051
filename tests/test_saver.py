"""Tests of multiml.saver: modes, round trips, atomic writes, dump_ml/load_ml, tracking."""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from multiml import Saver as TopLevelSaver
from multiml.saver import Saver


def files(directory):
    return sorted(p.name for p in Path(directory).iterdir())


@pytest.fixture
def torch():
    """torch, imported only by the tests that need it (spawned workers stay light)."""
    return pytest.importorskip("torch")


def make_linear(seed):
    import torch

    generator = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model


# ---------------------------------------------------------------------- construction
def test_top_level_export():
    assert TopLevelSaver is Saver


def test_unknown_mode_names_allowed_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown mode 'hdf5'; allowed: \['dict', 'zarr'\]"):
        Saver(tmp_path, mode="hdf5")
    saver = Saver(tmp_path)
    with pytest.raises(ValueError, match="allowed"):
        saver.set_mode("memory")
    assert saver.mode == "zarr"
    with pytest.raises(ValueError, match="allowed"):
        saver.keys("disk")
    with pytest.raises(ValueError, match="allowed"):
        saver.add("k", 1, mode="disk")
    assert "k" not in saver


def test_persistent_mode_creates_save_dir_and_serial_id_subdir(tmp_path):
    saver = Saver(tmp_path / "run", serial_id=3)
    assert saver.save_dir == str(tmp_path / "run" / "3")
    assert (tmp_path / "run" / "3").is_dir()
    saver["x"] = 1
    assert (tmp_path / "run" / "3" / "x.json").is_file()
    other = Saver(tmp_path / "run", serial_id="4")
    assert other.keys() == []
    with pytest.raises(ValueError, match="relative"):
        Saver(tmp_path, serial_id="../escape")


def test_dict_mode_touches_no_disk_until_needed(tmp_path):
    target = tmp_path / "later"
    saver = Saver(target, mode="dict")
    saver["a"] = [1, 2]
    assert not target.exists()
    saver.save()
    assert files(target) == ["a.json"]


def test_default_save_dir_is_a_logged_temp_dir(caplog):
    with caplog.at_level(logging.INFO, logger="multiml.saver"):
        saver = Saver()
    path = Path(saver.save_dir)
    assert path.is_dir()
    assert str(path) in caplog.text
    assert Saver().save_dir != saver.save_dir  # a fresh one each time
    saver["k"] = {"v": 1}
    assert Saver(path)["k"] == {"v": 1}


def test_default_save_dir_inside_hydra_run_is_the_run_dir(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import hydra
            from multiml.saver import Saver

            @hydra.main(version_base=None, config_path=None)
            def main(cfg):
                saver = Saver()
                saver["result"] = {"metric_value": 0.5}
                print("SAVE_DIR=" + saver.save_dir)

            main()
            """
        )
    )
    run_dir = tmp_path / "outputs" / "run"
    proc = subprocess.run(
        [sys.executable, str(script), f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"SAVE_DIR={run_dir}" in proc.stdout
    assert json.loads((run_dir / "result.json").read_text()) == {"metric_value": 0.5}
    assert (run_dir / ".hydra").is_dir()


def test_recreate_removes_only_the_savers_files(torch, tmp_path):
    saver = Saver(tmp_path)
    saver["a"] = 1
    saver["arr"] = np.arange(3)
    saver.dump_ml("model", model=make_linear(0))
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("a: 1\n")
    (tmp_path / "main.log").write_text("log\n")
    (tmp_path / ".deadbeef.tmp").write_bytes(b"half")
    assert Saver(tmp_path).keys() == ["a", "arr", "model"]
    fresh = Saver(tmp_path, recreate=True)
    assert fresh.keys() == []
    assert files(tmp_path) == [".hydra", "main.log"]
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == "a: 1\n"


# ---------------------------------------------------------------------- round trips
ROUND_TRIP_VALUES = {
    "result": {
        "task_ids": ["step0", "step1"],
        "subtask_ids": ["mlp", "bdt"],
        "job_id": 3,
        "trial_id": None,
        "subtask_hps": [{"model__layers": (16, 16), "optimizer__lr": 0.01}, {}],
        "metric_value": 0.125,
        "metric_values": [0.1, 0.15],
    },
    "hps": {
        "tuple": (1, (2, 3), []),
        "none": None,
        "nested": [[1, [2, [3.5]]], {"k": [True, False]}],
        "f32": np.float32(0.1),
        "f64": np.float64(1 / 3),
        "i64": np.int64(-(2**40)),
        "u8": np.uint8(200),
        "b": np.bool_(True),
        "c": np.complex64(1 + 2j),
        "s": np.str_("text"),
        "array": np.array([[1.5, 2.5], [3.5, np.nan]], dtype=np.float32),
        "int_array": np.arange(5, dtype=np.int16),
        "empty": {"list": [], "dict": {}, "tuple": ()},
    },
    "special_floats": [math.inf, -math.inf, 1e-310, 2**70],
    "odd_dicts": {
        1: "int key",
        (1, 2): "tuple key",
        None: "none key",
        "__multiml_type__": "a user key that collides with the tag",
    },
    "sets": {"set": {1, 2, 3}, "frozenset": frozenset({"a"}), "bytes": b"\x00\xff"},
    "unicode": "Grüße, 測試 ✓",
    "scalar": 42,
    "float": 0.1,
    "complex": 1 - 1j,
}


def assert_same(actual, expected):
    """Deep equality that also checks types (tuple vs list, numpy dtypes)."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, np.ndarray):
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        np.testing.assert_array_equal(actual, expected)
    elif isinstance(expected, np.generic):
        assert actual.dtype == expected.dtype and actual == expected
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            assert_same(actual[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_same(a, e)
    else:
        assert actual == expected


@pytest.mark.parametrize("key", sorted(ROUND_TRIP_VALUES))
def test_persistent_round_trip_keeps_values_and_types(tmp_path, key):
    Saver(tmp_path)[key] = ROUND_TRIP_VALUES[key]
    assert_same(Saver(tmp_path)[key], ROUND_TRIP_VALUES[key])


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float64).reshape(3, 4),
        np.array([True, False]),
        np.zeros((0, 3), dtype=np.int32),
        np.array(["a", "bc"]),
        np.asfortranarray(np.arange(6).reshape(2, 3)),
        np.array(7.5),
    ],
)
def test_top_level_arrays_are_npy_files(tmp_path, array):
    saver = Saver(tmp_path)
    saver["arr"] = array
    assert files(tmp_path) == ["arr.npy"]
    assert_same(Saver(tmp_path)["arr"], array)


def test_json_files_are_readable_json(tmp_path):
    Saver(tmp_path)["result"] = {"metric_value": 0.5, "ids": ["a", "b"]}
    assert json.loads((tmp_path / "result.json").read_text()) == {
        "metric_value": 0.5,
        "ids": ["a", "b"],
    }


def test_values_read_back_from_disk_are_fresh_objects(tmp_path):
    saver = Saver(tmp_path)
    value = {"a": [1, 2]}
    saver["k"] = value
    value["a"].append(3)  # the stored value was taken at write time
    got = saver["k"]
    got["a"].append(99)
    assert saver["k"] == {"a": [1, 2]}


@pytest.mark.parametrize(
    "key",
    ["with/slash", "..", ".", "", "a b", "%41", ".hidden", "models", "测试", "x.json", "a\nb"],
)
def test_arbitrary_string_keys(tmp_path, key):
    saver = Saver(tmp_path)
    saver[key] = {"key": key}
    saver["plain"] = 1
    reopened = Saver(tmp_path)
    assert reopened[key] == {"key": key}
    assert sorted(reopened.keys()) == sorted([key, "plain"])
    assert all((tmp_path / name).is_file() for name in files(tmp_path))  # no sub-dirs
    reopened.delete(key)
    assert reopened.keys() == ["plain"]


def test_bad_keys(tmp_path):
    saver = Saver(tmp_path)
    with pytest.raises(TypeError, match="keys must be str"):
        saver[1] = "x"
    with pytest.raises(ValueError, match="too long"):
        saver["k" * 300] = 1
    assert saver.keys() == []
    assert 1 not in saver


def test_unstorable_value_is_an_error_that_changes_nothing(tmp_path):
    saver = Saver(tmp_path)
    saver["k"] = {"ok": 1}
    with pytest.raises(TypeError, match=r"object at 'k'\['a'\]\[1\]"):
        saver["k"] = {"a": [1, object()]}
    with pytest.raises(TypeError, match="dtype object"):
        saver["k"] = np.array([1, None], dtype=object)
    assert saver["k"] == {"ok": 1}
    assert files(tmp_path) == ["k.json"]
    # the dict mode keeps any object in memory
    marker = object()
    saver.add("obj", marker, mode="dict")
    assert saver["obj"] is marker


def test_unknown_key_lists_available(tmp_path):
    saver = Saver(tmp_path)
    saver["alpha"] = 1
    saver.add("beta", 2, mode="dict")
    with pytest.raises(KeyError, match=r"'gamma'.*\['beta', 'alpha'\]"):
        saver["gamma"]
    with pytest.raises(KeyError, match="no keys stored"):
        Saver(mode="dict")["x"]


def test_foreign_and_corrupt_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "my file.json").write_text("{}")  # not a name the Saver writes
    (tmp_path / "sub.json").mkdir()
    (tmp_path / "broken.json").write_text('{"a": ')
    saver = Saver(tmp_path)
    assert saver.keys() == ["broken"]
    with pytest.raises(ValueError, match=r"key 'broken' .* unreadable"):
        saver["broken"]
    (tmp_path / "plain.json").write_text('{"written": "by hand", "n": [1, 2]}')
    assert saver["plain"] == {"written": "by hand", "n": [1, 2]}


def test_changing_a_key_between_array_and_json_keeps_one_file(tmp_path):
    saver = Saver(tmp_path)
    saver["k"] = np.arange(3)
    saver["k"] = {"now": "json"}
    assert files(tmp_path) == ["k.json"]
    saver["k"] = np.ones(2)
    assert files(tmp_path) == ["k.npy"]
    # after a crash between the two steps both files exist: the newer one is read
    (tmp_path / "k.json").write_text('"older"')
    os.utime(tmp_path / "k.json", ns=(1, 1))
    assert_same(saver["k"], np.ones(2))
    assert saver.keys() == ["k"]


# ---------------------------------------------------------------------- memory vs disk
def test_dict_mode_keeps_objects_in_memory():
    saver = Saver(mode="dict")
    value = {"a": 1}
    saver["k"] = value
    assert saver["k"] is value
    assert "k" in saver
    assert saver.keys() == ["k"] == saver.keys("dict")
    assert saver.keys("zarr") == []
    assert len(saver) == 1
    assert list(saver) == ["k"]
    del saver["k"]
    assert "k" not in saver
    with pytest.raises(KeyError, match="'k'"):
        saver.delete("k")


def test_memory_shadows_disk_until_save(tmp_path):
    saver = Saver(tmp_path)
    saver["k"] = "disk"
    saver.add("k", "memory", mode="dict")
    assert saver["k"] == "memory"
    assert Saver(tmp_path)["k"] == "disk"
    assert saver.keys() == ["k"]
    assert saver.keys("dict") == ["k"] == saver.keys("zarr")
    saver.delete("k", mode="dict")
    assert saver["k"] == "disk"
    saver.add("k", "memory again", mode="dict")
    saver["k"] = "new disk"  # a disk write drops the memory copy
    assert saver.keys("dict") == []
    assert saver["k"] == "new disk"


def test_save_moves_memory_to_disk(tmp_path):
    saver = Saver(tmp_path, mode="dict")
    saver["a"] = {"x": (1, 2)}
    saver["b"] = np.arange(4)
    assert saver.keys("zarr") == []
    saver.save()
    assert saver.keys("dict") == []
    assert saver.keys("zarr") == ["a", "b"]
    reopened = Saver(tmp_path)
    assert reopened["a"] == {"x": (1, 2)}
    assert_same(reopened["b"], np.arange(4))


def test_save_checks_every_value_before_writing(tmp_path):
    saver = Saver(tmp_path / "run", mode="dict")
    saver["good"] = 1
    saver["bad"] = {"v": object()}
    with pytest.raises(TypeError, match="'bad'"):
        saver.save()
    assert not (tmp_path / "run").exists()
    assert saver.keys("dict") == ["good", "bad"]


def test_to_storage_and_to_memory_move_values(tmp_path):
    saver = Saver(tmp_path)
    saver["k"] = [1, 2]
    saver.to_memory("k")
    assert saver.keys("dict") == ["k"] and saver.keys("zarr") == []
    assert Saver(tmp_path).keys() == []
    saver.to_storage("k")
    assert saver.keys("dict") == [] and saver.keys("zarr") == ["k"]
    assert Saver(tmp_path)["k"] == [1, 2]
    with pytest.raises(KeyError, match="not in memory"):
        saver.to_storage("k")
    with pytest.raises(KeyError, match="not on disk"):
        saver.to_memory("missing")


def test_set_mode_changes_write_destination(tmp_path):
    saver = Saver(tmp_path, mode="dict")
    saver["m"] = 1
    saver.set_mode("zarr")
    saver["d"] = 2
    assert saver.mode == "zarr"
    assert saver.keys("dict") == ["m"]
    assert saver.keys("zarr") == ["d"]
    assert saver.keys() == ["m", "d"]


def test_delete_modes(tmp_path):
    saver = Saver(tmp_path)
    saver["k"] = 1
    with pytest.raises(KeyError, match="in memory"):
        saver.delete("k", mode="dict")
    saver.add("k", 2, mode="dict")
    saver.delete("k", mode="zarr")
    assert saver.keys("zarr") == []
    assert saver["k"] == 2
    saver.delete("k")
    assert "k" not in saver
    with pytest.raises(KeyError, match="on disk"):
        saver.delete("k", mode="zarr")


# ---------------------------------------------------------------------- atomicity
def test_failed_rename_keeps_old_value_and_leaves_no_temp_file(tmp_path, monkeypatch):
    saver = Saver(tmp_path)
    saver["k"] = {"version": 1}
    saver["arr"] = np.zeros(2)

    def crash(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        saver["k"] = {"version": 2}
    with pytest.raises(OSError, match="simulated"):
        saver["arr"] = np.ones(2)
    monkeypatch.undo()
    assert saver["k"] == {"version": 1}
    assert_same(saver["arr"], np.zeros(2))
    assert files(tmp_path) == ["arr.npy", "k.json"]


def test_killed_writer_leaves_old_value_readable(tmp_path):
    Saver(tmp_path)["k"] = {"version": 1}
    script = textwrap.dedent(
        f"""
        import os
        from multiml.saver import Saver

        saver = Saver({str(tmp_path)!r})
        os.replace = lambda src, dst: os._exit(9)  # die after the temp file is written
        saver["k"] = {{"version": 2, "payload": list(range(1000))}}
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], timeout=120, check=False)
    assert proc.returncode == 9
    leftovers = [name for name in files(tmp_path) if name != "k.json"]
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")  # the half-done write
    reopened = Saver(tmp_path)
    assert reopened["k"] == {"version": 1}
    assert reopened.keys() == ["k"]
    reopened["k"] = {"version": 3}
    assert Saver(tmp_path)["k"] == {"version": 3}


def _write_keys(saver, worker, count):
    for i in range(count):
        saver[f"w{worker}/k{i}"] = {"worker": worker, "i": i, "arr": np.full(3, i)}
        saver[f"w{worker}/a{i}"] = np.full(4, worker * 100 + i)
    return worker


def test_processes_write_distinct_keys_concurrently(tmp_path):
    saver = Saver(tmp_path)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=3, mp_context=context) as pool:
        done = list(pool.map(_write_keys, [saver] * 3, range(3), [20] * 3))
    assert done == [0, 1, 2]
    keys = Saver(tmp_path).keys()
    assert len(keys) == 3 * 20 * 2
    for worker in range(3):
        for i in range(20):
            value = saver[f"w{worker}/k{i}"]
            assert value["worker"] == worker and value["i"] == i
            assert_same(value["arr"], np.full(3, i))
            assert_same(saver[f"w{worker}/a{i}"], np.full(4, worker * 100 + i))
    assert not [name for name in files(tmp_path) if name.endswith(".tmp")]


# ---------------------------------------------------------------------- pickling
def test_pickle_dict_mode_carries_data():
    saver = Saver(mode="dict")
    saver["k"] = {"a": np.arange(3)}
    restored = pickle.loads(pickle.dumps(saver))
    assert restored.mode == "dict"
    np.testing.assert_array_equal(restored["k"]["a"], np.arange(3))


def test_pickle_persistent_mode_shares_the_directory(tmp_path):
    saver = Saver(tmp_path)
    saver["before"] = 1
    with saver.track_writes():
        restored = pickle.loads(pickle.dumps(saver))
    assert restored.save_dir == saver.save_dir
    assert restored.mode == "zarr"
    assert restored["before"] == 1
    restored["after"] = 2
    assert saver["after"] == 2
    with restored.track_writes() as log:  # no tracking scope came along
        restored["x"] = 0
    assert list(log.written) == ["x"]


# ---------------------------------------------------------------------- tracking
def test_track_writes_records_net_effect_and_nests(tmp_path):
    saver = Saver(tmp_path)
    saver["existing"] = 0
    with saver.track_writes() as outer:
        saver["a"] = 1
        with saver.track_writes() as inner:
            saver.add("b", 2, mode="dict")
            saver.delete("existing")
            saver["c"] = 3
            saver.delete("c")
        saver["a"] = 4
    assert list(inner.written) == ["b"]
    assert list(inner.deleted) == ["existing", "c"]
    assert list(outer.written) == ["b", "a"]  # order of the last write
    assert set(outer.deleted) == {"existing", "c"}
    assert outer.written == {"a", "b"}
    with saver.track_writes() as log:
        saver["existing"] = 1
        saver.delete("existing")
        saver["existing"] = 2  # re-created: written, not deleted
    assert list(log.written) == ["existing"] and list(log.deleted) == []
    saver.add("existing", 3, mode="dict")
    with saver.track_writes() as log:
        saver.delete("existing", mode="dict")  # the disk value is visible again
    assert list(log.written) == ["existing"] and list(log.deleted) == []
    saver["after"] = 5
    assert "after" not in outer.written


def test_track_writes_records_dump_ml_and_closes_on_error():
    saver = Saver(mode="dict")
    with pytest.raises(RuntimeError), saver.track_writes() as log:
        saver.dump_ml("rec", suffix="s", epochs=2)
        raise RuntimeError("boom")
    assert list(log.written) == ["rec__s"]
    saver["later"] = 1
    assert "later" not in log.written


# ---------------------------------------------------------------------- dump_ml / load_ml
def test_importing_saver_does_not_import_torch():
    code = "import sys, multiml, multiml.saver; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_dump_and_load_ml_on_disk(torch, tmp_path, monkeypatch):
    saver = Saver(tmp_path)
    model = make_linear(0)
    saver.dump_ml("step0", suffix="mlp", model=model, epochs=5, note="x", layers=[3, 2])
    record = Saver(tmp_path)["step0__mlp"]
    assert record["epochs"] == 5 and record["layers"] == [3, 2] and record["note"] == "x"
    assert record["ml_type"] == "pytorch"
    assert record["model_path"].startswith("models/")
    assert isinstance(record["timestamp"], str)
    assert (tmp_path / record["model_path"]).is_file()

    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = Saver(tmp_path).load_ml("step0", "mlp")
    assert calls == [{"weights_only": True, "map_location": "cpu"}]
    assert loaded["model_path"] == str(tmp_path / record["model_path"])
    assert loaded["epochs"] == 5
    fresh = torch.nn.Linear(3, 2)
    fresh.load_state_dict(loaded["state_dict"])
    for name, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value)


def test_dump_ml_in_dict_mode_keeps_a_cpu_copy_and_save_writes_it(torch, tmp_path):
    run_dir = tmp_path / "run"
    saver = Saver(run_dir, mode="dict")
    model = make_linear(1)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    saver.dump_ml("m", model=model, lr=0.1)
    with torch.no_grad():
        model.weight.add_(100.0)  # training on does not change the dumped weights
    loaded = saver.load_ml("m")
    assert loaded["model_path"] is None
    assert loaded["lr"] == 0.1
    assert all(torch.equal(loaded["state_dict"][k], v) for k, v in expected.items())
    assert not run_dir.exists()
    saver.save()
    reopened = Saver(run_dir)
    assert reopened["m"]["model_path"].startswith("models/")
    loaded = reopened.load_ml("m")
    assert all(torch.equal(loaded["state_dict"][k], v) for k, v in expected.items())


def test_dump_ml_without_model_and_redump_replaces_model_file(torch, tmp_path):
    saver = Saver(tmp_path)
    saver.dump_ml("meta", ml_type="sklearn", score=0.5)
    loaded = saver.load_ml("meta")
    assert loaded["state_dict"] is None and loaded["ml_type"] == "sklearn"
    saver.dump_ml("m", model=make_linear(0))
    first = saver["m"]["model_path"]
    saver.dump_ml("m", model=make_linear(1))
    second = saver["m"]["model_path"]
    assert first != second
    assert files(tmp_path / "models") == [Path(second).name]
    loaded = saver.load_ml("m")
    assert torch.equal(loaded["state_dict"]["weight"], make_linear(1).weight.detach())
    saver.delete("m")
    assert files(tmp_path / "models") == []


def test_dump_ml_errors_change_nothing(torch, tmp_path):
    saver = Saver(tmp_path)
    with pytest.raises(TypeError, match=r"kwarg 'opt' has type SGD"):
        model = make_linear(0)
        saver.dump_ml("m", model=model, opt=torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(TypeError, match=r"kwarg 'info'\['arr'\] has type ndarray"):
        saver.dump_ml("m", info={"arr": np.zeros(2)})
    with pytest.raises(TypeError, match=r"must be a torch\.nn\.Module"):
        saver.dump_ml("m", model={"weight": 1})
    with pytest.raises(ValueError, match="reserved"):
        saver.dump_ml("m", model_path="elsewhere")
    with pytest.raises(ValueError, match="ml_type 'keras'"):
        saver.dump_ml("m", ml_type="keras", model=make_linear(0))
    assert saver.keys() == []
    assert not (tmp_path / "models").exists() or files(tmp_path / "models") == []


def test_load_ml_errors(torch, tmp_path):
    saver = Saver(tmp_path)
    saver["plain"] = {"a": 1}
    with pytest.raises(ValueError, match="not hold a dump_ml record"):
        saver.load_ml("plain")
    with pytest.raises(KeyError, match="'nothing'"):
        saver.load_ml("nothing")
    saver.dump_ml("m", model=make_linear(0))
    (tmp_path / saver["m"]["model_path"]).unlink()
    with pytest.raises(FileNotFoundError, match="key 'm' is missing"):
        saver.load_ml("m")


def test_dict_mode_load_ml_returns_fresh_tensors_and_pickles(torch):
    saver = Saver(mode="dict")
    saver.dump_ml("m", model=make_linear(2))
    first = saver.load_ml("m")["state_dict"]
    first["weight"].zero_()  # in-place changes to a loaded copy stay local
    assert torch.equal(saver.load_ml("m")["state_dict"]["weight"], make_linear(2).weight.detach())
    restored = pickle.loads(pickle.dumps(saver))
    assert torch.equal(restored.load_ml("m")["state_dict"]["bias"], make_linear(2).bias.detach())


def test_docstring_examples_run():
    import doctest

    import multiml.saver

    result = doctest.testmod(multiml.saver)
    assert result.attempted > 0
    assert result.failed == 0
