"""Copy-on-write StoreGate backend: private, in-memory changes over a read-only zarr store.

Worker processes that run combinations of a search each write their steps' outputs into the
store. Over a zarr (or hybrid) store they would all write the same files; a copy-on-write
view gives each of them private changes instead, and leaves the store on disk as it was::

    sg = StoreGate(backend='zarr', backend_args={'output_dir': 'data/'})
    view = sg.isolated()                  # or, in another process, open it directly:
    view = StoreGate(backend='zarr', backend_args={'output_dir': 'data/',
                                                   'copy_on_write': True})

How it works: the view reads the store's arrays read-only (its *base*; each array is
opened when first read) and keeps its own index of the visible variables, each marked as
read from the base or held in memory:

- reads of a variable nobody wrote go to the base on disk (nothing is copied up front);
- a whole-variable write (``update_data(..., index=-1)``, ``create_empty``, a transform,
  ``compile(reset=True)``'s ``active``, ``import_vars``) stores the new array in memory;
- overwriting rows of, or appending to, a base variable first copies that one variable into
  memory;
- a delete removes the variable from the view's index (a tombstone); ``clear_data`` does the
  same for a whole data_id. The base keeps its files;
- metadata (compiled state, sizes) is copied when the view is made and then kept in memory.

``get_metadata()`` reports where each variable is *now*: ``'zarr'`` for one still read from
the base, ``'numpy'`` for one held in memory. Everything else behaves as on the backend the
view was made from (``backend`` is still ``'zarr'`` or ``'hybrid'``; the zarr backend's
dtype rules still apply to variables that would be on disk).

Hybrid views: ``set_mode`` works as usual but, as every write, new variables are held in
memory; ``to_memory`` copies base variables into memory (not a write); ``to_storage`` drops
such a copy again when it was not written since, and otherwise leaves the variable in
memory (the base cannot be written), logging that at DEBUG level.

Pickling carries the in-memory part and the base's path: the copy reopens the base
read-only and is independent of the view it came from (two processes write separately).

Writes to the original: in the process where a view was made with ``isolated()``, the
original copies a variable into each view that still reads it from disk before it
changes that variable (``detach``), so views keep seeing the data as it was when they were
made. Nothing can do that across processes or for a store opened by path: do not write
the store on disk while views of it run elsewhere (their reads of variables they did not
write would see the changes, or fail).

A view's memory grows with what it writes; ``isolated()`` of a view gives another view
over the same base, sharing the first one's in-memory arrays until either writes them.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from multiml.const import PHASES
from multiml.storegate._base import Backend, Index, Key, check_mode
from multiml.storegate.numpy_backend import NumpyBackend

if TYPE_CHECKING:
    from multiml.storegate.zarr_backend import ReadOnlyArrays, ZarrBackend

logger = logging.getLogger(__name__)

# {data_id: {phase: {var_name: held in memory}}}, in creation order
_Index = dict[str, dict[str, dict[str, bool]]]


class CopyOnWriteBackend(Backend):
    """Writes held in memory over read-only arrays on disk; see the module docstring.

    Build one with :meth:`over` (``isolated()`` of the zarr and hybrid backends) or
    :func:`open_copy_on_write` (``backend_args`` ``copy_on_write=True``).

    Args:
        base: the arrays of the store on disk, read-only.
        name: ``'zarr'`` or ``'hybrid'``: the backend this view behaves as.
        memory: the variables held in memory.
        index: the visible variables in creation order, each marked ``True`` when held in
            ``memory`` (otherwise read from ``base``).
        ids: the data_ids in creation order.
        meta: the metadata of each data_id (missing: none).
        mode: where the original would put new variables (``'zarr'`` unless hybrid).
        resident: keys that would be in memory on the original (hybrid).
        source: the zarr backend the view was made from (``None`` when opened by path): it
            is kept alive while the view lives (it may own the temporary directory ``base``
            reads), and before it changes a variable on disk it hands the view a copy of
            the variable if the view still reads it from disk (see :meth:`detach`).
    """

    copy_on_write = True

    def __init__(
        self,
        base: ReadOnlyArrays,
        name: str,
        *,
        memory: NumpyBackend,
        index: _Index,
        ids: list[str],
        meta: dict[str, Any],
        mode: str = "zarr",
        resident: set[Key] | None = None,
        source: ZarrBackend | None = None,
    ) -> None:
        if name not in ("zarr", "hybrid"):
            raise ValueError(f"a copy-on-write view behaves as 'zarr' or 'hybrid'; got {name!r}")
        self.name = name
        self.mode = check_mode(mode)
        self.output_dir = base.output_dir
        self._base = base
        self._memory = memory
        self._index = {d: {p: dict(names) for p, names in ph.items()} for d, ph in index.items()}
        self._ids = dict.fromkeys(ids)
        self._meta: dict[str, Any] = copy.deepcopy(meta)
        self._resident: set[Key] = set() if resident is None else set(resident)
        self._clean: set[Key] = set()  # base variables copied by to_memory, not written since
        self._source = source
        if source is not None:
            source.add_view(self)

    @classmethod
    def over(
        cls,
        original: Backend,
        base: ReadOnlyArrays,
        *,
        name: str | None = None,
        memory: NumpyBackend | None = None,
        mode: str = "zarr",
        source: ZarrBackend | None = None,
    ) -> CopyOnWriteBackend:
        """A view of ``original`` as it is now: its data_ids, variables (in creation order;
        those in ``memory`` are held there, the others read from ``base``, the arrays of the
        same store) and metadata. ``name`` defaults to ``original.name``."""
        memory = NumpyBackend() if memory is None else memory
        ids = original.data_ids()
        index = {
            data_id: {
                phase: {
                    var_name: memory.has((data_id, phase, var_name))
                    for var_name in original.var_names(data_id, phase)
                }
                for phase in PHASES
            }
            for data_id in ids
        }
        resident = {
            (data_id, phase, var_name)
            for data_id, phases in index.items()
            for phase, names in phases.items()
            for var_name, in_memory in names.items()
            if in_memory
        }
        return cls(
            base,
            original.name if name is None else name,
            memory=memory,
            index=index,
            ids=ids,
            meta={data_id: original.get_meta(data_id) for data_id in ids},
            mode=mode,
            resident=resident,
            source=source,
        )

    # --- pickling ------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "base": self._base,  # pickles as its path
            "memory": self._memory,
            "index": self._index,
            "meta": self._meta,
            "ids": list(self._ids),
            "resident": self._resident,
            "clean": self._clean,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name = state["name"]
        self.mode = state["mode"]
        self._base = state["base"]
        self.output_dir = self._base.output_dir
        self._memory = state["memory"]
        self._index = state["index"]
        self._meta = state["meta"]
        self._ids = dict.fromkeys(state["ids"])
        self._resident = state["resident"]
        self._clean = state["clean"]
        self._source = None  # in another process: the original's writes cannot be seen

    # --- bookkeeping ---------------------------------------------------------------------
    def _in_memory(self, key: Key) -> bool:
        """Whether an existing variable is held in memory (KeyError when missing)."""
        data_id, phase, var_name = key
        return self._index[data_id][phase][var_name]

    def _holder(self, key: Key) -> Backend:
        return self._memory if self._in_memory(key) else self._base

    def _touch(self, data_id: str) -> None:
        if data_id not in self._ids:
            self._ids[data_id] = None
            self._meta.setdefault(data_id, None)

    def _mark(self, key: Key, in_memory: bool) -> None:
        """Make ``key`` visible (keeping its position when it already was)."""
        data_id, phase, var_name = key
        self._touch(data_id)
        self._index.setdefault(data_id, {}).setdefault(phase, {})[var_name] = in_memory

    def _stored(self, key: Key) -> None:
        """Bookkeeping after a whole-variable write into memory."""
        if not self.has(key) and self.mode == "numpy":
            self._resident.add(key)
        self._mark(key, True)
        self._clean.discard(key)

    def _copy_up(self, key: Key) -> None:
        """Copy a base variable into memory (it must not be held there yet)."""
        self._memory.replace(key, self._base.read_copy(key), owned=True)
        self._mark(key, True)

    def detach(self, data_id: str, key: Key | None = None) -> None:
        """Copy ``key`` (every variable of ``data_id`` when ``None``) into memory if the
        view reads it from disk: the source is about to change it there."""
        if key is not None:
            if self.has(key) and not self._in_memory(key):
                self._copy_up(key)
            return
        for phase, names in self._index.get(data_id, {}).items():
            for var_name, in_memory in list(names.items()):
                if not in_memory:
                    self._copy_up((data_id, phase, var_name))

    # --- listing -------------------------------------------------------------------------
    def data_ids(self) -> list[str]:
        return list(self._ids)

    def var_names(self, data_id: str, phase: str) -> list[str]:
        return list(self._index.get(data_id, {}).get(phase, ()))

    def has(self, key: Key) -> bool:
        data_id, phase, var_name = key
        return var_name in self._index.get(data_id, {}).get(phase, ())

    def shape(self, key: Key) -> tuple[int, ...]:
        return self._holder(key).shape(key)

    def dtype(self, key: Key) -> np.dtype:
        return self._holder(key).dtype(key)

    def location(self, key: Key) -> str:
        return "numpy" if self._in_memory(key) else "zarr"

    # --- reads ---------------------------------------------------------------------------
    def read(self, key: Key, index: Index) -> Any:
        return self._holder(key).read(key, index)

    def read_copy(self, key: Key) -> np.ndarray:
        return self._holder(key).read_copy(key)

    # --- writes --------------------------------------------------------------------------
    def check_dtype(self, dtype: np.dtype, key: Key) -> None:
        """The rule of the place the original would write ``key`` to: memory takes every
        dtype, the zarr store (the base) rejects some."""
        would_be_in_memory = key in self._resident if self.has(key) else self.mode == "numpy"
        if not would_be_in_memory:
            self._base.check_dtype(dtype, key)

    def replace(self, key: Key, data: np.ndarray, *, owned: bool) -> None:
        self._memory.replace(key, data, owned=owned)
        self._stored(key)

    def create(self, key: Key, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._memory.create(key, shape, dtype)
        self._stored(key)

    def append(self, key: Key, data: np.ndarray) -> None:
        if self._in_memory(key):
            self._memory.append(key, data)
        else:
            rows = self._base.read(key, slice(None))
            self._memory.replace(key, np.concatenate([rows, data]), owned=True)
            self._mark(key, True)
        self._clean.discard(key)

    def write(self, key: Key, index: Index, data: np.ndarray) -> None:
        if not self._in_memory(key):
            self._copy_up(key)
        self._memory.write(key, index, data)
        self._clean.discard(key)

    def delete(self, key: Key) -> None:
        if self._in_memory(key):
            self._memory.delete(key)
        data_id, phase, var_name = key
        del self._index[data_id][phase][var_name]
        self._resident.discard(key)
        self._clean.discard(key)

    def drop_data_id(self, data_id: str) -> None:
        if data_id not in self._ids:
            return
        self._memory.drop_data_id(data_id)
        self._index.pop(data_id, None)
        self._meta.pop(data_id, None)
        del self._ids[data_id]
        self._resident = {key for key in self._resident if key[0] != data_id}
        self._clean = {key for key in self._clean if key[0] != data_id}

    # --- hybrid placement ----------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """Where the original would put new variables (they are held in memory here)."""
        self.mode = check_mode(mode)

    def move(self, key: Key, location: str) -> None:
        """``'numpy'``: copy a base variable into memory; ``'zarr'``: drop such a copy when it
        was not written since (a written variable stays in memory)."""
        if check_mode(location) == "numpy":
            if not self._in_memory(key):
                self._copy_up(key)
                self._clean.add(key)
            self._resident.add(key)
            return
        self._resident.discard(key)
        if key in self._clean:
            self._memory.delete(key)
            self._mark(key, False)
            self._clean.discard(key)
        elif self._in_memory(key):
            logger.debug(
                "to_storage: %s stays in memory: this copy-on-write view never writes its "
                "base store %s",
                key,
                self.output_dir,
            )

    # --- isolation -----------------------------------------------------------------------
    def isolated(self) -> CopyOnWriteBackend:
        """Another view over the same base, sharing this one's arrays until written."""
        clone = CopyOnWriteBackend(
            self._base,
            self.name,
            memory=self._memory.isolated(),
            index=self._index,
            ids=list(self._ids),
            meta=self._meta,
            mode=self.mode,
            resident=self._resident,
            source=self._source,
        )
        clone._clean = set(self._clean)
        return clone

    # --- metadata ------------------------------------------------------------------------
    def get_meta(self, data_id: str) -> dict[str, Any] | None:
        return self._meta.get(data_id)

    def set_meta(self, data_id: str, meta: dict[str, Any]) -> None:
        self._touch(data_id)
        self._meta[data_id] = meta


def open_copy_on_write(name: str, args: dict[str, Any]) -> CopyOnWriteBackend:
    """A view over the existing store at ``args['output_dir']``: ``backend_args`` of
    ``'zarr'`` or ``'hybrid'`` (``name``) without ``copy_on_write``. The store is opened
    read-only; nothing is written to it, not even the attributes a new store gets."""
    from multiml.storegate.zarr_backend import DEFAULT_CHUNK_BYTES, ZarrBackend

    args = dict(args)
    output_dir = args.pop("output_dir", None)
    if output_dir is None:
        raise ValueError(
            "backend_args copy_on_write=True needs output_dir: the path of an existing store "
            "to open read-only"
        )
    mode = check_mode(args.pop("mode", "zarr"))
    store = ZarrBackend(
        output_dir,
        args.pop("chunk_bytes", DEFAULT_CHUNK_BYTES),
        args.pop("compressors", None),
        read_only=True,
    )
    return CopyOnWriteBackend.over(store, store.read_only_arrays(), name=name, mode=mode)
