"""Which combinations a search runs (shared by the agents and the Hydra sweeper).

>>> draw_indices(total=10, samplings=3, seed=0) == draw_indices(10, 3, 0)
True
>>> draw_indices(total=10, samplings=[4, 1], seed=0)
[4, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
