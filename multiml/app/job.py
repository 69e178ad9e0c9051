"""A multirun job: run the one combination the sweeper assigned to this job.

See :mod:`multiml.app.sweep` for the planning side. A job:

1. leases a device slot from ``devices`` (exclusive across every process of the sweep,
   :class:`~multiml.app.devices.DeviceLease`);
2. builds the experiment like a single run and runs its one combination through the
   agent's own code path (trials included);
3. writes ``result.json`` atomically into its directory and logs the sweep's progress.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from multiml.app import build
from multiml.app.devices import DeviceLease
from multiml.app.run import prepare, write_json, write_text_atomic
from multiml.app.sweep import DONE, FAILED, RESULT_FILE, progress

logger = logging.getLogger(__name__)


def run_combination_job(cfg: DictConfig, output_dir: Path, sweep_dir: Path) -> float:
    """A multirun job: run the one combination ``cfg.combination`` names.

    The job leases a device slot from ``cfg.devices`` (exclusive across the sweep's
    processes), runs the combination through the agent's own code path (trials included),
    and writes ``result.json`` atomically — the SPEC §6 result plus ``status``, ``key``,
    ``device``, ``device_slot``, ``started_at``, ``finished_at`` and ``wall_s``. A failure
    writes ``status: failed`` with the error, and ``traceback.txt``, then re-raises.
    """
    combo = cfg.combination
    devices = build.resolve_devices(list(cfg.devices))
    record: dict[str, Any] = {"key": combo.key, "index": combo.index, "job_id": combo.counter}
    (output_dir / "traceback.txt").unlink(missing_ok=True)  # from an earlier failed attempt
    lease = DeviceLease(sweep_dir / ".devices", devices)
    with lease as (slot, device):
        started = time.time()
        record.update(device=device, device_slot=slot, started_at=started)
        logger.info("job %s: combination %d on %s (slot %d)", combo.key, combo.index, device, slot)
        try:
            agent = prepare(cfg, output_dir, device=device)
            if hasattr(agent, "execute_jobs_for"):
                agent.execute_jobs_for([(combo.counter, combo.index)])
            else:
                agent.execute()
            agent.finalize()
            record.update(agent.result, status=DONE)
        except BaseException as exc:
            record.update(status=FAILED, error="".join(traceback.format_exception_only(exc)))
            write_text_atomic(output_dir / "traceback.txt", traceback.format_exc())
            raise
        finally:
            finished = time.time()
            record.update(finished_at=finished, wall_s=round(finished - started, 3))
            write_json(output_dir / RESULT_FILE, record)
            done, failed, planned = progress(sweep_dir)
            logger.info("multirun progress: %d/%d done, %d failed", done, planned, failed)
    return float(record["metric_value"])
