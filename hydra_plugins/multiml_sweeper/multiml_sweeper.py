"""MultimlSweeper: plan the agent's search as Hydra jobs; aggregate their results.

``python -m multiml -m agent=grid`` on a task with 6 combinations → 6 jobs
(``c0000`` ... ``c0005``); ``python -m multiml -m agent=random agent.samplings=3 seed=1,2``
→ 2 x 3 jobs (``seed-1/c0004``, ...). The sweeper only plans (override lists, in batches);
the configured launcher (basic, joblib, submitit, Ray) runs them. Each job runs exactly one
combination through the same code path as the in-process agents (see
:mod:`multiml.app.job`) and writes its ``result.json``; the sweeper then writes
``results.csv``, ``summary.json`` and ``result.json`` into the sweep directory.

Failed jobs do not stop the sweep: the summary is written, then the sweep fails with a
message saying how many jobs failed and that re-running the same command (same
``hydra.sweep.dir``) retries exactly those. So does a launcher that stops (a joblib worker
killed, a lost cluster job): jobs without a result are retried by the next run.

Launchers and devices (``devices=[...]`` gives the slots a job leases on its machine):

- ``hydra/launcher=joblib hydra.launcher.n_jobs=K``: K loky worker processes on this
  machine; give K device entries (``devices=[0,1]``, ``devices=[cpu,cpu]``), else jobs
  wait for a slot (a warning says so). ``n_jobs=1`` runs the jobs in this process.
- ``hydra/launcher=submitit_local``: every job is a fresh process, all jobs of a batch
  start at once, so set ``hydra.sweeper.max_batch_size`` to the number of slots.
  submitit sets ``CUDA_VISIBLE_DEVICES`` for every job, to the empty string by default:
  GPU jobs need ``hydra.launcher.gpus_per_node=N`` (every job then sees GPUs 0..N-1 and
  leases one of ``devices=[0,...,N-1]``).
- ``hydra/launcher=submitit_slurm``: one Slurm job per sweep job; request GPUs with
  ``hydra.launcher.gpus_per_node=1`` and use ``devices=[cuda]`` (Slurm gives each job
  its own GPU). The sweep directory must be on a file system all nodes share.
- ``hydra/launcher=ray`` (``+hydra.launcher.ray.init.address=auto`` for a running
  cluster, ``+hydra.launcher.ray.remote.num_gpus=1`` to give each job a GPU, then
  ``devices=[cuda]``).

Device slots are scoped per machine and per ``CUDA_VISIBLE_DEVICES``
(:func:`multiml.app.devices.lock_scope`), so cluster jobs that a scheduler gave their
own GPUs never wait for each other.

This module is imported by Hydra's plugin scan at every start, so it imports nothing heavy.
"""

