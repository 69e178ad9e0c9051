"""Item syntax of StoreGate: ``sg['train']['x'][0:10]``.

Views are stateless handles: ``sg['train']`` is a :class:`PhaseView` bound to the store,
the current data_id (at the time the view was made) and the phase; ``sg['train']['x']``
is a :class:`VarView` that also names the variables. Nothing is remembered in the store, so
keeping a view of ``'train'`` never changes what another view or ``get_data`` reads.

>>> import numpy as np
>>> from multiml import StoreGate
>>> sg = StoreGate()
>>> sg['train']['x'][:] = np.arange(6).reshape(3, 2)     # add or replace the variable
>>> sg['train']['x'][-1]                                  # numpy-style row index
array([4, 5])
>>> 'x' in sg['train'], len(sg['train'])
(True, 3)
>>> del sg['train']['x']

Rows are indexed like numpy: ints (negative ones count from the end), slices, int or bool
arrays; a tuple applies its first item to rows and the rest to the remaining axes
(``sg['train']['x'][:, 0]``). Assigning to ``[:]`` replaces the whole variable (its shape
may change, and a missing variable is added); assigning to any other index overwrites those
rows in place. Both compile the data_id afterwards, like ``update_data``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from multiml.storegate._args import check_phase, normalize_index

if TYPE_CHECKING:
    from multiml.storegate.storegate import StoreGate, VarNames


class PhaseView:
    """The variables of one phase (or ``'all'``) of one data_id."""

    __slots__ = ("_data_id", "_phase", "_sg")

    def __init__(self, storegate: StoreGate, data_id: str, phase: str) -> None:
        self._sg = storegate
        self._data_id = data_id
        self._phase = check_phase(phase)

    @property
    def phase(self) -> str:
        """The phase this view reads and writes (``'all'`` for the three together)."""
        return self._phase

    @property
    def data_id(self) -> str:
        """The data_id this view is bound to."""
        return self._data_id

    def __getitem__(self, var_names: VarNames) -> VarView:
        return VarView(self._sg, self._data_id, self._phase, var_names)

    def __setitem__(self, var_names: VarNames, data: Any) -> None:
        self._sg._update(self._data_id, var_names, data, self._phase, -1, True)

    def __delitem__(self, var_names: VarNames) -> None:
        self._sg._delete(self._data_id, var_names, self._phase)

    def __contains__(self, var_name: object) -> bool:
        return isinstance(var_name, str) and var_name in self._sg._var_names(
            self._data_id, self._phase
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._sg._var_names(self._data_id, self._phase))

    def __len__(self) -> int:
        """Rows in the phase (the sum over phases for ``'all'``)."""
        return self._sg._phase_rows(self._data_id, self._phase)

    def __repr__(self) -> str:
        names = self._sg._var_names(self._data_id, self._phase)
        return f"PhaseView(data_id={self._data_id!r}, phase={self._phase!r}, vars={names!r})"


class VarView:
    """One variable, a stacked tuple of variables, or a list of variables of one phase."""

    __slots__ = ("_data_id", "_phase", "_sg", "_var_names")

    def __init__(self, storegate: StoreGate, data_id: str, phase: str, var_names: VarNames):
        self._sg = storegate
        self._data_id = data_id
        self._phase = phase
        self._var_names = var_names

    @property
    def shape(self) -> Any:
        """Shape as ``get_var_shapes`` reports it (a list of shapes for a list of names)."""
        return self._sg._var_shapes(self._data_id, self._var_names, self._phase)

    def _rows(self) -> int:
        names = self._var_names
        first = names if isinstance(names, str) else next(iter(names), None)
        if first is None:
            return 0
        return self._sg._var_shapes(self._data_id, first, self._phase)[0]

    def _row_index(self, index: Any) -> Any:
        if index is Ellipsis:
            return slice(None)
        return normalize_index(index, self._rows(), numpy_ints=True)

    def __getitem__(self, index: Any) -> Any:
        rest: tuple[Any, ...] = ()
        if isinstance(index, tuple):
            if not index:
                index = slice(None)
            else:
                index, rest = index[0], index[1:]
        rows = self._row_index(index)
        out = self._sg._read(self._data_id, self._var_names, self._phase, rows)
        if not rest:
            return out
        if isinstance(out, list):
            raise TypeError("a list of variables supports a row index only, not a tuple index")
        return out[rest] if isinstance(rows, int) else out[(slice(None), *rest)]

    def __setitem__(self, index: Any, data: Any) -> None:
        if isinstance(index, tuple):
            raise TypeError(
                "assignment takes a row index (int, slice, array); a tuple index is only "
                "supported for reads"
            )
        if isinstance(index, slice) and index == slice(None):
            self._sg._update(self._data_id, self._var_names, data, self._phase, -1, True)
            return
        rows = self._row_index(index)
        self._sg._update(self._data_id, self._var_names, data, self._phase, rows, True)

    def __repr__(self) -> str:
        return (
            f"VarView(data_id={self._data_id!r}, phase={self._phase!r}, "
            f"var_names={self._var_names!r})"
        )
