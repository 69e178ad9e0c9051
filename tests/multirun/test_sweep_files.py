"""multiml.app.sweep: job keys, atomic result files, resume checks, progress, aggregation."""

from __future__ import annotations

import csv
import json
import logging
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from multiml import fileio
from multiml.app import sweep
from multiml.app.run import write_json
from multiml.app.sweep import PlannedJob
from multiml.fileio import atomic_write_text


# ------------------------------------------------------------------------- job keys
def test_job_keys_are_readable_and_deterministic() -> None:
    assert sweep.job_key([], 3) == "c0003"
    assert sweep.job_key(["seed=1"], 12) == "seed-1/c0012"
    assert sweep.job_key(["seed=1", "task.steps.x.hps.lr=[0.1,0.2]"], 0) == (
        "seed-1_task.steps.x.hps.lr-0.1-0.2/c0000"
    )
    assert sweep.job_key(["+extra=a b", "~gone"], 1) == "extra-a-b_gone/c0001"
    assert sweep.job_key(["seed=1"], 5) == sweep.job_key(["seed=1"], 5)
    assert sweep.job_key(["seed=1"], 5) != sweep.job_key(["seed=2"], 5)


def test_long_override_sets_get_short_distinct_keys() -> None:
    base = "task.steps.classification.subtasks.mlp.task.model_args.layers"
    first = sweep.job_key([f"{base}=[3,32,32,2]", "seed=1"], 0)
    second = sweep.job_key([f"{base}=[3,32,32,2]", "seed=2"], 0)
    assert first != second
    assert first.startswith(base[:20])
    assert all(len(key.split("/")[0]) <= 80 for key in (first, second))


def test_every_job_override_parses_as_hydra_overrides() -> None:
    parser = OverridesParser.create()
    job = PlannedJob(sweep.job_key(["seed=1", "task.x=[1,2]"], 4), 4, 1, ["seed=1"])
    overrides = job.job_overrides()
    assert overrides[:1] == ["seed=1"]
    parsed = {o.key_or_group: o.value() for o in parser.parse_overrides(overrides)}
    assert parsed == {
        "seed": 1,
        "combination.index": 4,
        "combination.counter": 1,
        "combination.key": "seed-1_task.x-1-2/c0004",
        "hydra.sweep.subdir": "seed-1_task.x-1-2/c0004",
    }


