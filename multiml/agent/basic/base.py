"""BaseAgent: owns the StoreGate, Saver, TaskScheduler and metric of a search."""

from __future__ import annotations

import logging
import os
from typing import Any

from multiml.agent.metric import BaseMetric, ZeroMetric, get_metric
from multiml.agent.runner import Tracker

logger = logging.getLogger(__name__)


class Agent:
    """The smallest agent interface: ``execute()``, ``finalize()``."""

    def execute(self) -> None:
        """Run the search."""
        raise NotImplementedError(f"{type(self).__name__} must implement execute()")

    def finalize(self) -> None:
        """Report and store results."""

    def execute_finalize(self) -> None:
        """``execute()`` then ``finalize()``."""
        self.execute()
        self.finalize()


class BaseAgent(Agent):
    """Base class of agents.

    Args:
        saver: a :class:`~multiml.saver.Saver`, or a directory (``str`` or path-like; a
            Saver is created there);
            ``None`` creates a default Saver.
        storegate: a :class:`~multiml.storegate.StoreGate`, or a dict of its constructor
            arguments.
        task_scheduler: a :class:`~multiml.task_scheduler.TaskScheduler`, or the list
            shortcut it accepts (ordered steps).
        metric: a metric instance, or a name looked up in :mod:`multiml.agent.metric`
            (case-insensitive: ``'acc'``, ``'ACC'``); ``None`` means :class:`ZeroMetric`.
        metric_args: constructor arguments when ``metric`` is a name.
    """

    def __init__(
        self,
        saver: Any = None,
        storegate: Any = None,
        task_scheduler: Any = None,
        metric: str | BaseMetric | None = None,
        metric_args: dict[str, Any] | None = None,
    ) -> None:
        from multiml.saver import Saver
        from multiml.storegate import StoreGate
        from multiml.task_scheduler import TaskScheduler

        if saver is None or isinstance(saver, str | os.PathLike):
            saver = Saver(save_dir=saver)
        if isinstance(storegate, dict):
            storegate = StoreGate(**storegate)
        if task_scheduler is None or isinstance(task_scheduler, list):
            task_scheduler = TaskScheduler(task_scheduler)
        if metric_args and not isinstance(metric, str):
            raise ValueError(
                f"metric_args={metric_args} only applies when metric is a name; got {metric!r}"
            )
        if metric is None:
            metric = ZeroMetric()
        elif isinstance(metric, str):
            metric = get_metric(metric, **(metric_args or {}))
        elif not isinstance(metric, BaseMetric):
            raise TypeError(f"metric={metric!r}: expected a metric name or a BaseMetric instance")
        self._saver = saver
        self._storegate = storegate
        self._task_scheduler = task_scheduler
        self._metric = metric
        self._tracker: Tracker | None = None
        if storegate is not None:
            metric.storegate = storegate

    @property
    def storegate(self) -> Any:
        """The StoreGate."""
        return self._storegate

    @property
    def saver(self) -> Any:
        """The Saver."""
        return self._saver

    @property
    def task_scheduler(self) -> Any:
        """The TaskScheduler."""
        return self._task_scheduler

    @property
    def metric(self) -> BaseMetric:
        """The metric."""
        return self._metric

    @property
    def tracker(self) -> Tracker | None:
        """Receives per-epoch histories and results (e.g. a TensorBoard tracker)."""
        return self._tracker

    @tracker.setter
    def tracker(self, tracker: Tracker | None) -> None:
        self._tracker = tracker
