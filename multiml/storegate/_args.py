"""Parsing and validation of StoreGate arguments: phases, splits, indices, shuffle seeds,
variable names and the shape convention.

Everything here is pure (no store access) so the rules are stated once and shared by the
front end and the item-syntax views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from multiml.const import PHASES
from multiml.storegate._base import check_name

ALL_PHASES = ("all", "auto")
"""Phase names meaning the three phases together ('auto' is an alias of 'all')."""

_PHASE_HELP = (
    "one of 'train', 'valid', 'test', 'all' (or its alias 'auto'), or a tuple of three "
    "fractions summing to 1.0 or of three ints summing to the number of rows"
)


def is_int(value: Any) -> bool:
    """Whether ``value`` is an int (Python or numpy), bools excluded."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def check_phase(phase: Any, *, allow_all: bool = True) -> str:
    """A single phase name (``'auto'`` is returned as ``'all'``), or a ``ValueError``."""
    if isinstance(phase, str):
        if phase in PHASES:
            return phase
        if allow_all and phase in ALL_PHASES:
            return "all"
    allowed = ", ".join(repr(p) for p in (*PHASES, *(ALL_PHASES if allow_all else ())))
    raise ValueError(f"unknown phase {phase!r}; allowed: {allowed}")


@dataclass(frozen=True)
class WritePhase:
    """A parsed ``phase`` argument of a write.

    ``kind`` is ``'single'`` (``name`` is the phase), ``'all'`` (split by compiled sizes),
    ``'fractions'`` or ``'counts'`` (``parts`` holds the three numbers).
    """

    kind: str
    name: str | None = None
    parts: tuple[Any, ...] = ()

    def describe(self) -> str:
        return repr(self.name) if self.kind in ("single", "all") else repr(self.parts)


def parse_write_phase(phase: Any) -> WritePhase:
    """Parse the ``phase`` of ``add_data`` / ``update_data`` / ``create_empty``.

    >>> parse_write_phase((0.8, 0.1, 0.1)).kind
    'fractions'
    >>> parse_write_phase((100, 10, 10)).kind
    'counts'
    """
    if isinstance(phase, str):
        name = check_phase(phase)
        return WritePhase("all", "all") if name == "all" else WritePhase("single", name)
    if isinstance(phase, tuple | list) and len(phase) == 3:
        if all(is_int(p) for p in phase):
            counts = tuple(int(p) for p in phase)
            if any(c < 0 for c in counts):
                raise ValueError(f"phase counts must be >= 0; got {tuple(phase)!r}")
            return WritePhase("counts", parts=counts)
        if all(isinstance(p, int | float | np.integer | np.floating) for p in phase) and not any(
            isinstance(p, bool | np.bool_) for p in phase
        ):
            fractions = tuple(float(p) for p in phase)
            if any(not 0.0 <= f <= 1.0 for f in fractions):
                raise ValueError(f"phase fractions must lie in [0, 1]; got {tuple(phase)!r}")
            if not math.isclose(sum(fractions), 1.0, rel_tol=0.0, abs_tol=1e-6):
                raise ValueError(
                    f"phase fractions must sum to 1.0; got {tuple(phase)!r} "
                    f"(sum {sum(fractions):g})"
                )
            return WritePhase("fractions", parts=fractions)
    raise ValueError(f"invalid phase {phase!r}; allowed: {_PHASE_HELP}")


