"""``python -m multiml`` as a user types it, in temporary directories.

Each run is a subprocess of this interpreter started in ``tmp_path``; runs whose point is
plumbing shrink the default task (400 events, 2 epochs) with command-line overrides.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

RESULT_KEYS = {"task_ids", "subtask_ids", "job_id", "trial_id", "subtask_hps", "metric_value"}
"""The keys of a result dict without trials (SPEC §6)."""

SMALL_SINGLE = [
    "task.data.num_events=400",
    "task.steps.regression.subtasks.mlp.task.num_epochs=2",
    "task.steps.classification.subtasks.mlp.task.num_epochs=2",
]
"""Shrinks ``task=two_step_single`` (or two_step without its ``linear`` subtask)."""

SMALL = [*SMALL_SINGLE, "task.steps.classification.subtasks.linear.task.num_epochs=2"]
"""Shrinks ``task=two_step``: 400 events, 2 epochs per step, still 6 combinations."""

TWO_COMBINATIONS = [
    *SMALL_SINGLE,
    "task.steps.regression.subtasks.mlp.hps.optimizer__lr=[0.01]",
    "task.steps.classification.subtasks.linear=null",
]
"""``task=two_step`` reduced to 2 small combinations (classification lr 0.01 / 0.003)."""


def metric_values(run) -> list[float]:
    return [r["metric_value"] for r in run.history()]


# ------------------------------------------------------------------ the default run
def test_default_run_leaves_every_output(default_run) -> None:
    run_dir = default_run.run_dir
    # outputs/DATE/TIME under the directory the command was started in
    assert run_dir.parent.parent.name == "outputs"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", run_dir.parent.name)
    # .hydra/: the composed config and the (empty) overrides
    composed = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert composed["task"]["name"] == "two_step"
    assert composed["agent"]["_target_"] == "multiml.agent.basic.GridSearchAgent"
    assert yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) == []
    # the log file, configured by Hydra, holds the run's log
    log = (run_dir / "multiml.log").read_text()
    assert "best auc" in log and "combination 6/6" in log
    # result.json: exactly the SPEC §6 keys, the best of the history
    result = default_run.result()
    assert set(result) == RESULT_KEYS
    assert result["task_ids"] == ["regression", "classification"]
    history = default_run.history()
    assert len(history) == 6
    assert [r["job_id"] for r in history] == list(range(6))
    assert all(set(r) == RESULT_KEYS for r in history)
    assert result == max(history, key=lambda r: r["metric_value"])
    assert {tuple(r["subtask_ids"]) for r in history} == {("mlp", "mlp"), ("mlp", "linear")}
    # the Saver's files and the TensorBoard event files (one run per combination)
    assert (run_dir / "saver").is_dir() and any((run_dir / "saver").iterdir())
    runs = sorted(p.name for p in (run_dir / "tensorboard").iterdir())
    assert runs == [f"job{i:04d}" for i in range(6)]
    for name in runs:
        assert list((run_dir / "tensorboard" / name).glob("events.out.tfevents.*"))


def test_default_run_prints_the_result_table_and_the_tensorboard_command(default_run) -> None:
    out = default_run.output
    assert re.search(r"job\s+regression\s+classification\s+auc", out)
    assert len(re.findall(r"^\d \*? *mlp \(optimizer__lr=", out, re.M)) == 6
    assert f"tensorboard --logdir {default_run.run_dir}" in out


def test_default_experiment_learns_within_a_minute(default_run) -> None:
    """The default experiment is a real two-step problem: the best AUC is far from chance,
    and the linear classifier on step 1's estimate is worse than the MLP. It finishes in
    well under a minute (about 10 s on 2 cores)."""
    assert default_run.wall_s < 60
    history = default_run.history()
    best = default_run.result()["metric_value"]
    assert 0.9 < best <= 1.0
    linear = [r["metric_value"] for r in history if r["subtask_ids"][1] == "linear"]
    assert max(linear) < best


# ---------------------------------------------------- the other runs, all at once
SEEDED = ["seed=3", *TWO_COMBINATIONS]
IRIS = [
    "task=iris",
    "metric=acc",
    "task.steps.classification.subtasks.mlp.task.num_epochs=5",
    "task.steps.classification.subtasks.mlp.hps.optimizer__lr=[0.03,0.01]",
]
COMMANDS: dict[str, list[str]] = {
    # longest first, so the batch packs well on few cores
    "workers": [*SEEDED, "devices=[cpu,cpu]"],  # 2 worker processes
    "iris": IRIS,
    "connection_grid": [
        "agent=connection_grid",
        "agent.connectiontask_args.num_epochs=2",
        *TWO_COMBINATIONS,
    ],
    "connection_random": [
        "agent=connection_random",
        "agent.samplings=2",
        "agent.connectiontask_args.num_epochs=2",
        *TWO_COMBINATIONS,
    ],
    "random": ["agent=random", "agent.samplings=3", *SMALL],
    "seed3": SEEDED,
    "seed3_again": SEEDED,
    "seed3_zarr": [*SEEDED, "storegate=zarr"],
    "seed3_hybrid": [*SEEDED, "storegate=hybrid"],
    "seed4": ["seed=4", *TWO_COMBINATIONS],
    "sequential": ["agent=sequential", "task=two_step_single", *SMALL_SINGLE],
    "trials": ["agent=sequential", "task=two_step_single", "agent.num_trials=2", *SMALL_SINGLE],
    # bad inputs found while building (one per kind; the others are tested in process)
    "bad_sequential": ["agent=sequential", "task.data.num_events=200"],
    "bad_wiring": [
        "task.data.num_events=200",
        "task.steps.classification.subtasks.mlp.task.input_var_names=nope",
    ],
    "bad_device": ["devices=[5]", "task.data.num_events=200"],
}
"""Every other CLI run of this module, run concurrently (one per core) by ``runs``."""


@pytest.fixture(scope="module")
def runs(cli_many, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The runs of ``COMMANDS`` by name, each started in its own directory."""
    from importlib.util import find_spec

    names = [n for n in COMMANDS if n != "iris" or find_spec("sklearn") is not None]
    base = tmp_path_factory.mktemp("cli")
    return dict(zip(names, cli_many([(COMMANDS[n], base / n) for n in names]), strict=True))


