"""A multirun job: run the one combination the sweeper assigned to this job.

See :mod:`multiml.app.sweep` for the planning side. A job:

1. leases a device slot from ``devices`` (exclusive across every process of the sweep on
   this machine, :class:`~multiml.app.devices.DeviceLease`);
2. builds the experiment like a single run and runs its one combination through the
   agent's own code path (trials included);
3. writes ``result.json`` atomically into its directory and logs the sweep's progress.
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from pathlib import Path, PurePosixPath
from typing import Any

from omegaconf import DictConfig

from multiml.app import build
from multiml.app.devices import DeviceLease, lock_scope
from multiml.app.run import prepare, write_json
from multiml.app.sweep import DONE, FAILED, RESULT_FILE, record_progress
from multiml.fileio import atomic_write_text

logger = logging.getLogger(__name__)

TRACEBACK_FILE = "traceback.txt"
ATTEMPT_OUTPUTS = ("saver", "tensorboard")
"""Job outputs an earlier (failed or killed) attempt may have left; cleared before a run."""


def sweep_root(output_dir: Path, key: str) -> Path:
    """The sweep directory of a job: ``output_dir`` is ``<sweep dir>/<key>``.

    Derived from the job's absolute output directory rather than ``hydra.sweep.dir``, which
    may be relative to a directory the job left (``hydra.job.chdir=true``).

    >>> sweep_root(Path('/runs/s/seed-1/c0003'), 'seed-1/c0003')
    PosixPath('/runs/s')
    """
    depth = len(PurePosixPath(key).parts)
    if depth == 0 or PurePosixPath(*output_dir.parts[-depth:]) != PurePosixPath(key):
        raise ValueError(f"job output dir {output_dir} does not end with its key {key!r}")
    return output_dir.parents[depth - 1]


def run_combination_job(cfg: DictConfig, output_dir: Path, sweep_dir: Path) -> float:
    """A multirun job: run the one combination ``cfg.combination`` names.

    The job leases a device slot from ``cfg.devices`` (exclusive across the sweep's
    processes on this machine), runs the combination through the agent's own code path
    (trials included), and writes ``result.json`` atomically — the SPEC §6 result plus
    ``status``, ``key``, ``index``, ``device``, ``device_slot``, ``started_at``,
    ``finished_at``, ``wall_s`` and ``overrides``. A failure writes ``status: failed`` with
    the error, and ``traceback.txt``, then re-raises.

    Args:
        cfg: the job's composed config (``cfg.combination`` set by the sweeper).
        output_dir: the job's directory (``<sweep dir>/<combination key>``).
        sweep_dir: the sweep directory as configured; when relative, it is located from
            ``output_dir`` instead (the job may have changed directory).
    """
    combo = cfg.combination
    output_dir = Path(output_dir).absolute()
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_absolute():
        sweep_dir = sweep_root(output_dir, combo.key)
    devices = build.resolve_devices(list(cfg.devices))
    record: dict[str, Any] = {
        "key": combo.key,
        "index": combo.index,
        "job_id": combo.counter,
        "overrides": _task_overrides(),
    }
    _clear_attempt(output_dir)
    lease = DeviceLease(sweep_dir / ".devices" / lock_scope(), devices)
    with lease as (slot, device):
        started = time.time()
        record.update(device=device, device_slot=slot, started_at=started)
        logger.info("job %s: combination %d on %s (slot %d)", combo.key, combo.index, device, slot)
        agent = None
        try:
            agent = prepare(cfg, output_dir, device=device)
            if hasattr(agent, "execute_jobs_for"):
                agent.execute_jobs_for([(combo.counter, combo.index)])
            else:
                agent.execute()
            agent.finalize()
            record.update(agent.result, status=DONE)
        except BaseException as exc:
            error, trace = _failure_of(agent, exc)
            record.update(status=FAILED, error=error)
            atomic_write_text(output_dir / TRACEBACK_FILE, trace)
            raise
        finally:
            finished = time.time()
            record.update(finished_at=finished, wall_s=round(finished - started, 3))
            write_json(output_dir / RESULT_FILE, record)
            _log_progress(sweep_dir, combo.key, record["status"])
    return float(record["metric_value"])


def _task_overrides() -> list[str]:
    """The job's task overrides without the sweeper's ``combination.*`` entries (recorded so
    a resumed sweep can tell that a job ran under another command)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    task = list(HydraConfig.get().overrides.task)
    return [item for item in task if not item.startswith("combination.")]


def _clear_attempt(output_dir: Path) -> None:
    """Remove what an earlier attempt of this job left (a re-run after a failure/kill)."""
    (output_dir / TRACEBACK_FILE).unlink(missing_ok=True)
    for name in ATTEMPT_OUTPUTS:
        shutil.rmtree(output_dir / name, ignore_errors=True)


def _failure_of(agent: Any, exc: BaseException) -> tuple[str, str]:
    """Error text and traceback of a failed job.

    The search agents catch a combination's exception and then raise "all combinations
    failed"; the combination's own error (``agent.failures``) is the useful one.
    """
    failures = getattr(agent, "failures", None) or []
    if failures and failures[0].get("error"):
        first = failures[0]
        return str(first["error"]).strip(), str(first.get("traceback") or first["error"])
    error = "".join(traceback.format_exception_only(exc)).strip()
    return error, "".join(traceback.format_exception(exc))


def _log_progress(sweep_dir: Path, key: str, status: str) -> None:
    """Log ``k/N done, f failed``; never fails the job (progress is informational)."""
    try:
        done, failed, planned = record_progress(sweep_dir, key, status)
    except OSError as exc:
        logger.warning("could not record progress in %s: %s", sweep_dir, exc)
        return
    if planned:
        logger.info("multirun progress: %d/%d done, %d failed", done, planned, failed)
