"""``python -m multiml -m ...`` as a user types it: joblib sweeps, results, resume.

Every command runs in a temporary directory with a small task (400 events, 2 epochs).
Module-scoped fixtures run each sweep once and keep what the first launch left, so
several tests can read it.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from multiml.agent.sampling import draw_indices

pytestmark = pytest.mark.slow

SMALL = [
    "task.data.num_events=400",
    "task.steps.regression.subtasks.mlp.task.num_epochs=2",
    "task.steps.classification.subtasks.mlp.task.num_epochs=2",
    "task.steps.classification.subtasks.linear.task.num_epochs=2",
]
"""Shrinks ``task=two_step`` (400 events, 2 epochs per step); still 6 combinations."""

JOBLIB2 = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "devices=[cpu,cpu]"]
"""Two loky workers, two CPU device slots."""

RESULT_KEYS = {"task_ids", "subtask_ids", "job_id", "trial_id", "subtask_hps", "metric_value"}
JOB_KEYS = RESULT_KEYS | {
    "key",
    "index",
    "status",
    "device",
    "device_slot",
    "started_at",
    "finished_at",
    "wall_s",
    "overrides",
}
ROW_KEYS = {"key", "job_id", "index", "status", "metric", "device", "device_slot", "wall_s"}


def slots_never_overlap(records: list[dict[str, Any]], slots: int) -> None:
    """Jobs that held the same device slot ran one after the other."""
    assert {r["device_slot"] for r in records} <= set(range(slots))
    by_slot: dict[int, list[tuple[float, float, str]]] = {}
    for record in records:
        by_slot.setdefault(record["device_slot"], []).append(
            (record["started_at"], record["finished_at"], record["key"])
        )
    for slot, intervals in by_slot.items():
        intervals.sort()
        for (_, end, key), (start, _, later) in itertools.pairwise(intervals):
            assert end <= start, f"slot {slot}: {key} held it until {end}, {later} from {start}"


@dataclass
class Launch:
    """A sweep (see ``conftest.Sweep``) and a snapshot of what its first launch left."""

    sweep: Any
    summary: dict[str, Any]
    rows: list[dict[str, str]]
    records: dict[str, dict[str, Any]]
    mtimes: dict[str, int]


def launch(run_sweep: Any, args: list[str], cwd: Path) -> Launch:
    result = run_sweep(args, cwd).check()
    return Launch(result, result.summary(), result.rows(), result.records(), result.result_mtimes())


# --------------------------------------------------------------------- grid, joblib
GRID_ARGS = [*SMALL, *JOBLIB2]


@pytest.fixture(scope="module")
def grid(sweep: Any, tmp_path_factory: pytest.TempPathFactory) -> Launch:
    return launch(sweep, GRID_ARGS, tmp_path_factory.mktemp("grid"))


def test_grid_plans_one_job_per_combination_in_stable_dirs(grid: Launch) -> None:
    keys = [f"c{i:04d}" for i in range(6)]
    assert grid.sweep.job_keys() == keys
    dirs = sorted(p.name for p in grid.sweep.sweep_dir.iterdir() if p.name.startswith("c"))
    assert dirs == keys
    for key in keys:
        job_dir = grid.sweep.sweep_dir / key
        # Hydra's files, the job's log and TensorBoard events are in the job's directory
        assert (job_dir / ".hydra" / "overrides.yaml").exists()
        assert "combination 1/1" in (job_dir / "multiml.log").read_text()
        assert list((job_dir / "tensorboard").glob("*/events.out.tfevents.*"))
    assert "6 jobs planned" in grid.sweep.output and "0 already done, 6 to run" in grid.sweep.output


def test_grid_job_records(grid: Launch) -> None:
    for i, (key, record) in enumerate(grid.records.items()):
        assert set(record) == JOB_KEYS, key
        assert record["status"] == "done"
        assert record["key"] == key and record["index"] == i and record["job_id"] == i
        assert record["device"] == "cpu" and record["device_slot"] in (0, 1)
        assert record["wall_s"] == pytest.approx(
            record["finished_at"] - record["started_at"], abs=1e-3
        )
        assert record["overrides"] == [*SMALL, "devices=[cpu,cpu]"]
        assert record["task_ids"] == ["regression", "classification"]
        assert 0.0 <= record["metric_value"] <= 1.0
    subtasks = [tuple(r["subtask_ids"]) for r in grid.records.values()]
    assert subtasks == [("mlp", "mlp"), ("mlp", "mlp"), ("mlp", "linear")] * 2


def test_grid_results_csv_summary_and_best(grid: Launch) -> None:
    assert len(grid.rows) == 6
    assert set(grid.rows[0]) >= ROW_KEYS
    assert [r["key"] for r in grid.rows] == list(grid.records)
    assert all(r["status"] == "done" for r in grid.rows)
    for row in grid.rows:
        record = grid.records[row["key"]]
        assert float(row["metric"]) == record["metric_value"]
        assert int(row["device_slot"]) == record["device_slot"]
        assert row["regression"] == "mlp" and row["classification"] == record["subtask_ids"][1]
    summary = grid.summary
    assert summary["counts"] == {"planned": 6, "done": 6, "failed": 0, "missing": 0, "skipped": 0}
    assert summary["metric"] == "auc" and summary["metric_type"] == "max"
    values = [r["metric_value"] for r in grid.records.values()]
    best_key = list(grid.records)[values.index(max(values))]
    assert summary["best_key"] == best_key
    assert summary["best"] == grid.records[best_key]
    result = grid.sweep.result()
    assert set(result) == RESULT_KEYS
    assert result == {k: grid.records[best_key][k] for k in RESULT_KEYS}
    out = grid.sweep.stdout
    assert re.search(r"multirun results \(\* = best, higher is better\)", out)
    assert re.search(rf"^{int(best_key[1:])} \* ", out, re.M)
    assert "multirun progress: 6/6 done, 0 failed" in out


def test_grid_best_equals_the_in_process_agent(grid: Launch, single, tmp_path: Path) -> None:
    in_process = single(SMALL, tmp_path)
    assert grid.sweep.result() == in_process["result"]  # ids and metric, bit for bit
    by_job = {r["job_id"]: r for r in in_process["history"]}
    for record in grid.records.values():
        assert {k: record[k] for k in RESULT_KEYS} == by_job[record["job_id"]]


def test_grid_device_slots_never_overlap(grid: Launch) -> None:
    records = list(grid.records.values())
    slots_never_overlap(records, 2)
    assert {r["device_slot"] for r in records} == {0, 1}  # two workers, both slots used


def test_relaunching_the_same_command_reruns_nothing(grid: Launch, sweep) -> None:
    again = sweep(GRID_ARGS, grid.sweep.sweep_dir.parent.parent).check()
    assert "6 already done, 0 to run" in again.output
    assert again.result_mtimes() == grid.mtimes
    assert again.job_keys() == list(grid.records)
    assert again.records() == grid.records
    assert again.summary()["counts"]["skipped"] == 6
    assert again.summary()["best"] == grid.summary["best"]
    assert "ran with other overrides" not in again.output


# ------------------------------------------------- random, seed sweep, 3 workers
RANDOM_ARGS = [
    *SMALL,
    "agent=random",
    "agent.samplings=3",
    "seed=1,2",
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=3",
    "devices=[cpu,cpu]",
]


@pytest.fixture(scope="module")
def random(sweep: Any, tmp_path_factory: pytest.TempPathFactory) -> Launch:
    return launch(sweep, RANDOM_ARGS, tmp_path_factory.mktemp("random"))


def test_random_sweep_combines_seeds_with_sampled_combinations(random: Launch) -> None:
    expected = [
        (f"seed-{seed}/c{index:04d}", index, counter)
        for seed in (1, 2)
        for counter, index in enumerate(draw_indices(6, 3, seed))
    ]
    assert random.sweep.job_keys() == [key for key, _, _ in expected]
    for key, index, counter in expected:
        record = random.records[key]
        assert record["status"] == "done"
        assert (record["index"], record["job_id"]) == (index, counter)
        seed = key.split("/")[0].split("-")[1]
        assert record["overrides"] == [*RANDOM_ARGS[:6], f"seed={seed}", "devices=[cpu,cpu]"]
    assert random.summary["counts"]["done"] == 6
    assert [r["key"] for r in random.rows] == [key for key, _, _ in expected]


def test_random_sweep_matches_the_in_process_random_agent(
    random: Launch, single, tmp_path: Path
) -> None:
    in_process = single([*SMALL, "agent=random", "agent.samplings=3", "seed=1"], tmp_path)
    seed1 = {k: r for k, r in random.records.items() if k.startswith("seed-1/")}
    by_job = {r["job_id"]: r for r in in_process["history"]}
    assert len(seed1) == len(by_job) == 3
    for record in seed1.values():
        assert {k: record[k] for k in RESULT_KEYS} == by_job[record["job_id"]]
    best1 = max(seed1.values(), key=lambda r: r["metric_value"])
    assert {k: best1[k] for k in RESULT_KEYS} == in_process["result"]
    # the sweep's best is the best over both seeds
    everything = list(random.records.values())
    best = max(everything, key=lambda r: r["metric_value"])
    assert random.summary["best_key"] == best["key"]


def test_more_workers_than_slots_wait_for_a_slot(random: Launch) -> None:
    slots_never_overlap(list(random.records.values()), 2)
    out = random.sweep.output
    assert "hydra.launcher.n_jobs=3 but devices=['cpu', 'cpu'] has 2 slot(s)" in out
    # jobs ids repeat across seeds, so the table labels rows by job key
    assert re.search(r"^seed-[12]/c\d{4} \*", out, re.M)


# ------------------------------------------------------- failures and resume
USER_MODEL = """
import torch


