"""Multirun planning and aggregation: the agent's search as Hydra jobs.

``python -m multiml -m agent=grid seed=1,2`` with a 6-combination task plans 12 jobs::

    seed-1/c0000 ... seed-1/c0005, seed-2/c0000 ... seed-2/c0005

Ordinary sweep overrides (``seed=1,2``) combine as in Hydra's basic sweeper; for each of
their combinations the configured agent's search is expanded — every combination for
``agent=grid``, ``agent.samplings`` distinct ones drawn with ``agent.seed`` for
``agent=random`` — and each becomes one job (trials run inside the job). A job's directory
name (``hydra.sweep.subdir``) derives from the swept overrides and the combination index,
never from ``hydra.job.num``, so it is stable across re-launches: re-running the same
command with the same ``hydra.sweep.dir`` skips jobs whose ``result.json`` says ``done``.

After the launcher returns, :func:`aggregate` writes into the sweep directory:

- ``results.csv`` — one row per job (ids, hyperparameters, metric, status, device, wall time);
- ``summary.json`` — the best result by the metric type and the done/failed/skipped counts;
- ``result.json`` — the best result (SPEC §6), like a single run's.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
PLAN_FILE = "plan.json"
DONE = "done"
FAILED = "failed"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class PlannedJob:
    """One Hydra job: a combination under one set of ordinary overrides."""

    key: str
    index: int
    counter: int
    overrides: list[str] = field(default_factory=list)

    def job_overrides(self) -> list[str]:
        """The override list handed to the launcher."""
        return [
            *self.overrides,
            f"combination.index={self.index}",
            f"combination.counter={self.counter}",
            f"combination.key={self.key}",
            f"hydra.sweep.subdir={self.key}",
        ]


def override_slug(overrides: Sequence[str]) -> str:
    """A directory-safe, readable name of the swept overrides (``seed-1_lr-0.1``).

    Long names are shortened with a hash so distinct override sets never collide.
    """
    parts = [_SAFE.sub("-", item.lstrip("+~")).strip("-") for item in overrides]
    slug = "_".join(p for p in parts if p)
    if len(slug) > 80:
        digest = hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:10]
        slug = f"{slug[:60]}-{digest}"
    return slug


def job_key(swept_overrides: Sequence[str], index: int) -> str:
    """Directory of a job: ``c<index>`` under the slug of the swept overrides, if any."""
    name = f"c{index:04d}"
    slug = override_slug(swept_overrides)
    return f"{slug}/{name}" if slug else name


def read_record(job_dir: Path) -> dict[str, Any] | None:
    """A job's ``result.json`` (None when missing or unreadable)."""
    path = job_dir / RESULT_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_done(job_dir: Path) -> bool:
    """Whether a job finished successfully (its result.json says ``done``)."""
    record = read_record(job_dir)
    return record is not None and record.get("status") == DONE


def write_plan(sweep_dir: Path, jobs: Sequence[PlannedJob], info: dict[str, Any]) -> None:
    """Record the plan (jobs jobs use it to report progress)."""
    from multiml.app.run import write_json

    write_json(sweep_dir / PLAN_FILE, {**info, "jobs": [asdict(job) for job in jobs]})


def progress(sweep_dir: Path) -> tuple[int, int, int]:
    """``(done, failed, planned)`` of a sweep, read from its plan and job records."""
    try:
        plan = json.loads((sweep_dir / PLAN_FILE).read_text())
    except (OSError, ValueError):
        return 0, 0, 0
    done = failed = 0
    for job in plan["jobs"]:
        record = read_record(sweep_dir / job["key"])
        if record is not None:
            done += record.get("status") == DONE
            failed += record.get("status") == FAILED
    return done, failed, len(plan["jobs"])


def _flat_hps(record: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for task_id, subtask_id, hps in zip(
        record.get("task_ids", []),
        record.get("subtask_ids", []),
        record.get("subtask_hps", []),
        strict=True,
    ):
        row[task_id] = subtask_id
        for name, value in hps.items():
            row[f"{task_id}.{name}"] = (
                json.dumps(value) if isinstance(value, list | dict) else value
            )
    return row


def aggregate(
    sweep_dir: Path,
    jobs: Sequence[PlannedJob],
    metric_name: str,
    metric_type: str,
    skipped: Sequence[str] = (),
) -> dict[str, Any]:
    """Write ``results.csv``, ``summary.json`` and ``result.json``; return the summary."""
    from multiml.agent.report import result_table
    from multiml.app.run import write_json, write_text_atomic

    rows: list[dict[str, Any]] = []
    done: list[dict[str, Any]] = []
    failed: list[str] = []
    for job in jobs:
        record = read_record(sweep_dir / job.key) or {"status": "missing"}
        status = record.get("status", "missing")
        row = {
            "key": job.key,
            "job_id": job.counter,
            "index": job.index,
            "status": status,
            "metric": record.get("metric_value"),
            "device": record.get("device"),
            "device_slot": record.get("device_slot"),
            "wall_s": record.get("wall_s"),
            "started_at": record.get("started_at"),
            "finished_at": record.get("finished_at"),
            "overrides": " ".join(job.overrides),
            "error": (record.get("error") or "").splitlines()[0] if record.get("error") else "",
        }
        row.update(_flat_hps(record))
        rows.append(row)
        if status == DONE:
            done.append(record)
        else:
            failed.append(job.key)
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(sweep_dir / "results.csv", buffer.getvalue())

    best = _best(done, metric_type)
    summary = {
        "metric": metric_name,
        "metric_type": metric_type,
        "best": best,
        "best_key": best.get("key") if best else None,
        "counts": {
            "planned": len(jobs),
            "done": len(done),
            "failed": len(failed),
            "skipped": len(skipped),
        },
        "failed_jobs": failed,
    }
    write_json(sweep_dir / "summary.json", summary)
    if best is not None:
        write_json(sweep_dir / RESULT_FILE, _result_only(best))
        table = result_table(
            [_result_only(r) for r in done], metric_name, best_job_id=best.get("job_id")
        )
        logger.info("multirun results (* = best):\n%s", table)
    return summary


RESULT_KEYS = ("task_ids", "subtask_ids", "job_id", "trial_id", "subtask_hps", "metric_value")


def _result_only(record: dict[str, Any]) -> dict[str, Any]:
    keys = (*RESULT_KEYS, "metric_values") if "metric_values" in record else RESULT_KEYS
    return {key: record[key] for key in keys}


def _best(records: Sequence[dict[str, Any]], metric_type: str) -> dict[str, Any] | None:
    if not records:
        return None
    sign = 1.0 if metric_type == "max" else -1.0

    def score(record: dict[str, Any]) -> float:
        value = record["metric_value"]
        return -math.inf if value is None or math.isnan(value) else sign * value

    return max(records, key=score)
