"""On-disk StoreGate backend: a zarr (format 3) store.

``StoreGate(backend='zarr', backend_args={'output_dir': path})`` keeps every variable as a
zarr array on disk; a new StoreGate on the same path reopens all data and metadata. Without
``output_dir`` a temporary directory is used and removed when the StoreGate is garbage
collected (copies made by pickling never remove it).

On-disk layout (a contract: users point the app at existing stores written by StoreGate)::

    <output_dir>/                          root group
        attrs["multiml_storegate"] = {"format": 1, "data_ids": [<data_id>, ...]}
    <output_dir>/<data_id>/                one group per data_id
        attrs["multiml_storegate"] = {"compiled": bool,
                                      "sizes": {"train": int, "valid": int, "test": int}
                                               or null (never compiled)}
    <output_dir>/<data_id>/<phase>/        phase is "train", "valid" or "test"
        attrs["multiml_storegate"] = {"var_names": [<var_name>, ...]}   (creation order)
    <output_dir>/<data_id>/<phase>/<var_name>
        one array of shape (N, *k), chunked along rows only

The ``attrs`` only record order and the compiled state: a group or array added by other
tools in this layout is found too (listed after the recorded ones, sorted by name), and a
store without any ``multiml_storegate`` attributes opens as "never compiled".

Storage options (``backend_args``):

- ``chunk_bytes`` (default 4 MiB): target size of one chunk; a chunk holds
  ``chunk_bytes // row_bytes`` rows (at most the rows of the array when it is created; a
  variable that grows by appends is re-chunked geometrically, so appends stay amortised).
- ``compressors`` (default ``None``: uncompressed, which reads fastest): passed to
  ``zarr.create_array``; ``'auto'`` selects zarr's default (zstd).
- ``copy_on_write`` (default ``False``): ``True`` opens the existing store at
  ``output_dir`` read-only and keeps every write in memory, so the files are never
  modified (each process that opens the store this way gets its own private changes).
  Variables nobody wrote are still read from disk; a variable is copied into memory the
  first time rows of it are overwritten or appended to. See
  :mod:`multiml.storegate.cow_backend`; ``StoreGate.isolated()`` gives the same view of
  an open store.

Reads of a whole variable, a slice or a row are one zarr read; index-array reads use
orthogonal indexing (only the chunks holding the rows are read). For random mini-batches
over data on disk every batch touches most chunks: train from memory instead (the
``hybrid`` backend's ``to_memory``). A StoreGate caches the hierarchy when it opens:
writes made by another process to the same store are not seen until it is reopened, and
two processes must not write the same variables at once (give each process an isolated
view, ``StoreGate.isolated()`` or ``copy_on_write=True``, when they write).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from multiml.const import PHASES
from multiml.storegate._base import Backend, Index, Key

if TYPE_CHECKING:
    from multiml.storegate.cow_backend import CopyOnWriteBackend

ATTRS_KEY = "multiml_storegate"
FORMAT = 1
DEFAULT_CHUNK_BYTES = 4 * 2**20
_REGROW = 4  # re-chunk an appended variable once it holds this many chunks of its size


def _read(array: Any, index: Index) -> Any:
    """Rows of a zarr array with the read semantics of every backend (``_base``)."""
    if isinstance(index, np.ndarray):
        return array.oindex[index]
    if isinstance(index, slice) and (index.step or 1) < 0:
        out = array.oindex[np.arange(*index.indices(array.shape[0]))]
    else:
        out = array[index]
    if isinstance(out, np.ndarray):
        if out.ndim == 0:
            return out[()]
        out.flags.writeable = False  # basic reads are read-only on every backend
    return out


def _check_storable(dtype: np.dtype, key: Key) -> None:
    if np.dtype(dtype).kind == "O":
        raise TypeError(
            f"the zarr backend cannot store variable {key[2]!r} of dtype object; use a "
            f"fixed-size dtype (numbers, bool, 'U<n>' strings) or the numpy backend"
        )


def _ordered(recorded: list[str], present: list[str]) -> list[str]:
    """``present`` names, those in ``recorded`` first (in that order), the rest sorted."""
    known = set(present)
    head = [name for name in recorded if name in known]
    return head + sorted(known - set(head))


class ZarrBackend(Backend):
    """Variables in a zarr v3 store on disk; see the module docstring."""

    name = "zarr"
    ARGS = ("output_dir", "chunk_bytes", "compressors", "copy_on_write")

    def __init__(
        self,
        output_dir: str | os.PathLike[str] | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        compressors: Any = None,
        *,
        read_only: bool = False,
    ) -> None:
        """``read_only=True`` (internal: the base of a copy-on-write view) opens an existing
        store without writing anything; every write then fails in zarr."""
        if not isinstance(chunk_bytes, int) or chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be an int >= 1; got {chunk_bytes!r}")
        self._cleanup: weakref.finalize | None = None
        if output_dir is None:
            if read_only:
                raise ValueError("a read-only zarr store needs output_dir")
            output_dir = tempfile.mkdtemp(prefix="multiml-storegate-")
            self._cleanup = weakref.finalize(self, shutil.rmtree, output_dir, True)
        self.output_dir = os.path.abspath(os.fspath(output_dir))
        self._chunk_bytes = chunk_bytes
        self._compressors = compressors
        self._read_only = read_only
        self._views: weakref.WeakSet[CopyOnWriteBackend] = weakref.WeakSet()
        self._open()

    # --- opening and pickling ------------------------------------------------------------
    def _open(self) -> None:
        if self._read_only:
            try:
                self._root = zarr.open_group(self.output_dir, mode="r", zarr_format=3)
            except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
                raise FileNotFoundError(
                    f"output_dir {self.output_dir!r} holds no zarr store to open read-only "
                    f"(copy_on_write opens an existing store): {exc}"
                ) from None
        else:
            self._root = zarr.open_group(self.output_dir, mode="a", zarr_format=3)
        root_attrs = self._root.attrs.get(ATTRS_KEY, {})
        self._ids: list[str] = _ordered(
            root_attrs.get("data_ids", []), self._group_keys(self._root)
        )
        self._groups: dict[tuple[str, ...], Any] = {}
        self._arrays: dict[str, dict[str, dict[str, Any]]] = {}
        self._meta: dict[str, dict[str, Any] | None] = {}
        for data_id in self._ids:
            group = self._root[data_id]
            self._groups[(data_id,)] = group
            self._meta[data_id] = group.attrs.get(ATTRS_KEY)
            phases = self._arrays.setdefault(data_id, {})
            for phase in PHASES:
                if phase not in self._group_keys(group):
                    continue
                phase_group = group[phase]
                self._groups[(data_id, phase)] = phase_group
                recorded = phase_group.attrs.get(ATTRS_KEY, {}).get("var_names", [])
                names = _ordered(recorded, list(phase_group.array_keys()))
                phases[phase] = {name: phase_group[name] for name in names}
        if ATTRS_KEY not in self._root.attrs and not self._read_only:
            self._save_ids()

    @staticmethod
    def _group_keys(group: Any) -> list[str]:
        return list(group.group_keys())

    def __getstate__(self) -> dict[str, Any]:
        return {
            "output_dir": self.output_dir,
            "chunk_bytes": self._chunk_bytes,
            "compressors": self._compressors,
            "read_only": self._read_only,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.output_dir = state["output_dir"]
        self._chunk_bytes = state["chunk_bytes"]
        self._compressors = state["compressors"]
        self._read_only = state.get("read_only", False)
        self._cleanup = None  # only the StoreGate that made a temporary directory removes it
        self._views = weakref.WeakSet()  # views made in another process are not told
        self._open()

    # --- attributes ----------------------------------------------------------------------
    def _save_ids(self) -> None:
        self._root.attrs[ATTRS_KEY] = {"format": FORMAT, "data_ids": list(self._ids)}

    def _save_var_names(self, data_id: str, phase: str) -> None:
        names = list(self._arrays[data_id][phase])
        self._groups[(data_id, phase)].attrs[ATTRS_KEY] = {"var_names": names}

    def _data_group(self, data_id: str) -> Any:
        group = self._groups.get((data_id,))
        if group is None:
            group = self._groups[(data_id,)] = self._root.require_group(data_id)
            self._ids.append(data_id)
            self._meta.setdefault(data_id, None)
            self._arrays.setdefault(data_id, {})
            self._save_ids()
        return group

    def _phase_group(self, data_id: str, phase: str) -> Any:
        group = self._groups.get((data_id, phase))
        if group is None:
            group = self._data_group(data_id).require_group(phase)
            self._groups[(data_id, phase)] = group
            self._arrays[data_id][phase] = {}
        return group

    # --- listing -------------------------------------------------------------------------
    def data_ids(self) -> list[str]:
        return list(self._ids)

    def var_names(self, data_id: str, phase: str) -> list[str]:
        return list(self._arrays.get(data_id, {}).get(phase, ()))

    def has(self, key: Key) -> bool:
        data_id, phase, var_name = key
        return var_name in self._arrays.get(data_id, {}).get(phase, ())

    def _array(self, key: Key) -> Any:
        data_id, phase, var_name = key
        return self._arrays[data_id][phase][var_name]

    def shape(self, key: Key) -> tuple[int, ...]:
        return tuple(self._array(key).shape)

    def dtype(self, key: Key) -> np.dtype:
        return np.dtype(self._array(key).dtype)

    def location(self, key: Key) -> str:
        self._array(key)
        return "zarr"

    # --- reads ---------------------------------------------------------------------------
    def read(self, key: Key, index: Index) -> Any:
        return _read(self._array(key), index)

    def read_copy(self, key: Key) -> np.ndarray:
        return self._array(key)[...]

    # --- writes --------------------------------------------------------------------------
    def check_dtype(self, dtype: np.dtype, key: Key) -> None:
        _check_storable(dtype, key)

    def _chunks(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, ...]:
        row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize)
        rows = max(1, min(self._chunk_bytes // row_bytes, shape[0]))
        return (rows, *(max(1, d) for d in shape[1:]))

    def _create(self, key: Key, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        data_id, phase, var_name = key
        self._detach(data_id, key)
        group = self._phase_group(data_id, phase)
        array = group.create_array(
            var_name,
            shape=shape,
            dtype=dtype,
            chunks=self._chunks(shape, dtype),
            compressors=self._compressors,
            overwrite=True,
        )
        names = self._arrays[data_id][phase]
        is_new = var_name not in names
        names[var_name] = array
        if is_new:
            self._save_var_names(data_id, phase)
        return array

    def replace(self, key: Key, data: np.ndarray, *, owned: bool) -> None:
        array = self._create(key, data.shape, data.dtype)
        if data.size:
            array[...] = data

    def append(self, key: Key, data: np.ndarray) -> None:
        self._detach(key[0], key)
        array = self._array(key)
        dtype = np.result_type(array.dtype, data.dtype)
        total = array.shape[0] + len(data)
        ideal = self._chunks((total, *array.shape[1:]), dtype)[0]
        chunk_rows = array.chunks[0]
        if dtype != array.dtype or (chunk_rows < ideal and total > _REGROW * chunk_rows):
            self.replace(key, np.concatenate([array[...], data.astype(dtype)]), owned=True)
        elif len(data):
            array.append(data, axis=0)

    def write(self, key: Key, index: Index, data: np.ndarray) -> None:
        self._detach(key[0], key)
        array = self._array(key)
        if isinstance(index, slice) and (index.step or 1) < 0:
            index = np.arange(*index.indices(array.shape[0]))
        if not isinstance(index, np.ndarray):
            array[index] = data
            return
        if len(np.unique(index)) < len(index):  # numpy semantics: the last write wins
            reversed_first = np.unique(index[::-1], return_index=True)[1]
            keep = len(index) - 1 - reversed_first
            index, data = index[keep], np.asarray(data)[keep]
        array.oindex[index] = data

    def create(self, key: Key, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._create(key, shape, dtype)  # unwritten chunks read as the fill value, 0

    def delete(self, key: Key) -> None:
        data_id, phase, var_name = key
        self._detach(data_id, key)
        del self._groups[(data_id, phase)][var_name]
        del self._arrays[data_id][phase][var_name]
        self._save_var_names(data_id, phase)

    def drop_data_id(self, data_id: str) -> None:
        if data_id not in self._ids:
            return
        self._detach(data_id)
        del self._root[data_id]
        self._ids.remove(data_id)
        self._arrays.pop(data_id, None)
        self._meta.pop(data_id, None)
        for group_key in [k for k in self._groups if k[0] == data_id]:
            del self._groups[group_key]
        self._save_ids()

    # --- isolation -----------------------------------------------------------------------
    def read_only_arrays(self) -> ReadOnlyArrays:
        """The arrays of this store, to be opened read-only when first read."""
        arrays = self._arrays if self._read_only else {}  # arrays opened read-only are reused
        return ReadOnlyArrays(self.output_dir, arrays)

    def add_view(self, view: CopyOnWriteBackend) -> None:
        """Register a copy-on-write view made from this store: before this store changes a
        variable on disk, the view gets a copy of it (while the view is alive)."""
        self._views.add(view)

    def _detach(self, data_id: str, key: Key | None = None) -> None:
        for view in list(self._views):
            view.detach(data_id, key)

    def isolated(self) -> Backend:
        """A copy-on-write view: reads from this store, keeps its writes in memory."""
        from multiml.storegate.cow_backend import CopyOnWriteBackend

        return CopyOnWriteBackend.over(self, self.read_only_arrays(), source=self)

    # --- metadata ------------------------------------------------------------------------
    def get_meta(self, data_id: str) -> dict[str, Any] | None:
        return self._meta.get(data_id)

    def set_meta(self, data_id: str, meta: dict[str, Any]) -> None:
        self._data_group(data_id).attrs[ATTRS_KEY] = meta
        self._meta[data_id] = meta


class ReadOnlyArrays:
    """The arrays of a zarr store, read-only: the base a copy-on-write view reads from.

    Arrays are opened (read-only) when first read, so making a view costs nothing per
    variable; nothing can be written through this class. It pickles as its path.
    """

    def __init__(
        self,
        output_dir: str,
        arrays: dict[str, dict[str, dict[str, Any]]] | None = None,
    ) -> None:
        self.output_dir = output_dir
        self._root: Any = None
        self._arrays: dict[Key, Any] = {
            (data_id, phase, name): array
            for data_id, phases in (arrays or {}).items()
            for phase, names in phases.items()
            for name, array in names.items()
        }

    def __getstate__(self) -> dict[str, Any]:
        return {"output_dir": self.output_dir}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["output_dir"])

    def _array(self, key: Key) -> Any:
        array = self._arrays.get(key)
        if array is None:
            if self._root is None:
                self._root = zarr.open_group(self.output_dir, mode="r", zarr_format=3)
            array = self._arrays[key] = self._root["/".join(key)]
        return array

    def shape(self, key: Key) -> tuple[int, ...]:
        return tuple(self._array(key).shape)

    def dtype(self, key: Key) -> np.dtype:
        return np.dtype(self._array(key).dtype)

    def read(self, key: Key, index: Index) -> Any:
        return _read(self._array(key), index)

    def read_copy(self, key: Key) -> np.ndarray:
        return self._array(key)[...]

    @staticmethod
    def check_dtype(dtype: np.dtype, key: Key) -> None:
        """Raise ``TypeError`` for a dtype the zarr backend cannot store."""
        _check_storable(dtype, key)
