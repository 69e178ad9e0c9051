"""Run one combination of subtasks: the single code path behind every agent and Hydra job.

A *combination* is one subtask (with one hyperparameter point) per step, as returned by
``TaskScheduler[i]``. :class:`CombinationRunner` executes its steps in order — or, in
connection mode, pre-trains them and trains them connected end to end — measures the
metric, and returns the result dict of SPEC §6::

    {'task_ids': [...], 'subtask_ids': [...], 'job_id': 3, 'trial_id': None,
     'subtask_hps': [{...}, {...}], 'metric_value': 0.93}

with ``'metric_values'`` (one per trial) added when trials are requested.

Each step runs inside :func:`~multiml.agent.seeding.seeded_rngs` with a seed derived from
its prefix, and its effects are recorded in a :class:`~multiml.agent.prefix_cache.PrefixCache`
so an identical prefix in a later combination is restored instead of re-run.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from multiml.agent.prefix_cache import (
    PrefixCache,
    StepRecord,
    restore_saver_entry,
    snapshot_saver_entry,
)
from multiml.agent.seeding import canonical, derive_seed, seeded_rngs, stable_key

if TYPE_CHECKING:
    from multiml.agent.metric import BaseMetric
    from multiml.saver import Saver
    from multiml.storegate import StoreGate
    from multiml.task_scheduler import subtasktuple

logger = logging.getLogger(__name__)

AUTO_DEVICES = ("auto", "cuda")
"""Task devices a worker slot's device replaces (explicit ones like 'cpu' are kept)."""


@dataclass
class ConnectionSpec:
    """How to connect the steps of a combination into one model.

    Args:
        pretrain: train each step on its own first (else only compile and predict).
        freeze: keep pre-trained weights fixed inside the connection: ``True`` (every
            step), ``False`` (none) or a list of task ids. When every weight is fixed
            there is nothing to train: the connected model is only evaluated.
        task_args: keyword arguments of the ``ModelConnectionTask``.
        name: name of the connection task (``job_id`` is appended).
        reuse_pretraining: reuse a pre-trained subtask seen with the same hyperparameters
            even under a different upstream prefix.
        framework: only ``'pytorch'``.
    """

    pretrain: bool = True
    freeze: bool | Sequence[str] = False
    task_args: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    reuse_pretraining: bool = False
    framework: str = "pytorch"


class Tracker:
    """Receives per-step histories and per-combination results (no-op base class)."""

    def log_step(
        self, run: str, task_id: str, subtask_id: str, history: Any, resolved_hps: dict[str, Any]
    ) -> None:
        """A step of combination ``run`` finished (executed or restored)."""

    def log_result(self, run: str, result: dict[str, Any], metric_name: str) -> None:
        """Combination ``run`` finished with ``result``."""

    def close(self) -> None:
        """Flush and release resources."""


def connection_task_name(name: str | None, job_id: int) -> str:
    """Name of the connection task of a combination: ``<name>_<job_id>``."""
    return f"{name or 'ModelConnectionTask'}_{job_id}"


def frozen_step(freeze: bool | Sequence[str], task_id: str, task_ids: Sequence[str]) -> bool:
    """Whether ``freeze`` (``True``, ``False`` or a list of task ids) fixes step ``task_id``.

    Raises:
        ValueError: the list names a task id that is not one of ``task_ids``.
    """
    if isinstance(freeze, bool):
        return freeze
    unknown = [t for t in freeze if t not in task_ids]
    if unknown:
        raise ValueError(
            f"freeze_model_weights names unknown task ids {unknown}; known: {list(task_ids)}"
        )
    return task_id in freeze


def run_name(job_id: int, trial: int | None = None) -> str:
    """Name of a combination (and trial) in logs and TensorBoard: ``job0003[_trial1]``."""
    name = f"job{job_id:04d}"
    return name if trial is None else f"{name}_trial{trial}"


