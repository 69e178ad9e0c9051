"""PytorchClassificationTask: a PytorchBaseTask with classification defaults."""

from __future__ import annotations

from typing import Any

import torch

from multiml.task.pytorch.pytorch_base import PytorchBaseTask


class PytorchClassificationTask(PytorchBaseTask):
    """Classification: cross-entropy loss and accuracy by default; stores probabilities.

    Predictions written back are class probabilities: a softmax over axis 1 for ``(N, C)``
    logits with ``C > 1``, a sigmoid for a single logit column (``(N,)`` or ``(N, 1)``).

    Args:
        loss: default ``'CrossEntropyLoss'``.
        metrics: default ``['loss', 'acc']``.
        **kwargs: :class:`PytorchBaseTask` arguments.
    """

    def __init__(
        self, loss: Any = "CrossEntropyLoss", metrics: list[Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(
            loss=loss, metrics=metrics if metrics is not None else ["loss", "acc"], **kwargs
        )

    def postprocess(self, outputs: Any) -> Any:
        """Logits → probabilities."""
        if isinstance(outputs, list | tuple):
            return [self.postprocess(o) for o in outputs]
        if outputs.ndim >= 2 and outputs.shape[1] > 1:
            return torch.softmax(outputs, dim=1)
        return torch.sigmoid(outputs)


__all__ = ["PytorchClassificationTask"]
