"""Exclusive device slots shared by concurrent processes (multirun jobs).

``devices=[0, 1]`` gives two slots. A job takes a free slot for its whole run by locking
``<lock_dir>/slot-<i>.lock`` with ``fcntl.flock``: the lock works across any processes on
the machine (joblib/loky workers, submitit jobs, Ray workers), is released when the job
ends, and — because the kernel drops it with the process — even when the job crashes.

Slots are physical devices of one machine, so the lock directory of a sweep is scoped by
:func:`lock_scope` (the host, and ``CUDA_VISIBLE_DEVICES`` when a scheduler set it): jobs
on different nodes of a cluster, or Slurm/Ray jobs that each see their own GPUs, never
wait for each other's ``cuda:0``.

>>> with DeviceLease('/tmp/sweep/.devices', ['cpu', 'cpu']) as (slot, device):  # doctest: +SKIP
...     run_on(device)
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def lock_scope() -> str:
    """Name of the set of physical devices this process can see (a directory name).

    The host name, plus ``CUDA_VISIBLE_DEVICES`` when it is set: processes with the same
    scope share device slots; processes on other machines, or given other GPUs by a
    scheduler, do not.

    >>> import os; os.environ['CUDA_VISIBLE_DEVICES'] = '2,3'  # doctest: +SKIP
    >>> lock_scope()  # doctest: +SKIP
    'node17_cvd-2-3'
    """
    scope = _UNSAFE.sub("-", socket.gethostname()) or "host"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        scope += f"_cvd-{_UNSAFE.sub('-', visible) or 'none'}"
    return scope


class DeviceLease:
    """Hold one slot of ``devices`` exclusively while the ``with`` block runs.

    Args:
        lock_dir: where the slot lock files live (shared by every job of a sweep).
        devices: one device name per slot.
        poll_s: how often to retry while every slot is busy.
        timeout_s: give up after this long (None: wait forever).
    """

    def __init__(
        self,
        lock_dir: str | os.PathLike[str],
        devices: Sequence[str],
        poll_s: float = 0.1,
        timeout_s: float | None = None,
    ) -> None:
        if not devices:
            raise ValueError("DeviceLease needs at least one device")
        self.lock_dir = Path(lock_dir)
        self.devices = list(devices)
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.slot: int | None = None
        self._fd: int | None = None

    @property
    def device(self) -> str:
        """The leased device (inside the ``with`` block)."""
        if self.slot is None:
            raise RuntimeError("DeviceLease: no slot held")
        return self.devices[self.slot]

    def acquire(self) -> tuple[int, str]:
        """Block until a slot is free; return ``(slot, device)``.

        Raises:
            RuntimeError: this lease already holds a slot.
            TimeoutError: no slot became free within ``timeout_s``.
        """
        if self._fd is not None:
            raise RuntimeError(f"DeviceLease already holds slot {self.slot}; release() it first")
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        waited = False
        while True:
            for slot in range(len(self.devices)):
                fd = os.open(self.lock_dir / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                try:  # the holder's pid, for humans looking at a stuck sweep
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                except OSError:
                    os.close(fd)  # closing drops the lock too
                    raise
                self.slot, self._fd = slot, fd
                return slot, self.devices[slot]
            if self.timeout_s is not None and time.monotonic() - start > self.timeout_s:
                raise TimeoutError(
                    f"no free device slot among {self.devices} after {self.timeout_s}s"
                )
            if not waited:
                logger.info("all %d device slots busy; waiting for one", len(self.devices))
                waited = True
            time.sleep(self.poll_s)

    def release(self) -> None:
        """Free the slot."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        self._fd = None
        self.slot = None

    def __enter__(self) -> tuple[int, str]:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