import logging
import os
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
        exit_on_failure: when jobs failed, log the summary and exit with status 1; when the
            search cannot be planned (a configuration error), log it and exit with status 2
            (False: raise :class:`MultimlJobsFailedError` / the ``ValueError`` instead).
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

    def plan(self, arguments: list[str]) -> tuple[list[Any], str, str]:
        """The jobs of a sweep, its metric name and metric type.

        Composes one config per combination of the ordinary sweep overrides (not one per
        job) and checks, by composing it, that the first job of each composes too: the
        jobs of one override set differ only in ``combination.*`` and their directory.

        Raises:
            ValueError: an override set plans no job or an invalid search, override sets
                disagree on the metric, or two jobs would share a directory.
        """
        from multiml.agent.metric import get_metric
        from multiml.app import sweep as sweep_mod
        from multiml.app.plan import plan_search

        assert self.config is not None and self.hydra_context is not None
        config_loader = self.hydra_context.config_loader
        jobs: list[sweep_mod.PlannedJob] = []
        metrics: dict[tuple[str, str], list[str]] = {}
        for overrides, varying in self.split_arguments(arguments):
            job_cfg = config_loader.load_sweep_config(self.config, list(overrides))
            try:
                planned = plan_search(job_cfg)
            except ValueError as exc:
                raise ValueError(f"overrides {overrides}: {exc}") from exc
            metric_name = str(job_cfg.metric.name)
            metric_type = job_cfg.agent.get("metric_type") or get_metric(metric_name).type
            metrics.setdefault((metric_name, str(metric_type)), []).append(" ".join(varying))
            group = [
                sweep_mod.PlannedJob(
                    sweep_mod.job_key(varying, c.index), c.index, c.counter, list(overrides)
                )
                for c in planned
            ]
            self.validate_batch_is_legal([group[0].job_overrides()])
            jobs.extend(group)
        if len(metrics) > 1:
            described = "; ".join(
                f"{name} ({kind}) for {', '.join(sets) or 'the command line'}"
                for (name, kind), sets in metrics.items()
            )
            raise ValueError(
                f"the override sets of this sweep use different metrics: {described}; a "
                "sweep ranks its jobs by one metric, so run these as separate sweeps"
            )
        keys = [job.key for job in jobs]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise ValueError(
                f"two planned jobs share a directory ({', '.join(duplicates[:3])}): the swept "
                "overrides name the same values twice"
            )
        ((metric_name, metric_type),) = metrics
        return jobs, metric_name, metric_type

    def sweep(self, arguments: list[str]) -> Any:
        """Plan, skip finished jobs, launch the rest, aggregate."""
        from multiml.app import sweep as sweep_mod

        assert self.config is not None and self.launcher is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        try:
            jobs, metric_name, metric_type = self.plan(arguments)
        except ValueError as exc:
            if not self.exit_on_failure:
                raise
            logger.error("configuration error: %s", exc)
            sys.exit(2)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        sweep_mod.write_plan(sweep_dir, jobs, {"metric": metric_name, "metric_type": metric_type})
        skipped = [job.key for job in jobs if sweep_mod.is_done(sweep_dir / job.key)]
        done_before = set(skipped)
        todo = [job for job in jobs if job.key not in done_before]
        logger.info(
            "multiml sweep: %d jobs planned in %s; %d already done, %d to run",
            len(jobs),
            sweep_dir,
            len(skipped),
            len(todo),
        )
        self._warn_changed(sweep_mod.changed_overrides(sweep_dir, jobs))
        self._warn_parallelism(len(todo))
        sweep_mod.start_progress(sweep_dir, planned=len(jobs), skipped=len(skipped))

        size = self.max_batch_size or max(len(todo), 1)
        returns: list[JobReturn] = []
        launch_error: Exception | None = None
        initial_job_idx = 0
        try:
            for start in range(0, len(todo), size):
                batch = [job.job_overrides() for job in todo[start : start + size]]
                returns.extend(self.launcher.launch(batch, initial_job_idx=initial_job_idx))
                initial_job_idx += len(batch)
        except Exception as exc:  # a worker died, a cluster job was lost, ...
            launch_error = exc
        # Launchers running jobs in this process (joblib n_jobs=1) leave their job's log
        # handlers installed; restore Hydra's own before reporting.
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        if launch_error is not None:
            logger.error("the launcher stopped: %s: %s", type(launch_error).__name__, launch_error)
        summary = sweep_mod.aggregate(sweep_dir, jobs, metric_name, metric_type, skipped=skipped)
        counts = summary["counts"]
        logger.info(
            "multiml sweep finished: %d/%d done (%d skipped as already done), %d failed, "
            "%d without result; summary: %s",
            counts["done"],
            counts["planned"],
            counts["skipped"],
            counts["failed"],
            counts["missing"],
            sweep_dir / sweep_mod.SUMMARY_FILE,
        )
        not_done = summary["failed_jobs"] + summary["missing_jobs"]
        crashed = [r for r in returns if r.status == JobStatus.FAILED]
        if not_done or crashed or launch_error is not None:
            message = self._failure_message(summary, sweep_dir, len(crashed), launch_error)
            logger.error(message)
            if self.exit_on_failure:
                sys.exit(1)
            raise MultimlJobsFailedError(message)
        return summary

    @staticmethod
    def _failure_message(
        summary: dict[str, Any], sweep_dir: Path, crashed: int, launch_error: Exception | None
    ) -> str:
        counts = summary["counts"]
        not_done = summary["failed_jobs"] + summary["missing_jobs"]
        parts = []
        if counts["failed"]:
            parts.append(f"{counts['failed']} of {counts['planned']} jobs failed")
        if counts["missing"]:
            parts.append(f"{counts['missing']} left no result")
        if not parts:  # every result is there, yet the launcher reported failures
            parts.append(f"{crashed} jobs failed after writing their result")
        listed = ", ".join(not_done[:10]) + (", ..." if len(not_done) > 10 else "")
        notes = [f"{' and '.join(parts)}" + (f" ({listed})" if listed else "")]
        if counts["failed"]:
            notes.append("a failed job's directory holds its error (result.json) and traceback.txt")
        if launch_error is not None:
            notes.append(
                f"the launcher stopped ({type(launch_error).__name__}), so jobs were killed or "
                "never ran"
            )
        return (
            f"{'; '.join(notes)}. Re-running the same command with hydra.sweep.dir={sweep_dir} "
            "retries only the jobs without a finished result."
        )

    @staticmethod
    def _warn_changed(changed: list[tuple[str, list[str], list[str]]]) -> None:
        if not changed:
            return
        key, ran, planned = changed[0]
        logger.warning(
            "%d finished job(s) ran with other overrides than this command and keep their "
            "results (e.g. %s ran with %s; now %s); delete their result.json, or use a new "
            "hydra.sweep.dir, to re-run them",
            len(changed),
            key,
            ran,
            planned,
        )

    def _warn_parallelism(self, todo: int) -> None:
        """Say so when the launcher's parallelism and the device slots do not match.

        More jobs at once than slots: the extra jobs wait. Several slots under a launcher
        that runs one job at a time (``basic``, joblib ``n_jobs=1``): slots stay idle.
        """
        assert self.config is not None
        slots = len(self.config.get("devices") or [])
        if todo < 2 or not slots:
            return
        launcher = self.config.hydra.launcher
        n_jobs = launcher.get("n_jobs")
        if isinstance(n_jobs, int) and n_jobs < 0:  # joblib: -1 is every CPU, -2 all but one
            n_jobs = max((os.cpu_count() or 1) + 1 + n_jobs, 1)
        if str(launcher.get("_target_", "")).endswith(".BasicLauncher"):
            n_jobs = 1
        if not isinstance(n_jobs, int):
            return  # submitit, Ray: their own resources decide
        devices = list(self.config.devices)
        if min(n_jobs, todo) > slots:
            logger.warning(
                "hydra.launcher.n_jobs=%d but devices=%s has %d slot(s): at most %d job(s) run "
                "at a time, the others wait for a slot; give one device entry per parallel "
                "job (e.g. devices=[%s])",
                n_jobs,
                devices,
                slots,
                slots,
                ",".join(["cpu"] * min(n_jobs, todo)),
            )
        elif n_jobs == 1 and slots > 1:
            logger.warning(
                "devices=%s has %d slots but this launcher runs one job at a time; run them in "
                "parallel with hydra/launcher=joblib hydra.launcher.n_jobs=%d",
                devices,
                slots,
                min(slots, todo),
            )
