"""StoreGate: the named column store through which data move between steps.

Data live under ``data_id`` → phase (``'train'``, ``'valid'``, ``'test'``) → variable name.
Every call works on the current data_id (``set_data_id``).

>>> import numpy as np
>>> from multiml import StoreGate
>>> sg = StoreGate(data_id='demo')                      # numpy backend, in memory
>>> sg.add_data('x', np.zeros((150, 4)), phase=(0.8, 0.1, 0.1))
>>> sg.add_data('label', np.ones(150, dtype=int), phase=(0.8, 0.1, 0.1))
>>> sg.compile()
>>> sg.get_data('x', 'train').shape, sg.get_data(('x', 'x'), 'valid').shape
((120, 4), (15, 2, 4))
>>> sg['test']['label'][0:5]
array([1, 1, 1, 1, 1])

Shape convention (``add_data``/``update_data`` take, ``get_data`` returns):

=================  =============================================  ==========================
``var_names``      written data                                   read data
=================  =============================================  ==========================
``'x'``            ``(N, *k)``                                    ``(N, *k)``; ``(*k)`` for
                                                                  an int index
``('x', 'y')``     ``(N, M, *k)``, split on axis 1 into M vars    stacked ``(N, M, *k)``
``['x', 'y']``     a list of arrays (shapes may differ)           a list of arrays
=================  =============================================  ==========================

Backends (``backend=``): ``'numpy'`` (memory), ``'zarr'`` (a zarr v3 store on disk at
``backend_args={'output_dir': path}``; the layout is ``<output_dir>/<data_id>/<phase>/
<var_name>``, see :mod:`multiml.storegate.zarr_backend`) and ``'hybrid'`` (both; see
:mod:`multiml.storegate.hybrid_backend`). All behave identically through this class.
``isolated()`` (or ``backend_args={..., 'copy_on_write': True}``) gives a store whose
writes stay in its own memory and never reach the files on disk (see
:mod:`multiml.storegate.cow_backend`): one per worker of a search.

Reads and mutation: reads by ``-1``, an int, a ``(start, stop)`` tuple or a slice of one
phase return **read-only** arrays on every backend (on the numpy backend they are views of
the stored data, so nothing is copied); copy them (``arr.copy()``) to modify, and note
that ``torch.from_numpy`` warns about read-only arrays (``torch.tensor(arr)`` copies).
Reads by an index array (the batching path), stacked tuple reads and ``phase='all'`` reads
return new, writable arrays.
StoreGate never modifies arrays passed to it: it copies what it stores (shuffling
included).

Compile: ``get_data`` works only on a compiled data_id. ``compile()`` checks that all
variables of each phase have the same length and records the sizes; a write that adds a
variable or changes a length marks the data_id as not compiled again (unless it was made
with ``do_compile=True``), while in-place updates, deletions and transforms that keep the
lengths keep it compiled. A failed call leaves the store exactly as it was.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from multiml.const import PHASES
from multiml.storegate._args import (
    as_array,
    check_phase,
    is_all_index,
    is_int,
    name_list,
    normalize_index,
    parse_write_phase,
    route,
    selection_length,
    shuffle_seed,
    split_rows,
    unpack,
)
from multiml.storegate._base import Backend, Key, check_name, promoted_dtype
from multiml.storegate.numpy_backend import NumpyBackend
from multiml.storegate.tracking import WriteLog
from multiml.storegate.views import PhaseView

logger = logging.getLogger(__name__)

VarNames = str | tuple[str, ...] | list[str]
"""``'x'``, ``('x', 'y')`` (stacked on axis 1) or ``['x', 'y']`` (a list of arrays)."""

BACKENDS = ("numpy", "zarr", "hybrid")
DEFAULT_DATA_ID = "default"
ACTIVE_VAR_NAME = "active"


class NotCompiledError(ValueError):
    """Data were read from a data_id that is not compiled (see ``StoreGate.compile``)."""


@dataclass
class _Op:
    """One planned change of one variable; plans are fully validated before they run."""

    kind: str  # 'replace' | 'append' | 'write' | 'create' | 'delete'
    key: Key
    data: np.ndarray | None = None
    owned: bool = False
    index: Any = None
    shape: tuple[int, ...] = ()
    dtype: Any = None


Lengths = dict[str, dict[str, int]]


def _make_backend(backend: Any, backend_args: Mapping[str, Any] | None) -> Backend:
    if backend_args is None:
        args: dict[str, Any] = {}
    elif isinstance(backend_args, Mapping):
        args = dict(backend_args)
    else:
        raise TypeError(f"backend_args must be a mapping or None; got {backend_args!r}")
    if backend == "numpy":
        cls: Any = NumpyBackend
    elif backend == "zarr":
        from multiml.storegate.zarr_backend import ZarrBackend

        cls = ZarrBackend
    elif backend == "hybrid":
        from multiml.storegate.hybrid_backend import HybridBackend

        cls = HybridBackend
    else:
        allowed = ", ".join(repr(b) for b in BACKENDS)
        raise ValueError(f"unknown backend {backend!r}; allowed: {allowed}")
    allowed_args = getattr(cls, "ARGS", ())
    unknown = sorted(set(args) - set(allowed_args))
    if unknown:
        raise ValueError(
            f"backend {backend!r} does not take backend_args {unknown}; "
            f"allowed: {list(allowed_args) or 'none'}"
        )
    copy_on_write = args.pop("copy_on_write", False)
    if not isinstance(copy_on_write, bool | np.bool_):
        raise TypeError(f"backend_args copy_on_write must be a bool; got {copy_on_write!r}")
    if copy_on_write:
        from multiml.storegate.cow_backend import open_copy_on_write

        return open_copy_on_write(backend, args)
    return cls(**args)


class StoreGate:
    """Named column store of numpy arrays: ``data_id`` → phase → variable.

    Args:
        backend: ``'numpy'`` (memory), ``'zarr'`` (disk) or ``'hybrid'`` (both).
        backend_args: options of the backend: ``zarr`` takes ``output_dir`` (a temporary
            directory, removed with the store, when omitted), ``chunk_bytes``,
            ``compressors`` and ``copy_on_write``; ``hybrid`` takes those and ``mode``;
            ``numpy`` takes none. ``copy_on_write=True`` opens the existing store at
            ``output_dir`` read-only and keeps every write in memory (see ``isolated()``).
        data_id: the dataset every call works on (``'default'`` when omitted).

    See the module docstring for the shape convention, compile rules and read semantics.

    Pickling (e.g. to a ``spawn`` worker): a ``numpy`` store travels with its arrays and the
    copy is independent; a ``zarr`` store travels as its path and the copy reopens the same
    directory, so its writes land in the same files (do not let two processes write the
    same variables); ``hybrid`` does both. An isolated store (``isolated()`` or
    ``copy_on_write=True``) travels as its in-memory changes plus the path, and each copy
    writes only to its own memory. Open ``track_writes`` scopes do not travel.

    Isolation: ``isolated()`` returns a store that sees the same data and whose writes never
    reach this store or its files: give one to each worker of a search, or open a shared
    dataset with ``copy_on_write=True`` so that a run never modifies it.
    """

    def __init__(
        self,
        backend: str = "numpy",
        backend_args: Mapping[str, Any] | None = None,
        data_id: str | None = None,
    ) -> None:
        self._data_id = check_name(DEFAULT_DATA_ID if data_id is None else data_id, "data_id")
        self._backend_name = backend
        self._backend = _make_backend(backend, backend_args)
        self._logs: list[WriteLog] = []

    # --- pickling ------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {
            "backend_name": self._backend_name,
            "backend": self._backend,
            "data_id": self._data_id,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._backend_name = state["backend_name"]
        self._backend = state["backend"]
        self._data_id = state["data_id"]
        self._logs = []

    def __repr__(self) -> str:
        cow = ", copy_on_write=True" if self.copy_on_write else ""
        return (
            f"StoreGate(backend={self._backend_name!r}{cow}, data_id={self._data_id!r}, "
            f"data_ids={self.get_data_ids()!r})"
        )

    # --- isolation -----------------------------------------------------------------------
    def isolated(self) -> StoreGate:
        """A store that sees exactly what this one holds now, and whose writes never change
        this store or its files.

        Every data_id, variable, phase, the compiled state and the current data_id are the
        same; from then on the two are independent. Nothing large is copied up front:

        - ``zarr`` / ``hybrid``: a copy-on-write view (``copy_on_write`` is ``True``).
          Variables are read from this store's directory until the view writes them; every
          write (add, update, create_empty, delete, clear, transforms, compile's
          ``active``, ``to_memory``) lands in the view's memory. A variable is copied into
          memory when rows of it are first overwritten or appended to, replaced outright by
          a whole-variable write, and a delete only hides it. When this store later
          changes a variable a view still reads from disk, it first hands the view a copy,
          so views in this process keep their data; copies of a view sent to other
          processes are not protected that way (do not write this store while they run).
          See :mod:`multiml.storegate.cow_backend` for the details.
        - ``numpy``: a new numpy store sharing every array with this one; either side copies
          a variable the first time it overwrites rows of it in place.

        The view pickles as its in-memory changes plus the path of the store on disk (for a
        ``spawn`` worker); track_writes scopes open on this store do not see its writes.

        >>> sg = StoreGate(backend='zarr', data_id='d')
        >>> sg.add_data('x', np.arange(4.0), do_compile=True)
        >>> view = sg.isolated()
        >>> view.update_data('x', -1.0, index=0)
        >>> view.get_data('x'), sg.get_data('x')
        (array([-1.,  1.,  2.,  3.]), array([0., 1., 2., 3.]))
        >>> view.get_metadata()['vars']['train']['x']['location'], view.copy_on_write
        ('numpy', True)
        """
        clone = StoreGate.__new__(StoreGate)
        clone._backend_name = self._backend_name
        clone._backend = self._backend.isolated()
        clone._data_id = self._data_id
        clone._logs = []
        return clone

    @property
    def copy_on_write(self) -> bool:
        """Whether this store is a copy-on-write view of a store on disk: its writes are
        kept in memory and never reach ``output_dir`` (see ``isolated()``)."""
        return self._backend.copy_on_write

    # --- data ids ------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """The backend name: ``'numpy'``, ``'zarr'`` or ``'hybrid'``."""
        return self._backend_name

    @property
    def output_dir(self) -> str | None:
        """Directory of the zarr store (``zarr``/``hybrid``; ``None`` for ``numpy``); for a
        copy-on-write view, the store it reads (and never writes)."""
        return getattr(self._backend, "output_dir", None)

    @property
    def data_id(self) -> str:
        """The current data_id."""
        return self._data_id

    def set_data_id(self, data_id: str) -> None:
        """Select the dataset that every following call works on (it may not exist yet)."""
        self._data_id = check_name(data_id, "data_id")

    def get_data_ids(self) -> list[str]:
        """Data ids that hold data or metadata, in creation order."""
        return self._backend.data_ids()

    # --- item syntax ---------------------------------------------------------------------
    def __getitem__(self, phase: str) -> PhaseView:
        """``sg['train']``: a stateless view of one phase of the current data_id."""
        return PhaseView(self, self._data_id, phase)

    # --- writes --------------------------------------------------------------------------
    def add_data(
        self,
        var_names: VarNames,
        data: Any,
        phase: str | Sequence[float] | Sequence[int] = "train",
        shuffle: bool | int = False,
        do_compile: bool = False,
    ) -> None:
        """Add rows to variables, appending to those that already exist in the phase.

        Args:
            var_names: ``'x'``, ``('x', 'y')`` or ``['x', 'y']`` (see the shape convention).
            data: the rows; never modified.
            phase: a phase name; three fractions summing to 1.0 (split points
                ``int(N*f0)`` and ``int(N*f0 + N*f1)``); three ints summing to N; or
                ``'all'``/``'auto'`` (split by the compiled sizes, N must equal their total).
            shuffle: ``True`` (seed 1) or an int seed: permute the rows before splitting,
                with a local RNG; variables of equal length get the same permutation.
            do_compile: compile afterwards (the call fails, storing nothing, if the
                lengths would be inconsistent).

        >>> sg = StoreGate()
        >>> sg.add_data('x', np.arange(150), phase=(0.8, 0.1, 0.1), shuffle=True)
        >>> sg.compile()
        >>> [len(sg[p]) for p in ('train', 'valid', 'test')]
        [120, 15, 15]
        """
        data_id = self._data_id
        items = unpack(var_names, data)
        seed = shuffle_seed(shuffle)
        spec = parse_write_phase(phase)
        sizes = self._compiled_sizes(data_id)
        ops = []
        for var_name, array in items:
            owned = False
            if seed is not None:
                array = array[np.random.default_rng(seed).permutation(len(array))]
                owned = True
            for phase_name, rows in split_rows(spec, len(array), sizes, repr(var_name)):
                key = (data_id, phase_name, var_name)
                chunk = array[rows]
                if self._backend.has(key):
                    self._check_append(key, chunk)
                    ops.append(_Op("append", key, chunk))
                else:
                    self._backend.check_dtype(chunk.dtype, key)
                    ops.append(_Op("replace", key, chunk, owned=owned))
        self._apply(data_id, ops, "compile" if do_compile else "keep")

    def _check_append(self, key: Key, chunk: np.ndarray) -> None:
        shape = self._backend.shape(key)
        if chunk.shape[1:] != shape[1:]:
            raise ValueError(
                f"cannot append rows of shape {chunk.shape[1:]} to variable {key[2]!r} in "
                f"phase {key[1]!r}, whose rows have shape {shape[1:]} (use update_data to "
                f"replace the variable)"
            )
        dtype = promoted_dtype(self._backend.dtype(key), chunk.dtype, key[2])
        self._backend.check_dtype(dtype, key)

    def update_data(
        self,
        var_names: VarNames,
        data: Any,
        phase: str | Sequence[float] | Sequence[int] = "train",
        index: Any = -1,
        do_compile: bool = True,
    ) -> None:
        """Replace variables, or rows of them, in place; a missing variable is added.

        Args:
            var_names: ``'x'``, ``('x', 'y')`` or ``['x', 'y']``.
            data: the new values; never modified.
            phase: as in ``add_data``. A partial ``index`` needs one phase or ``'all'``
                (then the index counts rows of train, valid, test concatenated).
            index: ``-1`` replaces each whole variable (its shape and dtype may change);
                an int, a ``(start, stop)`` tuple, a slice or an index array overwrites
                those rows (the data must broadcast to them and cast safely to the dtype).
            do_compile: compile afterwards (checked before anything is written).

        >>> sg = StoreGate()
        >>> sg.update_data('x', np.zeros((4, 2)))
        >>> sg.update_data('x', np.ones(2), index=3)
        >>> sg.get_data('x')[3]
        array([1., 1.])
        """
        self._update(self._data_id, var_names, data, phase, index, do_compile)

    def _update(
        self,
        data_id: str,
        var_names: VarNames,
        data: Any,
        phase: Any,
        index: Any,
        do_compile: bool,
    ) -> None:
        mode = "compile" if do_compile else "keep"
        spec = parse_write_phase(phase)
        if is_all_index(index):
            sizes = self._compiled_sizes(data_id)
            ops = []
            for var_name, array in unpack(var_names, data):
                for phase_name, rows in split_rows(spec, len(array), sizes, repr(var_name)):
                    key = (data_id, phase_name, var_name)
                    self._backend.check_dtype(array.dtype, key)
                    ops.append(_Op("replace", key, array[rows]))
            self._apply(data_id, ops, mode)
            return
        if spec.kind not in ("single", "all"):
            raise ValueError(
                f"update_data with index={index!r} needs one phase or 'all'; got "
                f"phase={spec.describe()}"
            )
        ops = []
        split_axis = 0 if is_int(index) else 1
        for var_name, array in unpack(var_names, data, rows=False, split_axis=split_axis):
            ops.extend(self._plan_partial(data_id, var_name, array, spec.name, index))
        self._apply(data_id, ops, mode)

    def _plan_partial(
        self, data_id: str, var_name: str, array: np.ndarray, phase: str, index: Any
    ) -> list[_Op]:
        """Ops overwriting selected rows of an existing variable, fully validated."""
        keys = self._keys_for_read(data_id, var_name, phase)
        shapes = [self._backend.shape(key) for key in keys]
        lengths = [s[0] for s in shapes]
        local = normalize_index(index, sum(lengths))
        n_sel = selection_length(local, sum(lengths))
        target = shapes[0][1:] if n_sel is None else (n_sel, *shapes[0][1:])
        try:
            values = np.broadcast_to(array, target)
        except ValueError:
            raise ValueError(
                f"data for {var_name!r} has shape {array.shape} but the selected rows "
                f"(index {index!r}, phase {phase!r}) have shape {target}"
            ) from None
        ops = []
        for part, part_index, positions in route(lengths, local):
            key = keys[part]
            dtype = self._backend.dtype(key)
            if not np.can_cast(array.dtype, dtype, casting="same_kind"):
                raise TypeError(
                    f"cannot write data of dtype {array.dtype} into rows of {var_name!r} "
                    f"(dtype {dtype}); convert the data or use index=-1 / astype()"
                )
            part_values = values if positions is None else values[positions]
            ops.append(_Op("write", key, part_values, index=part_index))
        return ops

    def create_empty(
        self,
        var_names: VarNames,
        shape: Sequence[int] | Sequence[Sequence[int]],
        phase: str | Sequence[float] | Sequence[int] = "train",
        dtype: Any = "f4",
    ) -> None:
        """Create variables filled with zeros (replacing existing ones), to fill in later.

        ``shape`` follows the shape convention: ``(N, *k)`` for ``'x'``; ``(N, M, *k)`` for a
        tuple of M names (each gets ``(N, *k)``); for a list of names one shape for all or a
        list of shapes. ``phase`` splits the N rows like ``add_data``.

        >>> sg = StoreGate()
        >>> sg.create_empty('pred', (150, 2), phase=(0.8, 0.1, 0.1))
        >>> sg.get_var_shapes('pred', 'train')
        (120, 2)
        """
        data_id = self._data_id
        names = name_list(var_names)
        try:
            dtype = np.dtype(dtype)
        except TypeError as exc:
            raise TypeError(f"create_empty: invalid dtype {dtype!r} ({exc})") from None
        if isinstance(var_names, list) and shape and not isinstance(shape[0], int | np.integer):
            if len(shape) != len(names):
                raise ValueError(
                    f"create_empty: {len(names)} variables but {len(shape)} shapes {shape!r}"
                )
            shapes = [self._check_shape(s) for s in shape]
        else:
            one = self._check_shape(shape)
            if isinstance(var_names, tuple):
                if len(one) < 2 or one[1] != len(names):
                    raise ValueError(
                        f"create_empty: var_names {var_names!r} (a tuple) takes shape "
                        f"(N, {len(names)}, ...); got {one}"
                    )
                one = (one[0], *one[2:])
            shapes = [one] * len(names)
        spec = parse_write_phase(phase)
        sizes = self._compiled_sizes(data_id)
        ops = []
        for name, full in zip(names, shapes, strict=True):
            for phase_name, rows in split_rows(spec, full[0], sizes, repr(name)):
                key = (data_id, phase_name, name)
                self._backend.check_dtype(dtype, key)
                n_rows = len(range(full[0])[rows])
                ops.append(_Op("create", key, shape=(n_rows, *full[1:]), dtype=dtype))
        self._apply(data_id, ops, "keep")

    @staticmethod
    def _check_shape(shape: Any) -> tuple[int, ...]:
        if (
            not isinstance(shape, tuple | list)
            or not shape
            or not all(isinstance(s, int | np.integer) and s >= 0 for s in shape)
        ):
            raise ValueError(
                f"create_empty: shape must be a non-empty tuple of ints >= 0 with rows "
                f"first; got {shape!r}"
            )
        return tuple(int(s) for s in shape)

    def delete_data(self, var_names: VarNames, phase: str = "train") -> None:
        """Delete variables from one phase, or from every phase holding them (``'all'``).

        Deleting keeps the data_id compiled when it was (the other lengths are unchanged).
        """
        self._delete(self._data_id, var_names, phase)

    def _delete(self, data_id: str, var_names: VarNames, phase: str) -> None:
        ops = [
            _Op("delete", key)
            for name in name_list(var_names)
            for key in self._existing_keys(data_id, name, phase)
        ]
        self._apply(data_id, ops, "keep")

    def clear_data(self) -> None:
        """Delete every variable and the metadata of the current data_id."""
        data_id = self._data_id
        keys = [(data_id, p, v) for p in PHASES for v in self._backend.var_names(data_id, p)]
        self._backend.drop_data_id(data_id)
        for key in keys:
            self._record(key, deleted=True)

    # --- transforms ----------------------------------------------------------------------
    def astype(self, var_names: VarNames, dtype: Any, phase: str = "train") -> None:
        """Convert variables to ``dtype`` (``phase='all'``: in every phase holding them)."""
        try:
            target = np.dtype(dtype)
        except TypeError as exc:
            raise TypeError(f"astype: invalid dtype {dtype!r} ({exc})") from None
        self._transform(var_names, phase, lambda key, array: array.astype(target), target)

    def onehot(
        self, var_names: VarNames, num_classes: int, phase: str = "train", dtype: Any = "f4"
    ) -> None:
        """Replace integer class labels ``(N, *k)`` by one-hot vectors ``(N, *k, num_classes)``.

        >>> sg = StoreGate()
        >>> sg.add_data('y', np.array([0, 2, 1]))
        >>> sg.onehot('y', 3)
        >>> sg.compile()
        >>> sg.get_data('y')
        array([[1., 0., 0.],
               [0., 0., 1.],
               [0., 1., 0.]], dtype=float32)
        """
        if not isinstance(num_classes, int | np.integer) or num_classes < 1:
            raise ValueError(f"onehot: num_classes must be an int >= 1; got {num_classes!r}")
        try:
            target = np.dtype(dtype)
        except TypeError as exc:
            raise TypeError(f"onehot: invalid dtype {dtype!r} ({exc})") from None
        eye = np.eye(int(num_classes), dtype=target)

        def encode(key: Key, array: np.ndarray) -> np.ndarray:
            labels = np.asarray(array)
            where = f"{key[2]!r} in phase {key[1]!r}"
            if labels.dtype.kind not in "biuf":
                raise TypeError(f"onehot: {where} has dtype {labels.dtype}; expected ints")
            if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
                raise ValueError(f"onehot: {where} holds non-integer values")
            if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
                raise ValueError(
                    f"onehot: {where} has labels in [{labels.min()}, {labels.max()}] but "
                    f"num_classes={num_classes} allows 0..{num_classes - 1}"
                )
            return eye[labels.astype(np.intp)]

        self._transform(var_names, phase, encode, target)

    def argmax(self, var_names: VarNames, axis: int, phase: str = "train") -> None:
        """Replace variables by their argmax along ``axis`` (an axis of the stored array,
        so ``axis=1`` turns ``(N, C)`` scores into ``(N,)`` labels; the row axis 0 is not
        allowed)."""

        def reduce(key: Key, array: np.ndarray) -> np.ndarray:
            ndim = array.ndim
            resolved = (int(axis) + ndim if axis < 0 else int(axis)) if is_int(axis) else None
            if resolved is None or not 1 <= resolved < ndim:
                raise ValueError(
                    f"argmax: axis {axis!r} is not allowed for {key[2]!r} of shape "
                    f"{array.shape} in phase {key[1]!r}; use an axis in 1..{ndim - 1} "
                    f"(axis 0 is the row axis)"
                )
            return np.argmax(array, axis=int(resolved))

        self._transform(var_names, phase, reduce, np.dtype(np.intp))

    def shuffle(self, phase: str = "all", seed: int = 1) -> None:
        """Permute the rows of every variable of a phase (or of each phase for ``'all'``)
        with one permutation per phase, so variables stay aligned; a local RNG seeded by
        ``seed`` is used (the global RNG is untouched)."""
        if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
            raise TypeError(f"shuffle: seed must be an int; got {seed!r}")
        data_id = self._data_id
        phase = check_phase(phase)
        lengths = self._lengths(data_id)
        ops = []
        for phase_name in PHASES if phase == "all" else (phase,):
            n_rows = self._common_length(data_id, phase_name, lengths[phase_name])
            if n_rows is None:
                continue
            perm = np.random.default_rng(int(seed)).permutation(n_rows)
            for var_name in lengths[phase_name]:
                key = (data_id, phase_name, var_name)
                ops.append(_Op("replace", key, self._backend.read(key, perm), owned=True))
        self._apply(data_id, ops, "keep")

    def _transform(self, var_names: VarNames, phase: str, fn: Any, dtype: np.dtype) -> None:
        data_id = self._data_id
        ops = []
        for name in name_list(var_names):
            for key in self._existing_keys(data_id, name, phase):
                self._backend.check_dtype(dtype, key)
                result = fn(key, self._backend.read(key, slice(None)))
                ops.append(_Op("replace", key, result, owned=True))
        self._apply(data_id, ops, "keep")

    # --- hybrid placement ----------------------------------------------------------------
    def _hybrid(self, what: str) -> Any:
        if self._backend_name != "hybrid":
            raise ValueError(
                f"{what} needs backend='hybrid'; this StoreGate uses {self._backend_name!r}"
            )
        return self._backend

    @property
    def mode(self) -> str:
        """Where new variables go: the backend name, or the hybrid mode."""
        if self._backend_name == "hybrid":
            return self._backend.mode
        return self._backend_name

    def set_mode(self, mode: str) -> None:
        """Hybrid backend: put new variables in memory (``'numpy'``) or on disk (``'zarr'``)."""
        self._hybrid("set_mode").set_mode(mode)

    def to_memory(self, var_names: VarNames, phase: str = "all") -> None:
        """Hybrid backend: move variables from disk into memory (values unchanged)."""
        self._move(var_names, phase, "numpy")

    def to_storage(self, var_names: VarNames, phase: str = "all") -> None:
        """Hybrid backend: move variables from memory to disk (values unchanged)."""
        self._move(var_names, phase, "zarr")

    def _move(self, var_names: VarNames, phase: str, location: str) -> None:
        backend = self._hybrid("to_memory" if location == "numpy" else "to_storage")
        keys = [
            key
            for name in name_list(var_names)
            for key in self._existing_keys(self._data_id, name, phase)
        ]
        for key in keys:
            backend.move(key, location)

    # --- compile -------------------------------------------------------------------------
    def compile(self, reset: bool = False, show_info: bool = False) -> None:
        """Check that all variables of each phase have the same length and record the sizes.

        Args:
            reset: (re)create the variable ``active`` (all 1, ``int8``) in every phase that
                holds variables; metrics skip rows whose ``active`` is 0.
            show_info: log the ``show_info()`` table afterwards.

        Raises:
            ValueError: variables of a phase have different lengths (names and counts are
                listed); nothing is changed then.
        """
        data_id = self._data_id
        ops = []
        if reset:
            lengths = self._lengths(data_id)
            for names in lengths.values():
                names.pop(ACTIVE_VAR_NAME, None)  # about to be replaced
            self._check_consistent(data_id, lengths)
            for phase in PHASES:
                if lengths[phase]:
                    n_rows = next(iter(lengths[phase].values()))
                    key = (data_id, phase, ACTIVE_VAR_NAME)
                    ops.append(_Op("replace", key, np.ones(n_rows, np.int8), owned=True))
        self._apply(data_id, ops, "compile")
        if show_info:
            self.show_info()

    def _lengths(self, data_id: str) -> Lengths:
        backend = self._backend
        return {
            phase: {
                name: backend.shape((data_id, phase, name))[0]
                for name in backend.var_names(data_id, phase)
            }
            for phase in PHASES
        }

    @staticmethod
    def _common_length(data_id: str, phase: str, lengths: dict[str, int]) -> int | None:
        if not lengths:
            return None
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{name}: {n}" for name, n in lengths.items())
            raise ValueError(
                f"variables of phase {phase!r} in data_id {data_id!r} have different "
                f"lengths ({detail}); every variable of a phase needs the same number of rows"
            )
        return next(iter(lengths.values()))

    def _check_consistent(self, data_id: str, lengths: Lengths) -> dict[str, int]:
        return {p: self._common_length(data_id, p, lengths[p]) or 0 for p in PHASES}

    def _compiled_sizes(self, data_id: str) -> dict[str, int] | None:
        meta = self._backend.get_meta(data_id)
        return None if meta is None else meta.get("sizes")

    def _is_compiled(self, data_id: str) -> bool:
        meta = self._backend.get_meta(data_id)
        return meta is not None and meta.get("compiled", False)

    def _set_meta(self, data_id: str, compiled: bool, sizes: dict[str, int] | None) -> None:
        meta = {"compiled": compiled, "sizes": sizes}
        if self._backend.get_meta(data_id) != meta:
            self._backend.set_meta(data_id, meta)

    # --- the one write path --------------------------------------------------------------
    def _apply(self, data_id: str, ops: list[_Op], mode: str) -> None:
        """Run validated ops, then compile (``mode='compile'``) or keep/drop the compiled
        state (``'keep'``). With ``'compile'`` the length check runs before any write."""
        before = self._lengths(data_id)
        after = copy.deepcopy(before)
        for op in ops:
            phase, name = op.key[1], op.key[2]
            if op.kind == "delete":
                after[phase].pop(name)
            elif op.kind == "append":
                after[phase][name] += len(op.data)
            elif op.kind == "replace":
                after[phase][name] = len(op.data)
            elif op.kind == "create":
                after[phase][name] = op.shape[0]
        sizes = self._check_consistent(data_id, after) if mode == "compile" else None
        for op in ops:
            self._run(op)
        if mode == "compile":
            self._set_meta(data_id, True, sizes)
        elif self._is_compiled(data_id):
            unchanged = all(
                before[p].get(name) == n for p in PHASES for name, n in after[p].items()
            )
            if unchanged:
                self._set_meta(data_id, True, self._check_consistent(data_id, after))
            else:
                self._set_meta(data_id, False, self._compiled_sizes(data_id))
        elif ops:
            self._set_meta(data_id, False, self._compiled_sizes(data_id))

    def _run(self, op: _Op) -> None:
        backend = self._backend
        if op.kind == "replace":
            backend.replace(op.key, op.data, owned=op.owned)
        elif op.kind == "append":
            backend.append(op.key, op.data)
        elif op.kind == "write":
            backend.write(op.key, op.index, op.data)
        elif op.kind == "create":
            backend.create(op.key, op.shape, op.dtype)
        else:
            backend.delete(op.key)
        self._record(op.key, deleted=op.kind == "delete")

    def _record(self, key: Key, *, deleted: bool) -> None:
        for log in self._logs:
            if deleted:
                log.record_delete(key)
            else:
                log.record_write(key)

    # --- reads ---------------------------------------------------------------------------
    def get_data(self, var_names: VarNames, phase: str = "train", index: Any = -1) -> Any:
        """Read variables of the compiled current data_id.

        Args:
            var_names: ``'x'`` → ``(N, *k)``; ``('x', 'y')`` → stacked ``(N, M, *k)``;
                ``['x', 'y']`` → a list of arrays.
            phase: a phase, or ``'all'`` for train, valid and test concatenated.
            index: ``-1`` (all rows), an int (one row, no row axis), a ``(start, stop)``
                tuple, a slice, or an array of ints or a boolean mask (batching).

        Basic reads (``-1``, int, tuple, slice) of one phase are read-only (views on the
        numpy backend); index-array, stacked and ``'all'`` reads are new arrays.

        Raises:
            KeyError: an unknown variable (the available ones are listed).
            NotCompiledError: the data_id is not compiled.
        """
        return self._read(self._data_id, var_names, phase, index)

    def _read(self, data_id: str, var_names: VarNames, phase: str, index: Any) -> Any:
        backend = self._backend
        if isinstance(var_names, str) and phase in PHASES:  # the batching fast path
            key = (data_id, phase, var_names)
            if not backend.has(key):
                raise self._unknown(key)
            self._require_compiled(data_id)
            return backend.read(key, normalize_index(index, backend.shape(key)[0]))
        phase = check_phase(phase)
        names = name_list(var_names, unique=False)
        keys = {name: self._keys_for_read(data_id, name, phase) for name in names}
        self._require_compiled(data_id)
        parts = [self._read_keys(keys[name], index, phase == "all") for name in names]
        if isinstance(var_names, list):
            return parts
        if isinstance(var_names, str):
            return parts[0]
        shapes = {np.shape(p) for p in parts}
        if len(shapes) > 1:
            detail = ", ".join(f"{n}: {np.shape(p)}" for n, p in zip(names, parts, strict=True))
            raise ValueError(f"cannot stack {var_names!r}: the shapes differ ({detail})")
        return np.stack(parts, axis=0 if is_int(index) and not is_all_index(index) else 1)

    def _read_keys(self, keys: list[Key], index: Any, concatenate: bool) -> Any:
        backend = self._backend
        if not concatenate:
            key = keys[0]
            return backend.read(key, normalize_index(index, backend.shape(key)[0]))
        shapes = [backend.shape(key) for key in keys]
        if len({s[1:] for s in shapes}) > 1:
            detail = ", ".join(f"{k[1]}: {s}" for k, s in zip(keys, shapes, strict=True))
            raise ValueError(f"cannot concatenate {keys[0][2]!r} over phases ({detail})")
        lengths = [s[0] for s in shapes]
        local = normalize_index(index, sum(lengths))
        routes = route(lengths, local)
        if isinstance(local, int):
            part, part_index, _ = routes[0]
            return np.array(backend.read(keys[part], part_index))
        dtype = np.result_type(*(backend.dtype(key) for key in keys))
        out = np.empty((selection_length(local, sum(lengths)), *shapes[0][1:]), dtype=dtype)
        for part, part_index, positions in routes:
            out[positions] = backend.read(keys[part], part_index)
        return out

    def _require_compiled(self, data_id: str) -> None:
        if not self._is_compiled(data_id):
            state = (
                "was never compiled"
                if self._compiled_sizes(data_id) is None
                else "changed since the last compile()"
            )
            raise NotCompiledError(
                f"data_id {data_id!r} {state}; call compile() before reading (get_data)"
            )

    def _unknown(self, key: Key) -> KeyError:
        data_id, phase, name = key
        available = self._var_names(data_id, phase)
        return KeyError(
            f"unknown variable {name!r} in phase {phase!r} of data_id {data_id!r}; "
            f"available: {available}"
        )

    def _keys_for_read(self, data_id: str, name: str, phase: str) -> list[Key]:
        """Keys holding ``name`` for a read of ``phase``; ``'all'`` needs the variable in
        every phase that has rows (otherwise the concatenation would misalign)."""
        if phase != "all":
            key = (data_id, phase, name)
            if not self._backend.has(key):
                raise self._unknown(key)
            return [key]
        keys = self._existing_keys(data_id, name, "all")
        sizes = self._compiled_sizes(data_id) or {}
        present = {key[1] for key in keys}
        missing = [p for p in PHASES if sizes.get(p) and p not in present]
        if missing:
            raise KeyError(
                f"variable {name!r} of data_id {data_id!r} is missing in phase(s) {missing}, "
                f"which have rows; phase='all' needs it in every phase with rows"
            )
        return keys

    def _existing_keys(self, data_id: str, name: str, phase: str) -> list[Key]:
        """Keys of ``name`` in ``phase`` (every phase holding it for ``'all'``); KeyError
        when there are none."""
        phase = check_phase(phase)
        if phase != "all":
            key = (data_id, phase, name)
            if not self._backend.has(key):
                raise self._unknown(key)
            return [key]
        keys = [(data_id, p, name) for p in PHASES if self._backend.has((data_id, p, name))]
        if not keys:
            raise KeyError(
                f"unknown variable {name!r} in data_id {data_id!r} (no phase holds it); "
                f"available: {self._var_names(data_id, 'all')}"
            )
        return keys

    # --- inspection ----------------------------------------------------------------------
    def get_var_names(self, phase: str = "all") -> list[str]:
        """Variable names of a phase in creation order (``'all'``: of any phase)."""
        return self._var_names(self._data_id, phase)

    def _var_names(self, data_id: str, phase: str) -> list[str]:
        phase = check_phase(phase)
        if phase != "all":
            return self._backend.var_names(data_id, phase)
        names: dict[str, None] = {}
        for p in PHASES:
            names.update(dict.fromkeys(self._backend.var_names(data_id, p)))
        return list(names)

    def get_var_shapes(self, var_names: VarNames, phase: str = "train") -> Any:
        """Shapes following the shape convention: a tuple for ``'x'``, ``(N, M, *k)`` for a
        tuple of names, a list of shapes for a list; ``'all'`` sums the rows over phases.
        Works before ``compile()``."""
        return self._var_shapes(self._data_id, var_names, phase)

    def _var_shapes(self, data_id: str, var_names: VarNames, phase: str) -> Any:
        shapes = []
        for name in name_list(var_names, unique=False):
            per_phase = [self._backend.shape(k) for k in self._existing_keys(data_id, name, phase)]
            rows = sum(s[0] for s in per_phase)
            shapes.append((rows, *per_phase[0][1:]))
        if isinstance(var_names, str):
            return shapes[0]
        if isinstance(var_names, list):
            return shapes
        return (shapes[0][0], len(shapes), *shapes[0][1:])

    def _phase_rows(self, data_id: str, phase: str) -> int:
        phase = check_phase(phase)
        lengths = self._lengths(data_id)
        phases = PHASES if phase == "all" else (phase,)
        return sum(self._common_length(data_id, p, lengths[p]) or 0 for p in phases)

    def get_metadata(self) -> dict[str, Any]:
        """A description of the current data_id (a new dict, safe to modify)::

            {'data_id': 'demo', 'backend': 'numpy', 'compiled': True,
             'sizes': {'train': 120, 'valid': 15, 'test': 15}, 'total': 150,
             'vars': {'train': {'x': {'shape': (120, 4), 'dtype': 'float64',
                                      'location': 'numpy'}, ...}, ...}}

        ``sizes`` are those recorded by the last ``compile()`` (``None`` if never compiled;
        stale when ``compiled`` is False).
        """
        data_id = self._data_id
        sizes = self._compiled_sizes(data_id)
        backend = self._backend
        variables = {
            phase: {
                name: {
                    "shape": backend.shape((data_id, phase, name)),
                    "dtype": str(backend.dtype((data_id, phase, name))),
                    "location": backend.location((data_id, phase, name)),
                }
                for name in backend.var_names(data_id, phase)
            }
            for phase in PHASES
        }
        return {
            "data_id": data_id,
            "backend": self._backend_name,
            "compiled": self._is_compiled(data_id),
            "sizes": None if sizes is None else dict(sizes),
            "total": None if sizes is None else sum(sizes.values()),
            "vars": variables,
        }

    def show_info(self) -> None:
        """Log (level INFO) a table of the variables of the current data_id."""
        meta = self.get_metadata()
        header = ("phase", "variable", "location", "shape", "dtype")
        rows = [
            (phase, name, info["location"], str(info["shape"]), info["dtype"])
            for phase, names in meta["vars"].items()
            for name, info in names.items()
        ]
        widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
        rule = "-+-".join("-" * w for w in widths)
        lines = [
            f"StoreGate data_id={meta['data_id']!r} backend={meta['backend']!r} "
            f"compiled={meta['compiled']} sizes={meta['sizes']}",
            " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
            rule,
            *(" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows),
        ]
        logger.info("\n".join(lines))

    # --- write tracking, export and import -----------------------------------------------
    @contextlib.contextmanager
    def track_writes(self) -> Iterator[WriteLog]:
        """Record the keys written and deleted while the block runs (scopes may nest).

        >>> sg = StoreGate()
        >>> with sg.track_writes() as log:
        ...     sg.add_data('x', np.zeros(3))
        >>> list(log.written)
        [('default', 'train', 'x')]
        """
        log = WriteLog()
        self._logs.append(log)
        try:
            yield log
        finally:
            self._logs = [other for other in self._logs if other is not log]

    def export_vars(self, keys: Any) -> dict[Key, np.ndarray]:
        """Copies of whole variables: ``{(data_id, phase, var_name): array}``.

        Works whether or not the data_id is compiled; an unknown key is a ``KeyError``.
        """
        keys = [self._check_key(key) for key in keys]
        for key in keys:
            if not self._backend.has(key):
                raise self._unknown(key)
        return {key: self._backend.read_copy(key) for key in keys}

    def import_vars(self, snapshot: Mapping[Key, Any]) -> None:
        """Write variables back from ``export_vars`` (whole-variable replace, missing ones
        are created), then compile each affected data_id once.

        Everything is validated first (keys, arrays, the compile length check of every
        affected data_id): on an error nothing is written. The snapshot is copied, so it
        can be imported again later.
        """
        plans: dict[str, list[_Op]] = {}
        for key, value in snapshot.items():
            key = self._check_key(key)
            array = as_array(value, repr(key))
            self._backend.check_dtype(array.dtype, key)
            plans.setdefault(key[0], []).append(_Op("replace", key, array))
        for data_id, ops in plans.items():
            lengths = self._lengths(data_id)
            for op in ops:
                lengths[op.key[1]][op.key[2]] = len(op.data)
            self._check_consistent(data_id, lengths)
        for data_id, ops in plans.items():
            self._apply(data_id, ops, "compile")

    @staticmethod
    def _check_key(key: Any) -> Key:
        if not isinstance(key, tuple) or len(key) != 3:
            raise TypeError(f"a key must be a (data_id, phase, var_name) tuple; got {key!r}")
        data_id, phase, name = key
        check_name(data_id, "data_id")
        check_phase(phase, allow_all=False)
        check_name(name, "variable name")
        return (data_id, phase, name)