class Linear(torch.nn.Linear):
    def __init__(self, layers):
        super().__init__(layers[0], layers[-1])
"""
BROKEN_USER_MODEL = """
class Linear:
    def __init__(self, layers):
        raise RuntimeError("usermodels.Linear is not written yet")
"""
FAILING_ARGS = [*SMALL, "task.steps.classification.subtasks.linear.task.model=usermodels.Linear"]


def test_failed_jobs_are_recorded_and_resume_reruns_only_them(sweep, tmp_path: Path) -> None:
    # usermodels.Linear raises when built: the two 'linear' jobs fail (basic launcher)
    (tmp_path / "usermodels.py").write_text(BROKEN_USER_MODEL)
    first = sweep(FAILING_ARGS, tmp_path)
    assert first.returncode == 1, first.output[-3000:]
    assert "2 of 6 jobs failed (c0002, c0005)" in first.output
    assert "Re-running the same command with hydra.sweep.dir=multirun/s retries" in first.output
    assert "multirun progress: 6/6 done" not in first.output
    assert "multirun progress: 4/6 done, 2 failed" in first.output
    for key in ("c0002", "c0005"):
        record = first.record(key)
        assert record["status"] == "failed"
        assert "usermodels" in record["error"] and "Linear" in record["error"]
        assert record["device_slot"] == 0 and "metric_value" not in record
        trace = (first.sweep_dir / key / "traceback.txt").read_text()
        assert trace.startswith("Traceback") and "usermodels" in trace
    summary = first.summary()
    assert summary["counts"] == {"planned": 6, "done": 4, "failed": 2, "missing": 0, "skipped": 0}
    assert summary["failed_jobs"] == ["c0002", "c0005"]
    done = {k: r for k, r in first.records().items() if r["status"] == "done"}
    assert set(done) == {"c0000", "c0001", "c0003", "c0004"}
    assert summary["best_key"] in done
    assert [r["status"] for r in first.rows()] == ["done", "done", "failed"] * 2
    assert first.rows()[2]["error"].startswith("RuntimeError: usermodels.Linear")
    before = first.result_mtimes()

    # fix the cause, re-run the very same command: only the failed jobs run
    (tmp_path / "usermodels.py").write_text(USER_MODEL)
    time.sleep(0.05)
    second = sweep(FAILING_ARGS, tmp_path).check()
    assert "4 already done, 2 to run" in second.output
    after = second.result_mtimes()
    assert {k: after[k] for k in done} == {k: before[k] for k in done}
    assert after["c0002"] != before["c0002"] and after["c0005"] != before["c0005"]
    assert all(r["status"] == "done" for r in second.records().values())
    assert not (second.sweep_dir / "c0002" / "traceback.txt").exists()
    assert second.summary()["counts"] == {
        "planned": 6,
        "done": 6,
        "failed": 0,
        "missing": 0,
        "skipped": 4,
    }
    assert "multirun progress: 6/6 done, 0 failed" in second.output

    # delete one job's result: the next launch runs that job alone, with the same result
    deleted = second.record("c0001")
    (second.sweep_dir / "c0001" / "result.json").unlink()
    third = sweep(FAILING_ARGS, tmp_path).check()
    assert "5 already done, 1 to run" in third.output
    final = third.result_mtimes()
    assert {k: final[k] for k in final if k != "c0001"} == {
        k: after[k] for k in after if k != "c0001"
    }
    rerun = third.record("c0001")
    assert {k: rerun[k] for k in RESULT_KEYS} == {k: deleted[k] for k in RESULT_KEYS}
    assert third.summary()["counts"]["skipped"] == 5
    assert third.summary()["best"]["key"] == second.summary()["best"]["key"]


KILLER_MODEL = """
import os
import signal

