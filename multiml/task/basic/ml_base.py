"""MLBaseTask: a task that trains a model on StoreGate data and writes predictions back.

``execute()`` runs compile → fit (when ``'train'`` is in ``phases``) → dump weights (when
``save_weights``) → predict every phase and write ``output_var_names`` back to the
StoreGate (when ``'test'`` is in ``phases``). Framework subclasses implement
:meth:`MLBaseTask.fit` and :meth:`MLBaseTask.predict` and the ``compile_*`` hooks.

Hyperparameter keys follow scikit-learn's ``step__param`` routing: ``model__k`` sets
``model_args['k']``, likewise ``optimizer__``, ``scheduler__``, ``loss__`` (and any other
``X__`` for which the task has an ``X_args`` dict).

>>> task = MLBaseTask(var_names='x pred label', model_args={'layers': [4, 2]})
>>> task.input_var_names, task.output_var_names, task.true_var_names
('x', 'pred', 'label')
>>> task.set_hps({'model__layers': [4, 8, 2], 'num_epochs': 3})
{'model__layers': [4, 8, 2], 'num_epochs': 3}
>>> task.model_args
{'layers': [4, 8, 2]}
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from multiml import const
from multiml.task.basic.base import BaseTask

logger = logging.getLogger(__name__)

VarNames = str | tuple[str, ...] | list[str] | None

# Attributes holding var-names entries (normalised with parse_var_names when set).
_VAR_NAME_ATTRS = frozenset(
    {
        "_input_var_names",
        "_output_var_names",
        "_save_var_names",
        "_pred_var_names",
        "_true_var_names",
    }
)


def parse_var_names(spec: VarNames) -> VarNames:
    """Normalise one var-names entry: ``'a,b'`` becomes ``['a', 'b']``; others pass."""
    if isinstance(spec, str) and "," in spec:
        return [name.strip() for name in spec.split(",") if name.strip()]
    if isinstance(spec, list | tuple):
        return type(spec)(spec)
    return spec


def flatten_var_names(spec: VarNames) -> list[str]:
    """Every variable name in a str / tuple / list var-names entry, in order."""
    if spec is None:
        return []
    if isinstance(spec, str):
        return [spec]
    names: list[str] = []
    for item in spec:
        names.extend(flatten_var_names(item))
    return names


def read_vars(storegate: Any, var_names: VarNames, phase: str, index: Any = -1) -> Any:
    """Read a var-names entry from a StoreGate, following its shape convention.

    A list may hold tuples (each stacked on axis 1) besides plain names: every list item is
    read on its own, so ``['x', ('a', 'b')]`` gives ``[x, stacked a/b]``.
    """
    if isinstance(var_names, list):
        return [read_vars(storegate, item, phase, index) for item in var_names]
    return storegate.get_data(var_names, phase, index)


def check_int(name: str, value: Any, minimum: int, optional: bool = False) -> int | None:
    """``value`` as an int >= ``minimum`` (None allowed when ``optional``).

    Raises:
        ValueError: naming the argument, the value and what is allowed.
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        allowed = f"an int >= {minimum}" + (" or None" if optional else "")
        raise ValueError(f"{name}={value!r}: expected {allowed}")
    if value < minimum:
        raise ValueError(f"{name}={value!r}: expected an int >= {minimum}")
    return value


def check_batch_size(value: Any) -> int | dict[str, Any]:
    """Validate a batch-size spec: an int >= 1, a per-phase dict (``train``/``valid``/
    ``test``/``default`` → int >= 1) or ``{'type': 'equal_length', 'length': L}``."""
    allowed = (
        "an int >= 1, a per-phase dict ({'train': 64, 'test': 256, 'default': 128}) or "
        "{'type': 'equal_length', 'length': L}"
    )
    if isinstance(value, dict):
        if "type" in value:
            if value.get("type") != "equal_length" or set(value) != {"type", "length"}:
                raise ValueError(f"batch_size={value!r}: expected {allowed}")
            check_int("batch_size['length']", value["length"], 1)
            return dict(value)
        unknown = [key for key in value if key not in (*const.PHASES, "default")]
        if unknown:
            raise ValueError(f"batch_size={value!r}: unknown keys {unknown}; expected {allowed}")
        for key, size in value.items():
            check_int(f"batch_size[{key!r}]", size, 1)
        return dict(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"batch_size={value!r}: expected {allowed}")
    return value


