"""SequentialAgent: run the one combination a task scheduler defines."""

from __future__ import annotations

import logging
import numbers
from typing import Any

from multiml.agent.basic.base import BaseAgent
from multiml.agent.report import result_table
from multiml.agent.runner import CombinationRunner, ConnectionSpec

logger = logging.getLogger(__name__)

DIFFERENTIABLE = ("pytorch",)


class SequentialAgent(BaseAgent):
    """Execute the steps of a single combination, step by step or connected.

    >>> agent = SequentialAgent(storegate=storegate, task_scheduler=[task0, task1],
    ...                         metric='mse', metric_args={'var_names': 'pred truth'})
    ... # doctest: +SKIP
    >>> agent.execute(); agent.finalize()  # doctest: +SKIP

    Args:
        differentiable: ``None`` (run the steps one after the other) or ``'pytorch'``
            (connect them into a ``ModelConnectionTask`` and train that).
        diff_pretrain: with ``differentiable``, train each step on its own first.
        diff_task_args: keyword arguments of the ``ModelConnectionTask``.
        num_trials: repeat the combination this many times (different seeds) and report
            the mean metric; ``None`` runs it once.
        **kwargs: :class:`BaseAgent` arguments.
    """

    def __init__(
        self,
        differentiable: str | None = None,
        diff_pretrain: bool = False,
        diff_task_args: dict[str, Any] | None = None,
        num_trials: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if differentiable is not None and differentiable not in DIFFERENTIABLE:
            raise ValueError(
                f"differentiable={differentiable!r} is not supported; allowed: None or "
                f"{', '.join(map(repr, DIFFERENTIABLE))}"
            )
        if num_trials is not None and (
            not isinstance(num_trials, int) or isinstance(num_trials, bool) or num_trials < 1
        ):
            raise ValueError(f"num_trials={num_trials!r}: expected a positive int or None")
        self._differentiable = differentiable
        self._diff_pretrain = diff_pretrain
        self._diff_task_args = dict(diff_task_args or {})
        self._num_trials = num_trials
        self._seed = 0
        self._result: dict[str, Any] | None = None
        self._runners: dict[str | None, CombinationRunner] = {}
        self.cache_size = 8
        """Prefix-cache entries (0 turns prefix reuse off)."""
        self.device: str | None = None
        """Device for combinations run in this process: replaces the ``'auto'``/``'cuda'``
        device of PyTorch tasks (``None``: tasks keep their own). Worker slots set their own."""

    @property
    def seed(self) -> int:
        """Agent seed: every step's RNG seed derives from it (and the step's prefix).

        SequentialAgent takes no ``seed`` argument (the seed API); set this attribute to
        change it (default 0). Search agents set it from their ``seed`` argument.
        """
        return self._seed

    @seed.setter
    def seed(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"seed={seed!r}: expected an int")
        self._seed = int(seed)
        self._runners.clear()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_runners"] = {}  # caches stay in the process that filled them
        return state

    @property
    def result(self) -> dict[str, Any] | None:
        """Result dict of the executed combination (SPEC §6)."""
        return self._result

    def make_runner(self, device: str | None = None) -> CombinationRunner:
        """A runner bound to this agent's store, saver, metric, seed and tracker."""
        return CombinationRunner(
            self._storegate,
            self._saver,
            self._metric,
            seed=self._seed,
            cache_size=self.cache_size,
            device=device,
            tracker=self._tracker,
        )

    def runner_for(self, device: str | None) -> CombinationRunner:
        """This process's runner for a slot device (created on first use, then reused so
        its prefix cache carries over between combinations)."""
        if device not in self._runners:
            self._runners[device] = self.make_runner(device)
        return self._runners[device]

    @property
    def runner(self) -> CombinationRunner:
        """This process's runner (on :attr:`device`)."""
        return self.runner_for(self.device)

    def connection_spec(self) -> ConnectionSpec | None:
        """How steps are connected (None: executed step by step)."""
        if self._differentiable is None:
            return None
        return ConnectionSpec(
            pretrain=self._diff_pretrain,
            task_args=self._diff_task_args,
            framework=self._differentiable,
        )

    def execute(self) -> None:
        """Run the single combination (every trial)."""
        count = len(self._task_scheduler)
        if count != 1:
            raise ValueError(
                f"SequentialAgent runs exactly one combination, but the task scheduler defines "
                f"{count} (a step has several subtasks or a hyperparameter has several "
                "values); use GridSearchAgent or RandomSearchAgent to search them"
            )
        self._result = self.execute_subtasktuples(self._task_scheduler[0], 0)

    def finalize(self) -> None:
        """Log the result table and store ``saver['result']``."""
        if self._result is None:
            raise RuntimeError(f"{type(self).__name__}.finalize(): call execute() first")
        table = result_table([self._result], self._metric.name, self._result["job_id"])
        logger.info("result:\n%s", table)
        self._saver["result"] = self._result
        if self._tracker is not None:
            self._tracker.close()

    def execute_subtasktuples(self, subtasktuples: list[Any], counter: int) -> dict[str, Any]:
        """Run one combination with every trial; return its (trial-averaged) result."""
        return self.runner.run(subtasktuples, counter, self._num_trials, self.connection_spec())

    def execute_pipeline(
        self, subtasktuples: list[Any], counter: int, trial: int | None = None
    ) -> dict[str, Any]:
        """Run the steps of a combination one after the other (one trial)."""
        return self.runner.run_trial(subtasktuples, counter, trial, None)

    def execute_differentiable(
        self, subtasktuples: list[Any], counter: int, trial: int | None = None
    ) -> dict[str, Any]:
        """Run a combination connected into one model (one trial)."""
        spec = self.connection_spec() or ConnectionSpec(
            pretrain=self._diff_pretrain, task_args=self._diff_task_args
        )
        return self.runner.run_trial(subtasktuples, counter, trial, spec)