import torch


class Linear(torch.nn.Linear):
    def __init__(self, layers):
        if os.path.exists("KILL"):
            os.kill(os.getpid(), signal.SIGKILL)
        super().__init__(layers[0], layers[-1])
"""


def test_a_killed_worker_leaves_no_result_and_the_next_launch_runs_it(
    sweep, tmp_path: Path
) -> None:
    (tmp_path / "killermodels.py").write_text(KILLER_MODEL)
    (tmp_path / "KILL").write_text("")
    args = [
        *SMALL,
        *JOBLIB2,
        "task.steps.classification.subtasks.linear.task.model=killermodels.Linear",
    ]
    first = sweep(args, tmp_path)
    assert first.returncode == 1, first.output[-3000:]
    assert "the launcher stopped (TerminatedWorkerError)" in first.output
    summary = first.summary()
    counts = summary["counts"]
    assert counts["failed"] == 0 and counts["missing"] >= 1
    assert counts["done"] + counts["missing"] == 6
    assert "c0002" in summary["missing_jobs"]  # the first job that killed its worker
    for key in summary["missing_jobs"]:
        assert not (first.sweep_dir / key / "result.json").exists()
    rows = {r["key"]: r["status"] for r in first.rows()}
    assert {rows[k] for k in summary["missing_jobs"]} == {"missing"}

    (tmp_path / "KILL").unlink()
    second = sweep(args, tmp_path).check()
    assert f"{counts['done']} already done, {counts['missing']} to run" in second.output
    assert second.summary()["counts"]["done"] == 6


# ------------------------------------------------------------------- in-process
def test_in_process_jobs_leave_the_sweepers_report_on_the_console(sweep, tmp_path: Path) -> None:
    two = [
        *SMALL,
        "task.steps.classification.subtasks.linear=null",
        "task.steps.regression.subtasks.mlp.hps.optimizer__lr=[0.01]",
    ]
    args = [
        *two,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=1",
        "hydra.job.chdir=true",
        "devices=[cpu,cpu]",
    ]
    result = sweep(args, tmp_path).check()
    assert result.job_keys() == ["c0000", "c0001"]
    out = result.stdout
    assert "has 2 slots but this launcher runs one job at a time" in out
    last_job = out.rindex("multirun progress: 2/2 done")
    assert out.index("multiml sweep finished: 2/2 done", last_job) > last_job
    assert "multirun results" in out[last_job:]
    last_log = (result.sweep_dir / "c0001" / "multiml.log").read_text()
    assert "multiml sweep finished" not in last_log
    # the jobs ran in their own directories yet shared the sweep's device slots
    assert list((result.sweep_dir / ".devices").glob("*/slot-0.lock"))
    assert not list(result.sweep_dir.glob("c*/**/.devices"))


# --------------------------------------------------------------- planning errors
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["seed=interval(1,2)"], "interval sweeps are not supported"),
        (["metric=auc,mse"], "use different metrics: auc (max) for metric=auc; mse (min)"),
        (["agent=sequential"], "agent=sequential runs exactly one combination"),
        (["agent=random", "agent.samplings=7"], "larger than the 6 combinations"),
    ],
)
def test_planning_errors_stop_before_anything_runs(
    sweep, tmp_path: Path, args: list[str], message: str
) -> None:
    result = sweep(args, tmp_path)
    assert result.returncode == 2, result.output[-2000:]
    lines = [line for line in result.output.splitlines() if "configuration error: " in line]
    assert len(lines) == 1 and message in lines[0], result.output[-2000:]
    assert "Traceback" not in result.output
    assert not result.sweep_dir.exists()  # nothing written


def test_a_failed_planning_leaves_an_existing_sweep_untouched(grid: Launch, sweep) -> None:
    multirun_yaml = grid.sweep.sweep_dir / "multirun.yaml"
    before = multirun_yaml.read_text(), (grid.sweep.sweep_dir / "plan.json").read_text()
    result = sweep([*GRID_ARGS, "agent=sequential"], grid.sweep.sweep_dir.parent.parent)
    assert result.returncode == 2
    after = multirun_yaml.read_text(), (grid.sweep.sweep_dir / "plan.json").read_text()
    assert after == before


def test_the_sweep_config_is_saved(grid: Launch) -> None:
    import yaml

    saved = yaml.safe_load((grid.sweep.sweep_dir / "multirun.yaml").read_text())
    assert saved["hydra"]["sweeper"]["_target_"].endswith("MultimlSweeper")
    assert saved["hydra"]["launcher"]["n_jobs"] == 2
    plan = json.loads((grid.sweep.sweep_dir / "plan.json").read_text())
    assert plan["metric"] == "auc" and plan["metric_type"] == "max"
    assert [job["index"] for job in plan["jobs"]] == list(range(6))