def check_verbose(value: Any) -> int | None:
    """``None``, 0, 1 or 2."""
    if value is None or (
        isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, 2)
    ):
        return value
    raise ValueError(f"verbose={value!r}: expected None, 0, 1 or 2")


def check_metrics(value: Any) -> list[Any]:
    """A list of metric names / callables (a single name is a one-element list)."""
    if isinstance(value, str) or callable(value):
        return [value]
    if isinstance(value, list | tuple):
        return list(value)
    raise ValueError(f"metrics={value!r}: expected a list of metric names or callables")


@dataclass
class MLEnv:
    """The compiled objects of an ML task (filled by the ``compile_*`` hooks)."""

    model: Any = None
    optimizer: Any = None
    scheduler: Any = None
    loss: Any = None
    loss_weights: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    def clear(self) -> None:
        """Forget every compiled object."""
        self.model = self.optimizer = self.scheduler = self.loss = self.loss_weights = None
        self.extras.clear()


class MLBaseTask(BaseTask):
    """Base class of tasks that fit a model and predict.

    Args:
        phases: phases this task runs, a subset of ``['train', 'valid', 'test']``
            (default all three). ``'train'`` enables fitting (``'valid'`` enables
            validation during fitting), ``'test'`` enables prediction + write-back.
        input_var_names: StoreGate variables fed to the model (str, tuple = stacked on
            axis 1, list = several inputs).
        output_var_names: names under which predictions are written back.
        save_var_names: subset of ``output_var_names`` to write back (default: all).
        pred_var_names: subset of ``output_var_names`` compared with ``true_var_names``
            by the loss (default: all outputs).
        true_var_names: StoreGate variables holding the targets.
        var_names: shortcut ``'input output true'`` (whitespace-separated; ``a,b`` gives a
            list).
        model, model_args: the model (a name, a class or an instance) and its arguments.
        optimizer, optimizer_args, scheduler, scheduler_args, loss, loss_args: likewise.
        max_patience: early-stopping patience in epochs on the validation loss (None:
            no early stopping).
        loss_weights: weights of several losses (framework specific).
        load_weights: load weights before training: ``True`` (this task's unique id) or a
            Saver key.
        save_weights: dump weights after training: ``True`` (this task's unique id) or a
            Saver key.
        metrics: per-epoch metrics (names or callables); default ``['loss']``.
        num_epochs: training epochs.
        batch_size: an int, a per-phase dict, or ``{'type': 'equal_length', 'length': L}``.
        num_workers: data-loading worker processes (framework specific).
        verbose: ``None`` (progress bars when the logger is at DEBUG), 0 or 1.
    """

    def __init__(
        self,
        phases: Sequence[str] | None = None,
        input_var_names: VarNames = None,
        output_var_names: VarNames = None,
        save_var_names: VarNames = None,
        pred_var_names: VarNames = None,
        true_var_names: VarNames = None,
        var_names: str | None = None,
        model: Any = None,
        model_args: dict[str, Any] | None = None,
        optimizer: Any = None,
        optimizer_args: dict[str, Any] | None = None,
        scheduler: Any = None,
        scheduler_args: dict[str, Any] | None = None,
        loss: Any = None,
        loss_args: dict[str, Any] | None = None,
        max_patience: int | None = None,
        loss_weights: Any = None,
        load_weights: bool | str = False,
        save_weights: bool | str = False,
        metrics: Sequence[str | Callable[..., Any]] | None = None,
        num_epochs: int = 10,
        batch_size: int | dict[str, Any] = 64,
        num_workers: int = 0,
        verbose: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if var_names is not None:
            given = {
                "input_var_names": input_var_names,
                "output_var_names": output_var_names,
                "true_var_names": true_var_names,
            }
            clash = [name for name, value in given.items() if value is not None]
            if clash:
                raise ValueError(
                    f"var_names={var_names!r} sets input, output and true variables; do not "
                    f"also pass {clash}"
                )
            parts = var_names.split()
            if len(parts) != 3:
                raise ValueError(
                    f"var_names={var_names!r}: expected three whitespace-separated entries "
                    "'input output true' (use 'a,b' inside an entry for several variables)"
                )
            input_var_names, output_var_names, true_var_names = parts
        self._phases = self._check_phases(phases)
        self._input_var_names = parse_var_names(input_var_names)
        self._output_var_names = parse_var_names(output_var_names)
        self._save_var_names = parse_var_names(save_var_names)
        self._pred_var_names = parse_var_names(pred_var_names)
        self._true_var_names = parse_var_names(true_var_names)
        self._model = model
        self._model_args = dict(model_args or {})
        self._optimizer = optimizer
        self._optimizer_args = dict(optimizer_args or {})
        self._scheduler = scheduler
        self._scheduler_args = dict(scheduler_args or {})
        self._loss = loss
        self._loss_args = dict(loss_args or {})
        self._max_patience = max_patience
        self._loss_weights = copy.copy(loss_weights)
        self._load_weights = load_weights
        self._save_weights = save_weights
        self._metrics = list(metrics) if metrics is not None else ["loss"]
        self._num_epochs = num_epochs
        self._batch_size = copy.copy(batch_size)
        self._num_workers = num_workers
        self._verbose = verbose
        self._check_attrs()
        self.ml = MLEnv()
        self.history: dict[str, list[dict[str, float]]] | None = None

    @staticmethod
    def _check_phases(phases: Sequence[str] | None) -> list[str]:
        if phases is None:
            return list(const.PHASES)
        if isinstance(phases, str):
            phases = [phases]
        unknown = [p for p in phases if p not in const.PHASES]
        if unknown:
            raise ValueError(f"phases={list(phases)!r}: unknown {unknown}; allowed: {const.PHASES}")
        return list(phases)

    # ------------------------------------------------------------ var names
    @property
    def phases(self) -> list[str]:
        """Phases this task runs."""
        return self._phases

    @phases.setter
    def phases(self, phases: Sequence[str] | None) -> None:
        self._phases = self._check_phases(phases)

    @property
    def input_var_names(self) -> VarNames:
        """StoreGate variables fed to the model."""
        return self._input_var_names

    @input_var_names.setter
    def input_var_names(self, value: VarNames) -> None:
        self._input_var_names = parse_var_names(value)

    @property
    def output_var_names(self) -> VarNames:
        """Names under which predictions are written back."""
        return self._output_var_names

    @output_var_names.setter
    def output_var_names(self, value: VarNames) -> None:
        self._output_var_names = parse_var_names(value)

    @property
    def save_var_names(self) -> VarNames:
        """Outputs written back to the StoreGate (default: all outputs)."""
        if self._save_var_names is None:
            return self._output_var_names
        return self._save_var_names

    @save_var_names.setter
    def save_var_names(self, value: VarNames) -> None:
        self._save_var_names = parse_var_names(value)

    @property
    def pred_var_names(self) -> VarNames:
        """Outputs compared with the targets (default: all outputs)."""
        if self._pred_var_names is None:
            return self._output_var_names
        return self._pred_var_names

    @pred_var_names.setter
    def pred_var_names(self, value: VarNames) -> None:
        self._pred_var_names = parse_var_names(value)

    @property
    def true_var_names(self) -> VarNames:
        """StoreGate variables holding the targets."""
        return self._true_var_names

    @true_var_names.setter
    def true_var_names(self, value: VarNames) -> None:
        self._true_var_names = parse_var_names(value)

    # --------------------------------------------------- hyperparameter args
    @property
    def model_args(self) -> dict[str, Any]:
        """Keyword arguments of the model."""
        return self._model_args

    @property
    def optimizer_args(self) -> dict[str, Any]:
        """Keyword arguments of the optimizer."""
        return self._optimizer_args

    @property
    def scheduler_args(self) -> dict[str, Any]:
        """Keyword arguments of the learning-rate scheduler."""
        return self._scheduler_args

    @property
    def loss_args(self) -> dict[str, Any]:
        """Keyword arguments of the loss."""
        return self._loss_args

    @property
    def num_epochs(self) -> int:
        """Training epochs."""
        return self._num_epochs

    @property
    def batch_size(self) -> int | dict[str, Any]:
        """Batch size specification."""
        return self._batch_size

    def _hp_target(self, key: str) -> tuple[str, str | None]:
        prefix, sep, sub = key.partition("__")
        if sep and sub and isinstance(getattr(self, f"_{prefix}_args", None), dict):
            return f"_{prefix}_args", sub
        return super()._hp_target(key)

    _HP_CHECKS: dict[str, Callable[[Any], Any]] = {
        "_num_epochs": lambda v: check_int("num_epochs", v, 0),
        "_batch_size": check_batch_size,
        "_max_patience": lambda v: check_int("max_patience", v, 0, optional=True),
        "_num_workers": lambda v: check_int("num_workers", v, 0),
        "_verbose": check_verbose,
        "_metrics": check_metrics,
    }

    def _checked_attrs(self) -> list[str]:
        """Attributes :meth:`_check_hp` validates (checked at construction and set time)."""
        return list(self._HP_CHECKS)

    def _check_attrs(self) -> None:
        """Validate every checked attribute set so far (subclasses call it again after
        setting their own)."""
        for attr in self._checked_attrs():
            if hasattr(self, attr):
                setattr(self, attr, self._check_hp(attr, getattr(self, attr)))

    def _check_hp(self, attr: str, value: Any) -> Any:
        """Validate (and normalise) the value of a hyperparameter attribute.

        Raises:
            ValueError: naming the task, the hyperparameter, the value and what is allowed.
        """
        check = self._HP_CHECKS.get(attr)
        if check is None:
            return value
        try:
            return check(value)
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from None

    def _convert_hp(self, key: str, attr: str, sub: str | None, value: Any) -> Any:
        if sub is None and attr in self._checked_attrs():
            return self._check_hp(attr, value)
        if sub is None:
            if attr == "_phases":
                return self._check_phases(value)
            if attr in _VAR_NAME_ATTRS:
                return parse_var_names(value)
            if attr.endswith("_args") and isinstance(getattr(self, attr), dict):
                if value is None:
                    return {}
                if not isinstance(value, dict):
                    raise TypeError(
                        f"{self.name}: hyperparameter {key!r} must be a dict of keyword "
                        f"arguments (or None); got {type(value).__name__} {value!r}"
                    )
                return dict(value)
        return super()._convert_hp(key, attr, sub, value)

    def _hp_key_hint(self) -> str:
        routed = sorted(
            key[1:-5] + "__<arg>"
            for key, value in vars(self).items()
            if key.startswith("_") and key.endswith("_args") and isinstance(value, dict)
        )
        return f"; routed: {', '.join(routed)}" if routed else ""

    # --------------------------------------------------------------- compile
    def compile(self) -> None:
        """Check the variables and build model, optimizer, scheduler and loss afresh.

        All or nothing: when a check or a build fails, the objects of the previous
        compile stay in ``self.ml``.
        """
        self.compile_var_names()
        previous, self.ml = self.ml, MLEnv()
        try:
            self.compile_model()
            self.compile_optimizer()
            self.compile_loss()
        except BaseException:
            self.ml = previous
            raise

    def compile_var_names(self) -> None:
        """Check that the inputs and targets this task needs exist in the StoreGate.

        Inputs are needed in every phase this task reads (with ``'test'`` in ``phases``,
        every phase that has rows, since predictions are written back everywhere);
        targets only in the phases it fits on (``'train'``, and ``'valid'`` when listed).

        Raises:
            KeyError: a variable is missing; the message names this step and subtask, the
                variable, the phase and what the store holds.
        """
        if self._storegate is None:
            return
        for phase in self._data_phases():
            available = self._storegate.get_var_names(phase)
            missing = [name for name in self._needed_vars(phase) if name not in available]
            if missing:
                raise KeyError(
                    f"{self._describe()} needs variable(s) {missing} in phase {phase!r}, but "
                    f"the StoreGate (data_id={self._storegate.data_id!r}) holds "
                    f"{sorted(available)}. Is an earlier step's output_var_names spelled the "
                    "same way?"
                )

    def _describe(self) -> str:
        return f"step {self._task_id!r} subtask {self._subtask_id or self.name!r}"

    def _fit_phases(self) -> list[str]:
        """Phases whose targets training reads."""
        if const.TRAIN not in self._phases:
            return []
        return [p for p in (const.TRAIN, const.VALID) if p in self._phases]

    def _needed_vars(self, phase: str) -> list[str]:
        """Store variables this task reads in ``phase``."""
        needed = flatten_var_names(self._input_var_names)
        if phase in self._fit_phases():
            needed += flatten_var_names(self._true_var_names)
        return needed

    def _data_phases(self) -> list[str]:
        """Phases this task reads, among those with rows in the StoreGate."""
        wanted = set(self._phases)
        if const.TEST in wanted:  # prediction writes every phase back
            wanted.update(const.PHASES)
        sizes = self._storegate.get_metadata().get("sizes") if self._storegate else None
        if sizes is None:  # never compiled: check what is asked for
            return [p for p in const.PHASES if p in wanted]
        return [p for p in const.PHASES if p in wanted and sizes.get(p, 0) > 0]

    def compile_model(self) -> None:
        """Build ``self.ml.model`` (framework subclasses)."""

    def compile_optimizer(self) -> None:
        """Build ``self.ml.optimizer`` and ``self.ml.scheduler`` (framework subclasses)."""

    def compile_loss(self) -> None:
        """Build ``self.ml.loss`` (framework subclasses)."""

    # ------------------------------------------------------------- execution
    def execute(self) -> None:
        """Compile → fit → dump weights → predict every phase and write back."""
        self.compile()
        if self._load_weights:
            self.load_model()
        if const.TRAIN in self._phases:
            self.history = self.fit()
        if self._save_weights:
            self.dump_model()
        if const.TEST in self._phases:
            self.predict_update()

    def fit(self) -> dict[str, list[dict[str, float]]]:
        """Train on the ``'train'`` phase; return per-epoch metrics per phase."""
        raise NotImplementedError(f"{type(self).__name__} must implement fit()")

    def predict(self, phase: str = const.TEST) -> Any:
        """Predict one phase, rows in store order."""
        raise NotImplementedError(f"{type(self).__name__} must implement predict()")

    def predict_update(self, phases: Sequence[str] | None = None) -> None:
        """Predict each phase present in the StoreGate and write ``save_var_names`` back."""
        if self._output_var_names is None:
            raise ValueError(
                f"{self.name}: output_var_names is not set, so predictions have nowhere to go"
            )
        preds = {phase: self.predict(phase=phase) for phase in phases or self._present_phases()}
        for phase, pred in preds.items():
            self._storegate.update_data(
                self.save_var_names, self._select_saved(pred), phase=phase, do_compile=False
            )
        self._storegate.compile()

    def _present_phases(self) -> list[str]:
        if self._storegate is None:
            raise ValueError(f"{self.name}: no storegate attached to write predictions to")
        sizes = self._storegate.get_metadata().get("sizes") or {}
        return [p for p in const.PHASES if sizes.get(p, 0) > 0]

    def _select_saved(self, pred: Any) -> Any:
        """Pick the ``save_var_names`` outputs out of a prediction of every output."""
        outputs, saved = self._output_var_names, self.save_var_names
        if saved == outputs or not isinstance(outputs, list):
            return pred
        saved_list = saved if isinstance(saved, list) else [saved]
        picked = [pred[outputs.index(name)] for name in saved_list]
        return picked if isinstance(saved, list) else picked[0]

    def read_vars(self, var_names: VarNames, phase: str, index: Any = -1) -> Any:
        """Read a var-names entry from this task's StoreGate (see :func:`read_vars`)."""
        return read_vars(self._storegate, var_names, phase, index)

    def get_input_true_data(self, phase: str) -> tuple[Any, Any]:
        """``(inputs, targets)`` of a phase as stored (targets None when not configured)."""
        inputs = self.read_vars(self._input_var_names, phase)
        trues = None
        if self._true_var_names is not None:
            trues = self.read_vars(self._true_var_names, phase)
        return inputs, trues

    # --------------------------------------------------------------- weights
    def _weights_key(self, flag: bool | str) -> str:
        return flag if isinstance(flag, str) else self.get_unique_id()

    def dump_model(self, extra_args: dict[str, Any] | None = None) -> None:
        """Dump the model weights to the Saver (key: ``save_weights`` or the unique id)."""
        if self._saver is None:
            raise ValueError(f"{self.name}: save_weights is set but no saver is attached")
        kwargs = dict(extra_args or {})
        self._saver.dump_ml(
            self._weights_key(self._save_weights),
            ml_type=self.ml_type,
            model=self.ml.model,
            **kwargs,
        )

    def load_model(self) -> None:
        """Load weights from the Saver (key: ``load_weights`` or the unique id)."""
        raise NotImplementedError(f"{type(self).__name__} cannot load weights")

    ml_type = "none"
    """Framework name recorded with dumped weights."""
