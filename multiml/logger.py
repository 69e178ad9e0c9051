"""Logging helpers.

multiml logs through the stdlib: every module uses ``logging.getLogger(__name__)`` and
never configures handlers (Hydra does that for app runs). This module only offers a
shortcut to change the level of the whole ``multiml`` logger tree.

>>> from multiml import logger
>>> logger.set_level("WARN")
"""

from __future__ import annotations

import logging

_ALIASES = {"WARN": logging.WARNING, "FATAL": logging.CRITICAL}


def set_level(level: int | str) -> None:
    """Set the level of the ``multiml`` logger (``'DEBUG'``, ``'INFO'``, ``'WARN'``, ...)."""
    if isinstance(level, str):
        name = level.upper()
        resolved = _ALIASES.get(name, logging.getLevelName(name))
        if not isinstance(resolved, int):
            allowed = "DEBUG, INFO, WARN/WARNING, ERROR, CRITICAL"
            raise ValueError(f"unknown log level {level!r}; allowed: {allowed}")
        level = resolved
    logging.getLogger("multiml").setLevel(level)
