"""RandomSearchAgent: run a random sample of combinations and keep the best."""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from multiml.agent.basic.sequential import SequentialAgent
from multiml.agent.prefix_cache import restore_saver_entry, snapshot_saver_entry
from multiml.agent.report import best_result, format_metric, result_table
from multiml.agent.sampling import check_samplings, draw_indices
from multiml.agent.seeding import stable_key
from multiml.agent.workers import JobOutcome, SlotPool, Unit, failure
from multiml.devices import check_devices_exist, device_names

logger = logging.getLogger(__name__)

METRIC_TYPES = ("min", "max")


class RandomSearchAgent(SequentialAgent):
    """Sample combinations without replacement, run them, keep the best.

    >>> agent = RandomSearchAgent(storegate=sg, task_scheduler=steps, metric='acc',
    ...                           samplings=10, seed=1, num_workers=2)  # doctest: +SKIP
    >>> agent.execute(); agent.finalize()  # doctest: +SKIP
    >>> agent.result['metric_value'], len(agent.history)  # doctest: +SKIP

    Args:
        samplings: an int — that many distinct combinations drawn with an RNG seeded by
            ``seed`` (more than exist is an error) — or a list of combination indices.
        seed: seeds the sampling and, combined with each step's prefix, every step's RNGs.
        metric_type: ``'min'`` or ``'max'`` (default: the metric's own type).
        num_workers: ``None`` runs in this process; an int runs that many worker
            processes; a list of GPU ids (``[0, 1]``) or device names (``['cuda:0', 'cpu']``)
            runs one worker per entry pinned to that device. Results and history equal a
            serial run. Workers compute on isolated views of the StoreGate (its files are
            never written) and their Saver writes are applied here afterwards, in
            combination order; a combination whose worker dies is reported in
            ``failures`` with the exit code and the others continue in a fresh worker.
        context: multiprocessing start method (``'spawn'``, ``'fork'``, ``'forkserver'``).
        dump_all_results: also store every result as ``saver['history']``.
        disable_tqdm: hide the progress bar over combinations.
        **kwargs: :class:`SequentialAgent` arguments (``num_trials``, ``differentiable``, ...).

    Combinations run in index order (so consecutive ones share step prefixes that the
    prefix cache reuses); ``history`` keeps the sampling order and each result's ``job_id``
    is its position in the sample.
    """

    def __init__(
        self,
        samplings: int | Sequence[int] | None = None,
        seed: int = 0,
        metric_type: str | None = None,
        num_workers: int | Sequence[int | str] | None = None,
        context: str = "spawn",
        dump_all_results: bool = False,
        disable_tqdm: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise ValueError(f"seed={seed!r}: expected an int")
        seed = int(seed)
        if metric_type is not None and metric_type not in METRIC_TYPES:
            raise ValueError(f"metric_type={metric_type!r}: allowed values are 'min' and 'max'")
        methods = multiprocessing.get_all_start_methods()
        if context not in methods:
            raise ValueError(f"context={context!r}: allowed start methods here are {methods}")
        self._samplings = check_samplings(samplings)
        self._seed = seed
        self._metric_type = metric_type
        self._devices = self._slot_devices(num_workers)
        self._num_workers = num_workers
        self._context = context
        self._dump_all_results = dump_all_results
        self._disable_tqdm = disable_tqdm
        self._history: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        """Combinations that raised (or whose worker died): ids, hps, error, traceback."""
        self.one_job_per_process = False
        """Expert switch: run every combination in a fresh worker process."""

    # ----------------------------------------------------------- validation
    @staticmethod
    def _slot_devices(num_workers: Any) -> list[str | None] | None:
        if num_workers is None:
            return None
        if isinstance(num_workers, int) and not isinstance(num_workers, bool):
            if num_workers < 1:
                raise ValueError(f"num_workers={num_workers}: expected >= 1, a list, or None")
            return [None] * num_workers
        if isinstance(num_workers, Sequence) and not isinstance(num_workers, str) and num_workers:
            return list(device_names(num_workers, "num_workers"))
        raise ValueError(
            f"num_workers={num_workers!r}: expected None, a positive int, or a list of GPU ids "
            "/ device names"
        )

    # ------------------------------------------------------------ properties
    @property
    def history(self) -> list[dict[str, Any]]:
        """Result of every successful combination, in sampling order."""
        return self._history

    @property
    def metric_type(self) -> str:
        """``'min'`` or ``'max'``: the given metric_type, else the metric's type."""
        if self._metric_type is not None:
            return self._metric_type
        metric_type = getattr(self._metric, "type", None)
        if metric_type not in METRIC_TYPES:
            raise ValueError(
                f"metric {type(self._metric).__name__} has type {metric_type!r}; pass "
                "metric_type='min' or 'max'"
            )
        return metric_type

    # -------------------------------------------------------------- planning
    def sample_indices(self) -> list[int]:
        """The combination indices to run, in sampling order."""
        total = len(self._task_scheduler)
        samplings = self._samplings
        if samplings is None:
            raise ValueError(
                f"{type(self).__name__}: samplings is not set; give the number of combinations "
                f"to draw (at most {total}) or a list of combination indices"
            )
        return draw_indices(total, samplings, self._seed)

    def plan_units(self, jobs: Sequence[tuple[int, int]], slots: int) -> list[Unit]:
        """Group jobs that share every step but the last (so a worker reuses that prefix),
        then split the largest groups until every slot has work."""
        units: list[Unit] = []
        last_key = None
        for counter, index in sorted(jobs, key=lambda job: job[1]):
            combination = self._task_scheduler[index]
            key = stable_key([(st.task_id, st.subtask_id, st.hps) for st in combination[:-1]])
            if key != last_key:
                units.append([])
                last_key = key
            units[-1].append((counter, index))
        while len(units) < 2 * slots:
            largest = max(range(len(units)), key=lambda i: len(units[i]))
            unit = units[largest]
            if len(unit) < 2:
                break
            half = math.ceil(len(unit) / 2)
            units[largest : largest + 1] = [unit[:half], unit[half:]]
        return units

    # ------------------------------------------------------------- execution
    def execute(self) -> None:
        """Run the sampled combinations."""
        indices = self.sample_indices()
        self.execute_jobs_for(list(enumerate(indices)))

    def execute_jobs_for(self, jobs: Sequence[tuple[int, int]]) -> None:
        """Run ``(counter, combination index)`` jobs; fill ``history``, ``result``, ``failures``."""
        if not jobs:
            raise ValueError(f"{type(self).__name__}: there are no combinations to run")
        self._history, self.failures, self._result = [], [], None
        start = time.perf_counter()
        bar = tqdm(total=len(jobs), desc=type(self).__name__, disable=self._disable_tqdm)
        outcomes: dict[int, JobOutcome] = {}

        def record(outcome: JobOutcome) -> None:
            outcomes[outcome.counter] = outcome
            bar.update(1)
            status = format_metric(outcome.result) if outcome.ok else f"FAILED: {outcome.error}"
            logger.info(
                "combination %d/%d (job_id %d, index %d): %s",
                len(outcomes),
                len(jobs),
                outcome.counter,
                outcome.index,
                status,
            )

        try:
            if self._devices is None:
                for counter, index in sorted(jobs, key=lambda job: job[1]):
                    outcome = self._run_job(self._task_scheduler[index], counter, self.device)
                    outcome.index = index
                    record(outcome)
            else:
                check_devices_exist(self._devices, "num_workers", given=self._num_workers)
                ctx = multiprocessing.get_context(self._context)
                self.execute_pool_jobs(
                    ctx, ctx.SimpleQueue(), self.plan_units(jobs, len(self._devices)), record
                )
        finally:
            bar.close()
        self._collect([outcomes[c] for c, _ in jobs if c in outcomes])
        logger.info(
            "%s: %d combinations in %.1fs (%d failed)",
            type(self).__name__,
            len(jobs),
            time.perf_counter() - start,
            len(self.failures),
        )

    def execute_pool_jobs(
        self, ctx: Any, queue: Any, args: Sequence[Unit], on_outcome: Any = None
    ) -> dict[int, JobOutcome]:
        """(expert method) Run units of jobs on persistent workers, one per device slot."""
        return self._pool(ctx, queue, on_outcome, one_job_per_process=self.one_job_per_process).run(
            args
        )

    def execute_jobs(
        self, ctx: Any, queue: Any, args: Sequence[Unit], on_outcome: Any = None
    ) -> dict[int, JobOutcome]:
        """(expert method) Run every job in a fresh worker process (at most one per slot)."""
        return self._pool(ctx, queue, on_outcome, one_job_per_process=True).run(args)

    def _pool(self, ctx: Any, queue: Any, on_outcome: Any, one_job_per_process: bool) -> SlotPool:
        import torch

        devices = self._devices or [None]
        return SlotPool(
            ctx, queue, self, devices, torch.get_num_threads(), one_job_per_process, on_outcome
        )

    def prepare_worker(self) -> None:
        """(expert method) Called once in each worker process before it runs combinations.

        The worker switches to an isolated (copy-on-write) view of the StoreGate and keeps
        its Saver writes in memory, so parallel combinations never write the same store
        files or Saver keys (a ``saver__step0__...`` reference resolves to this worker's
        own step 0). The Saver writes travel back with each outcome and the parent applies
        them in execution order.
        """
        if self._storegate is not None:
            self._storegate = self._storegate.isolated()
            self._metric.storegate = self._storegate
        self._saver.set_mode("dict")
        self._runners = {}

    def execute_wrapper(
        self, queue: Any, subtasktuples: list[Any], counter: int, cuda_id: Any
    ) -> None:
        """(expert method) Run one combination in a worker and put its outcome on ``queue``.

        ``cuda_id`` is the worker slot's device (a GPU id, a device name, or None).
        """
        device = f"cuda:{cuda_id}" if isinstance(cuda_id, int) else cuda_id
        outcome = self._run_job(subtasktuples, counter, device, ship_saver=True)
        queue.put(("done", counter, outcome))

    def _run_job(
        self, subtasktuples: list[Any], counter: int, device: str | None, ship_saver: bool = False
    ) -> JobOutcome:
        """Run one combination, turning an exception into a failed outcome."""
        started = time.time()
        with self._saver.track_writes() as log:
            try:
                result = self.runner_for(device).run(
                    subtasktuples, counter, self._num_trials, self.connection_spec()
                )
                outcome = JobOutcome(counter=counter, index=-1, result=result, device=device)
            except Exception as exc:
                # One line per failure; the traceback is in agent.failures (and at DEBUG).
                logger.error(
                    "combination job_id=%d failed: %s", counter, str(exc).splitlines()[0][:300]
                )
                logger.debug("combination job_id=%d traceback", counter, exc_info=True)
                outcome = failure(counter, -1, exc, device)
        if ship_saver:
            keys = set(self._saver.keys())
            outcome.saver_updates = {
                key: snapshot_saver_entry(self._saver, key) for key in log.written if key in keys
            }
        outcome.started_at, outcome.finished_at = started, time.time()
        return outcome

    def _collect(self, outcomes: list[JobOutcome]) -> None:
        """Results in job order, saver writes of workers applied in execution order."""
        for outcome in sorted(outcomes, key=lambda o: o.index):
            for key, entry in outcome.saver_updates.items():
                restore_saver_entry(self._saver, key, entry, mode=self._saver.mode)
        for outcome in outcomes:
            if outcome.ok:
                self._history.append(outcome.result)
            else:
                combination = self._task_scheduler[outcome.index]
                self.failures.append(
                    {
                        "job_id": outcome.counter,
                        "index": outcome.index,
                        "task_ids": [st.task_id for st in combination],
                        "subtask_ids": [st.subtask_id for st in combination],
                        "subtask_hps": [dict(st.hps) for st in combination],
                        "error": outcome.error,
                        "traceback": outcome.traceback,
                        "device": outcome.device,
                    }
                )
        if not self._history:
            first = self.failures[0]
            raise RuntimeError(
                f"all {len(self.failures)} combinations failed; the first (job_id "
                f"{first['job_id']}) raised:\n{first['traceback'] or first['error']}"
            )
        self._result = self.best_of(self._history)
        if self.failures:
            logger.error(
                "%d of %d combinations failed (job_ids %s); see agent.failures. The best "
                "result is among the ones that succeeded.",
                len(self.failures),
                len(outcomes),
                [f["job_id"] for f in self.failures],
            )

    def best_of(self, results: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The best result by ``metric_type`` (NaN counts as worst; ties: the earliest)."""
        return best_result(results, self.metric_type)

    def finalize(self) -> None:
        """Log the result table; store ``saver['result']`` (and ``saver['history']``)."""
        if self._result is None:
            raise RuntimeError(f"{type(self).__name__}.finalize(): call execute() first")
        table = result_table(
            sorted(self._history, key=lambda r: r["job_id"]),
            self._metric.name,
            self._result["job_id"],
        )
        logger.info(
            "results (* = best, %s is better):\n%s",
            "higher" if self.metric_type == "max" else "lower",
            table,
        )
        self._saver["result"] = self._result
        if self._dump_all_results:
            self._saver["history"] = list(self._history)
        if self.failures:
            self._saver["failures"] = [{k: v for k, v in f.items()} for f in self.failures]
        if self._tracker is not None:
            self._tracker.close()
