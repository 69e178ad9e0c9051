"""Run an experiment from a composed config and leave its results in the run directory.

What a run leaves in its output directory (``outputs/DATE/TIME/`` by default):

- ``.hydra/`` — the composed config and the overrides (written by Hydra);
- ``multiml.log`` — the log;
- ``result.json`` — the best result dict (SPEC §6);
- ``history.jsonl`` — one result per executed combination (``failures.jsonl`` for any
  combination that failed, with its error);
- ``saver/`` — the Saver's files;
- ``tensorboard/`` — event files: per-epoch curves, final metrics, HParams.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from multiml.app import build
from multiml.app.build import ConfigError
from multiml.fileio import atomic_write_text

logger = logging.getLogger(__name__)


def _json_default(obj: Any) -> Any:
    """JSON form of values ``json`` does not know (numpy scalars/arrays, classes...)."""
    from multiml.agent.seeding import canonical

    return canonical(obj)


def write_json(path: Path, obj: Any) -> None:
    """Write one JSON document atomically (a killed run never leaves half a file)."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write one JSON object per line, atomically."""
    atomic_write_text(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in rows))


def set_threads(num_threads: int) -> None:
    """Pin torch's intra-op threads (results depend on the thread count)."""
    if num_threads < 1:
        raise ConfigError(f"num_threads={num_threads}: expected a positive int")
    import torch

    torch.set_num_threads(num_threads)


def prepare(cfg: DictConfig, output_dir: Path, device: str | None = None) -> Any:
    """Build the agent (and everything it needs) for ``cfg``, writing into ``output_dir``.

    Args:
        device: run every combination in this process on this device (multirun jobs);
            default: as ``cfg.devices`` says.
    """
    from multiml.saver import Saver

    build.check_requirements(cfg)
    devices = build.resolve_devices(list(cfg.devices))  # before any data is loaded
    set_threads(cfg.num_threads)
    storegate = build.build_storegate(cfg)
    task_scheduler = build.build_task_scheduler(cfg)
    build.check_wiring(cfg, storegate, task_scheduler)
    metric = build.build_metric(cfg)
    saver = Saver(save_dir=str(output_dir / "saver"))
    agent = build.build_agent(
        cfg, storegate, saver, task_scheduler, metric, device=device, devices=devices
    )
    if cfg.tensorboard:
        from multiml.app.tracking import TensorBoardTracker

        agent.tracker = TensorBoardTracker(output_dir / "tensorboard")
    return agent


FAILURES_FILE = "failures.jsonl"


def write_failures(output_dir: Path, agent: Any) -> bool:
    """Write the agent's failed combinations (ids, hyperparameters, error, traceback) to
    ``failures.jsonl``; return whether there were any."""
    failures = getattr(agent, "failures", None) or []
    if failures:
        write_jsonl(output_dir / FAILURES_FILE, failures)
    return bool(failures)


def run_experiment(cfg: DictConfig, output_dir: Path) -> float:
    """Run the agent of ``cfg`` and write ``result.json`` / ``history.jsonl``.

    Returns:
        the best metric value (what Hydra sweepers such as Optuna optimise).
    """
    agent = prepare(cfg, output_dir)
    try:
        agent.execute()
    except Exception:
        # e.g. every combination failed: keep what there is to review, then fail the run
        if write_failures(output_dir, agent):
            logger.error("failed combinations and their errors: %s", output_dir / FAILURES_FILE)
        if agent.tracker is not None:
            agent.tracker.close()
        raise
    agent.finalize()
    result = agent.result
    history = getattr(agent, "history", None) or [result]
    write_json(output_dir / "result.json", result)
    write_jsonl(output_dir / "history.jsonl", sorted(history, key=lambda r: r["job_id"]))
    write_failures(output_dir, agent)
    logger.info(
        "best %s = %.6g (job_id %d): %s",
        cfg.metric.name,
        result["metric_value"],
        result["job_id"],
        ", ".join(
            f"{t}={s}" for t, s in zip(result["task_ids"], result["subtask_ids"], strict=True)
        ),
    )
    logger.info("results: %s", output_dir)
    if cfg.tensorboard:
        logger.info("review: tensorboard --logdir %s", output_dir)
    return float(result["metric_value"])
