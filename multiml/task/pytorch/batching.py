"""Whole-batch data access for PyTorch tasks.

Training reads a phase's arrays once (zero-copy from the numpy backend) and gathers every
batch with one fancy-index per variable — no per-sample ``Dataset.__getitem__`` and no
collate. That keeps the framework's training loop as fast as a hand-written one.

>>> import numpy as np
>>> source = BatchSource(np.arange(10.0).reshape(5, 2), np.arange(5))
>>> x, y = source.gather(torch.tensor([4, 0]))
>>> x.tolist(), y.tolist()
([[8.0, 9.0], [0.0, 1.0]], [4, 0])
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

BatchSpec = int | dict[str, Any]
BatchSampler = Callable[[int, int, str], Iterable[Any]]
"""A custom batch sampler: ``sampler(num_samples, batch_size, phase)`` yields index batches."""


def to_tensor(data: Any, targets: bool = False) -> Any:
    """Convert arrays (or lists of arrays) to tensors, sharing memory where possible.

    Floating-point arrays become float32 so that they match model parameters. With
    ``targets=True`` integer arrays become int64 (what classification losses expect);
    otherwise integer and boolean arrays keep their dtype.
    """
    if isinstance(data, list):
        return [to_tensor(item, targets) for item in data]
    if data is None or isinstance(data, torch.Tensor):
        return data
    array = np.asarray(data)
    if array.dtype.kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)
    elif targets and array.dtype.kind in "iub" and array.dtype != np.int64:
        array = array.astype(np.int64)
    elif not array.flags.c_contiguous or not array.flags.writeable:
        array = np.array(array)
    return torch.from_numpy(array)


def gather(data: Any, index: torch.Tensor | slice) -> Any:
    """Rows ``index`` of a tensor or of each tensor in a list."""
    if isinstance(data, list):
        return [gather(item, index) for item in data]
    return data[index] if data is not None else None


def move(data: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move a tensor (or list of tensors) to ``device``."""
    if data is None:
        return None
    if isinstance(data, list | tuple):
        return [move(item, device, non_blocking) for item in data]
    return data.to(device, non_blocking=non_blocking)


def num_rows(data: Any) -> int:
    """Number of rows of a tensor/array (or of the first element of a list)."""
    if isinstance(data, list | tuple):
        return num_rows(data[0])
    return len(data)


class BatchSource:
    """Inputs and targets of one phase, gathered a whole batch at a time.

    Args:
        inputs: an array/tensor or a list of them (one per input variable).
        targets: likewise, or None (prediction without targets).
        pin_memory: pin host tensors so copies to a GPU can overlap compute.
    """

    def __init__(self, inputs: Any, targets: Any = None, pin_memory: bool = False) -> None:
        self.inputs = to_tensor(inputs)
        self.targets = to_tensor(targets, targets=True) if targets is not None else None
        if pin_memory:
            self.inputs = _pin(self.inputs)
            self.targets = _pin(self.targets)
        self._length = num_rows(self.inputs)

    def __len__(self) -> int:
        return self._length

    def gather(self, index: torch.Tensor | slice) -> tuple[Any, Any]:
        """``(inputs, targets)`` rows at ``index`` (a slice gathers a view, no copy)."""
        targets = gather(self.targets, index) if self.targets is not None else None
        return gather(self.inputs, index), targets

    # torch.utils.data.DataLoader protocol (used with a batch sampler and batch_size=None)
    def __getitem__(self, index: Any) -> tuple[Any, Any]:
        return self.gather(index if isinstance(index, slice) else torch.as_tensor(index))


def _pin(data: Any) -> Any:
    if isinstance(data, list):
        return [_pin(item) for item in data]
    return data.pin_memory() if data is not None else None


def resolve_batch_size(spec: BatchSpec, phase: str, num_samples: int) -> int:
    """Batch size of ``phase`` from an int, a per-phase dict, or an equal-length spec.

    ``{'type': 'equal_length', 'length': L}`` splits every phase into ``L`` batches of
    near-equal size (see :func:`equal_length_batches`), so train and valid take the same
    number of steps; the size returned is the largest of them, ``ceil(num_samples / L)``.
    A per-phase dict may hold a ``'default'`` entry for phases it does not name.

    >>> resolve_batch_size({'train': 32, 'default': 256}, 'test', 1000)
    256
    >>> resolve_batch_size({'type': 'equal_length', 'length': 10}, 'valid', 1005)
    101
    """
    if isinstance(spec, bool) or not isinstance(spec, int | dict):
        raise ValueError(
            f"batch_size={spec!r}: expected an int, a per-phase dict "
            "({'train': 64, 'valid': 256, ...}) or {'type': 'equal_length', 'length': L}"
        )
    if isinstance(spec, int):
        size = spec
    elif "type" in spec:
        length = equal_length_batches(spec)
        size = max(1, -(-num_samples // length))
    elif phase in spec:
        size = spec[phase]
    elif "default" in spec:
        size = spec["default"]
    else:
        raise ValueError(
            f"batch_size={spec!r} has no entry for phase {phase!r}; add {phase!r} or 'default'"
        )
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"batch_size for phase {phase!r} is {size!r}; expected a positive int")
    return size


def equal_length_batches(spec: BatchSpec) -> int | None:
    """``L`` of an ``{'type': 'equal_length', 'length': L}`` spec; None for other specs.

    >>> equal_length_batches({'type': 'equal_length', 'length': 8}), equal_length_batches(64)
    (8, None)
    """
    if not isinstance(spec, dict) or "type" not in spec:
        return None
    if spec["type"] != "equal_length":
        raise ValueError(
            f"batch_size={spec!r}: unknown type {spec['type']!r}; allowed: equal_length"
        )
    length = spec.get("length")
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(
            f"batch_size={spec!r}: 'equal_length' needs a positive int 'length' "
            "(the number of batches per phase)"
        )
    return length


def index_batches(
    num_samples: int,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    num_batches: int | None = None,
) -> Iterator[torch.Tensor | slice]:
    """Indices of consecutive batches, over a random permutation when ``shuffle``.

    Batches hold ``batch_size`` rows (the last one the rest); with ``num_batches`` the rows
    are instead cut into that many batches whose sizes differ by at most one (fewer when
    there are fewer rows). Without shuffling each batch is a ``slice``, so gathering is a
    view and rows come in store order (predictions stay aligned with their labels).

    >>> [(s.start, s.stop) for s in index_batches(10, 4, shuffle=False)]
    [(0, 4), (4, 8), (8, 10)]
    >>> [(s.start, s.stop) for s in index_batches(10, 4, shuffle=False, num_batches=3)]
    [(0, 3), (3, 6), (6, 10)]
    """
    if num_batches is not None:
        count = max(1, min(num_batches, num_samples))
        bounds = [(i * num_samples) // count for i in range(count + 1)]
    else:
        bounds = [*range(0, num_samples, batch_size), num_samples]
    order = torch.randperm(num_samples, generator=generator) if shuffle else None
    for start, stop in itertools.pairwise(bounds):
        if start >= stop:
            continue
        yield order[start:stop] if order is not None else slice(start, stop)
