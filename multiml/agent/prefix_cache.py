"""Cache of executed step prefixes (what ``sklearn.pipeline.Pipeline(memory=...)`` does for
fitted upstream steps).

In a grid or random search many combinations share their first steps. A step whose
subtask, hyperparameters and upstream prefix were already executed is not run again: the
variables it wrote to the StoreGate, the Saver entries it wrote, its resolved
hyperparameters, its training history and (when asked for) its model weights are restored
from a :class:`StepRecord`. Per-step seeding (:mod:`multiml.agent.seeding`) makes the
restored state identical to what re-running the step would produce.

The cache is a small LRU: the agents execute combinations in index order, where
consecutive combinations share their longest prefixes, so a handful of entries per step
is enough for every possible reuse.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class StepRecord:
    """Everything one executed step left behind."""

    store_vars: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    store_deleted: list[tuple[str, str, str]] = field(default_factory=list)
    saver_entries: dict[str, Any] = field(default_factory=dict)
    saver_deleted: list[str] = field(default_factory=list)
    resolved_hps: dict[str, Any] = field(default_factory=dict)
    history: Any = None
    model_state: dict[str, Any] | None = None


class PrefixCache:
    """An LRU map from a step's prefix key to its :class:`StepRecord`.

    Args:
        max_entries: how many step records to keep (0 disables caching).
    """

    def __init__(self, max_entries: int = 8) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries={max_entries}: expected >= 0")
        self.max_entries = max_entries
        self._records: OrderedDict[str, StepRecord] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def get(self, key: str) -> StepRecord | None:
        """The record of ``key`` (marking it recently used), or None."""
        record = self._records.get(key)
        if record is None:
            self.misses += 1
            return None
        self._records.move_to_end(key)
        self.hits += 1
        return record

    def put(self, key: str, record: StepRecord) -> None:
        """Store a record, evicting the least recently used beyond ``max_entries``."""
        if self.max_entries == 0:
            return
        self._records[key] = record
        self._records.move_to_end(key)
        while len(self._records) > self.max_entries:
            self._records.popitem(last=False)

    def clear(self) -> None:
        """Drop every record."""
        self._records.clear()
