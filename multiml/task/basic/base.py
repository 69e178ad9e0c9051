"""BaseTask: the smallest unit an agent executes.

A task is one candidate model (a *subtask*) of one step (a *task*) of a multi-step
problem. Agents configure it with :meth:`BaseTask.set_hps`, run it with
:meth:`BaseTask.execute` and close it with :meth:`BaseTask.finalize`. Data come from and
go to a :class:`~multiml.storegate.StoreGate`; results go to a :class:`~multiml.saver.Saver`.

>>> class Doubler(BaseTask):
...     def __init__(self, factor=2, **kwargs):
...         super().__init__(**kwargs)
...         self._factor = factor
...     def execute(self):
...         return self._factor * 21
>>> task = Doubler()
>>> task.set_hps({'factor': 2})
{'factor': 2}
>>> task.execute()
42
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiml.saver import Saver
    from multiml.storegate import StoreGate

logger = logging.getLogger(__name__)

SAVER_REF_PREFIX = "saver__"


class BaseTask:
    """Base class of every task.

    Args:
        saver: where results and weights go.
        input_saver_key: Saver key a task may read its inputs from.
        output_saver_key: Saver key a task may write its outputs to.
        storegate: where data come from and predictions go.
        data_id: the StoreGate dataset this task works on (selected when the storegate is
            attached).
        name: a readable name; defaults to the class name. It is the default subtask id
            when the task is added to a TaskScheduler.
    """

    _state_attrs: frozenset[str] = frozenset(
        {
            "_saver",
            "_storegate",
            "_task_id",
            "_subtask_id",
            "_job_id",
            "_trial_id",
            "_hps_originals",
            "_resolved_hps",
        }
    )
    """Private attributes that hold bookkeeping state, not hyperparameters (subclasses
    extend it), so :meth:`set_hps` refuses them."""

    def __init__(
        self,
        saver: Saver | None = None,
        input_saver_key: str = "tmpkey",
        output_saver_key: str = "tmpkey",
        storegate: StoreGate | None = None,
        data_id: str | None = None,
        name: str | None = None,
    ) -> None:
        self._saver = saver
        self._input_saver_key = input_saver_key
        self._output_saver_key = output_saver_key
        self._data_id = data_id
        self._name = name
        self._task_id: str | None = None
        self._subtask_id: str | None = None
        self._job_id: int | None = None
        self._trial_id: int | None = None
        self._hps_originals: dict[str, Any] = {}
        self._resolved_hps: dict[str, Any] = {}
        self._storegate: StoreGate | None = None
        self.storegate = storegate

    def __repr__(self) -> str:
        ids = f"task_id={self._task_id!r}, subtask_id={self._subtask_id!r}"
        return f"{type(self).__name__}(name={self.name!r}, {ids})"

    # ------------------------------------------------------------------ ids
    @property
    def name(self) -> str:
        """Readable name: the ``name`` argument, else the class name."""
        return self._name if self._name is not None else type(self).__name__

    @property
    def task_id(self) -> str | None:
        """Id of the step this task belongs to (set by the TaskScheduler)."""
        return self._task_id

    @task_id.setter
    def task_id(self, value: str | None) -> None:
        self._task_id = value

    @property
    def subtask_id(self) -> str | None:
        """Id of this candidate within its step (set by the TaskScheduler)."""
        return self._subtask_id

    @subtask_id.setter
    def subtask_id(self, value: str | None) -> None:
        self._subtask_id = value

    @property
    def job_id(self) -> int | None:
        """Id of the combination being executed (set by the agent)."""
        return self._job_id

    @job_id.setter
    def job_id(self, value: int | None) -> None:
        self._job_id = value

    @property
    def trial_id(self) -> int | None:
        """Trial number when the agent repeats a combination (set by the agent)."""
        return self._trial_id

    @trial_id.setter
    def trial_id(self, value: int | None) -> None:
        self._trial_id = value

    def get_unique_id(self) -> str:
        """A readable id unique to this task, combination and trial.

        >>> t = BaseTask(); t.task_id, t.subtask_id, t.job_id = 'step0', 'mlp', 3
        >>> t.get_unique_id()
        'step0_mlp_job3'
        """
        parts = [self._task_id or "task", self._subtask_id or self.name]
        if self._job_id is not None:
            parts.append(f"job{self._job_id}")
        if self._trial_id is not None:
            parts.append(f"trial{self._trial_id}")
        return "_".join(str(p) for p in parts)

    # ------------------------------------------------------------ resources
    @property
    def storegate(self) -> StoreGate | None:
        """The StoreGate; attaching one selects this task's ``data_id`` on it."""
        return self._storegate

    @storegate.setter
    def storegate(self, storegate: StoreGate | None) -> None:
        self._storegate = storegate
        if storegate is not None and self._data_id is not None:
            storegate.set_data_id(self._data_id)

    @property
    def saver(self) -> Saver | None:
        """The Saver results and weights go to."""
        return self._saver

    @saver.setter
    def saver(self, saver: Saver | None) -> None:
        self._saver = saver

    # ------------------------------------------------------ hyperparameters
    def hyperparameter_names(self) -> list[str]:
        """Names :meth:`set_hps` accepts (``x`` for every attribute ``self._x``)."""
        return sorted(
            key[1:]
            for key in vars(self)
            if key.startswith("_") and not key.startswith("__") and key not in self._state_attrs
        )

    def set_hps(self, params: dict[str, Any]) -> dict[str, Any]:
        """Set hyperparameters and return them with Saver references resolved.

        Each key names an existing attribute (``'num_epochs'`` sets ``self._num_epochs``);
        subclasses may route compound keys (see :class:`MLBaseTask`). A string value
        ``'saver__KEY__SUB'`` is replaced by ``saver[KEY][SUB]`` at this moment. Every key and
        value is checked before anything is set, so a bad call changes nothing. Dict and
        list values are copied: routing a later ``model__x`` never mutates the caller's dict.

        Raises:
            KeyError: a key names no hyperparameter of this task, or a Saver reference names
                a missing Saver key or entry.
            ValueError: a malformed Saver reference, no saver attached, or a value the
                attribute does not accept.
        """
        for key in params:
            if not isinstance(key, str):
                raise KeyError(f"{self.name}: hyperparameter names are strings; got {key!r}")
        targets = {key: self._hp_target(key) for key in params}
        values = {}
        resolved = {}
        for key, (attr, sub) in targets.items():
            resolved[key] = self._resolve_value(key, params[key])
            values[key] = self._convert_hp(key, attr, sub, resolved[key])
        for key, (attr, sub) in targets.items():
            self._remember_original(attr, sub)
            if sub is None:
                setattr(self, attr, values[key])
            else:
                getattr(self, attr)[sub] = values[key]
        self._resolved_hps.update(resolved)
        return dict(resolved)

    def reset_hps(self) -> None:
        """Undo every :meth:`set_hps` since construction (or since the last reset)."""
        for attr, original in self._hps_originals.items():
            setattr(self, attr, original)
        self._hps_originals.clear()
        self._resolved_hps.clear()

    @property
    def resolved_hps(self) -> dict[str, Any]:
        """Hyperparameters set since the last reset, Saver references resolved."""
        return dict(self._resolved_hps)

    def _hp_target(self, key: str) -> tuple[str, str | None]:
        """Map a hyperparameter key to ``(attribute, dict key or None)``."""
        attr = f"_{key}"
        settable = hasattr(self, attr) and attr not in self._state_attrs
        if key and not key.startswith("_") and settable:
            return attr, None
        allowed = ", ".join(self.hyperparameter_names())
        raise KeyError(
            f"{self.name}: unknown hyperparameter {key!r}; allowed: {allowed}" + self._hp_key_hint()
        )

    def _hp_key_hint(self) -> str:
        return ""

    def _convert_hp(self, key: str, attr: str, sub: str | None, value: Any) -> Any:
        """The value to store for ``key`` (validated; raise to refuse it).

        Subclasses normalise their own attributes here, before anything is set.
        """
        if isinstance(value, dict | list):
            return copy.copy(value)
        return value

    def _remember_original(self, attr: str, sub: str | None) -> None:
        if attr in self._hps_originals:
            return
        value = getattr(self, attr)
        # A routed key changes a dict in place: keep a copy of the dict as it was.
        self._hps_originals[attr] = copy.copy(value) if sub is not None else value

    def _resolve_value(self, key: str, value: Any) -> Any:
        if not (isinstance(value, str) and value.startswith(SAVER_REF_PREFIX)):
            return value
        parts = value.split("__", 2)
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise ValueError(
                f"{self.name}: hyperparameter {key!r} = {value!r} is not a valid Saver "
                "reference; expected 'saver__KEY__SUB' (resolved as saver[KEY][SUB])"
            )
        if self._saver is None:
            raise ValueError(
                f"{self.name}: hyperparameter {key!r} = {value!r} refers to the Saver, "
                "but this task has no saver attached"
            )
        _, saver_key, sub = parts
        try:
            entry = self._saver[saver_key]
        except KeyError:
            raise KeyError(
                f"{self.name}: hyperparameter {key!r} = {value!r}: Saver has no key "
                f"{saver_key!r}; available: {sorted(self._saver.keys())}"
            ) from None
        try:
            return entry[sub]
        except (KeyError, IndexError, TypeError):
            available = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise KeyError(
                f"{self.name}: hyperparameter {key!r} = {value!r}: saver[{saver_key!r}] has "
                f"no entry {sub!r}; available: {available}"
            ) from None

    # ------------------------------------------------------------ lifecycle
    def execute(self) -> Any:
        """Run the task. Subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement execute()")

    def finalize(self) -> None:
        """Release resources after execution (nothing by default)."""
