"""Hybrid StoreGate backend: variables in memory or on disk, moved on request.

``StoreGate(backend='hybrid', backend_args={'output_dir': path, 'mode': 'zarr'})`` holds a
numpy backend and a zarr backend (same ``backend_args`` as ``'zarr'``, plus ``mode``).
Each variable lives in exactly one of them:

- ``set_mode('numpy' | 'zarr')`` chooses where *new* variables go (default ``'zarr'``);
  writes to an existing variable keep it where it is.
- ``to_memory(var_names, phase='all')`` / ``to_storage(...)`` move variables without
  changing their values (e.g. load training inputs into memory for fast batching, keep
  large or rarely used data on disk).

The metadata (compiled state, sizes) is kept in memory and written to the zarr store. A new
StoreGate on the same ``output_dir`` reopens what was on disk; variables that were in
memory are gone (move them ``to_storage`` first to keep them).

``backend_args={..., 'copy_on_write': True}`` opens an existing store read-only and
``StoreGate.isolated()`` makes a view of an open one: every write, moves included, then
stays in that store's memory (see :mod:`multiml.storegate.cow_backend`).

>>> import numpy as np
>>> from multiml import StoreGate
>>> sg = StoreGate(backend='hybrid')
>>> sg.add_data('x', np.zeros((4, 2)), do_compile=True)     # on disk (mode 'zarr')
>>> sg.to_memory('x')
>>> sg.get_metadata()['vars']['train']['x']['location']
'numpy'
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from multiml.storegate._base import Backend, Index, Key, check_mode
from multiml.storegate.numpy_backend import NumpyBackend
from multiml.storegate.zarr_backend import DEFAULT_CHUNK_BYTES, ZarrBackend


class HybridBackend(Backend):
    """A numpy and a zarr backend behind one interface; see the module docstring."""

    name = "hybrid"
    ARGS = ("output_dir", "chunk_bytes", "compressors", "mode", "copy_on_write")

    def __init__(
        self,
        output_dir: str | os.PathLike[str] | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        compressors: Any = None,
        mode: str = "zarr",
    ) -> None:
        self.mode = check_mode(mode)
        self._memory = NumpyBackend()
        self._storage = ZarrBackend(output_dir, chunk_bytes, compressors)
        self.output_dir = self._storage.output_dir
        # creation order across both parts: {data_id: {phase: {var_name: None}}}
        self._order: dict[str, dict[str, dict[str, None]]] = {}
        for data_id in self._storage.data_ids():
            phases = self._order.setdefault(data_id, {})
            for phase in ("train", "valid", "test"):
                names = self._storage.var_names(data_id, phase)
                if names:
                    phases[phase] = dict.fromkeys(names)

    def set_mode(self, mode: str) -> None:
        """Where new variables go: ``'numpy'`` (memory) or ``'zarr'`` (disk)."""
        self.mode = check_mode(mode)

    def _part(self, location: str) -> Backend:
        return self._memory if location == "numpy" else self._storage

    def _holder(self, key: Key) -> Backend:
        """The part holding an existing variable (KeyError when none does)."""
        if self._memory.has(key):
            return self._memory
        if self._storage.has(key):
            return self._storage
        raise KeyError(key)

    def _target(self, key: Key) -> Backend:
        """Where a write of ``key`` goes: where it lives, else the current mode."""
        if self._memory.has(key):
            return self._memory
        if self._storage.has(key):
            return self._storage
        return self._part(self.mode)

    def _add_order(self, key: Key) -> None:
        data_id, phase, var_name = key
        self._order.setdefault(data_id, {}).setdefault(phase, {})[var_name] = None

    def move(self, key: Key, location: str) -> None:
        """Move an existing variable to ``location`` (``'numpy'`` or ``'zarr'``)."""
        source, target = self._holder(key), self._part(check_mode(location))
        if source is target:
            return
        if source is self._storage:
            target.replace(key, source.read_copy(key), owned=True)
        else:
            target.replace(key, source.read(key, slice(None)), owned=False)
        source.delete(key)

    # --- listing -------------------------------------------------------------------------
    def data_ids(self) -> list[str]:
        return list(
            dict.fromkeys([*self._order, *self._memory.data_ids(), *self._storage.data_ids()])
        )

    def var_names(self, data_id: str, phase: str) -> list[str]:
        return list(self._order.get(data_id, {}).get(phase, ()))

    def has(self, key: Key) -> bool:
        return self._memory.has(key) or self._storage.has(key)

    def shape(self, key: Key) -> tuple[int, ...]:
        return self._holder(key).shape(key)

    def dtype(self, key: Key) -> np.dtype:
        return self._holder(key).dtype(key)

    def location(self, key: Key) -> str:
        return self._holder(key).name

    # --- reads ---------------------------------------------------------------------------
    def read(self, key: Key, index: Index) -> Any:
        if self._memory.has(key):
            return self._memory.read(key, index)
        return self._storage.read(key, index)

    def read_copy(self, key: Key) -> np.ndarray:
        return self._holder(key).read_copy(key)

    # --- writes --------------------------------------------------------------------------
    def check_dtype(self, dtype: np.dtype, key: Key) -> None:
        self._target(key).check_dtype(dtype, key)

    def replace(self, key: Key, data: np.ndarray, *, owned: bool) -> None:
        self._target(key).replace(key, data, owned=owned)
        self._add_order(key)

    def append(self, key: Key, data: np.ndarray) -> None:
        self._holder(key).append(key, data)

    def write(self, key: Key, index: Index, data: np.ndarray) -> None:
        self._holder(key).write(key, index, data)

    def create(self, key: Key, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._target(key).create(key, shape, dtype)
        self._add_order(key)

    def delete(self, key: Key) -> None:
        self._holder(key).delete(key)
        data_id, phase, var_name = key
        del self._order[data_id][phase][var_name]

    def drop_data_id(self, data_id: str) -> None:
        self._memory.drop_data_id(data_id)
        self._storage.drop_data_id(data_id)
        self._order.pop(data_id, None)

    # --- isolation -----------------------------------------------------------------------
    def isolated(self) -> Backend:
        """A copy-on-write view: variables on disk are read from this store until written,
        those in memory are shared until written (see ``NumpyBackend.isolated``)."""
        from multiml.storegate.cow_backend import CopyOnWriteBackend

        return CopyOnWriteBackend.over(
            self,
            self._storage.read_only_arrays(),
            memory=self._memory.isolated(),
            mode=self.mode,
            source=self._storage,
        )

    # --- metadata ------------------------------------------------------------------------
    def get_meta(self, data_id: str) -> dict[str, Any] | None:
        return self._storage.get_meta(data_id)

    def set_meta(self, data_id: str, meta: dict[str, Any]) -> None:
        self._storage.set_meta(data_id, meta)
        self._order.setdefault(data_id, {})
