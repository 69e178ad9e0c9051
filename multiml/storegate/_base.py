"""The interface every StoreGate backend implements, and checks shared by all of them.

A backend stores whole variables addressed by a key ``(data_id, phase, var_name)`` and the
small per-``data_id`` metadata dict written by ``StoreGate.compile()``. It knows nothing
about phase splits, shape conventions, compile rules or write tracking: the front end
(:class:`multiml.storegate.StoreGate`) validates every call completely before it asks a
backend to change anything, so a backend method is only called with arguments that fit.

Index arguments reaching a backend are already normalised by the front end:

- a ``slice`` (any step),
- an ``int`` in ``[0, n)``,
- a 1-D integer ``numpy.ndarray`` with every entry in ``[0, n)``.

Reads with a ``slice`` or an ``int`` are *basic* reads and return read-only arrays on every
backend (on the numpy backend they are views of the stored data); reads with an index array
return a new, writable array.

Every backend can make an *isolated* copy-on-write view of itself (``isolated()``): a
backend that holds the same variables and metadata, and whose writes never reach the
original's storage (see :mod:`multiml.storegate.cow_backend`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

Key = tuple[str, str, str]
"""``(data_id, phase, var_name)``: the address of one stored variable."""

Index = slice | int | np.ndarray

LOCATIONS = ("numpy", "zarr")
"""Where a variable can live: in memory (``'numpy'``) or on disk (``'zarr'``)."""


def check_mode(mode: Any) -> str:
    """A hybrid mode / location (``'numpy'`` or ``'zarr'``), or a ``ValueError``."""
    if mode not in LOCATIONS:
        allowed = ", ".join(repr(m) for m in LOCATIONS)
        raise ValueError(f"unknown hybrid mode {mode!r}; allowed: {allowed}")
    return mode


def check_name(value: Any, what: str) -> str:
    """Validate a data_id or variable name; the same rules hold on every backend.

    Names are used as zarr node names, so they must be non-empty strings without ``/``,
    must not be ``'.'`` or ``'..'`` and must not start with ``'__'`` (reserved by zarr).
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str; got {value!r} ({type(value).__name__})")
    if not value or "/" in value or value in (".", "..") or value.startswith("__"):
        raise ValueError(
            f"{what} {value!r} is not allowed: use a non-empty name without '/', "
            f"not '.' or '..', and not starting with '__'"
        )
    return value


class Backend(ABC):
    """Storage of whole variables; see the module docstring for the contract."""

    name: str
    """``'numpy'``, ``'zarr'`` or ``'hybrid'``."""

    copy_on_write: bool = False
    """Whether writes are kept in memory over a read-only store on disk."""

    # --- listing -------------------------------------------------------------------------
    @abstractmethod
    def data_ids(self) -> list[str]:
        """Data ids that hold variables or metadata, in creation order."""

    @abstractmethod
    def var_names(self, data_id: str, phase: str) -> list[str]:
        """Variable names of one phase, in creation order (empty when there are none)."""

    @abstractmethod
    def has(self, key: Key) -> bool:
        """Whether the variable exists."""

    @abstractmethod
    def shape(self, key: Key) -> tuple[int, ...]:
        """Shape of an existing variable."""

    @abstractmethod
    def dtype(self, key: Key) -> np.dtype:
        """Dtype of an existing variable."""

    @abstractmethod
    def location(self, key: Key) -> str:
        """``'numpy'`` or ``'zarr'``: where an existing variable lives."""

    # --- reads ---------------------------------------------------------------------------
    @abstractmethod
    def read(self, key: Key, index: Index) -> Any:
        """Rows of an existing variable (see the module docstring for ``index``)."""

    @abstractmethod
    def read_copy(self, key: Key) -> np.ndarray:
        """The whole variable as a new, writable array that shares nothing with the store."""

    # --- writes --------------------------------------------------------------------------
    @abstractmethod
    def check_dtype(self, dtype: np.dtype, key: Key) -> None:
        """Raise ``TypeError`` when the location ``key`` would be written to cannot hold it."""

    @abstractmethod
    def replace(self, key: Key, data: np.ndarray, *, owned: bool) -> None:
        """Store ``data`` as the whole variable (created when missing).

        ``owned=True`` means the front end created ``data`` itself and hands it over: a
        memory backend may keep it without copying. Otherwise the backend must copy.
        """

    @abstractmethod
    def append(self, key: Key, data: np.ndarray) -> None:
        """Append rows to an existing variable; dtypes are promoted like ``np.concatenate``."""

    @abstractmethod
    def write(self, key: Key, index: Index, data: np.ndarray) -> None:
        """Overwrite rows of an existing variable in place (``data`` already fits)."""

    @abstractmethod
    def create(self, key: Key, shape: tuple[int, ...], dtype: np.dtype) -> None:
        """Create (or replace) a variable filled with zeros."""

    @abstractmethod
    def delete(self, key: Key) -> None:
        """Remove an existing variable."""

    @abstractmethod
    def drop_data_id(self, data_id: str) -> None:
        """Remove every variable and the metadata of ``data_id`` (no-op when unknown)."""

    # --- isolation -----------------------------------------------------------------------
    @abstractmethod
    def isolated(self) -> Backend:
        """A backend that holds the same variables and metadata as this one now, and whose
        writes never change this backend or its storage (copy-on-write where possible)."""

    # --- metadata ------------------------------------------------------------------------
    @abstractmethod
    def get_meta(self, data_id: str) -> dict[str, Any] | None:
        """The metadata dict of ``data_id`` (``None`` when none was stored); do not mutate."""

    @abstractmethod
    def set_meta(self, data_id: str, meta: dict[str, Any]) -> None:
        """Store the metadata dict of ``data_id`` (JSON-serialisable values only)."""


def promoted_dtype(old: np.dtype, new: np.dtype, var_name: str) -> np.dtype:
    """The dtype ``np.concatenate`` would give, or a ``TypeError`` naming the variable."""
    try:
        return np.result_type(old, new)
    except TypeError as exc:
        raise TypeError(
            f"cannot append data of dtype {new} to variable {var_name!r} of dtype {old}: "
            f"the dtypes have no common type ({exc})"
        ) from exc
