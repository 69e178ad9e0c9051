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

import copy
import functools
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

DUMP_RECORD_FIELDS = ("model_path", "ml_type", "timestamp")
"""Fields every ``Saver.dump_ml`` record holds."""


@dataclass
class SaverEntry:
    """A copy of one Saver key that can be written back exactly.

    ``Saver.dump_ml`` keeps the weights of an in-memory record beside the record itself;
    writing the record back with ``saver[key] = record`` would drop them. The entry
    therefore also carries those weights and re-dumps them on restore.
    """

    value: Any
    mode: str  # 'dict' (held in memory) or 'zarr' (on disk)
    state_dict: dict[str, Any] | None = None


def snapshot_saver_entry(saver: Any, key: str) -> SaverEntry:
    """Copy ``saver[key]`` (with the weights of an in-memory ``dump_ml`` record)."""
    mode = "dict" if key in saver.keys("dict") else "zarr"
    value = copy.deepcopy(saver[key])
    state_dict = None
    if mode == "dict" and isinstance(value, dict) and all(f in value for f in DUMP_RECORD_FIELDS):
        state_dict = saver.load_ml(key)["state_dict"]
    return SaverEntry(value=value, mode=mode, state_dict=state_dict)


def restore_saver_entry(saver: Any, key: str, entry: SaverEntry, mode: str | None = None) -> None:
    """Write a :class:`SaverEntry` back under ``key``: in memory (``'dict'``) or on disk
    (``'zarr'``) as given by ``mode``, else where the entry was taken from."""
    where = mode or entry.mode
    if entry.state_dict is None:
        saver.add(key, copy.deepcopy(entry.value), mode=where)
        return
    metadata = {k: v for k, v in entry.value.items() if k not in DUMP_RECORD_FIELDS}
    previous = saver.mode
    saver.set_mode(where)
    try:
        saver.dump_ml(
            key,
            ml_type=entry.value["ml_type"],
            model=_state_dict_holder()(entry.state_dict),
            **copy.deepcopy(metadata),
        )
    finally:
        saver.set_mode(previous)


@functools.cache
def _state_dict_holder() -> type:
    """An ``nn.Module`` whose ``state_dict()`` is a given dict (for ``Saver.dump_ml``)."""
    import torch

    class StateDictHolder(torch.nn.Module):
        def __init__(self, state_dict: dict[str, Any]) -> None:
            super().__init__()
            self._held = state_dict

        def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            return self._held

    return StateDictHolder


@dataclass
class StepRecord:
    """Everything one executed step left behind.

    ``unique_id`` is the task's ``get_unique_id()`` when it ran: Saver keys derived from it
    (e.g. dumped weights, ``step0_mlp_job3``) are renamed to the restoring combination's
    id, as re-running the step would name them.
    """

    store_vars: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    store_deleted: list[tuple[str, str, str]] = field(default_factory=list)
    saver_entries: dict[str, SaverEntry] = field(default_factory=dict)
    saver_deleted: list[str] = field(default_factory=list)
    resolved_hps: dict[str, Any] = field(default_factory=dict)
    history: Any = None
    model_state: dict[str, Any] | None = None
    unique_id: str | None = None


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