# ------------------------------------------------------------- atomic result files
def test_write_json_replaces_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    write_json(path, {"status": "failed", "error": "x" * 10_000})
    write_json(path, {"status": "done", "metric_value": 0.5})
    assert json.loads(path.read_text()) == {"status": "done", "metric_value": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary left


def test_a_write_killed_halfway_leaves_the_previous_result(tmp_path: Path, monkeypatch) -> None:
    job_dir = tmp_path / "c0000"
    job_dir.mkdir()
    write_json(job_dir / "result.json", {"status": "failed", "error": "boom"})

    def killed_midway(fd: int) -> None:
        raise KeyboardInterrupt  # the process dies after writing, before the rename

    monkeypatch.setattr(fileio.os, "fsync", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        write_json(job_dir / "result.json", {"status": "done", "metric_value": 1.0})
    monkeypatch.undo()
    assert json.loads((job_dir / "result.json").read_text())["status"] == "failed"
    assert not sweep.is_done(job_dir)
    # the same with no earlier result: still not done
    (job_dir / "result.json").unlink()
    monkeypatch.setattr(fileio.os, "fsync", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(job_dir / "result.json", json.dumps({"status": "done"}))
    monkeypatch.undo()
    assert not (job_dir / "result.json").exists()
    assert not sweep.is_done(job_dir)


@pytest.mark.parametrize(
    ("content", "is_record", "done"),
    [
        (json.dumps({"status": "done", "metric_value": 0.5}), True, True),
        (json.dumps({"status": "failed", "error": "x"}), True, False),
        (json.dumps({"metric_value": 0.5}), True, False),
        (json.dumps({"status": "done", "metric_value": 0.5})[:20], False, False),  # truncated
        ('{"status": "done"', False, False),
        ("\x00\x00\x00garbage", False, False),
        ("", False, False),
        (json.dumps(["status", "done"]), False, False),
        (json.dumps("done"), False, False),
    ],
)
def test_only_a_complete_done_record_counts_as_done(
    tmp_path: Path, content: str, is_record: bool, done: bool
) -> None:
    (tmp_path / "result.json").write_text(content)
    assert (sweep.read_record(tmp_path) is not None) is is_record
    assert sweep.is_done(tmp_path) is done


def test_a_missing_result_is_not_done(tmp_path: Path) -> None:
    assert sweep.read_record(tmp_path) is None
    assert not sweep.is_done(tmp_path / "nowhere")


# ----------------------------------------------------------------------- progress
def test_progress_counts_skipped_and_finished_jobs(tmp_path: Path) -> None:
    assert sweep.progress(tmp_path) == (0, 0, 0)  # no log yet
    sweep.start_progress(tmp_path, planned=5, skipped=2)
    assert sweep.progress(tmp_path) == (2, 0, 5)
    assert sweep.record_progress(tmp_path, "c0001", "failed") == (2, 1, 5)
    assert sweep.record_progress(tmp_path, "seed-1/c0002", "done") == (3, 1, 5)
    # a job that ran again (same key) counts by its last status
    assert sweep.record_progress(tmp_path, "c0001", "done") == (4, 0, 5)
    # a new launch starts a new log
    sweep.start_progress(tmp_path, planned=5, skipped=4)
    assert sweep.progress(tmp_path) == (4, 0, 5)


def test_progress_lines_from_concurrent_processes_stay_whole(tmp_path: Path) -> None:
    sweep.start_progress(tmp_path, planned=200, skipped=0)
    script = (
        "import sys; from pathlib import Path; from multiml.app.sweep import record_progress\n"
        "for i in range(50): record_progress(Path(sys.argv[1]), f'w{sys.argv[2]}/c{i:04d}', "
        "'done' if i % 5 else 'failed')\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(w)]) for w in range(4)
    ]
    assert all(proc.wait(timeout=60) == 0 for proc in procs)
    lines = (tmp_path / sweep.PROGRESS_FILE).read_text().splitlines()
    assert len(lines) == 201
    assert all(line.split(" ")[0] in {"done", "failed"} for line in lines[1:])
    assert sweep.progress(tmp_path) == (160, 40, 200)


def test_a_damaged_progress_log_reads_as_unknown(tmp_path: Path) -> None:
    (tmp_path / sweep.PROGRESS_FILE).write_text("not json\ndone c0000\n")
    assert sweep.progress(tmp_path) == (0, 0, 0)


# -------------------------------------------------------------------- aggregation
def record(key: str, job_id: int, metric: float | None, status: str = "done") -> dict[str, Any]:
    base: dict[str, Any] = {
        "key": key,
        "index": job_id,
        "job_id": job_id,
        "overrides": ["seed=1"],
        "device": "cpu",
        "device_slot": job_id % 2,
        "started_at": 100.0 + job_id,
        "finished_at": 101.5 + job_id,
        "wall_s": 1.5,
        "status": status,
    }
    if status == "done":
        base.update(
            task_ids=["reg", "clf"],
            subtask_ids=["mlp", "linear"],
            trial_id=None,
            subtask_hps=[{"optimizer__lr": 0.01, "model__layers": [3, 2]}, {}],
            metric_value=metric,
        )
    else:
        base["error"] = "ValueError: bad model\nwhile running step 'clf'"
    return base


def make_sweep(tmp_path: Path, records: dict[str, dict[str, Any] | None]) -> list[PlannedJob]:
    jobs = []
    for counter, (key, rec) in enumerate(records.items()):
        jobs.append(PlannedJob(key, counter, counter, ["seed=1"]))
        (tmp_path / key).mkdir(parents=True)
        if rec is not None:
            write_json(tmp_path / key / "result.json", rec)
    return jobs


@pytest.fixture
def mixed(tmp_path: Path) -> list[PlannedJob]:
    return make_sweep(
        tmp_path,
        {
            "c0000": record("c0000", 0, 0.5),
            "c0001": record("c0001", 1, 0.9),
            "c0002": record("c0002", 2, None, status="failed"),
            "c0003": None,  # killed: no result
            "c0004": record("c0004", 4, math.nan),
            "c0005": record("c0005", 5, 0.9),  # ties with c0001, comes later
        },
    )


def test_aggregate_writes_rows_summary_and_best_for_max(tmp_path: Path, mixed) -> None:
    summary = sweep.aggregate(tmp_path, mixed, "auc", "max", skipped=["c0000"])
    assert summary["counts"] == {
        "planned": 6,
        "done": 4,
        "failed": 1,
        "missing": 1,
        "skipped": 1,
    }
    assert summary["failed_jobs"] == ["c0002"] and summary["missing_jobs"] == ["c0003"]
    assert summary["best_key"] == "c0001"  # the first of two equal bests
    assert summary["best"]["metric_value"] == 0.9 and summary["best"]["device"] == "cpu"
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    best = json.loads((tmp_path / "result.json").read_text())
    assert best == {
        "task_ids": ["reg", "clf"],
        "subtask_ids": ["mlp", "linear"],
        "job_id": 1,
        "trial_id": None,
        "subtask_hps": [{"optimizer__lr": 0.01, "model__layers": [3, 2]}, {}],
        "metric_value": 0.9,
    }
    with (tmp_path / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["key"] for r in rows] == [f"c000{i}" for i in range(6)]
    assert [r["status"] for r in rows] == ["done", "done", "failed", "missing", "done", "done"]
    assert rows[2]["error"] == "ValueError: bad model"
    assert rows[3]["metric"] == "" and rows[3]["device"] == ""
    assert rows[1]["reg"] == "mlp" and rows[1]["clf"] == "linear"
    assert rows[1]["reg.optimizer__lr"] == "0.01" and rows[1]["reg.model__layers"] == "[3, 2]"
    assert rows[1]["wall_s"] == "1.5" and rows[1]["device_slot"] == "1"
    assert rows[0]["overrides"] == "seed=1"


def test_aggregate_best_for_min_ranks_nan_last(tmp_path: Path, mixed) -> None:
    summary = sweep.aggregate(tmp_path, mixed, "mse", "min")
    assert summary["best_key"] == "c0000"


def test_aggregate_uses_the_plans_job_id(tmp_path: Path) -> None:
    # a job done by an earlier launch whose sample gave it another position
    jobs = make_sweep(tmp_path, {"c0004": record("c0004", 7, 0.3)})
    summary = sweep.aggregate(tmp_path, jobs, "auc", "max")
    assert summary["best"]["job_id"] == 0
    assert json.loads((tmp_path / "result.json").read_text())["job_id"] == 0


def test_aggregate_without_a_done_job_removes_a_stale_best(tmp_path: Path) -> None:
    jobs = make_sweep(tmp_path, {"c0000": record("c0000", 0, None, status="failed")})
    write_json(tmp_path / "result.json", {"metric_value": 0.1})
    summary = sweep.aggregate(tmp_path, jobs, "auc", "max")
    assert summary["best"] is None and summary["best_key"] is None
    assert summary["counts"]["failed"] == 1
    assert not (tmp_path / "result.json").exists()


def test_the_logged_table_labels_rows_by_key_across_override_sets(tmp_path: Path, caplog) -> None:
    jobs = make_sweep(
        tmp_path,
        {"seed-1/c0000": record("seed-1/c0000", 0, 0.7), "seed-2/c0000": record("x", 0, 0.8)},
    )
    jobs[1].overrides = ["seed=2"]
    with caplog.at_level(logging.INFO, logger="multiml.app.sweep"):
        sweep.aggregate(tmp_path, jobs, "auc", "max")
    table = caplog.text
    assert "higher is better" in table
    assert "seed-2/c0000 *" in table and "seed-1/c0000 " in table
    assert "seed-1/c0000 *" not in table


def test_changed_overrides_lists_done_jobs_run_under_another_command(tmp_path: Path) -> None:
    same = record("c0000", 0, 0.5)
    same["overrides"] = ["b=2", "seed=1"]  # order does not matter
    other = record("c0001", 1, 0.5)
    other["overrides"] = ["seed=1", "task.x=3"]
    failed = record("c0002", 2, None, status="failed")
    failed["overrides"] = ["something=else"]
    legacy = record("c0003", 3, 0.5)
    del legacy["overrides"]
    jobs = make_sweep(tmp_path, {"c0000": same, "c0001": other, "c0002": failed, "c0003": legacy})
    for job in jobs:
        job.overrides = ["seed=1", "b=2"]
    assert sweep.changed_overrides(tmp_path, jobs) == [
        ("c0001", ["seed=1", "task.x=3"], ["seed=1", "b=2"])
    ]
