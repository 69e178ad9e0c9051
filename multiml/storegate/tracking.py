"""Write tracking: record which variables a block of code wrote or deleted.

Used to cache a step's effects and restore them later without knowing what the step does
(see ``docs/architecture.md``, "Write tracking")::

    with storegate.track_writes() as log:
        task.execute()
    snapshot = storegate.export_vars(log.written)   # {(data_id, phase, var): array}
    ...
    storegate.import_vars(snapshot)
    for data_id, phase, var_name in log.deleted:
        ...

``log.written`` and ``log.deleted`` describe the *net* effect of the block: a variable
deleted after it was written is only in ``deleted``, one written after it was deleted only
in ``written``. Both keep the order in which keys entered them.
"""

from __future__ import annotations

from collections.abc import Iterator, Set
from typing import Any

from multiml.storegate._base import Key


class KeySet(Set):
    """An insertion-ordered, read-only set of ``(data_id, phase, var_name)`` keys."""

    def __init__(self) -> None:
        self._keys: dict[Key, None] = {}

    def __contains__(self, key: Any) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[Key]:
        return iter(list(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeySet({list(self._keys)!r})"

    def _add(self, key: Key) -> None:
        self._keys[key] = None

    def _discard(self, key: Key) -> None:
        self._keys.pop(key, None)


class WriteLog:
    """What was written and deleted while a ``StoreGate.track_writes()`` scope was open."""

    def __init__(self) -> None:
        self.written = KeySet()
        self.deleted = KeySet()

    def record_write(self, key: Key) -> None:
        """Note that ``key`` now holds a value produced inside the scope."""
        self.deleted._discard(key)
        self.written._add(key)

    def record_delete(self, key: Key) -> None:
        """Note that ``key`` was removed inside the scope."""
        self.written._discard(key)
        self.deleted._add(key)

    def __repr__(self) -> str:
        return f"WriteLog(written={list(self.written)!r}, deleted={list(self.deleted)!r})"
