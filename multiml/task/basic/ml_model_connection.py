"""ModelConnectionTask: connect trained steps into one model and train it end to end.

Outputs of earlier subtasks feed later inputs by variable name; inputs nobody produces
come from the StoreGate::

    (x0, x1)          x2
       |               |
    [subtask0]         |
       |               |
     (mid) ----+-------+
               |
           [subtask1]
               |
            (pred)

    input_var_names  = ['x0'-or-('x0','x1') as subtask0 reads them, 'x2']
    output_var_names = ['mid', 'pred']       (every subtask output)
    true_var_names   = [subtask0's, subtask1's]

``variable_mapping=[(from, to), ...]`` renames subtask *inputs* before wiring: a subtask
pre-trained on the true intermediate ``'mid_true'`` is connected to the predicted
``'mid'`` with ``variable_mapping=[('mid_true', 'mid')]``.

Loss weights: ``None`` or ``'last_loss'`` — only the last subtask's loss; ``'flat_loss'`` —
every subtask with weight 1; a list (one weight per subtask); a dict keyed by task_id
(subtasks not named get 0).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from multiml.task.basic.ml_base import MLBaseTask, VarNames, flatten_var_names

logger = logging.getLogger(__name__)

LOSS_WEIGHT_MODES = ("last_loss", "flat_loss")


class ModelConnectionTask(MLBaseTask):
    """Connect ≥ 2 subtasks (framework-agnostic wiring; see the module docstring).

    Args:
        subtasks: the subtasks in execution order (each an :class:`MLBaseTask`).
        loss_weights: ``None``/``'last_loss'``, ``'flat_loss'``, a list or a dict.
        variable_mapping: ``[(from, to), ...]`` input renames applied before wiring.
        **kwargs: :class:`MLBaseTask` arguments (optimizer, num_epochs, ...). Variable names
            are derived from the subtasks and must not be given.
    """

    # Variable names are derived from the subtasks on every compile, never set directly.
    _state_attrs = MLBaseTask._state_attrs | {
        "_subtasks",
        "_input_var_index",
        "_num_outputs",
        "_input_var_names",
        "_output_var_names",
        "_true_var_names",
    }

    def __init__(
        self,
        subtasks: Sequence[MLBaseTask],
        loss_weights: str | list[float] | dict[str, float] | None = None,
        variable_mapping: Sequence[tuple[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        for key in ("input_var_names", "output_var_names", "true_var_names", "var_names"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"ModelConnectionTask derives {key} from its subtasks; do not pass {key}"
                )
        super().__init__(loss_weights=loss_weights, **kwargs)
        subtasks = list(subtasks)
        if len(subtasks) < 2:
            raise ValueError(f"ModelConnectionTask needs at least 2 subtasks, got {len(subtasks)}")
        self._subtasks = subtasks
        self._variable_mapping = _check_mapping(variable_mapping)
        self._input_var_index: list[Any] = []
        self._num_outputs: list[int] = []
        self.compile_index()

    def _convert_hp(self, key: str, attr: str, sub: str | None, value: Any) -> Any:
        if attr == "_variable_mapping" and sub is None:
            return _check_mapping(value)
        return super()._convert_hp(key, attr, sub, value)

    @property
    def subtasks(self) -> list[MLBaseTask]:
        """The connected subtasks, in execution order."""
        return self._subtasks

    # --------------------------------------------------------------- wiring
    def _map(self, name: VarNames) -> VarNames:
        mapping = dict(self._variable_mapping)
        if isinstance(name, str):
            return mapping.get(name, name)
        if isinstance(name, tuple):
            return tuple(mapping.get(n, n) for n in name)
        if isinstance(name, list):
            return [self._map(n) for n in name]
        return name

    def compile_index(self) -> None:
        """Derive external inputs, outputs, targets and the pool indices of every subtask."""
        externals: list[Any] = []  # slot keys read from the store: str or tuple of str
        produced: list[Any] = []  # slot keys of outputs, pool position = len(externals) + i
        wiring: list[Any] = []  # per subtask: its input spec as slot references

        def slot(key: Any) -> tuple[str, int]:
            if key in produced:
                return ("out", produced.index(key))
            if key not in externals:
                externals.append(key)
            return ("ext", externals.index(key))

        def resolve(spec: VarNames, who: MLBaseTask) -> Any:
            if isinstance(spec, str):
                return slot(spec)
            if isinstance(spec, tuple):
                if spec in produced or not any(name in produced for name in spec):
                    return slot(spec)  # one produced tensor, or stacked by the StoreGate
                return ("stack", [slot(name) for name in spec])
            if isinstance(spec, list):
                return [resolve(item, who) for item in spec]
            raise ValueError(f"{who.name}: input_var_names is not set; it cannot be connected")

        output_names: list[str] = []
        num_outputs: list[int] = []
        true_names: list[VarNames] = []
        for subtask in self._subtasks:
            wiring.append(resolve(self._map(subtask.input_var_names), subtask))
            outputs = subtask.output_var_names
            if outputs is None:
                raise ValueError(
                    f"{subtask.name}: output_var_names is not set; it cannot be connected"
                )
            slots = outputs if isinstance(outputs, list) else [outputs]
            produced.extend(slots)
            num_outputs.append(len(slots) if isinstance(outputs, list) else 1)
            output_names.extend(flatten_var_names(outputs))
            true_names.append(subtask.true_var_names)

        offset = len(externals)

        def to_pool(ref: Any) -> Any:
            if isinstance(ref, list):
                return [to_pool(r) for r in ref]
            kind, value = ref
            if kind == "ext":
                return value
            if kind == "out":
                return offset + value
            return tuple(to_pool(part) for part in value)

        self._input_var_index = [to_pool(ref) for ref in wiring]
        self._input_var_names = list(externals)
        self._output_var_names = output_names
        self._num_outputs = num_outputs
        self._true_var_names = true_names
        logger.debug(
            "connection inputs %s outputs %s index %s",
            self._input_var_names,
            self._output_var_names,
            self._input_var_index,
        )

    def compile(self) -> None:
        """Re-derive the wiring (subtask variable names may have changed), then compile."""
        self.compile_index()
        super().compile()

    # ---------------------------------------------------------------- losses
    def resolve_loss_weights(self) -> list[float]:
        """One weight per subtask from the ``loss_weights`` setting."""
        spec, n = self._loss_weights, len(self._subtasks)
        if spec is None or spec == "last_loss":
            return [0.0] * (n - 1) + [1.0]
        if spec == "flat_loss":
            return [1.0] * n
        if isinstance(spec, list | tuple):
            if len(spec) != n:
                raise ValueError(
                    f"loss_weights={list(spec)} has {len(spec)} entries for {n} subtasks"
                )
            return [float(w) for w in spec]
        if isinstance(spec, dict):
            task_ids = [s.task_id for s in self._subtasks]
            unknown = [k for k in spec if k not in task_ids]
            if unknown:
                raise ValueError(f"loss_weights keys {unknown} are not task ids; known: {task_ids}")
            return [float(spec.get(task_id, 0.0)) for task_id in task_ids]
        raise ValueError(
            f"loss_weights={spec!r}: expected None, {LOSS_WEIGHT_MODES}, a list with one weight "
            "per subtask, or a dict keyed by task_id"
        )

    # ------------------------------------------------------------------ data
    def get_input_true_data(self, phase: str) -> tuple[list[Any], list[Any]]:
        """External inputs (one array per slot) and the targets of weighted subtasks."""
        inputs = self.read_vars(self._input_var_names, phase)
        weights = self.resolve_loss_weights()
        trues = [
            self.read_vars(sub.true_var_names, phase) if weight else None
            for sub, weight in zip(self._subtasks, weights, strict=True)
        ]
        return inputs, trues

    def _describe(self) -> str:
        return f"connected steps {[s.task_id for s in self._subtasks]}"

    def _needed_vars(self, phase: str) -> list[str]:
        """External inputs, plus the targets of weighted subtasks in the fitting phases."""
        needed = flatten_var_names(self._input_var_names)
        if phase in self._fit_phases():
            weights = self.resolve_loss_weights()
            for sub, weight in zip(self._subtasks, weights, strict=True):
                if weight:
                    needed += flatten_var_names(sub.true_var_names)
        return needed

    def predict_update(self, phases: Sequence[str] | None = None) -> None:
        """Predict each phase and write every subtask's outputs to its own variables."""
        predictions = {
            phase: self.predict(phase=phase) for phase in phases or self._present_phases()
        }
        for phase, preds in predictions.items():
            for subtask, pred in zip(self._subtasks, preds, strict=True):
                self._storegate.update_data(
                    subtask.output_var_names, pred, phase=phase, do_compile=False
                )
        self._storegate.compile()


def _check_mapping(mapping: Sequence[Sequence[str]] | None) -> list[tuple[str, str]]:
    """Validate ``variable_mapping`` and return it as a list of ``(from, to)`` tuples."""
    pairs = []
    for pair in mapping or []:
        if (
            isinstance(pair, str)
            or not isinstance(pair, Sequence)
            or len(pair) != 2
            or not all(isinstance(name, str) for name in pair)
        ):
            raise ValueError(
                f"variable_mapping entry {pair!r} is not a (from, to) pair of variable names"
            )
        pairs.append((pair[0], pair[1]))
    return pairs
