"""Device names shared by the agents (worker slots) and the app (``devices=[...]``).

Entries are GPU ids (``0`` → ``'cuda:0'``) or names (``'cpu'``, ``'auto'``, ``'cuda'``,
``'cuda:N'``). Parsing needs no torch; checking that CUDA devices exist imports it.

>>> device_names([0, 'cpu', 'cuda:1'], 'devices')
['cuda:0', 'cpu', 'cuda:1']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_NAME = re.compile(r"^(cpu|auto|cuda|cuda:\d+)$")
ALLOWED = "cpu, auto, cuda, cuda:N or a GPU id N"


def device_name(entry: Any, key: str) -> str:
    """The device name of one entry.

    Raises:
        ValueError: naming ``key``, the entry and what is allowed.
    """
    if isinstance(entry, int) and not isinstance(entry, bool) and entry >= 0:
        return f"cuda:{entry}"
    if isinstance(entry, str) and _NAME.match(entry):
        return entry
    raise ValueError(f"{key} entry {entry!r} is not a device; allowed: {ALLOWED}")


def device_names(entries: Sequence[Any], key: str) -> list[str]:
    """Device names of a list of entries (see :func:`device_name`)."""
    return [device_name(entry, key) for entry in entries]


def check_devices_exist(
    names: Sequence[str | None], key: str, given: Sequence[Any] | None = None
) -> None:
    """Raise unless every ``cuda``/``cuda:N`` name exists on this machine.

    ``given`` is the list as the user wrote it (shown in the message; default ``names``).

    Raises:
        ValueError: naming ``key``, the missing device and the devices that exist.
    """
    cuda = [name for name in names if name and name.startswith("cuda")]
    if not cuda:
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    shown = list(given if given is not None else names)
    for name in cuda:
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= count:
            have = ", ".join(f"cuda:{i}" for i in range(count)) or "no CUDA devices"
            raise ValueError(
                f"{key}={shown}: {name} does not exist on this machine ({have}); use cpu or "
                "existing GPU ids"
            )