class CombinationRunner:
    """Execute combinations against one StoreGate, Saver and metric.

    Args:
        storegate: data in and out of every step (``None`` for steps that only use the
            Saver).
        saver: where steps write results (and this runner records each step's resolved
            hyperparameters as ``saver[task_id]``).
        metric: measured after the last step.
        seed: the agent seed every step seed is derived from.
        cache_size: prefix-cache entries (0 disables prefix reuse).
        device: a worker slot's device; replaces ``'auto'``/``'cuda'`` task devices.
        tracker: receives histories and results (e.g. TensorBoard).
    """

    def __init__(
        self,
        storegate: StoreGate | None,
        saver: Saver,
        metric: BaseMetric,
        seed: int = 0,
        cache_size: int = 8,
        device: str | None = None,
        tracker: Tracker | None = None,
    ) -> None:
        self.storegate = storegate
        self.saver = saver
        self.metric = metric
        self.seed = seed
        self.cache = PrefixCache(cache_size)
        self.pretrain_cache = PrefixCache(cache_size)
        self.device = device
        self.tracker = tracker or Tracker()
        self._initial_vars: set[tuple[str, str, str]] | None = None
        self._step_outputs: dict[tuple[str, str, str], None] = {}

    # ----------------------------------------------------------- combination
    def run(
        self,
        subtasktuples: Sequence[subtasktuple],
        job_id: int,
        num_trials: int | None = None,
        connection: ConnectionSpec | None = None,
    ) -> dict[str, Any]:
        """Run a combination (every trial) and return its result dict."""
        if num_trials is not None and (not isinstance(num_trials, int) or num_trials < 1):
            raise ValueError(f"num_trials={num_trials!r}: expected a positive int or None")
        trials: Sequence[int | None] = [None] if num_trials is None else range(num_trials)
        results = [self.run_trial(subtasktuples, job_id, t, connection) for t in trials]
        result = dict(results[-1])
        result["trial_id"] = None
        if num_trials is not None:
            result["metric_values"] = [r["metric_value"] for r in results]
            result["metric_value"] = statistics.fmean(result["metric_values"])
        self.tracker.log_result(run_name(job_id), result, self.metric.name)
        return result

    def run_trial(
        self,
        subtasktuples: Sequence[subtasktuple],
        job_id: int,
        trial: int | None = None,
        connection: ConnectionSpec | None = None,
    ) -> dict[str, Any]:
        """Run one trial of a combination (``trial_id`` = ``trial`` in the result)."""
        start = time.perf_counter()
        self.forget_earlier_outputs()
        with _track_store(self.storegate) as log:
            try:
                if connection is None:
                    hps = [
                        self.run_step(subtasktuples, k, job_id, trial)
                        for k in range(len(subtasktuples))
                    ]
                else:
                    hps = self._run_connected(subtasktuples, job_id, trial, connection)
            finally:
                self._step_outputs.update(dict.fromkeys(log.written))
        self.metric.storegate = self.storegate
        value = float(self.metric.calculate())
        logger.debug(
            "%s: %s=%.6g in %.2fs",
            run_name(job_id, trial),
            self.metric.name,
            value,
            time.perf_counter() - start,
        )
        return {
            "task_ids": [st.task_id for st in subtasktuples],
            "subtask_ids": [st.subtask_id for st in subtasktuples],
            "job_id": job_id,
            "trial_id": trial,
            "subtask_hps": hps,
            "metric_value": value,
        }

    def forget_earlier_outputs(self) -> None:
        """Delete the store variables that steps of earlier combinations created.

        Every combination starts from the data as they were before the first one ran, so
        a step can only read what its own upstream steps wrote: a step whose input an
        upstream subtask does not produce fails with a clear error instead of silently
        reading a leftover of another combination, and a result never depends on which
        combinations ran before it (in this process or worker). Variables that existed
        before the first combination are kept even when a step overwrote them.
        """
        sg = self.storegate
        if sg is None:
            return
        if self._initial_vars is None:
            self._initial_vars = set(_store_keys(sg))
            return
        stale = [key for key in self._step_outputs if key not in self._initial_vars]
        self._step_outputs.clear()
        _delete_store_vars(sg, stale)

    # ------------------------------------------------------------------ steps
    def step_key(
        self, subtasktuples: Sequence[subtasktuple], k: int, trial: int | None, reuse: bool = False
    ) -> str:
        """Cache key (and seed source) of step ``k``: its prefix, or itself with ``reuse``."""
        steps = subtasktuples[k : k + 1] if reuse else subtasktuples[: k + 1]
        prefix = [(st.task_id, st.subtask_id, st.hps) for st in steps]
        return stable_key(self.seed, prefix, trial, "reuse" if reuse else "prefix")

    def run_step(
        self,
        subtasktuples: Sequence[subtasktuple],
        k: int,
        job_id: int,
        trial: int | None,
        keep_model: bool = False,
        reuse: bool = False,
    ) -> dict[str, Any]:
        """Execute step ``k`` of a combination, or restore it from the prefix cache.

        Returns:
            the step's resolved hyperparameters.
        """
        st = subtasktuples[k]
        env = self.prepare(st, job_id, trial)
        key = self.step_key(subtasktuples, k, trial, reuse)
        cache = self.pretrain_cache if reuse else self.cache
        record = cache.get(key)
        if record is not None and keep_model and record.model_state is None:
            record = None
        if record is None:
            record = self._execute(st, env, derive_seed(key), keep_model)
            cache.put(key, record)
        else:
            logger.debug("%s: reusing %s/%s", run_name(job_id, trial), st.task_id, st.subtask_id)
            self._restore(record, st, env, keep_model)
        self.tracker.log_step(
            run_name(job_id, trial), st.task_id, st.subtask_id, record.history, record.resolved_hps
        )
        return dict(record.resolved_hps)

    def prepare(self, st: subtasktuple, job_id: int, trial: int | None) -> Any:
        """Attach store, saver, ids and the slot device to a subtask's task object."""
        env = st.env
        env.storegate = self.storegate
        env.saver = self.saver
        env.task_id = st.task_id
        env.subtask_id = st.subtask_id
        env.job_id = job_id
        env.trial_id = trial
        self._pin_device(env)
        return env

    def _pin_device(self, task: Any) -> None:
        """Run a task whose device is ``'auto'``/``'cuda'`` on this runner's slot device."""
        if self.device is not None and getattr(task, "device", None) in AUTO_DEVICES:
            task.device = self.device

    def _configure(self, st: subtasktuple, env: Any) -> dict[str, Any]:
        env.reset_hps()
        return env.set_hps(dict(st.hps))

    def _execute(self, st: subtasktuple, env: Any, seed: int, keep_model: bool) -> StepRecord:
        sg, saver = self.storegate, self.saver
        with (
            _track_store(sg) as store_log,
            saver.track_writes() as saver_log,
            seeded_rngs(seed),
        ):
            try:
                resolved = self._configure(st, env)
                env.execute()
                env.finalize()
            except Exception as exc:
                exc.add_note(
                    f"while running step {st.task_id!r}, subtask {st.subtask_id!r} with "
                    f"hyperparameters {canonical(st.hps)} (job {env.job_id}, trial {env.trial_id})"
                )
                raise
            saver[st.task_id] = {"subtask_id": st.subtask_id, **resolved}
        deleted_keys = set(saver_log.deleted)
        return StepRecord(
            store_vars=sg.export_vars(store_log.written) if sg is not None else {},
            store_deleted=list(store_log.deleted),
            saver_entries={
                key: snapshot_saver_entry(saver, key)
                for key in saver_log.written
                if key not in deleted_keys
            },
            saver_deleted=list(saver_log.deleted),
            resolved_hps=resolved,
            history=copy.deepcopy(getattr(env, "history", None)),
            model_state=_model_state(env) if keep_model else None,
            unique_id=_unique_id(env),
        )

    def _restore(self, record: StepRecord, st: subtasktuple, env: Any, keep_model: bool) -> None:
        sg, saver = self.storegate, self.saver
        if sg is not None:
            sg.import_vars(record.store_vars)
            _delete_store_vars(sg, record.store_deleted)
        rename = _key_renamer(record.unique_id, _unique_id(env))
        for key, entry in record.saver_entries.items():
            restore_saver_entry(saver, rename(key), entry)
        for key in record.saver_deleted:
            if rename(key) in saver:
                saver.delete(rename(key))
        self._configure(st, env)
        if keep_model:
            with seeded_rngs(0):  # the fresh initial weights are replaced right away
                env.compile()
            env.unwrapped_model.load_state_dict(record.model_state)
            env.history = copy.deepcopy(record.history)

    # ------------------------------------------------------------- connected
    def _run_connected(
        self,
        subtasktuples: Sequence[subtasktuple],
        job_id: int,
        trial: int | None,
        spec: ConnectionSpec,
    ) -> list[dict[str, Any]]:
        if spec.framework != "pytorch":
            raise ValueError(
                f"differentiable={spec.framework!r} is not supported; allowed: 'pytorch'"
            )
        from multiml.task.pytorch import ModelConnectionTask

        hps = []
        for k in range(len(subtasktuples)):
            if spec.pretrain:
                hps.append(
                    self.run_step(
                        subtasktuples,
                        k,
                        job_id,
                        trial,
                        keep_model=True,
                        reuse=spec.reuse_pretraining,
                    )
                )
            else:
                hps.append(self._compile_only(subtasktuples, k, job_id, trial))
        envs = [st.env for st in subtasktuples]
        for st in subtasktuples:
            if frozen_step(spec.freeze, st.task_id, [s.task_id for s in subtasktuples]):
                ModelConnectionTask.freeze_subtask(st.env)
        key = self.step_key(subtasktuples, len(subtasktuples) - 1, trial) + "|connection"
        name = connection_task_name(spec.name, job_id)
        task_args = dict(spec.task_args)
        if not any(p.requires_grad for env in envs for p in env.unwrapped_model.parameters()):
            logger.info("%s: every connected weight is frozen; evaluating without training", name)
            task_args.update(optimizer=None, phases=["test"])
        with seeded_rngs(derive_seed(key, spec.pretrain, spec.freeze, spec.task_args)):
            task = ModelConnectionTask(
                subtasks=envs,
                storegate=self.storegate,
                saver=self.saver,
                name=name,
                **task_args,
            )
            task.task_id, task.subtask_id, task.job_id, task.trial_id = (
                "connection",
                name,
                job_id,
                trial,
            )
            self._pin_device(task)
            task.execute()
            task.finalize()
        self.tracker.log_step(run_name(job_id, trial), "connection", name, task.history, {})
        return hps

    def _compile_only(
        self, subtasktuples: Sequence[subtasktuple], k: int, job_id: int, trial: int | None
    ) -> dict[str, Any]:
        """Configure, compile and predict a step without training it."""
        st = subtasktuples[k]
        env = self.prepare(st, job_id, trial)
        with seeded_rngs(derive_seed(self.step_key(subtasktuples, k, trial), "untrained")):
            resolved = self._configure(st, env)
            env.compile()
            if "test" in env.phases:
                env.predict_update()
        self.saver[st.task_id] = {"subtask_id": st.subtask_id, **resolved}
        return resolved


