"""MultimlSweeper: plan the agent's search as Hydra jobs; aggregate their results.

``python -m multiml -m agent=grid`` on a task with 6 combinations → 6 jobs
(``c0000`` ... ``c0005``); ``python -m multiml -m agent=random agent.samplings=3 seed=1,2``
→ 2 x 3 jobs (``seed-1/c0004``, ...). The sweeper only plans (override lists, in batches);
the configured launcher (basic, joblib, submitit, Ray) runs them. Each job runs exactly one
combination through the same code path as the in-process agents (see
:mod:`multiml.app.run`) and writes its ``result.json``; the sweeper then writes
``results.csv``, ``summary.json`` and ``result.json`` into the sweep directory.

Failed jobs do not stop the sweep: the summary is written, then the sweep fails with a
message saying how many jobs failed and that re-running the same command (same
``hydra.sweep.dir``) retries exactly those.

This module is imported by Hydra's plugin scan at every start, so it imports nothing heavy.
"""

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus, configure_log
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

logger = logging.getLogger(__name__)


@dataclass
class MultimlSweeperConf:
    """``hydra/sweeper=multiml``.

    Attributes:
        max_batch_size: jobs handed to the launcher at once (None: all; the launcher's own
            parallelism and the device leases decide what runs concurrently).
        exit_on_failure: when jobs failed, log the summary and exit with status 1 (False:
            raise :class:`MultimlJobsFailedError` instead).
    """

    _target_: str = "hydra_plugins.multiml_sweeper.multiml_sweeper.MultimlSweeper"
    max_batch_size: int | None = None
    exit_on_failure: bool = True


ConfigStore.instance().store(
    group="hydra/sweeper", name="multiml", node=MultimlSweeperConf, provider="multiml"
)


class MultimlJobsFailedError(RuntimeError):
    """Some jobs of a multirun failed (their results and the summary are written)."""


class MultimlSweeper(Sweeper):
    """Turn the configured agent's search into jobs (see the module docstring)."""

    def __init__(self, max_batch_size: int | None = None, exit_on_failure: bool = True) -> None:
        self.max_batch_size = max_batch_size
        self.exit_on_failure = exit_on_failure
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        """Keep the master config and instantiate the launcher."""
        from hydra.core.plugins import Plugins

        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def split_arguments(self, arguments: list[str]) -> list[tuple[list[str], list[str]]]:
        """Expand ordinary sweep overrides like Hydra's basic sweeper.

        Returns:
            ``(all overrides, swept overrides)`` per combination of the sweeps.
        """
        import itertools

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        parsed = parser.parse_overrides(arguments)
        lists: dict[str, list[str]] = {}
        swept: set[str] = set()
        for override in parsed:
            key = override.get_key_element()
            if override.is_sweep_override():
                if override.is_interval_sweep():
                    raise ValueError(
                        f"{override.input_line}: interval sweeps are not supported by the "
                        "multiml sweeper; give explicit values (a=1,2,3)"
                    )
                lists[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
                swept.add(key)
            else:
                lists[key] = [override.input_line]
                swept.discard(key)
        keys = list(lists)
        combos = []
        for values in itertools.product(*(lists[k] for k in keys)):
            chosen = list(values)
            varying = [v for k, v in zip(keys, values, strict=True) if k in swept]
            combos.append((chosen, varying))
        return combos

    def sweep(self, arguments: list[str]) -> Any:
        """Plan, skip finished jobs, launch the rest, aggregate."""
        from multiml.agent.metric import get_metric
        from multiml.app import sweep as plan_mod
        from multiml.app.plan import plan_search

        assert self.config is not None and self.launcher is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        config_loader = self.hydra_context.config_loader

        jobs: list[plan_mod.PlannedJob] = []
        metric_name = metric_type = None
        for overrides, varying in self.split_arguments(arguments):
            job_cfg = config_loader.load_sweep_config(self.config, list(overrides))
            try:
                planned = plan_search(job_cfg)
            except ValueError as exc:
                raise ValueError(f"overrides {overrides}: {exc}") from exc
            metric_name = str(job_cfg.metric.name)
            metric_type = job_cfg.agent.get("metric_type") or get_metric(metric_name).type
            for combination in planned:
                key = plan_mod.job_key(varying, combination.index)
                jobs.append(
                    plan_mod.PlannedJob(
                        key, combination.index, combination.counter, list(overrides)
                    )
                )
        keys = [job.key for job in jobs]
        if len(set(keys)) != len(keys):
            raise ValueError("two planned jobs share a directory; sweep overrides collide")
        plan_mod.write_plan(
            sweep_dir, jobs, {"metric": metric_name, "metric_type": str(metric_type)}
        )
        skipped = [job.key for job in jobs if plan_mod.is_done(sweep_dir / job.key)]
        todo = [job for job in jobs if job.key not in set(skipped)]
        logger.info(
            "multiml sweep: %d jobs planned in %s; %d already done, %d to run",
            len(jobs),
            sweep_dir,
            len(skipped),
            len(todo),
        )
        size = self.max_batch_size or max(len(todo), 1)
        returns: list[JobReturn] = []
        initial_job_idx = 0
        for start in range(0, len(todo), size):
            batch = [job.job_overrides() for job in todo[start : start + size]]
            self.validate_batch_is_legal(batch)
            returns.extend(self.launcher.launch(batch, initial_job_idx=initial_job_idx))
            initial_job_idx += len(batch)
        # Launchers running jobs in this process (joblib n_jobs=1) leave their job's log
        # handlers installed; restore Hydra's own before reporting.
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        summary = plan_mod.aggregate(
            sweep_dir, jobs, metric_name, str(metric_type), skipped=skipped
        )
        counts = summary["counts"]
        crashed = sum(1 for r in returns if r.status == JobStatus.FAILED)
        logger.info(
            "multiml sweep finished: %d done (%d skipped as already done), %d failed; summary: %s",
            counts["done"],
            counts["skipped"],
            counts["failed"],
            sweep_dir / "summary.json",
        )
        if counts["failed"] or crashed:
            message = (
                f"{counts['failed']} of {counts['planned']} jobs failed "
                f"({', '.join(summary['failed_jobs'][:10])}"
                f"{', ...' if len(summary['failed_jobs']) > 10 else ''}); each failed job's "
                f"directory holds its error (result.json) and traceback.txt. Re-running the "
                f"same command with hydra.sweep.dir={sweep_dir} retries only the failed jobs."
            )
            logger.error(message)
            if self.exit_on_failure:
                sys.exit(1)
            raise MultimlJobsFailedError(message)
        return summary
