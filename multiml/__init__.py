"""multiml: multi-step machine learning.

A problem is split into steps with known intermediate targets; each step has candidate
models (subtasks) with hyperparameter grids; an agent searches the combinations, step by
step or with the steps connected into one differentiable model.

>>> from multiml import StoreGate, TaskScheduler
>>> sg = StoreGate()                                   # doctest: +SKIP

The names below are imported lazily so that ``import multiml`` (and ``python -m multiml
--help``) stays cheap: nothing here imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "StoreGate": "multiml.storegate",
    "Saver": "multiml.saver",
    "TaskScheduler": "multiml.task_scheduler",
    "Hyperparameters": "multiml.hyperparameter",
    "Hyperparameter": "multiml.hyperparameter",
}

__all__ = [
    "Hyperparameter",
    "Hyperparameters",
    "Saver",
    "StoreGate",
    "TaskScheduler",
    "__version__",
]

if TYPE_CHECKING:
    from multiml.hyperparameter import Hyperparameter, Hyperparameters
    from multiml.saver import Saver
    from multiml.storegate import StoreGate
    from multiml.task_scheduler import TaskScheduler


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'multiml' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