def split_rows(
    spec: WritePhase, n_rows: int, sizes: dict[str, int] | None, what: str
) -> list[tuple[str, slice]]:
    """Split ``n_rows`` rows into ``(phase, row slice)`` pairs according to ``spec``.

    ``sizes`` are the compiled sizes (needed for ``'all'``; ``None`` when the data_id was
    never compiled). ``what`` names the variable in error messages. With a split (not a
    single phase), a phase that receives no rows is left out.

    >>> spec = parse_write_phase((0.8, 0.1, 0.1))
    >>> [(p, s.start, s.stop) for p, s in split_rows(spec, 150, None, 'x')]
    [('train', 0, 120), ('valid', 120, 135), ('test', 135, 150)]
    """
    if spec.kind == "single":
        return [(spec.name, slice(0, n_rows))]
    if spec.kind == "fractions":
        f0, f1, _ = spec.parts
        cut0 = int(n_rows * f0)
        cut1 = int(n_rows * f0 + n_rows * f1)
        bounds = (0, cut0, cut1, n_rows)
    elif spec.kind == "counts":
        if sum(spec.parts) != n_rows:
            raise ValueError(
                f"phase counts {spec.parts!r} sum to {sum(spec.parts)} but {what} has "
                f"{n_rows} rows; the counts must sum to the number of rows"
            )
        c0, c1, _ = spec.parts
        bounds = (0, c0, c0 + c1, n_rows)
    else:
        if sizes is None:
            raise ValueError(
                f"phase={spec.name!r} splits rows by the compiled phase sizes, but this "
                f"data_id was never compiled; call compile() first"
            )
        total = sum(sizes.values())
        if n_rows != total:
            detail = ", ".join(f"{p}={sizes[p]}" for p in PHASES)
            raise ValueError(
                f"phase={spec.name!r}: {what} has {n_rows} rows but the compiled sizes "
                f"({detail}) total {total}; the rows must match the total"
            )
        start = 0
        bounds = [start]
        for phase in PHASES:
            start += sizes[phase]
            bounds.append(start)
    # phases that receive no rows get no (empty) variable
    return [
        (phase, slice(bounds[i], bounds[i + 1]))
        for i, phase in enumerate(PHASES)
        if bounds[i + 1] > bounds[i]
    ]


def shuffle_seed(shuffle: Any) -> int | None:
    """``False``/``None`` → no shuffle, ``True`` → seed 1, an int → that seed."""
    if shuffle is None or shuffle is False or (isinstance(shuffle, np.bool_) and not shuffle):
        return None
    if shuffle is True or isinstance(shuffle, np.bool_):
        return 1
    if is_int(shuffle):
        return int(shuffle)
    raise TypeError(f"shuffle must be a bool or an int seed; got {shuffle!r}")


def is_all_index(index: Any) -> bool:
    """Whether ``index`` is the ``-1`` meaning "every row"."""
    return is_int(index) and int(index) == -1


def normalize_index(
    index: Any, n_rows: int, *, numpy_ints: bool = False
) -> slice | int | np.ndarray:
    """Turn a user index into a backend index for a variable of ``n_rows`` rows.

    Accepted: ``-1`` (every row), an int, a ``(start, stop)`` tuple, a ``slice``, or a 1-D
    array/list (or anything with ``__array__``) of ints or bools (a mask of length
    ``n_rows``). With ``numpy_ints=True``
    (the item syntax) negative ints count from the end like numpy and ``-1`` is the last
    row; otherwise only ``-1`` is allowed as a negative int.
    """
    if is_int(index):
        i = int(index)
        if not numpy_ints and i == -1:
            return slice(None)
        if numpy_ints and -n_rows <= i < 0:
            i += n_rows
        if i < 0:
            raise IndexError(
                f"index {index}: negative ints other than -1 (all rows) are not allowed; "
                f"use a slice"
            )
        if i >= n_rows:
            raise IndexError(f"index {index} is out of range for {n_rows} rows")
        return i
    if isinstance(index, slice):
        return index
    if isinstance(index, tuple) and not numpy_ints:
        if len(index) == 2 and all(i is None or is_int(i) for i in index):
            return slice(index[0], index[1])
        raise TypeError(f"a tuple index must be (start, stop) with ints; got {index!r}")
    if isinstance(index, np.ndarray | list | range) or hasattr(index, "__array__"):
        array = np.asarray(index)  # also accepts e.g. a CPU torch tensor of indices
        if array.size == 0:
            return np.empty(0, dtype=np.intp)
        if array.ndim != 1:
            raise IndexError(f"an index array must be 1-D; got shape {array.shape}")
        if array.dtype == np.bool_:
            if len(array) != n_rows:
                raise IndexError(
                    f"a boolean index has length {len(array)} but the variable has {n_rows} rows"
                )
            return np.flatnonzero(array)
        if array.dtype.kind not in "iu":
            raise TypeError(f"an index array must hold ints or bools; got dtype {array.dtype}")
        low, high = array.min(), array.max()
        if low < -n_rows or high >= n_rows:
            bad = low if low < -n_rows else high
            raise IndexError(f"index {bad} in the index array is out of range for {n_rows} rows")
        if low < 0:
            array = np.where(array < 0, array + n_rows, array)
        return array.astype(np.intp, copy=False)
    raise TypeError(
        f"invalid index {index!r}: use -1 (all rows), an int, a (start, stop) tuple, a "
        f"slice, or an array of ints or bools"
    )


