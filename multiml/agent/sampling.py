"""Which combinations a search runs (shared by the agents and the Hydra sweeper).

>>> draw_indices(total=10, samplings=3, seed=0) == draw_indices(10, 3, 0)
True
>>> draw_indices(total=10, samplings=[4, 1], seed=0)
[4, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def check_samplings(samplings: Any, key: str = "samplings") -> int | list[int] | None:
    """Validate a ``samplings`` setting: None, a positive int, or a non-empty list of
    distinct combination indices (numpy integers and arrays accepted).

    Raises:
        ValueError: naming ``key``, the value and what is allowed.
    """
    if samplings is None:
        return None
    if isinstance(samplings, int | np.integer) and not isinstance(samplings, bool):
        if samplings < 1:
            raise ValueError(f"{key}={samplings}: expected a positive int or a list")
        return int(samplings)
    if isinstance(samplings, np.ndarray):
        samplings = samplings.tolist()
    if isinstance(samplings, Sequence) and not isinstance(samplings, str):
        values = list(samplings)
        if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{key}={values!r}: a list must hold combination indices")
        if not values:
            raise ValueError(f"{key}=[]: give at least one combination index")
        repeated = sorted({int(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(
                f"{key}={values} lists the indices {repeated} more than once (repeated: "
                f"{repeated}); a list names distinct combination indices"
            )
        return [int(v) for v in values]
    raise ValueError(f"{key}={samplings!r}: expected an int, a list of indices or None")


def draw_indices(total: int, samplings: int | Sequence[int], seed: int) -> list[int]:
    """Combination indices to run, in sampling order.

    An int draws that many distinct indices (without replacement) with a local RNG seeded
    by ``seed``; a list is taken as given (checked against ``total``).

    Raises:
        ValueError: more samplings than combinations, or indices out of range.
    """
    if isinstance(samplings, int) and not isinstance(samplings, bool):
        if samplings > total:
            raise ValueError(
                f"samplings={samplings} is larger than the {total} combinations that exist; "
                "sampling is without replacement"
            )
        rng = np.random.default_rng(seed)
        return [int(i) for i in rng.choice(total, size=samplings, replace=False)]
    indices = [int(i) for i in samplings]
    bad = [i for i in indices if not 0 <= i < total]
    if bad:
        raise ValueError(f"samplings holds indices {bad} outside 0..{total - 1}")
    return indices