def _unique_id(env: Any) -> str | None:
    get = getattr(env, "get_unique_id", None)
    return get() if callable(get) else None


def _key_renamer(old: str | None, new: str | None) -> Any:
    """Map Saver keys named after a task's unique id (``old`` or ``old__suffix``) to ``new``."""

    def rename(key: str) -> str:
        if old is None or new is None or old == new:
            return key
        if key == old:
            return new
        if key.startswith(old + "__"):
            return new + key[len(old) :]
        return key

    return rename


def _model_state(env: Any) -> dict[str, Any]:
    model = getattr(env, "unwrapped_model", None)
    if model is None:
        raise TypeError(
            f"{env.name}: connecting steps needs PyTorch tasks; {type(env).__name__} has no model"
        )
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _track_store(storegate: StoreGate | None) -> contextlib.AbstractContextManager[Any]:
    """``storegate.track_writes()``, or an empty log when there is no store."""
    if storegate is None:
        return contextlib.nullcontext(SimpleNamespace(written=(), deleted=()))
    return storegate.track_writes()


def _store_keys(storegate: StoreGate) -> list[tuple[str, str, str]]:
    """Every ``(data_id, phase, var_name)`` the store holds."""
    from multiml.const import PHASES

    current = storegate.data_id
    keys = []
    try:
        for data_id in storegate.get_data_ids():
            storegate.set_data_id(data_id)
            keys += [(data_id, p, v) for p in PHASES for v in storegate.get_var_names(p)]
    finally:
        storegate.set_data_id(current)
    return keys


def _delete_store_vars(storegate: StoreGate, keys: Sequence[tuple[str, str, str]]) -> None:
    current = storegate.data_id
    try:
        for data_id, phase, var_name in keys:
            storegate.set_data_id(data_id)
            if var_name in storegate.get_var_names(phase):
                storegate.delete_data(var_name, phase)
    finally:
        storegate.set_data_id(current)
