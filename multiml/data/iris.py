"""The iris dataset (shipped with scikit-learn; no download) as a StoreGate dataset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from multiml.storegate import StoreGate


def load_iris(
    storegate: StoreGate,
    phase: Sequence[float] | Sequence[int] | str = (0.6, 0.2, 0.2),
    shuffle: bool | int = 0,
) -> None:
    """Add ``features`` ``(150, 4)`` float32 and ``label`` ``(150,)`` int64, then compile.

    Args:
        storegate: the store (its current data_id receives the data).
        phase: the phase split (fractions or counts).
        shuffle: shuffle seed (iris is ordered by class, so an unshuffled split puts a
            class only in test); ``False`` keeps the original order.
    """
    try:
        from sklearn.datasets import load_iris as sklearn_iris
    except ImportError:
        raise ImportError("task=iris needs scikit-learn: pip install 'multiml[sklearn]'") from None
    iris = sklearn_iris()
    phase = tuple(phase) if not isinstance(phase, str) else phase
    storegate.add_data("features", iris.data.astype(np.float32), phase=phase, shuffle=shuffle)
    storegate.add_data("label", iris.target.astype(np.int64), phase=phase, shuffle=shuffle)
    storegate.compile()
