"""Hyperparameter grids.

A :class:`Hyperparameters` object is the Cartesian product of named value lists, in
insertion order with the *last* name varying fastest. Element ``i`` is computed by
mixed-radix arithmetic, so a grid of any size is indexed in O(number of names) and never
materialised:

>>> hps = Hyperparameters({'lr': [0.1, 0.01], 'layers': [2, 3, 4]})
>>> len(hps)
6
>>> hps[1]
{'lr': 0.1, 'layers': 3}
>>> hps[-1]
{'lr': 0.01, 'layers': 4}
>>> hps.index_of({'lr': 0.01, 'layers': 2})
3

A value that is not a list counts as a single value (so a tuple such as a layer shape is
one value), and a continuous range is given as ``(min, max, step)``:

>>> Hyperparameters({'shape': (4, 4), 'drop': Hyperparameter('drop', (0, 3, 1), True)})[2]
{'shape': (4, 4), 'drop': 2}
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterator, Mapping, MutableSequence, Sequence
from typing import Any

import numpy as np

__all__ = ["Hyperparameter", "Hyperparameters"]


def _checked_index(index: Any, size: int, what: str) -> int:
    """Return ``index`` as a non-negative int below ``size`` (negative counts from the end).

    Raises ``TypeError`` for non-integers (bools included) and ``IndexError`` naming the
    size when out of range.
    """
    if isinstance(index, bool) or not hasattr(type(index), "__index__"):
        raise TypeError(f"{what} indices must be integers, not {type(index).__name__}")
    position = operator.index(index)
    if position < 0:
        position += size
    if not 0 <= position < size:
        raise IndexError(f"{what} index {index} out of range for size {size}")
    return position


def _equal_values(a: Any, b: Any) -> bool:
    """Equality that tolerates numpy arrays (element-wise ``==``) and never raises."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _find_value(values: Sequence[Any], value: Any) -> int | None:
    """Position of ``value`` in ``values``: a same-type match first, else a plain ``==`` match."""
    for position, candidate in enumerate(values):
        if type(candidate) is type(value) and _equal_values(candidate, value):
            return position
    for position, candidate in enumerate(values):
        if _equal_values(candidate, value):
            return position
    return None


def _arange_values(name: str, spec: Any) -> list[Any]:
    """Values of a continuous hyperparameter given as ``(min, max, step)``."""
    if not isinstance(spec, Sequence) or isinstance(spec, str) or len(spec) != 3:
        raise ValueError(
            f"continuous hyperparameter {name!r} needs values=(min, max, step), got {spec!r}"
        )
    if not all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        for v in spec
    ):
        raise TypeError(
            f"continuous hyperparameter {name!r}: min, max and step must be real numbers, "
            f"got {spec!r}"
        )
    low, high, step = spec
    if step == 0 or not all(math.isfinite(v) for v in spec):
        raise ValueError(
            f"continuous hyperparameter {name!r}: step must be non-zero and all of "
            f"(min, max, step) finite, got {spec!r}"
        )
    values = np.arange(low, high, step).tolist()
    if not values:
        raise ValueError(
            f"continuous hyperparameter {name!r}: np.arange{tuple(spec)!r} gives no values"
        )
    return values


class Hyperparameter:
    """One named hyperparameter and its candidate values.

    Args:
        name: the hyperparameter name (e.g. ``'optimizer__lr'``).
        values: a list, tuple, range or 1-D numpy array of candidate values; with
            ``is_continuous=True`` a ``(min, max, step)`` triple expanded by
            ``numpy.arange`` into Python ints/floats (``max`` excluded).
        is_continuous: interpret ``values`` as ``(min, max, step)``.

    >>> Hyperparameter('lr', [0.1, 0.01]).values
    [0.1, 0.01]
    >>> Hyperparameter('units', (8, 32, 8), is_continuous=True).values
    [8, 16, 24]
    """

    def __init__(self, name: str, values: Any, is_continuous: bool = False) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"hyperparameter name must be a non-empty str, got {name!r}")
        if is_continuous:
            candidates = _arange_values(name, values)
        elif isinstance(values, np.ndarray):
            if values.ndim != 1:
                raise ValueError(
                    f"hyperparameter {name!r}: a numpy array of values must be 1-D, "
                    f"got shape {values.shape}"
                )
            candidates = values.tolist()
        elif isinstance(values, (list, tuple, range, MutableSequence)):
            candidates = list(values)
        else:
            raise TypeError(
                f"hyperparameter {name!r}: values must be a list, tuple, range or 1-D array "
                f"(or (min, max, step) with is_continuous=True), got {type(values).__name__}"
            )
        if not candidates:
            raise ValueError(f"hyperparameter {name!r} has no values")
        self._name = name
        self._values = candidates
        self._is_continuous = bool(is_continuous)

    @property
    def name(self) -> str:
        """The hyperparameter name."""
        return self._name

    @property
    def values(self) -> list[Any]:
        """A copy of the candidate values."""
        return list(self._values)

    @property
    def is_continuous(self) -> bool:
        """Whether the values came from a ``(min, max, step)`` range."""
        return self._is_continuous

    def index(self, value: Any) -> int:
        """Position of ``value`` among the candidates (``ValueError`` if absent)."""
        position = _find_value(self._values, value)
        if position is None:
            raise ValueError(
                f"{value!r} is not a value of hyperparameter {self._name!r}; "
                f"allowed: {self._values!r}"
            )
        return position

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, index: int) -> Any:
        return self._values[_checked_index(index, len(self._values), self._name)]

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._values))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hyperparameter):
            return NotImplemented
        return (
            self._name == other._name
            and len(self._values) == len(other._values)
            and all(_equal_values(a, b) for a, b in zip(self._values, other._values, strict=True))
        )

    __hash__ = None  # mutable-looking container semantics: not hashable

    def __repr__(self) -> str:
        return f"Hyperparameter({self._name!r}, {self._values!r})"


