"""Run combinations in worker processes, one per device slot.

The agent plans *units* (lists of ``(counter, combination index)``); this module runs them
on slots. Each slot is a worker process pinned to one device (``None``: the tasks' own
device; ``'cuda:1'``: every ``'auto'`` task of that worker runs on GPU 1). The parent hands
out one unit at a time to whichever worker is idle, so a slot never runs two combinations
at once. A worker that dies (segfault, out-of-memory kill) is detected: the combination it
was running is reported as failed, the rest of its unit is re-queued, and a fresh worker
takes the slot.

Messages from workers to the parent (one ``SimpleQueue``, written synchronously so a
worker that dies has delivered everything it sent; the parent handles them all before it
looks at dead processes, which makes the blame for a crash exact):

- ``('ready', slot, None)`` — idle, send the next unit;
- ``('start', slot, counter)`` — starting a combination;
- ``('done', counter, JobOutcome)`` — finished (successfully or with an exception).
"""

from __future__ import annotations

import logging
import multiprocessing.connection
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
    prepare = getattr(agent, "prepare_worker", None)
    if callable(prepare):
        prepare()
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
    ready: bool = False  # the current process reported ready at least once
    disabled: bool = False  # a process of this slot died at start-up: do not restart it


class SlotPool:
    """Worker processes, one per device slot, fed one unit at a time.

    Args:
        ctx: a multiprocessing context (``spawn``, ``fork`` or ``forkserver``).
        outbox: a queue of that context the workers report to. Use ``ctx.SimpleQueue()``:
            its ``put`` writes to the pipe before returning, so every message a worker sent
            before dying reaches the parent and a crash is blamed on exactly the
            combination that was running (a ``ctx.Queue`` buffers messages in a feeder
            thread that dies with the process).
        agent: pickled into each worker; it runs combinations with ``execute_wrapper``.
        devices: one entry per slot.
        num_threads: torch intra-op threads in every worker (the parent's count keeps
            results bit-identical to a serial run).
        one_job_per_process: start a fresh process for every combination instead of
            reusing workers (full isolation, more start-up cost).
        on_outcome: called in the parent as each combination finishes.
    """

    poll_s = 0.5
    """Longest wait between checks when the outbox cannot be waited on directly."""

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
        self._startup_message = "every worker process died at start-up"
        self._stopped: list[Any] = []
        self.outcomes: dict[int, JobOutcome] = {}

    def run(self, units: Sequence[Unit]) -> dict[int, JobOutcome]:
        """Run every unit; return the outcome of every combination, by counter."""
        self._pending = [list(unit) for unit in units if unit]
        if self._one_job_per_process:
            self._pending = [[job] for unit in self._pending for job in unit]
        self._index_of = {counter: index for unit in self._pending for counter, index in unit}
        self._fill_slots()
        try:
            while len(self.outcomes) < len(self._index_of):
                self._wait()
                self._drain()
                self._check_processes()
                self._fill_slots()
        finally:
            for slot in self._slots:
                self._stop(slot)
            self._join_stopped()
        return self.outcomes

    # ------------------------------------------------------------- messages
    def _wait(self) -> None:
        """Block until a message arrives or a worker process ends (or ``poll_s`` passes)."""
        if not self._outbox.empty():
            return
        waitables = [s.process.sentinel for s in self._slots if s.process is not None]
        reader = getattr(self._outbox, "_reader", None)  # the pipe behind mp queues
        if reader is not None:
            waitables.append(reader)
        multiprocessing.connection.wait(waitables, timeout=self.poll_s)

    def _drain(self) -> None:
        """Handle every message already sent."""
        while not self._outbox.empty():
            kind, key, payload = self._outbox.get()
            if kind == "ready":
                self._on_ready(self._slots[key])
            elif kind == "start":
                self._slots[key].current = payload
            elif kind == "done":
                self._on_done(payload)

    # ---------------------------------------------------------------- slots
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
        slot.unit, slot.current, slot.jobs_done, slot.ready = [], None, 0, False

    def _stop(self, slot: _Slot) -> None:
        """Ask the slot's worker to exit (without waiting: see :meth:`_join_stopped`)."""
        process, slot.process = slot.process, None
        if process is None:
            return
        if process.is_alive():
            slot.inbox.put(None)
        self._stopped.append(process)

    def _join_stopped(self) -> None:
        """Wait for every stopped worker to exit (together); terminate stragglers."""
        deadline = time.monotonic() + 10
        for process in self._stopped:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        for process in self._stopped:
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        self._stopped.clear()

    def _fill_slots(self) -> None:
        """Start a worker on every idle slot while units wait (never on disabled slots)."""
        for slot in self._slots:
            if not self._pending:
                return
            if slot.process is None and not slot.disabled:
                self._start(slot)
        if self._pending and not any(s.process is not None for s in self._slots):
            # Every slot died at start-up: the failure is systematic, fail what is left.
            message = self._startup_message
            for unit in self._pending:
                for counter, index in unit:
                    self._fail(counter, index, message, None)
            self._pending.clear()

    def _on_ready(self, slot: _Slot) -> None:
        slot.unit, slot.current, slot.ready = [], None, True
        if self._one_job_per_process and slot.jobs_done:
            self._stop(slot)  # _fill_slots starts a fresh process if work is left
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
        """Fail the combination a dead worker was running and re-queue the rest of its unit.

        Called after :meth:`_drain`, so every message a dead worker sent has been handled:
        ``current`` is exactly the combination it was running.
        """
        for number, slot in enumerate(self._slots):
            if slot.process is None or slot.process.is_alive():
                continue
            code = slot.process.exitcode
            slot.process = None
            where = f"worker process for slot {number} (device {slot.device})"
            if not slot.ready:
                # Died before asking for work (e.g. the agent failed to unpickle): this is
                # systematic, so the slot is not restarted.
                slot.disabled = True
                self._startup_message = f"{where} died at start-up with exit code {code}"
                logger.error(self._startup_message)
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
            slot.unit, slot.current = [], None

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
