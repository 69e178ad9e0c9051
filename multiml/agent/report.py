"""Readable result tables for logs and the terminal.

>>> print(result_table([{'task_ids': ['step0', 'step1'], 'subtask_ids': ['mlp', 'clf'],
...     'job_id': 0, 'trial_id': None, 'subtask_hps': [{'lr': 0.1}, {}],
...     'metric_value': 0.912}], 'acc', best_job_id=0))
job  step0         step1  acc
---  ------------  -----  ------
0 *  mlp (lr=0.1)  clf    0.912
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def best_result(results: Sequence[dict[str, Any]], metric_type: str) -> dict[str, Any] | None:
    """The best result by ``metric_type`` (``'max'``/``'min'``); a missing or NaN metric
    counts as worst, ties go to the earliest. None when there are no results.

    >>> best_result([{'metric_value': 0.2}, {'metric_value': 0.7}], 'min')
    {'metric_value': 0.2}
    """
    if not results:
        return None
    sign = 1.0 if metric_type == "max" else -1.0

    def score(result: dict[str, Any]) -> float:
        value = result.get("metric_value")
        return -math.inf if value is None or math.isnan(value) else sign * value

    return max(results, key=score)


def format_value(value: Any) -> str:
    """Short text of a hyperparameter or metric value."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_metric(result: dict[str, Any]) -> str:
    """``value`` or ``mean ± std (n trials)`` for a result dict."""
    values = result.get("metric_values")
    if values and len(values) > 1:
        std = statistics.stdev(values)
        return f"{result['metric_value']:.6g} ± {std:.2g} ({len(values)} trials)"
    return format_value(result["metric_value"])


def result_table(
    results: Sequence[dict[str, Any]], metric_name: str, best_job_id: int | None = None
) -> str:
    """A fixed-width table: one row per combination, one column per step.

    Each step cell shows the subtask id and its resolved hyperparameters; the best row is
    marked with ``*``.
    """
    if not results:
        return "(no results)"
    task_ids = list(results[0]["task_ids"])
    header = ["job", *task_ids, metric_name]
    rows = []
    for result in results:
        mark = " *" if result["job_id"] == best_job_id else ""
        cells = [f"{result['job_id']}{mark}"]
        for subtask_id, hps in zip(result["subtask_ids"], result["subtask_hps"], strict=True):
            args = ", ".join(f"{k}={format_value(v)}" for k, v in hps.items())
            cells.append(f"{subtask_id} ({args})" if args else str(subtask_id))
        cells.append(format_metric(result))
        rows.append(cells)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    widths[-1] = max(widths[-1], 6)
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
