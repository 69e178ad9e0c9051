"""TensorBoard logging of a search: per-epoch curves, final metrics and HParams.

One TensorBoard *run* per combination (``job0003``, with trials ``job0003_trial1``) under
the log directory:

- scalars ``<task_id>/<subtask_id>/<phase>/<metric>`` per epoch (``train``/``valid`` loss,
  accuracy, learning rate ... — whatever the task's ``fit()`` history holds);
- scalar ``metric/<name>``: the combination's final metric;
- an HParams session per combination: each step's subtask id (``<task_id>``) and resolved
  hyperparameters (``<task_id>/<name>``), so the HParams dashboard compares combinations
  side by side with their ``metric/<name>`` (and final per-epoch values) as metric columns.

No run writes an HParams *experiment* summary: TensorBoard uses the first one it finds and
ignores the others, so per-combination experiments would hide the hyperparameters of every
combination but one (a ``linear`` subtask without ``optimizer__lr`` would drop that column
for all), and one experiment per search would hide other searches under the same
``--logdir``. Without one, TensorBoard builds the table from every session it finds: all
hyperparameters of all combinations, of every run directory below the log directory.

>>> tracker = TensorBoardTracker('outputs/run/tensorboard')  # doctest: +SKIP
>>> agent.tracker = tracker                                  # doctest: +SKIP

Then ``tensorboard --logdir outputs/``. The tracker pickles (worker processes open their
own writers); each run's writer is closed when its result is logged.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from multiml.agent.runner import Tracker

logger = logging.getLogger(__name__)


class TensorBoardTracker(Tracker):
    """Write TensorBoard event files for every combination under ``logdir``."""

    def __init__(self, logdir: str | os.PathLike[str]) -> None:
        self.logdir = os.fspath(logdir)
        self._writers: dict[str, Any] = {}
        self._hparams: dict[str, dict[str, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"logdir": self.logdir, "_writers": {}, "_hparams": {}}

    def _writer(self, run: str) -> Any:
        writer = self._writers.get(run)
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=os.path.join(self.logdir, run))
            self._writers[run] = writer
        return writer

    def log_step(
        self, run: str, task_id: str, subtask_id: str, history: Any, resolved_hps: dict[str, Any]
    ) -> None:
        """Per-epoch scalars of a step's ``fit()`` history."""
        if not isinstance(history, dict):
            return
        writer = self._writer(run)
        for phase, epochs in history.items():
            for epoch, values in enumerate(epochs or [], start=1):
                for name, value in (values or {}).items():
                    for tag, number in _scalars(f"{task_id}/{subtask_id}/{phase}/{name}", value):
                        writer.add_scalar(tag, number, epoch)

    def log_result(self, run: str, result: dict[str, Any], metric_name: str) -> None:
        """Final metric and HParams session of a combination; closes its writers."""
        from torch.utils.tensorboard.summary import hparams

        writer = self._writer(run)
        value = float(result["metric_value"])
        metric_tag = f"metric/{metric_name}"
        writer.add_scalar(metric_tag, value, 0)
        hp_dict: dict[str, Any] = {}
        for task_id, subtask_id, hps in zip(
            result["task_ids"], result["subtask_ids"], result["subtask_hps"], strict=True
        ):
            hp_dict[task_id] = str(subtask_id)
            for name, hp_value in hps.items():
                hp_dict[f"{task_id}/{name}"] = _hparam_value(hp_value)
        _, start, end = hparams(hp_dict, {metric_tag: value})
        for summary in (start, end):  # no experiment summary: see the module docstring
            writer.file_writer.add_summary(summary)
        self._close_run(run)

    def _close_run(self, run: str) -> None:
        for name in [n for n in self._writers if n == run or n.startswith(f"{run}_trial")]:
            self._writers.pop(name).close()

    def close(self) -> None:
        """Flush and close every open writer."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def _scalars(tag: str, value: Any) -> list[tuple[str, float]]:
    """Scalar entries of a history value (lists, e.g. sub-losses, get one tag each)."""
    if isinstance(value, list | tuple):
        return [
            item
            for i, sub in enumerate(value)
            if sub is not None
            for item in _scalars(f"{tag}/{i}", sub)
        ]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return []
    return [(tag, float(value))]


def _hparam_value(value: Any) -> Any:
    """HParams accept bool, int, float and str; anything else is shown as text."""
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)
