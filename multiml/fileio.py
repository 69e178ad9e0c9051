"""Atomic file writes shared by the Saver and the app's result files.

A write goes to a temporary file in the same directory, is flushed to disk, then renamed
over the target with ``os.replace``: a reader sees the old file or the new one, never half
of one, even when the writer is killed mid-write.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

TMP_SUFFIX = ".tmp"
"""Suffix of the temporary files (named ``.<random>.tmp``; left behind only by a crash)."""


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` atomically with ``write(stream)`` (a binary stream)."""
    path = Path(path)
    tmp = path.parent / f".{uuid.uuid4().hex}{TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # honours the umask
    try:
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda stream: stream.write(text.encode()))