class Hyperparameters:
    """Cartesian product of named hyperparameters; the last name varies fastest.

    Args:
        dict_of_lists: ``{name: values}``. ``values`` is a list (or another mutable
            sequence, e.g. an OmegaConf ``ListConfig``) of candidates, a
            :class:`Hyperparameter`, or any other object, which counts as the single
            candidate (so ``{'layers': (16, 16)}`` has one value, the tuple).

    ``len(hps)`` is the number of grid points (0 when no names are registered), ``hps[i]``
    the i-th point as a fresh dict (negative indices allowed) and iterating yields every
    point in order. Nothing here materialises the product.

    >>> hps = Hyperparameters({'a': [1, 2], 'b': ['x', 'y', 'z']})
    >>> [hps[i]['b'] for i in range(3)]
    ['x', 'y', 'z']
    >>> hps.add_hp('c', [True, False])
    >>> len(hps)
    12
    """

    def __init__(self, dict_of_lists: Mapping[str, Any] | None = None) -> None:
        self._hps: dict[str, Hyperparameter] = {}
        if dict_of_lists is not None:
            self.add_hp_from_dict(dict_of_lists)

    # ------------------------------------------------------------------ building
    def add_hp_from_dict(self, dict_of_lists: Mapping[str, Any]) -> None:
        """Add hyperparameters from ``{name: values}`` (see the class docstring).

        All entries are validated before any is added: on error nothing changes.
        """
        if not isinstance(dict_of_lists, Mapping):
            raise TypeError(
                f"hyperparameters must be given as a mapping {{name: values}}, "
                f"got {type(dict_of_lists).__name__}"
            )
        new: dict[str, Hyperparameter] = {}
        for name, values in dict_of_lists.items():
            if not isinstance(name, str):
                raise TypeError(f"hyperparameter names must be str, got {name!r}")
            if name in self._hps:
                raise ValueError(
                    f"hyperparameter {name!r} is already registered; registered: {list(self._hps)}"
                )
            if isinstance(values, Hyperparameter):
                if values.name != name:
                    raise ValueError(
                        f"key {name!r} holds Hyperparameter named {values.name!r}; "
                        "the key and the name must match"
                    )
                new[name] = values
            elif isinstance(values, (list, MutableSequence)):
                new[name] = Hyperparameter(name, values)
            else:
                new[name] = Hyperparameter(name, [values])
        self._hps.update(new)

    def add_hp(self, name: str, values: Any, is_continuous: bool = False) -> None:
        """Add one hyperparameter (``values`` as in :class:`Hyperparameter`)."""
        self.add_hp_from_dict({name: Hyperparameter(name, values, is_continuous)})

    def copy(self) -> Hyperparameters:
        """An independent copy: adding to either grid does not change the other."""
        clone = Hyperparameters()
        clone._hps = dict(self._hps)  # Hyperparameter objects are never mutated
        return clone

    # ------------------------------------------------------------------ accessors
    def get_hp_names(self) -> list[str]:
        """Names in insertion order (the grid's digit order, last fastest)."""
        return list(self._hps)

    def get_hp(self, name: str) -> Hyperparameter:
        """The :class:`Hyperparameter` called ``name`` (``KeyError`` listing the names)."""
        try:
            return self._hps[name]
        except KeyError:
            raise KeyError(
                f"unknown hyperparameter {name!r}; registered: {list(self._hps)}"
            ) from None

    def to_dict(self) -> dict[str, list[Any]]:
        """``{name: [candidates]}``, the inverse of the constructor for list values."""
        return {name: hp.values for name, hp in self._hps.items()}

    def index_of(self, hps: Mapping[str, Any]) -> int:
        """Grid index of the point ``hps`` (the inverse of ``hps[i]``).

        ``hps`` must name exactly the registered hyperparameters; a value that is not a
        candidate is a ``ValueError`` naming the hyperparameter and its candidates.
        """
        if set(hps) != set(self._hps):
            raise ValueError(
                f"hyperparameter names {sorted(hps)} do not match the grid's {list(self._hps)}"
            )
        index = 0
        for name, hp in self._hps.items():
            index = index * len(hp) + hp.index(hps[name])
        return index

    def __contains__(self, name: object) -> bool:
        return name in self._hps

    def __len__(self) -> int:
        if not self._hps:
            return 0
        return math.prod(len(hp) for hp in self._hps.values())

    def __getitem__(self, index: int) -> dict[str, Any]:
        remainder = _checked_index(index, len(self), "hyperparameter grid")
        point: dict[str, Any] = {}
        for name, hp in reversed(self._hps.items()):
            remainder, digit = divmod(remainder, len(hp))
            point[name] = hp._values[digit]
        return dict(reversed(point.items()))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self._hps:
            return
        names = list(self._hps)
        for values in itertools.product(*(hp._values for hp in self._hps.values())):
            yield dict(zip(names, values, strict=True))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hyperparameters):
            return NotImplemented
        return list(self._hps) == list(other._hps) and all(
            self._hps[name] == other._hps[name] for name in self._hps
        )

    __hash__ = None

    def __repr__(self) -> str:
        return f"Hyperparameters({self.to_dict()!r})"
