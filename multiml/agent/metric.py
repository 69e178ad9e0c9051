"""Metrics that score one executed combination from the predictions in a StoreGate.

A metric reads a prediction variable and a truth variable from one phase of a
:class:`~multiml.StoreGate`, drops the rows whose ``active`` flag is 0 (when the phase has
an ``active`` variable, see ``StoreGate.compile(reset=True)``), and reduces them to one
Python ``float``. Its class attributes say what it is called (``name``) and in which
direction it is optimised (``type``: ``'min'`` or ``'max'``).

>>> import numpy as np
>>> from multiml import StoreGate
>>> from multiml.agent.metric import get_metric
>>> sg = StoreGate(backend='numpy', data_id='demo')
>>> sg.add_data('pred', np.array([0.1, 0.4, 0.35, 0.8]), phase='test')
>>> sg.add_data('label', np.array([0, 0, 1, 1]), phase='test')
>>> sg.compile()
>>> metric = get_metric('AUC', storegate=sg, var_names='pred label')
>>> metric.calculate()
0.75
>>> metric.name, metric.type
('auc', 'max')

The arithmetic lives in small functions on plain arrays (:func:`mean_value`,
:func:`mean_squared_error`, :func:`accuracy`, :func:`roc_auc`), usable without a store:

>>> accuracy(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]))
0.5

Agents and the Hydra app build metrics by name with :func:`get_metric` (case-insensitive,
the class name works too: ``'acc'``, ``'ACC'``, ``'ACCMetric'``); :data:`METRICS` maps each
name to its class. A custom metric subclasses :class:`BaseMetric`, sets ``name`` and
``type`` and implements :meth:`BaseMetric.compute`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from multiml.const import PHASES

__all__ = [
    "METRICS",
    "ACCMetric",
    "AUCMetric",
    "BaseMetric",
    "MSEMetric",
    "RandomMetric",
    "ValueMetric",
    "ZeroMetric",
    "accuracy",
    "get_metric",
    "mean_squared_error",
    "mean_value",
    "roc_auc",
]

logger = logging.getLogger(__name__)

ACTIVE_VAR_NAME = "active"
"""Rows whose value in this variable is 0 are left out of every metric."""

_ALL_PHASE = "all"
_METRIC_TYPES = ("min", "max")


# ---------------------------------------------------------------------------------------
# Array arithmetic
# ---------------------------------------------------------------------------------------


def _check_rows(pred: np.ndarray, true: np.ndarray, what: str) -> None:
    """Raise unless ``pred`` and ``true`` are at least 1-D, equally long and non-empty."""
    for label, array in (("pred", pred), ("true", true)):
        if array.ndim == 0:
            raise ValueError(f"{what}: {label} is a scalar; expected an array of shape (N, ...)")
    if len(pred) != len(true):
        raise ValueError(
            f"{what}: pred and true have different numbers of rows "
            f"({len(pred)} vs {len(true)}, shapes {pred.shape} and {true.shape})"
        )
    if len(pred) == 0:
        raise ValueError(f"{what}: no rows to evaluate (pred and true are empty)")


def mean_value(pred: Any) -> float:
    """Mean of all elements of ``pred`` (e.g. a per-event loss written by a task).

    >>> mean_value([1.0, 2.0, 6.0])
    3.0
    """
    values = np.asarray(pred, dtype=np.float64)
    if values.size == 0:
        raise ValueError("mean_value: no values to average (pred is empty)")
    return float(values.mean())


def mean_squared_error(pred: Any, true: Any) -> float:
    """Mean over all elements of ``(pred - true) ** 2``.

    Both arrays must have the same number of rows and the same number of elements per
    row; ``(N,)`` and ``(N, 1)`` are interchangeable, but nothing is broadcast (a
    ``(N, 1)`` against ``(N,)`` comparison never silently becomes ``(N, N)``).

    >>> mean_squared_error([1.0, 2.0, 3.0], [[1.0], [0.0], [5.0]])
    2.6666666666666665
    """
    pred_a = np.asarray(pred, dtype=np.float64)
    true_a = np.asarray(true, dtype=np.float64)
    _check_rows(pred_a, true_a, "mean_squared_error")
    pred_2d = pred_a.reshape(len(pred_a), -1)
    true_2d = true_a.reshape(len(true_a), -1)
    if pred_2d.shape != true_2d.shape:
        raise ValueError(
            f"mean_squared_error: pred has shape {pred_a.shape} but true has shape "
            f"{true_a.shape}; each row must hold the same number of values"
        )
    return float(np.mean((pred_2d - true_2d) ** 2))


def _to_labels(array: np.ndarray, label: str, what: str) -> np.ndarray:
    """Class labels from ``(N,)`` labels, ``(N, 1)`` labels or ``(N, C)`` scores/one-hot."""
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2:
        return np.argmax(array, axis=1)
    if array.ndim != 1:
        raise ValueError(
            f"{what}: {label} has shape {array.shape}; allowed: (N,) or (N, 1) class labels, "
            f"or (N, C) scores / one-hot rows (argmax-ed along axis 1)"
        )
    if array.dtype.kind == "f":
        non_integer = array[~np.isclose(array, np.round(array))]
        if non_integer.size:
            example = non_integer[0].item()
            raise ValueError(
                f"{what}: {label} is 1-D but holds non-integer values (e.g. {example!r}); "
                f"1-D {label} must be class labels. Pass class scores as (N, C) to have them "
                f"argmax-ed, or threshold probabilities first"
            )
        return np.round(array).astype(np.int64)
    return array


def accuracy(pred: Any, true: Any) -> float:
    """Fraction of rows whose predicted class equals the true class.

    ``pred`` and ``true`` are each either class labels, shape ``(N,)`` or ``(N, 1)``, or
    per-class scores / one-hot rows, shape ``(N, C)``, which are argmax-ed along axis 1.
    (A single column is treated as labels: the argmax of one column is always 0.)

    >>> accuracy([0, 1, 2, 2], [0, 1, 1, 2])
    0.75
    >>> accuracy([[0.9, 0.1], [0.3, 0.7]], [[1, 0], [1, 0]])
    0.5
    """
    pred_a = np.asarray(pred)
    true_a = np.asarray(true)
    _check_rows(pred_a, true_a, "accuracy")
    pred_labels = _to_labels(pred_a, "pred", "accuracy")
    true_labels = _to_labels(true_a, "true", "accuracy")
    return float(np.mean(pred_labels == true_labels))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``; tied values all get the mean of the ranks they span."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1  # rank of the first member of each group
    mean_rank = first_rank + (counts - 1) / 2.0
    return mean_rank[inverse.reshape(-1)]


def _binary_scores(pred: np.ndarray) -> np.ndarray:
    if pred.ndim == 2 and pred.shape[1] in (1, 2):
        pred = pred[:, pred.shape[1] - 1]
    if pred.ndim != 1:
        raise ValueError(
            f"roc_auc: pred has shape {pred.shape}; allowed: (N,), (N, 1), or (N, 2) "
            f"(two-class scores, column 1 is the positive class)"
        )
    return pred


def _binary_truth(true: np.ndarray) -> np.ndarray:
    if true.ndim == 2 and true.shape[1] == 1:
        true = true[:, 0]
    elif true.ndim == 2 and true.shape[1] == 2:
        true = np.argmax(true, axis=1)
    if true.ndim != 1:
        raise ValueError(
            f"roc_auc: true has shape {true.shape}; allowed: (N,) or (N, 1) labels in {{0, 1}}, "
            f"or (N, 2) one-hot rows"
        )
    if true.dtype == np.bool_:
        return true
    bad = true[(true != 0) & (true != 1)]
    if bad.size:
        raise ValueError(
            f"roc_auc: true labels must be 0 or 1 (or one-hot (N, 2)); found {bad[0].item()!r}"
        )
    return true == 1


def roc_auc(pred: Any, true: Any) -> float:
    """Area under the ROC curve of binary scores.

    Computed as the Mann-Whitney statistic with average ranks for tied scores, which equals
    the trapezoidal area under the ROC curve: the probability that a random positive
    scores above a random negative, ties counting one half.

    ``pred``: ``(N,)`` or ``(N, 1)`` scores, or ``(N, 2)`` two-class scores (column 1 is
    the positive class). ``true``: ``(N,)`` or ``(N, 1)`` labels in {0, 1}, or ``(N, 2)``
    one-hot rows. Both classes must be present.

    >>> roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    >>> roc_auc([0.5, 0.5, 0.5, 0.9], [0, 1, 0, 1])
    0.75
    """
    pred_a = np.asarray(pred)
    true_a = np.asarray(true)
    _check_rows(pred_a, true_a, "roc_auc")
    scores = _binary_scores(pred_a).astype(np.float64)
    positive = _binary_truth(true_a)
    if np.isnan(scores).any():
        raise ValueError(f"roc_auc: pred contains {int(np.isnan(scores).sum())} NaN value(s)")
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        present = "1 (positive)" if n_pos else "0 (negative)"
        raise ValueError(
            f"roc_auc: ROC AUC is undefined when only one class is present in true "
            f"(all {len(positive)} rows are class {present})"
        )
    ranks = _average_ranks(scores)
    u_statistic = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (n_pos * n_neg))


# ---------------------------------------------------------------------------------------
# Metric classes
# ---------------------------------------------------------------------------------------


def _check_var_name(value: Any, argument: str) -> str | tuple[str, ...]:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, tuple) and value and all(isinstance(v, str) and v for v in value):
        return value
    raise TypeError(
        f"{argument} must be a variable name (str) or a tuple of names to read stacked, "
        f"got {value!r}"
    )


class BaseMetric(ABC):
    """Base class of metrics: reads pred/true from a StoreGate phase and reduces them.

    Args:
        storegate: the store to read from; may be set later (``metric.storegate = sg``),
            agents attach theirs before calling :meth:`calculate`.
        pred_var_name: variable holding the predictions (a tuple of names reads them
            stacked on axis 1, following the StoreGate shape convention).
        true_var_name: variable holding the truth.
        var_names: shortcut ``'PRED TRUE'`` (or a 2-sequence) setting both names above;
            when given it takes precedence over ``pred_var_name`` / ``true_var_name``.
        phase: ``'train'``, ``'valid'``, ``'test'`` or ``'all'`` (the three concatenated).
        data_id: dataset to read; ``None`` reads the store's current one. The store's own
            ``data_id`` is restored after reading.

    Subclasses set the class attributes ``name`` and ``type`` and implement
    :meth:`compute`; ``uses`` lists which of ``'pred'`` / ``'true'`` are read.

    >>> from multiml.agent.metric import MSEMetric
    >>> metric = MSEMetric(var_names='y_pred y_true', phase='valid')
    >>> metric.pred_var_name, metric.true_var_name, metric.phase
    ('y_pred', 'y_true', 'valid')
    """

    name: ClassVar[str] = "base"
    type: ClassVar[str] = "min"
    uses: ClassVar[tuple[str, ...]] = ("pred", "true")

    def __init__(
        self,
        storegate: Any = None,
        pred_var_name: str | tuple[str, ...] = "pred",
        true_var_name: str | tuple[str, ...] = "true",
        var_names: str | Sequence[str] | None = None,
        phase: str = "test",
        data_id: str | None = None,
    ) -> None:
        if var_names is not None:
            names = var_names.split() if isinstance(var_names, str) else list(var_names)
            if len(names) != 2:
                raise ValueError(
                    f"var_names must name exactly two variables, 'PRED TRUE' "
                    f"(e.g. 'pred true'), got {var_names!r}"
                )
            pred_var_name, true_var_name = names
        allowed_phases = (*PHASES, _ALL_PHASE)
        if phase not in allowed_phases:
            raise ValueError(f"phase must be one of {allowed_phases}, got {phase!r}")
        if data_id is not None and not isinstance(data_id, str):
            raise TypeError(f"data_id must be a str or None, got {data_id!r}")
        self.storegate = storegate
        self.pred_var_name = _check_var_name(pred_var_name, "pred_var_name")
        self.true_var_name = _check_var_name(true_var_name, "true_var_name")
        self.phase = phase
        self.data_id = data_id

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.type not in _METRIC_TYPES:
            raise TypeError(f"{cls.__name__}.type must be one of {_METRIC_TYPES}, got {cls.type!r}")

    def __repr__(self) -> str:
        args = [f"pred_var_name={self.pred_var_name!r}", f"true_var_name={self.true_var_name!r}"]
        args += [f"phase={self.phase!r}", f"data_id={self.data_id!r}", *self._extra_repr()]
        return f"{type(self).__name__}({', '.join(args)})"

    def _extra_repr(self) -> list[str]:
        """Further ``key=value`` strings a subclass adds to its repr."""
        return []

    def calculate(self) -> float:
        """Read the variables in ``uses`` from the store, mask inactive rows, compute.

        Raises:
            ValueError: no storegate is attached, the arrays do not fit the metric, or no
                active rows are left.
            KeyError: a variable is missing from the phase (the message names the metric).
        """
        pred, true = self.load_data()
        value = float(self.compute(pred, true))
        logger.debug("%s on phase %r: %r", self.name, self.phase, value)
        return value

    @abstractmethod
    def compute(self, pred: np.ndarray | None, true: np.ndarray | None) -> float:
        """The metric on arrays already read and masked (``None`` for an unused input)."""

    def load_data(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Read ``(pred, true)`` (``None`` for a variable not in ``uses``), active rows only."""
        if not self.uses:
            return None, None
        storegate = self.storegate
        if storegate is None:
            raise ValueError(
                f"{type(self).__name__} has no storegate to read from; pass storegate=... "
                f"or set metric.storegate before calculate()"
            )
        previous_id = storegate.data_id
        switch = self.data_id is not None and self.data_id != previous_id
        if switch:
            storegate.set_data_id(self.data_id)
        try:
            arrays = {use: self._read(storegate, use) for use in self.uses}
            mask = self._active_mask(storegate)
        finally:
            if switch:
                storegate.set_data_id(previous_id)
        where = f"in phase {self.phase!r} (data_id {self._data_id_label()})"
        if mask is not None:
            for use, array in arrays.items():
                if len(array) != len(mask):
                    raise ValueError(
                        f"{type(self).__name__}: {ACTIVE_VAR_NAME!r} has {len(mask)} rows but "
                        f"{self._var_name(use)!r} has {len(array)} {where}"
                    )
            if not mask.any():
                raise ValueError(
                    f"{type(self).__name__}: no rows to evaluate {where}: all {len(mask)} rows "
                    f"have {ACTIVE_VAR_NAME} == 0"
                )
            arrays = {use: array[mask] for use, array in arrays.items()}
        for use, array in arrays.items():
            if len(array) == 0:
                raise ValueError(
                    f"{type(self).__name__}: no rows to evaluate {where}: "
                    f"{self._var_name(use)!r} is empty"
                )
        return arrays.get("pred"), arrays.get("true")

    def _var_name(self, use: str) -> str | tuple[str, ...]:
        return self.pred_var_name if use == "pred" else self.true_var_name

    def _data_id_label(self) -> str:
        data_id = self.data_id if self.data_id is not None else self.storegate.data_id
        return repr(data_id)

    def _read(self, storegate: Any, use: str) -> np.ndarray:
        var_name = self._var_name(use)
        try:
            array = storegate.get_data(var_name, self.phase)
        except KeyError as exc:
            reason = exc.args[0] if exc.args else exc
            raise KeyError(
                f"{type(self).__name__} ({use}) cannot read {var_name!r} from phase "
                f"{self.phase!r} (data_id {self._data_id_label()}): {reason}"
            ) from exc
        array = np.asarray(array)
        if array.ndim == 0:
            raise ValueError(
                f"{type(self).__name__}: {var_name!r} is a scalar; expected shape (N, ...)"
            )
        return array

    def _active_mask(self, storegate: Any) -> np.ndarray | None:
        # for 'all', the store itself insists that 'active' exists in every phase with rows
        if ACTIVE_VAR_NAME not in storegate.get_var_names(self.phase):
            return None
        active = np.asarray(storegate.get_data(ACTIVE_VAR_NAME, self.phase))
        if active.ndim == 2 and active.shape[1] == 1:
            active = active[:, 0]
        if active.ndim != 1:
            raise ValueError(
                f"{type(self).__name__}: {ACTIVE_VAR_NAME!r} has shape {active.shape}; "
                f"allowed: (N,) or (N, 1)"
            )
        return active != 0