# ------------------------------------------------------------------------- agents
def test_random_agent_runs_its_samplings(runs) -> None:
    run = runs["random"].check()
    history = run.history()
    assert len(history) == 3
    assert [r["job_id"] for r in history] == [0, 1, 2]
    combos = {json.dumps([r["subtask_ids"], r["subtask_hps"]]) for r in history}
    assert len(combos) == 3  # without replacement
    assert run.result() == max(history, key=lambda r: r["metric_value"])
    assert len(list((run.run_dir / "tensorboard").iterdir())) == 3


def test_sequential_agent_runs_the_single_combination(runs) -> None:
    run = runs["sequential"].check()
    result = run.result()
    assert set(result) == RESULT_KEYS
    assert result["subtask_ids"] == ["mlp", "mlp"]
    assert result["subtask_hps"] == [{"optimizer__lr": 0.01}, {"optimizer__lr": 0.01}]
    assert run.history() == [result]


def test_sequential_agent_with_trials_averages(runs) -> None:
    result = runs["trials"].check().result()
    assert set(result) == RESULT_KEYS | {"metric_values"}
    assert len(result["metric_values"]) == 2
    assert result["metric_values"][0] != result["metric_values"][1]  # trials differ
    assert math.isclose(result["metric_value"], sum(result["metric_values"]) / 2)


