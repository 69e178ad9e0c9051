"""multiml.app.job: one multirun job run in this process (no launcher).

The config is composed as the sweeper composes a job's (``combination.*`` set), on a tiny
task, and :func:`run_combination_job` is called with the job's directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from multiml.app import config as _config  # noqa: F401  (registers the schemas)
from multiml.app import sweep
from multiml.app.devices import lock_scope
from multiml.app.job import run_combination_job, sweep_root

TINY = [
    "task.data.num_events=200",
    "task.steps.regression.subtasks.mlp.task.num_epochs=1",
    "task.steps.classification.subtasks.mlp.task.num_epochs=1",
    "task.steps.classification.subtasks.linear.task.num_epochs=1",
    "tensorboard=false",
]


@pytest.fixture(scope="module")
def hydra_init() -> Iterator[None]:
    with initialize_config_module(config_module="multiml.conf", version_base="1.3"):
        yield


def job_cfg(index: int, key: str, *overrides: str) -> DictConfig:
    return compose(
        "config",
        overrides=[
            *TINY,
            *overrides,
            f"combination.index={index}",
            f"combination.counter={index}",
            f"combination.key={key}",
        ],
    )


def test_sweep_root_strips_the_job_key() -> None:
    assert sweep_root(Path("/runs/s/seed-1/c0003"), "seed-1/c0003") == Path("/runs/s")
    assert sweep_root(Path("/runs/s/c0000"), "c0000") == Path("/runs/s")
    with pytest.raises(ValueError, match="does not end with its key 'c0001'"):
        sweep_root(Path("/runs/s/c0000"), "c0001")


def test_a_job_writes_its_record_and_leases_a_slot(hydra_init, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "multirun"
    job_dir = sweep_dir / "c0001"
    job_dir.mkdir(parents=True)
    sweep.start_progress(sweep_dir, planned=6, skipped=0)
    # leftovers of an earlier, killed attempt of this job
    (job_dir / "traceback.txt").write_text("old")
    (job_dir / "tensorboard" / "job0001").mkdir(parents=True)
    (job_dir / "tensorboard" / "job0001" / "events.out.tfevents.old").write_text("")
    metric = run_combination_job(job_cfg(1, "c0001", "devices=[cpu,cpu]"), job_dir, sweep_dir)
    record = json.loads((job_dir / "result.json").read_text())
    assert record["status"] == "done"
    assert record["metric_value"] == metric
    assert record["key"] == "c0001" and record["index"] == 1 and record["job_id"] == 1
    assert record["subtask_ids"] == ["mlp", "mlp"]
    assert record["subtask_hps"] == [{"optimizer__lr": 0.01}, {"optimizer__lr": 0.003}]
    assert record["device"] == "cpu" and record["device_slot"] == 0
    assert record["started_at"] <= record["finished_at"]
    assert record["wall_s"] == pytest.approx(record["finished_at"] - record["started_at"], abs=1e-3)
    assert record["overrides"] == []  # outside Hydra there are none to record
    assert not (job_dir / "traceback.txt").exists()
    assert not (job_dir / "tensorboard").exists()  # the stale attempt's events are gone
    assert (sweep_dir / ".devices" / lock_scope() / "slot-0.lock").exists()
    assert sweep.progress(sweep_dir) == (1, 0, 6)


def test_a_relative_sweep_dir_is_found_from_the_job_dir(
    hydra_init, tmp_path: Path, monkeypatch
) -> None:
    sweep_dir = tmp_path / "multirun" / "s"
    job_dir = sweep_dir / "seed-0" / "c0000"
    job_dir.mkdir(parents=True)
    monkeypatch.chdir(job_dir)  # hydra.job.chdir=true: the job runs in its own directory
    run_combination_job(job_cfg(0, "seed-0/c0000"), job_dir, Path("multirun/s"))
    assert (sweep_dir / ".devices" / lock_scope() / "slot-0.lock").exists()
    assert not (job_dir / "multirun").exists()


def test_a_failing_job_records_the_combinations_own_error(hydra_init, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "multirun"
    job_dir = sweep_dir / "c0002"
    job_dir.mkdir(parents=True)
    sweep.start_progress(sweep_dir, planned=6, skipped=0)
    cfg = job_cfg(2, "c0002", "+task.steps.classification.subtasks.linear.task.model_args.widht=3")
    with pytest.raises(RuntimeError, match="all 1 combinations failed"):
        run_combination_job(cfg, job_dir, sweep_dir)
    record = json.loads((job_dir / "result.json").read_text())
    assert record["status"] == "failed"
    assert record["error"].startswith("TypeError: model=MLPBlock cannot be built")
    assert "metric_value" not in record
    assert record["device_slot"] == 0 and record["finished_at"] >= record["started_at"]
    trace = (job_dir / "traceback.txt").read_text()
    assert trace.startswith("Traceback") and "widht" in trace
    assert not sweep.is_done(job_dir)
    assert sweep.progress(sweep_dir) == (0, 1, 6)
    # the slot was released: another job takes slot 0 again
    run_combination_job(job_cfg(0, "c0000"), sweep_dir / "c0000", sweep_dir)
    assert json.loads((sweep_dir / "c0000" / "result.json").read_text())["device_slot"] == 0


def test_a_config_error_in_a_job_is_recorded_too(hydra_init, tmp_path: Path) -> None:
    job_dir = tmp_path / "c0000"
    job_dir.mkdir()
    cfg = job_cfg(0, "c0000", "task.data.num_events=-5")
    with pytest.raises(ValueError):
        run_combination_job(cfg, job_dir, tmp_path)
    record = json.loads((job_dir / "result.json").read_text())
    assert record["status"] == "failed" and "num_events" in record["error"]
