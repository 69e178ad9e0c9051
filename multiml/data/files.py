"""Load users' own data into a StoreGate from files, without writing Python.

Three sources, each usable as a task's ``data`` in a Hydra config::

    data:                                   # per-variable .npy files, split by fractions
      _target_: multiml.data.load_npy
      files: {x: data/x.npy, label: data/label.npy}
      phase: [0.8, 0.1, 0.1]

    data:                                   # one .npz, already split per phase
      _target_: multiml.data.load_npz
      path: data/train_valid_test.npz       # arrays named 'train/x', 'valid/x', ... or
      phase: [0.8, 0.1, 0.1]                # plain names split by ``phase``

    data:                                   # an existing zarr store
      _target_: multiml.data.load_zarr
      path: /data/store.zarr                # a StoreGate zarr store, or a group of arrays
      data_id: my_dataset                   # (StoreGate stores) which dataset to read
                                            # (groups: arrays at the top, split by
                                            # ``phase``, or in train/valid/test groups)

``~`` is expanded; relative paths are resolved against the directory the command was
started in (Hydra's original working directory). ``phase`` takes every form
``StoreGate.add_data`` accepts (three fractions summing to 1, three counts, or one phase
name); ``shuffle`` (False, True or an int seed) permutes rows before splitting,
identically for every variable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from multiml.const import PHASES

if TYPE_CHECKING:
    from multiml.storegate import StoreGate

logger = logging.getLogger(__name__)

PhaseSpec = Sequence[float] | Sequence[int] | str


def resolve_path(path: str | os.PathLike[str]) -> str:
    """An absolute path (``~`` expanded); relative ones are taken from where the user started
    the command."""
    path = os.path.expanduser(os.fspath(path))
    if os.path.isabs(path):
        return path
    try:
        from hydra.utils import get_original_cwd

        base = get_original_cwd()
    except (ImportError, ValueError):
        base = os.getcwd()
    return os.path.join(base, path)


def add_arrays(
    storegate: StoreGate,
    arrays: Mapping[str, Any],
    phase: PhaseSpec | None,
    shuffle: bool | int = False,
    source: str = "data",
) -> None:
    """Add named arrays, either pre-split (``{'train': {...}, ...}``) or split by ``phase``.

    Everything is checked before the first variable is added, so a bad source leaves the
    store as it was.

    Raises:
        ValueError: no arrays, a split is missing, or the arrays of a phase differ in
            length (the message names the source and the variables).
    """
    if not arrays or (_is_split(arrays) and not any(arrays.values())):
        raise ValueError(f"{source}: no arrays to load")
    if _is_split(arrays):
        for phase_name, variables in arrays.items():
            _check_lengths(variables, f"{source} ({phase_name})")
        for phase_name, variables in arrays.items():
            for name, array in variables.items():
                storegate.add_data(name, np.asarray(array), phase=phase_name, shuffle=shuffle)
    else:
        if phase is None:
            raise ValueError(
                f"{source}: give 'phase' (e.g. [0.8, 0.1, 0.1]) or split the arrays per phase "
                f"({'/'.join(PHASES)})"
            )
        _check_lengths(arrays, source)
        split = phase if isinstance(phase, str) else tuple(phase)
        for name, array in arrays.items():
            storegate.add_data(name, np.asarray(array), phase=split, shuffle=shuffle)
    storegate.compile()


def _is_split(arrays: Mapping[str, Any]) -> bool:
    """Whether ``arrays`` is ``{phase: {var: array}}`` rather than ``{var: array}``."""
    return bool(arrays) and all(
        key in PHASES and isinstance(v, Mapping) for key, v in arrays.items()
    )


def _check_lengths(arrays: Mapping[str, Any], source: str) -> None:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{source}: variables have different numbers of rows: {lengths}")


def load_npy(
    storegate: StoreGate,
    files: Mapping[str, Any],
    phase: PhaseSpec | None = (0.8, 0.1, 0.1),
    shuffle: bool | int = False,
    mmap: bool = False,
) -> None:
    """Load one ``.npy`` file per variable.

    Args:
        files: ``{var_name: path}``, or ``{phase: {var_name: path}}`` for files already
            split per phase (then ``phase`` is ignored).
        phase: the split of unsplit files.
        shuffle: shuffle seed applied before splitting.
        mmap: memory-map the files instead of reading them (large data).
    """
    mode = "r" if mmap else None

    def read(name: str, path: Any) -> np.ndarray:
        full = resolve_path(path)
        if not os.path.isfile(full):
            raise FileNotFoundError(
                f"load_npy: the file of variable {name!r}, {full}, does not exist"
            )
        return np.load(full, mmap_mode=mode, allow_pickle=False)

    if files and all(key in PHASES and isinstance(v, Mapping) for key, v in files.items()):
        arrays: dict[str, Any] = {
            p: {n: read(n, f) for n, f in v.items()} for p, v in files.items()
        }
    else:
        arrays = {name: read(name, path) for name, path in files.items()}
    add_arrays(storegate, arrays, phase, shuffle, source=f"load_npy({dict(files)})")


def load_npz(
    storegate: StoreGate,
    path: str,
    phase: PhaseSpec | None = (0.8, 0.1, 0.1),
    var_names: Mapping[str, str] | Sequence[str] | None = None,
    shuffle: bool | int = False,
) -> None:
    """Load the arrays of one ``.npz`` file.

    Arrays named ``'train/x'``, ``'valid/x'``, ``'test/x'`` are taken as already split;
    plain names are split by ``phase``.

    Args:
        var_names: a list of array names to load (default: all), or a ``{name_in_file:
            var_name}`` mapping to load and rename.
    """
    full = resolve_path(path)
    if not os.path.isfile(full):
        raise FileNotFoundError(f"load_npz: {full} does not exist")
    with np.load(full, allow_pickle=False) as archive:
        names = list(archive.files)
        split = [name for name in names if "/" in name]
        if split and len(split) != len(names):
            raise ValueError(
                f"{full}: mixes per-phase arrays ({split[:3]}...) with plain ones "
                f"({[n for n in names if '/' not in n][:3]}...); use one naming for all"
            )
        mapping = _var_mapping(names, var_names, full)
        if split:
            arrays: dict[str, Any] = {}
            for name in names:
                phase_name, _, var = name.partition("/")
                if phase_name not in PHASES:
                    raise ValueError(f"{full}: array {name!r} is not '<phase>/<var>'")
                if var in mapping:
                    arrays.setdefault(phase_name, {})[mapping[var]] = archive[name]
        else:
            arrays = {mapping[name]: archive[name] for name in names if name in mapping}
    if not arrays:
        raise ValueError(f"{full}: no arrays selected (file holds {names})")
    add_arrays(storegate, arrays, phase, shuffle, source=full)


def _var_mapping(
    names: Sequence[str], var_names: Mapping[str, str] | Sequence[str] | None, where: str
) -> dict[str, str]:
    plain = sorted({name.partition("/")[2] if "/" in name else name for name in names})
    if var_names is None:
        return {name: name for name in plain}
    mapping = dict(var_names) if isinstance(var_names, Mapping) else {n: n for n in var_names}
    missing = [name for name in mapping if name not in plain]
    if missing:
        raise KeyError(f"{where}: no array(s) {missing}; the file holds {plain}")
    return mapping


def load_zarr(
    storegate: StoreGate,
    path: str,
    data_id: str | None = None,
    phase: PhaseSpec | None = (0.8, 0.1, 0.1),
    var_names: Mapping[str, str] | Sequence[str] | None = None,
    shuffle: bool | int = False,
) -> None:
    """Load an existing zarr store.

    A store written by StoreGate's zarr backend (``<path>/<data_id>/<phase>/<var>``) keeps
    its phase split; ``data_id`` picks the dataset (optional when it holds only one); the
    store is only read, never modified. Any other zarr group is read as ``{array name:
    array}`` and split by ``phase``, or, when its arrays sit in groups named ``train``,
    ``valid`` and ``test``, taken as already split.

    Args:
        var_names: variables to load (default: all), or a ``{name_in_store: var_name}``
            mapping to load and rename.
    """
    import zarr

    full = resolve_path(path)
    if not os.path.exists(full):
        raise FileNotFoundError(f"load_zarr: {full} does not exist")
    group = zarr.open_group(full, mode="r")
    if _is_storegate_store(group):
        arrays: dict[str, Any] = _read_storegate_store(full, data_id)
    else:
        arrays = {name: array[...] for name, array in group.arrays()}
        for phase_name, child in group.groups():
            if phase_name in PHASES:
                arrays.setdefault(phase_name, {}).update(
                    {name: array[...] for name, array in child.arrays()}
                )
        if not arrays:
            raise ValueError(
                f"load_zarr: {full} holds no arrays (expected arrays at its top level, in "
                f"groups named {'/'.join(PHASES)}, or a store written by StoreGate)"
            )
        if any(key in PHASES for key in arrays) and not _is_split(arrays):
            raise ValueError(
                f"load_zarr: {full} mixes per-phase groups with top-level arrays "
                f"({sorted(arrays)}); use one layout"
            )
    if var_names is not None:
        arrays = _select(arrays, var_names, full)
    add_arrays(storegate, arrays, phase, shuffle, source=full)


def _is_storegate_store(group: Any) -> bool:
    return any(any(name in PHASES for name, _ in child.groups()) for _, child in group.groups())


def _read_storegate_store(path: str, data_id: str | None) -> dict[str, dict[str, np.ndarray]]:
    from multiml.storegate import StoreGate

    # copy_on_write: reading (and compiling) never modifies the user's store
    source = StoreGate(backend="zarr", backend_args={"output_dir": path, "copy_on_write": True})
    ids = source.get_data_ids()
    if data_id is None:
        if len(ids) != 1:
            raise ValueError(f"load_zarr: {path} holds data_ids {ids}; choose one with data_id")
        data_id = ids[0]
    if data_id not in ids:
        raise KeyError(f"load_zarr: {path} has no data_id {data_id!r}; it holds {ids}")
    source.set_data_id(data_id)
    source.compile()
    return {
        phase: {
            name: np.array(source.get_data(name, phase)) for name in source.get_var_names(phase)
        }
        for phase in PHASES
        if source.get_var_names(phase)
    }


def _select(
    arrays: dict[str, Any], wanted: Mapping[str, str] | Sequence[str], where: str
) -> dict[str, Any]:
    """The ``wanted`` variables (a list, or ``{name in store: var_name}`` to rename)."""
    if _is_split(arrays):
        return {p: _select(v, wanted, where) for p, v in arrays.items()}
    mapping = dict(wanted) if isinstance(wanted, Mapping) else {n: n for n in wanted}
    missing = [name for name in mapping if name not in arrays]
    if missing:
        raise KeyError(f"{where}: no variable(s) {missing}; it holds {sorted(arrays)}")
    return {new: arrays[name] for name, new in mapping.items()}
