"""ConnectionModel: several step models wired into one differentiable model.

Tensors live in a *pool*: first the external inputs, then every output of every model in
order. Each model's input is described by indices into that pool:

- an ``int``: one tensor;
- a ``tuple`` of ints: those tensors stacked on dim 1 (``(N, M, *k)``, the StoreGate's
  tuple convention);
- a ``list`` of ints/tuples: the model receives a list.

>>> import torch
>>> from torch import nn
>>> step0, step1 = nn.Linear(3, 2), nn.Linear(2, 1)    # pool: [x, step0 output, ...]
>>> model = ConnectionModel([step0, step1], input_var_index=[0, 1], num_outputs=[1, 1])
>>> [tuple(o.shape) for o in model([torch.zeros(5, 3)])]
[(5, 2), (5, 1)]

Most users never build one by hand: :class:`~multiml.task.pytorch.ModelConnectionTask`
derives the indices from the steps' variable names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

InputIndex = int | tuple[int, ...] | list[Any]


class ConnectionModel(nn.Module):
    """Run ``models`` in order, feeding each from the pool of inputs and earlier outputs.

    Args:
        models: the step models, in execution order.
        input_var_index: per model, where its input comes from (see the module docstring).
        num_outputs: per model, how many tensors it returns (1: a single tensor; k > 1: a
            list/tuple of k tensors appended to the pool one by one).

    ``forward(inputs)`` takes the list of external input tensors and returns one entry per
    model: its output tensor, or its list of output tensors.

    Models whose parameters are all frozen (``requires_grad=False``) stay in eval mode when
    the connection is put in training mode, so their batch-norm statistics and dropout do
    not change either.
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        input_var_index: Sequence[InputIndex],
        num_outputs: Sequence[int],
    ) -> None:
        super().__init__()
        if not (len(models) == len(input_var_index) == len(num_outputs)):
            raise ValueError(
                f"ConnectionModel: got {len(models)} models, {len(input_var_index)} input "
                f"indices and {len(num_outputs)} output counts; they must match"
            )
        self.models = nn.ModuleList(models)
        self.input_var_index = [_freeze_index(index) for index in input_var_index]
        self.num_outputs = list(num_outputs)

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[Any]:
        """Run every model; return their outputs in order."""
        pool: list[torch.Tensor] = list(inputs)
        results: list[Any] = []
        for model, index, count in zip(
            self.models, self.input_var_index, self.num_outputs, strict=True
        ):
            output = model(_take(pool, index))
            if count == 1:
                pool.append(output)
            else:
                if not isinstance(output, list | tuple) or len(output) != count:
                    got = len(output) if isinstance(output, list | tuple) else "a single tensor"
                    raise ValueError(
                        f"ConnectionModel: {type(model).__name__} should return {count} "
                        f"outputs, returned {got}"
                    )
                pool.extend(output)
            results.append(output)
        return results

    def train(self, mode: bool = True) -> ConnectionModel:
        """Set training mode, keeping fully frozen models in eval mode."""
        super().train(mode)
        for model in self.models:
            params = list(model.parameters())
            if mode and params and not any(p.requires_grad for p in params):
                model.eval()
        return self


def _freeze_index(index: Any) -> Any:
    if isinstance(index, int) and not isinstance(index, bool):
        return index
    if isinstance(index, tuple) and all(isinstance(i, int) for i in index):
        return index
    if isinstance(index, list):
        return [_freeze_index(i) for i in index]
    raise ValueError(
        f"ConnectionModel: input index {index!r} must be an int, a tuple of ints or a list of those"
    )


def _take(pool: list[torch.Tensor], index: Any) -> Any:
    if isinstance(index, int):
        return pool[index]
    if isinstance(index, tuple):
        return torch.stack([pool[i] for i in index], dim=1)
    return [_take(pool, i) for i in index]
