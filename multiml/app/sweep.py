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

The sweeper also writes ``plan.json`` (the jobs of this launch) and ``.progress`` (one
line per finished job, for the ``k/N done, f failed`` log lines). After the launcher
returns, :func:`aggregate` writes into the sweep directory:

- ``results.csv`` — one row per job (ids, hyperparameters, metric, status, device, wall time);
- ``summary.json`` — the best result by the metric type and the done/failed/missing/skipped
  counts;
- ``result.json`` — the best result (SPEC §6), like a single run's.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
PLAN_FILE = "plan.json"
PROGRESS_FILE = ".progress"
RESULTS_CSV = "results.csv"
SUMMARY_FILE = "summary.json"
DONE = "done"
FAILED = "failed"
MISSING = "missing"
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
    """A job's ``result.json`` (None when missing, unreadable or not a JSON object)."""
    path = job_dir / RESULT_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_done(job_dir: Path) -> bool:
    """Whether a job finished successfully (its result.json says ``done``).

    A missing, truncated or otherwise unreadable file is not done, so the job re-runs.
    """
    record = read_record(job_dir)
    return record is not None and record.get("status") == DONE


def write_plan(sweep_dir: Path, jobs: Sequence[PlannedJob], info: dict[str, Any]) -> None:
    """Record the plan of this launch (``plan.json``: metric and every job)."""
    from multiml.app.run import write_json

    write_json(sweep_dir / PLAN_FILE, {**info, "jobs": [asdict(job) for job in jobs]})


def start_progress(sweep_dir: Path, planned: int, skipped: int) -> None:
    """Start the progress log of a launch: ``planned`` jobs, ``skipped`` already done.

    Jobs append one line each as they finish (:func:`record_progress`), so reporting
    progress costs one small read instead of reading every job's result.
    """
    from multiml.fileio import atomic_write_text

    header = json.dumps({"planned": planned, "skipped": skipped})
    atomic_write_text(sweep_dir / PROGRESS_FILE, header + "\n")


def record_progress(sweep_dir: Path, key: str, status: str) -> tuple[int, int, int]:
    """Append a finished job to the progress log; return :func:`progress`.

    One ``O_APPEND`` write per line: concurrent jobs on one machine never interleave
    (on network file systems only the progress display could suffer).
    """
    fd = os.open(sweep_dir / PROGRESS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{status} {key}\n".encode())
    finally:
        os.close(fd)
    return progress(sweep_dir)


def progress(sweep_dir: Path) -> tuple[int, int, int]:
    """``(done, failed, planned)`` of the current launch of a sweep, from its progress log.

    ``done`` counts the jobs skipped as already done plus those finished since; a job that
    finished twice counts by its last status. ``(0, 0, 0)`` when there is no log.
    """
    try:
        lines = (sweep_dir / PROGRESS_FILE).read_text().splitlines()
        header = json.loads(lines[0])
        planned, skipped = int(header["planned"]), int(header["skipped"])
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return 0, 0, 0
    last: dict[str, str] = {}
    for line in lines[1:]:
        status, _, key = line.partition(" ")
        last[key] = status
    statuses = list(last.values())
    return skipped + statuses.count(DONE), statuses.count(FAILED), planned


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
    """Write ``results.csv``, ``summary.json`` and ``result.json``; return the summary.

    Every planned job gets a row, also those that failed (``status`` failed, first line of
    the error) or left no result (``status`` missing: killed, or never ran). A done job's
    ``job_id`` is the one this plan gives it. The best is chosen among done jobs by
    ``metric_type`` (NaN worst, ties: the first in plan order, as the agents do) and
    written as ``result.json`` (SPEC §6 keys only); without any done job a stale
    ``result.json`` is removed.

    Summary keys: ``metric``, ``metric_type``, ``best`` (the best job's full record),
    ``best_key``, ``counts`` (``planned``, ``done``, ``failed``, ``missing``, ``skipped``),
    ``failed_jobs`` and ``missing_jobs`` (keys).
    """
    from multiml.agent.report import best_result, result_table
    from multiml.app.run import write_json
    from multiml.fileio import atomic_write_text

    rows: list[dict[str, Any]] = []
    done: list[dict[str, Any]] = []
    failed: list[str] = []
    missing: list[str] = []
    for job in jobs:
        record = read_record(sweep_dir / job.key) or {"status": MISSING}
        status = record.get("status", MISSING)
        error = record.get("error") or ""
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
            "error": error.strip().splitlines()[0] if error.strip() else "",
        }
        row.update(_flat_hps(record))
        rows.append(row)
        if status == DONE:
            done.append({**record, "key": job.key, "job_id": job.counter})
        elif status == MISSING:
            missing.append(job.key)
        else:
            failed.append(job.key)
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(sweep_dir / RESULTS_CSV, buffer.getvalue())

    best = best_result(done, metric_type)
    summary = {
        "metric": metric_name,
        "metric_type": metric_type,
        "best": best,
        "best_key": best["key"] if best else None,
        "counts": {
            "planned": len(jobs),
            "done": len(done),
            "failed": len(failed),
            "missing": len(missing),
            "skipped": len(skipped),
        },
        "failed_jobs": failed,
        "missing_jobs": missing,
    }
    write_json(sweep_dir / SUMMARY_FILE, summary)
    if best is None:
        (sweep_dir / RESULT_FILE).unlink(missing_ok=True)
        return summary
    write_json(sweep_dir / RESULT_FILE, _result_only(best))
    if len({tuple(job.overrides) for job in jobs}) > 1:
        # job ids repeat across override sets (seed=1,2): label rows by job key instead
        shown = [{**_result_only(r), "job_id": r["key"]} for r in done]
        table = result_table(shown, metric_name, best_job_id=best["key"])
    else:
        table = result_table([_result_only(r) for r in done], metric_name, best["job_id"])
    logger.info("multirun results (* = best, %s is better):\n%s", _better(metric_type), table)
    return summary


def changed_overrides(
    sweep_dir: Path, jobs: Sequence[PlannedJob]
) -> list[tuple[str, list[str], list[str]]]:
    """Done jobs whose recorded overrides differ from the plan: ``(key, ran, planned)``.

    Resuming keeps a done job's result even when the command changed; this lists them so
    the sweeper can say so.
    """
    changed = []
    for job in jobs:
        record = read_record(sweep_dir / job.key)
        if record is None or record.get("status") != DONE or "overrides" not in record:
            continue
        if sorted(record["overrides"]) != sorted(job.overrides):
            changed.append((job.key, list(record["overrides"]), list(job.overrides)))
    return changed


def _better(metric_type: str) -> str:
    return "higher" if metric_type == "max" else "lower"


RESULT_KEYS = ("task_ids", "subtask_ids", "job_id", "trial_id", "subtask_hps", "metric_value")


def _result_only(record: dict[str, Any]) -> dict[str, Any]:
    keys = (*RESULT_KEYS, "metric_values") if "metric_values" in record else RESULT_KEYS
    return {key: record[key] for key in keys}
