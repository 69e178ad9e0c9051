"""Helpers shared by the benchmark scripts (timing, reporting)."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any


def best_of(repeats: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    """Run ``fn`` (which returns a figure) ``repeats`` times; return the median and all."""
    values = [fn() for _ in range(repeats)]
    return statistics.median(values), values


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, return value)`` of one call."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def report(result: dict[str, Any]) -> None:
    """Print one JSON line (the benchmarks' output format)."""
    print(json.dumps(result))