def selection_length(index: slice | int | np.ndarray, n_rows: int) -> int | None:
    """Rows selected by a normalised index (``None`` for an int: the row axis is dropped)."""
    if isinstance(index, slice):
        return len(range(*index.indices(n_rows)))
    if isinstance(index, np.ndarray):
        return len(index)
    return None


def as_array(data: Any, what: str, *, rows: bool = True) -> np.ndarray:
    array = np.asarray(data)
    if rows and array.ndim == 0:
        raise ValueError(f"data for {what} must have a row axis (shape (N, ...)); got a scalar")
    return array


def name_list(var_names: Any, *, unique: bool = True) -> list[str]:
    """Names of a str / tuple / list ``var_names`` as a list (validated; reads may repeat a
    name, writes may not)."""
    what = "var_names"
    if isinstance(var_names, str):
        return [check_name(var_names, "variable name")]
    if isinstance(var_names, tuple | list):
        names = [check_name(v, "variable name") for v in var_names]
        if not names:
            raise ValueError(f"{what} is empty")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if unique and duplicates:
            raise ValueError(f"{what} {var_names!r} repeats {duplicates}")
        return names
    raise TypeError(
        f"{what} must be a str, a tuple of str (stacked) or a list of str; got {var_names!r}"
    )


def unpack(
    var_names: Any, data: Any, *, rows: bool = True, split_axis: int = 1
) -> list[tuple[str, np.ndarray]]:
    """Pair each variable with its array following the shape convention.

    ``rows=False`` (partial writes) allows data without a row axis, to be broadcast;
    ``split_axis`` is where a tuple's variables are (0 for a write at an int index, where
    the row axis is absent).
    """
    names = name_list(var_names)
    if isinstance(var_names, str):
        return [(names[0], as_array(data, repr(var_names), rows=rows))]
    if isinstance(var_names, tuple):
        array = as_array(data, repr(var_names), rows=rows)
        if array.ndim <= split_axis or array.shape[split_axis] != len(names):
            expected = f"(N, {len(names)}, ...)" if split_axis else f"({len(names)}, ...)"
            raise ValueError(
                f"var_names {var_names!r} (a tuple) takes data of shape {expected}, split on "
                f"axis {split_axis}; got shape {array.shape}"
            )
        lead = (slice(None),) * split_axis
        return [(name, array[(*lead, i)]) for i, name in enumerate(names)]
    if not isinstance(data, list | tuple) or len(data) != len(names):
        got = f"{len(data)} items" if isinstance(data, list | tuple) else type(data).__name__
        raise ValueError(
            f"var_names {var_names!r} (a list) takes a list of {len(names)} arrays; got {got}"
        )
    pairs = zip(names, data, strict=True)
    return [(name, as_array(d, repr(name), rows=rows)) for name, d in pairs]


def route(lengths: list[int], index: slice | int | np.ndarray) -> list[tuple[int, Any, Any]]:
    """Map an index over concatenated parts to ``(part, local index, output positions)``.

    Output positions are ``None`` for an int index (one row, no row axis).
    """
    total = sum(lengths)
    ends = np.cumsum(lengths)
    starts = ends - np.asarray(lengths)
    if isinstance(index, int):
        part = int(np.searchsorted(ends, index, side="right"))
        return [(part, index - int(starts[part]), None)]
    if isinstance(index, slice):
        start, stop, step = index.indices(total)
        if step == 1:
            routes = []
            for part, (s0, e0) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
                lo, hi = max(start, s0), min(stop, e0)
                if lo < hi:
                    routes.append((part, slice(lo - s0, hi - s0), slice(lo - start, hi - start)))
            return routes
        index = np.arange(start, stop, step)
    which = np.searchsorted(ends, index, side="right")
    routes = []
    for part in range(len(lengths)):
        positions = np.flatnonzero(which == part)
        if positions.size:
            routes.append((part, index[positions] - int(starts[part]), positions))
    return routes
