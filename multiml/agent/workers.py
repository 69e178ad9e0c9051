"""Run combinations in worker processes, one per device slot.

The agent plans *units* (lists of ``(counter, combination index)``); this module runs them
on slots. Each slot is a worker process pinned to one device (``None``: the tasks' own
device; ``'cuda:1'``: every ``'auto'`` task of that worker runs on GPU 1). The parent hands
out one unit at a time to whichever worker is idle, so a slot never runs two combinations
at once. A worker that dies (segfault, out-of-memory kill) is detected: the combination it
was running is reported as failed, the rest of its unit is re-queued, and a fresh worker
takes the slot.

Messages from workers to the parent (one queue):

- ``('ready', slot, None)`` — idle, send the next unit;
- ``('start', slot, counter)`` — starting a combination;
- ``('done', counter, JobOutcome)`` — finished (successfully or with an exception).
"""

from __future__ import annotations

import logging
import queue as queue_module
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

Unit = list[tuple[int, int]]
"""A list of ``(counter, combination index)`` run in order by one worker."""


@dataclass
class JobOutcome:
    """What one combination produced in a worker."""

    counter: int
    index: int
    result: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
    saver_updates: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the combination produced a result."""
        return self.result is not None


def failure(counter: int, index: int, exc: BaseException, device: str | None) -> JobOutcome:
    """A failed outcome carrying the exception text (notes included) and traceback."""
    text = "".join(traceback.format_exception_only(exc)).strip()
    return JobOutcome(
        counter=counter,
        index=index,
        error=text,
        traceback="".join(traceback.format_exception(exc)),
        device=device,
    )


def worker_loop(
    agent: Any, slot: int, device: str | None, num_threads: int, inbox: Any, outbox: Any
) -> None:
    """Body of a worker process: run units from ``inbox`` until it receives ``None``."""
    import torch

    torch.set_num_threads(num_threads)
    outbox.put(("ready", slot, None))
    while (unit := inbox.get()) is not None:
        for counter, index in unit:
            outbox.put(("start", slot, counter))
            agent.execute_wrapper(outbox, agent.task_scheduler[index], counter, device)
        outbox.put(("ready", slot, None))


@dataclass
class _Slot:
    """One device slot and the worker process currently serving it."""

    device: str | None
    process: Any = None
    inbox: Any = None
    unit: Unit = field(default_factory=list)
    current: int | None = None
    jobs_done: int = 0


class SlotPool:
    """Worker processes, one per device slot, fed one unit at a time.

    Args:
        ctx: a multiprocessing context (``spawn``, ``fork`` or ``forkserver``).
        outbox: a queue of that context the workers report to.
        agent: pickled into each worker; it runs combinations with ``execute_wrapper``.
        devices: one entry per slot.
        num_threads: torch intra-op threads in every worker (the parent's count keeps
            results bit-identical to a serial run).
        one_job_per_process: start a fresh process for every combination instead of
            reusing workers (full isolation, more start-up cost).
        on_outcome: called in the parent as each combination finishes.
    """

    def __init__(
        self,
        ctx: Any,
        outbox: Any,
        agent: Any,
        devices: Sequence[str | None],
        num_threads: int,
        one_job_per_process: bool = False,
        on_outcome: Callable[[JobOutcome], None] | None = None,
    ) -> None:
        self._ctx = ctx
        self._outbox = outbox
        self._agent = agent
        self._slots = [_Slot(device) for device in devices]
        self._num_threads = num_threads
        self._one_job_per_process = one_job_per_process
        self._on_outcome = on_outcome
        self._pending: list[Unit] = []
        self._index_of: dict[int, int] = {}
        self.outcomes: dict[int, JobOutcome] = {}

    def run(self, units: Sequence[Unit]) -> dict[int, JobOutcome]:
        """Run every unit; return the outcome of every combination, by counter."""
        self._pending = [list(unit) for unit in units if unit]
        if self._one_job_per_process:
            self._pending = [[job] for unit in self._pending for job in unit]
        self._index_of = {counter: index for unit in self._pending for counter, index in unit}
        for slot in self._slots[: len(self._pending)]:
            self._start(slot)
        try:
            while len(self.outcomes) < len(self._index_of):
                try:
                    kind, key, payload = self._outbox.get(timeout=0.5)
                except queue_module.Empty:
                    self._check_processes()
                    continue
                if kind == "ready":
                    self._on_ready(self._slots[key])
                elif kind == "start":
                    self._slots[key].current = payload
                elif kind == "done":
                    self._on_done(payload)
        finally:
            for slot in self._slots:
                self._stop(slot)
        return self.outcomes

    def _start(self, slot: _Slot) -> None:
        number = self._slots.index(slot)
        slot.inbox = self._ctx.Queue()
        slot.process = self._ctx.Process(
            target=worker_loop,
            args=(self._agent, number, slot.device, self._num_threads, slot.inbox, self._outbox),
            name=f"multiml-slot{number}",
            daemon=True,
        )
        slot.process.start()
        slot.unit, slot.current, slot.jobs_done = [], None, 0

    def _stop(self, slot: _Slot) -> None:
        process, slot.process = slot.process, None
        if process is None:
            return
        if process.is_alive():
            slot.inbox.put(None)
            process.join(timeout=10)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)

    def _on_ready(self, slot: _Slot) -> None:
        slot.unit, slot.current = [], None
        if self._one_job_per_process and slot.jobs_done:
            self._stop(slot)
            if self._pending:
                self._start(slot)
            return
        if self._pending:
            slot.unit = self._pending.pop(0)
            slot.inbox.put(slot.unit)
        else:
            self._stop(slot)

    def _on_done(self, outcome: JobOutcome) -> None:
        outcome.index = self._index_of[outcome.counter]
        for slot in self._slots:
            if slot.current == outcome.counter:
                slot.current = None
                slot.jobs_done += 1
        self._finish(outcome)

    def _finish(self, outcome: JobOutcome) -> None:
        self.outcomes[outcome.counter] = outcome
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    def _check_processes(self) -> None:
        """Fail the combination a dead worker was running, re-queue the rest, respawn."""
        for number, slot in enumerate(self._slots):
            if slot.process is None or slot.process.is_alive():
                continue
            code = slot.process.exitcode
            slot.process = None
            where = f"worker process for slot {number} (device {slot.device})"
            if slot.current is None and not slot.jobs_done:
                # Died before finishing anything (e.g. the agent failed to unpickle): this is
                # systematic, so fail its unit instead of retrying forever.
                message = f"{where} died at start-up with exit code {code}"
                doomed = list(slot.unit)
                if not any(other.process is not None for other in self._slots):
                    doomed += [job for unit in self._pending for job in unit]
                    self._pending.clear()
                for counter, index in doomed:
                    if counter not in self.outcomes:
                        self._fail(counter, index, message, slot.device)
                continue
            if slot.current is not None:
                counter = slot.current
                message = (
                    f"{where} died with exit code {code} while running combination "
                    f"job_id={counter} (index {self._index_of[counter]})"
                )
                self._fail(counter, self._index_of[counter], message, slot.device)
            rest = [job for job in slot.unit if job[0] not in self.outcomes]
            if rest:
                self._pending.insert(0, rest)
            if self._pending:
                self._start(slot)

    def _fail(self, counter: int, index: int, message: str, device: str | None) -> None:
        logger.error(message)
        now = time.time()
        self._finish(
            JobOutcome(
                counter=counter,
                index=index,
                error=message,
                device=device,
                started_at=now,
                finished_at=now,
            )
        )