class ZeroMetric(BaseMetric):
    """Always 0.0; reads nothing. Useful when an agent must run without a real metric.

    >>> ZeroMetric().calculate()
    0.0
    """

    name = "zero"
    type = "min"
    uses = ()

    def compute(self, pred: np.ndarray | None, true: np.ndarray | None) -> float:
        """Return 0.0."""
        return 0.0


class RandomMetric(BaseMetric):
    """A uniform draw from [0, 1) per :meth:`calculate`; reads nothing.

    Draws come from the metric's own ``numpy.random.default_rng(seed)``: the same seed
    gives the same sequence, and global random state is never touched.

    >>> metric = RandomMetric(seed=3)
    >>> first = metric.calculate()
    >>> first == RandomMetric(seed=3).calculate()
    True
    """

    name = "random"
    type = "min"
    uses = ()

    def __init__(self, storegate: Any = None, *, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(storegate, **kwargs)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def _extra_repr(self) -> list[str]:
        return [f"seed={self.seed!r}"]

    def compute(self, pred: np.ndarray | None, true: np.ndarray | None) -> float:
        """Return the next uniform draw."""
        return float(self._rng.uniform(0.0, 1.0))


class ValueMetric(BaseMetric):
    """Mean of the prediction variable, e.g. a loss a task wrote per row; reads no truth.

    >>> ValueMetric().compute(np.array([0.5, 1.5]), None)
    1.0
    """

    name = "value"
    type = "min"
    uses = ("pred",)

    def compute(self, pred: np.ndarray | None, true: np.ndarray | None) -> float:
        """Mean of all elements of ``pred``."""
        return mean_value(pred)


class MSEMetric(BaseMetric):
    """Mean squared error between prediction and truth (see :func:`mean_squared_error`)."""

    name = "mse"
    type = "min"

    def compute(self, pred: np.ndarray | None, true: np.ndarray | None) -> float:
        """Mean of ``(pred - true) ** 2`` over all elements."""
        return mean_squared_error(pred, true)


class ACCMetric(BaseMetric):
    """Classification accuracy; ``(N, C)`` arrays are argmax-ed (see :func:`accuracy`)."""

    name = "acc"
    type = "max"

    def compute(self, pred: np.ndarray | None, true: np.ndarray | None) -> float:
        """Fraction of rows with the right class."""
        return accuracy(pred, true)


class AUCMetric(BaseMetric):
    """Binary ROC AUC with tie handling (see :func:`roc_auc` for the accepted shapes)."""

    name = "auc"
    type = "max"

    def compute(self, pred: np.ndarray | None, true: np.ndarray | None) -> float:
        """Area under the ROC curve."""
        return roc_auc(pred, true)


METRICS: Mapping[str, type[BaseMetric]] = {
    cls.name: cls
    for cls in (ZeroMetric, RandomMetric, ValueMetric, MSEMetric, ACCMetric, AUCMetric)
}
"""Metric name → class, the names :func:`get_metric` accepts."""


def get_metric(name: str, **metric_args: Any) -> BaseMetric:
    """Instantiate the metric called ``name`` with ``metric_args``.

    ``name`` matches a metric's ``name`` or its class name, with or without the
    ``Metric`` suffix, ignoring case: ``'acc'``, ``'ACC'``, ``'Acc'`` and ``'ACCMetric'``
    all give :class:`ACCMetric`.

    >>> get_metric('ACC', phase='valid')
    ACCMetric(pred_var_name='pred', true_var_name='true', phase='valid', data_id=None)

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: no metric has that name (the message lists the known names).
    """
    if not isinstance(name, str):
        raise TypeError(f"metric name must be a str, got {name!r} ({type(name).__name__})")
    key = name.strip().lower()
    for metric_name, cls in METRICS.items():
        class_name = cls.__name__.lower()
        if key in (metric_name, class_name, class_name.removesuffix("metric")):
            return cls(**metric_args)
    known = ", ".join(sorted(METRICS))
    raise ValueError(
        f"unknown metric {name!r}; known metrics: {known} (case-insensitive; class names "
        f"such as 'ACCMetric' work too)"
    )