@pytest.mark.parametrize("agent", ["connection_random", "connection_grid"])
def test_connection_agents_run(runs, agent: str) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = runs[agent].check()
    history = run.history()
    assert len(history) == 2
    assert all(set(r) == RESULT_KEYS for r in history)
    assert all(0.0 <= r["metric_value"] <= 1.0 for r in history)
    # the connected model's training is in TensorBoard next to each step's pre-training
    tb_runs = sorted((run.run_dir / "tensorboard").iterdir())
    assert [p.name for p in tb_runs] == ["job0000", "job0001"]
    acc = EventAccumulator(str(tb_runs[0]), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "regression/mlp/train/loss" in tags
    assert "connection/ModelConnectionTask_0/train/loss" in tags
    assert len(acc.Scalars("connection/ModelConnectionTask_0/valid/loss")) == 2  # epochs


# ----------------------------------------- seeds, stores, workers: identical results
def test_seed_gives_bit_identical_results(runs) -> None:
    first, again = runs["seed3"].check(), runs["seed3_again"].check()
    assert len(first.history()) == 2
    assert first.result() == again.result()  # JSON floats: bit-identical values
    assert first.history() == again.history()
    assert metric_values(runs["seed4"].check()) != metric_values(first)


@pytest.mark.parametrize("store", ["zarr", "hybrid"])
def test_storegate_backends_give_the_same_results(runs, store: str) -> None:
    run = runs[f"seed3_{store}"].check()
    assert run.history() == runs["seed3"].check().history()
    # the data went to disk, into the run directory
    assert (run.run_dir / "storegate" / "two_step" / "train" / "towers").is_dir()
    assert not (runs["seed3"].run_dir / "storegate").exists()


def test_worker_processes_give_the_serial_results(runs) -> None:
    run = runs["workers"].check()
    assert run.history() == runs["seed3"].check().history()
    assert len(list((run.run_dir / "tensorboard").iterdir())) == 2


# --------------------------------------------------------------------------- iris
def test_iris_with_accuracy(runs) -> None:
    pytest.importorskip("sklearn")
    run = runs["iris"].check()
    history = run.history()
    assert len(history) == 4 * 2
    ks = sorted({r["subtask_hps"][0]["model__k"] for r in history})
    assert ks == [1, 2, 3, 4]
    # step 1's input width is step 0's k, resolved from the Saver
    for r in history:
        assert r["subtask_hps"][1]["model__input_shape"] == r["subtask_hps"][0]["model__k"]
    assert all(0.0 <= r["metric_value"] <= 1.0 for r in history)
    assert re.search(r"best acc = ", run.output)


# ---------------------------------------------------------------------- bad inputs
def test_wrong_type_fails_naming_the_key(cli, tmp_path: Path) -> None:
    out = cli(["agent.seed=notanint"], tmp_path).error()
    assert "agent.seed" in out and "notanint" in out and "Integer" in out
    assert not (tmp_path / "outputs").exists()  # stopped before anything ran


def test_wrong_enum_lists_the_allowed_values(cli, tmp_path: Path) -> None:
    out = cli(["agent.metric_type=foo"], tmp_path).error()
    assert "agent.metric_type" in out and "foo" in out and "[min, max]" in out


@pytest.mark.parametrize("group", ["agent", "metric", "task", "storegate"])
def test_unknown_group_option_lists_the_options(cli, tmp_path: Path, group: str) -> None:
    out = cli([f"{group}=nope"], tmp_path).error()
    assert f"Could not find '{group}/nope'" in out
    available = out.split(f"Available options in '{group}':", 1)[1]
    conf = Path(__file__).resolve().parents[2] / "multiml" / "conf" / group
    for option in sorted(p.stem for p in conf.glob("*.yaml")):
        assert option in available


def test_sequential_agent_on_a_search_suggests_grid(runs) -> None:
    run = runs["bad_sequential"]
    message = run.config_error()
    assert "agent=sequential" in message and "task=two_step" in message
    assert "6" in message and "agent=grid" in message
    assert "agent=sequential" in (run.run_dir / "multiml.log").read_text()  # logged too
    assert not (run.run_dir / "result.json").exists()


def test_task_whose_steps_do_not_wire_up(runs) -> None:
    message = runs["bad_wiring"].config_error()
    assert "step 'classification'" in message and "subtask 'mlp'" in message
    assert "['nope']" in message
    # what exists: the data's variables and what earlier steps write
    assert "towers" in message and "kinematics_pred" in message
    assert "task.steps.classification.subtasks.mlp.task" in message


def test_device_that_does_not_exist(runs) -> None:
    import torch

    if torch.cuda.device_count() > 5:
        pytest.skip("this machine has a sixth GPU")
    message = runs["bad_device"].config_error()
    assert "devices=[5]" in message and "cuda:5 does not exist" in message
    assert "devices=[cpu]" in message


# ------------------------------------------------------------- fast, torch-free CLI
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s+(?P<module>\S+)", re.M)


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"]])
def test_help_and_cfg_do_not_import_torch_and_are_fast(tmp_path: Path, args: list[str]) -> None:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "multiml", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = IMPORT_LINE.findall(proc.stderr)
    assert "hydra" in modules  # the import log is read correctly
    heavy = [m for m in modules if m.split(".")[0] in {"torch", "zarr", "tensorboard"}]
    assert heavy == []
    assert elapsed < 5.0, f"{args} took {elapsed:.1f}s"
    if args == ["--help"]:
        for group in ("agent:", "task:", "metric:", "storegate:"):
            assert group in proc.stdout
        assert "connection_grid" in proc.stdout and "two_step" in proc.stdout
        assert proc.stdout.startswith("multiml: multi-step machine learning")
        assert "python -m multiml --config-dir my_conf task=mytask" in proc.stdout
    else:
        composed = yaml.safe_load(proc.stdout)
        assert composed["task"]["name"] == "two_step"
        assert composed["agent"]["seed"] == "${seed}"
    assert not (tmp_path / "outputs").exists()
