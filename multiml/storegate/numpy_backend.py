"""In-memory StoreGate backend: one contiguous ``numpy.ndarray`` per variable.

Each ``(data_id, phase, var_name)`` is a single C-contiguous array, so a read by slice or
row is a view (no copy) and a read by an index array is one ``ndarray.__getitem__``.

Appending over-allocates geometrically (capacity grows by 1.5x), so adding a variable in
many chunks costs amortised O(rows), at the price of up to 50 % unused capacity after
appends; a whole-variable replace (``update_data(..., index=-1)``) stores it exactly.
Pickling writes only the used rows.

``isolated()`` is lazy: the isolated backend shares every array with the original, and
either side copies a variable (its used rows) the first time it overwrites rows of it in
place; replacing, appending (the shared rows are never written) and deleting copy nothing.
So an isolated view costs nothing until written, and the two never see each other's writes.

>>> import numpy as np
>>> backend = NumpyBackend()
>>> backend.replace(('d', 'train', 'x'), np.arange(3), owned=False)
>>> backend.append(('d', 'train', 'x'), np.arange(2))
>>> backend.read(('d', 'train', 'x'), slice(None))
array([0, 1, 2, 0, 1])
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from multiml.storegate._base import Backend, Index, Key

_GROWTH = 1.5


class _Column:
    """A variable: ``buf[:n]`` holds its rows, the rest of ``buf`` is spare capacity.

    ``shared`` means another backend may hold ``buf[:n]`` (see ``isolated()``): those rows
    must be copied before they are overwritten in place. Rows past ``n`` are never shared
    (a sharer's buffer ends at ``n``), so appending in place stays allowed.
    """

    __slots__ = ("buf", "n", "shared")

    def __init__(self, buf: np.ndarray, shared: bool = False) -> None:
        self.buf = buf
        self.n = len(buf)
        self.shared = shared

    @property
    def rows(self) -> np.ndarray:
        return self.buf if self.n == len(self.buf) else self.buf[: self.n]

    def share(self) -> _Column:
        """A column of another backend holding the same rows (no copy)."""
        self.shared = True
        return _Column(self.rows, shared=True)

    def own(self) -> None:
        """Copy the rows if they are shared, so that they can be written in place."""
        if self.shared:
            self.buf = self.rows.copy()
            self.shared = False

    def __getstate__(self) -> np.ndarray:
        return self.rows

    def __setstate__(self, state: np.ndarray) -> None:
        self.buf = state
        self.n = len(state)
        self.shared = False


class NumpyBackend(Backend):
    """Variables held in memory; see the module docstring."""

    name = "numpy"

    def __init__(self) -> None:
        self._data: dict[str, dict[str, dict[str, _Column]]] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    # --- listing -------------------------------------------------------------------------
    def data_ids(self) -> list[str]:
        return list(dict.fromkeys([*self._data, *self._meta]))

    def var_names(self, data_id: str, phase: str) -> list[str]:
        return list(self._data.get(data_id, {}).get(phase, ()))

    def has(self, key: Key) -> bool:
        data_id, phase, var_name = key
        return var_name in self._data.get(data_id, {}).get(phase, ())

    def _column(self, key: Key) -> _Column:
        data_id, phase, var_name = key
        return self._data[data_id][phase][var_name]

    def shape(self, key: Key) -> tuple[int, ...]:
        column = self._column(key)
        return (column.n, *column.buf.shape[1:])

    def dtype(self, key: Key) -> np.dtype:
        return self._column(key).buf.dtype

    def location(self, key: Key) -> str:
        self._column(key)
        return "numpy"

    # --- reads ---------------------------------------------------------------------------
    def read(self, key: Key, index: Index) -> Any:
        column = self._column(key)
        if isinstance(index, np.ndarray):
            # indices are already bounds-checked against n, so the spare capacity of buf
            # is never reached and buf can be indexed directly
            return column.buf[index]
        out = column.rows[index] if isinstance(index, slice) else column.buf[index]
        if isinstance(out, np.ndarray):
            out.flags.writeable = False
        return out

    def read_copy(self, key: Key) -> np.ndarray:
        return self._column(key).rows.copy()

    # --- writes --------------------------------------------------------------------------
    def check_dtype(self, dtype: np.dtype, key: Key) -> None:
        """Every numpy dtype can be held in memory."""

    def _phase(self, key: Key) -> dict[str, _Column]:
        data_id, phase, _ = key
        return self._data.setdefault(data_id, {}).setdefault(phase, {})

    def replace(self, key: Key, data: np.ndarray, *, owned: bool) -> None:
        if owned and data.flags.c_contiguous and data.flags.writeable:
            array = data
        else:
            array = np.array(data, copy=True, order="C")
        self._set(key, array)

    def _set(self, key: Key, array: np.ndarray) -> None:
        phase = self._phase(key)
        if key[2] in phase:
            column = phase[key[2]]
            column.buf = array
            column.n = len(array)
            column.shared = False
        else:
            phase[key[2]] = _Column(array)

    def append(self, key: Key, data: np.ndarray) -> None:
        column = self._column(key)
        dtype = np.result_type(column.buf.dtype, data.dtype)
        need = column.n + len(data)
        if dtype != column.buf.dtype or need > len(column.buf):
            capacity = max(need, int(len(column.buf) * _GROWTH))
            grown = np.empty((capacity, *column.buf.shape[1:]), dtype=dtype)
            grown[: column.n] = column.rows
            column.buf = grown
            column.shared = False
        column.buf[column.n : need] = data
        column.n = need

    def write(self, key: Key, index: Index, data: np.ndarray) -> None:
        column = self._column(key)
        column.own()
        column.rows[index] = data

    def create(self, key: Key, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._set(key, np.zeros(shape, dtype=dtype))

    def delete(self, key: Key) -> None:
        data_id, phase, var_name = key
        del self._data[data_id][phase][var_name]

    def drop_data_id(self, data_id: str) -> None:
        self._data.pop(data_id, None)
        self._meta.pop(data_id, None)

    # --- isolation -----------------------------------------------------------------------
    def isolated(self) -> NumpyBackend:
        """A backend sharing every array with this one until either side writes it."""
        clone = NumpyBackend()
        clone._data = {
            data_id: {
                phase: {name: column.share() for name, column in columns.items()}
                for phase, columns in phases.items()
            }
            for data_id, phases in self._data.items()
        }
        clone._meta = copy.deepcopy(self._meta)
        return clone

    # --- metadata ------------------------------------------------------------------------
    def get_meta(self, data_id: str) -> dict[str, Any] | None:
        return self._meta.get(data_id)

    def set_meta(self, data_id: str, meta: dict[str, Any]) -> None:
        self._meta[data_id] = meta
