"""Multi-layer perceptron block built from a list of layer sizes."""

from __future__ import annotations

import itertools
import logging

import torch
from torch import nn

from multiml.task.pytorch.modules._utils import (
    ActivationSpec,
    LastDimBatchNorm,
    as_size,
    as_sizes,
    get_activation,
    init_for_activation,
)

__all__ = ["MLPBlock"]

logger = logging.getLogger(__name__)


class MLPBlock(nn.Sequential):
    """Fully connected layers between consecutive sizes of ``layers``.

    ``MLPBlock([4, 32, 32, 2])`` is ``Linear(4, 32) → ReLU → Linear(32, 32) → ReLU →
    Linear(32, 2) → Identity``. Each hidden Linear is followed by ``[BatchNorm] →
    activation → [Dropout]``; the last Linear by ``activation_last`` only.

    The Linear layers act on the last axis, so inputs may be ``(N, F)`` or ``(N, *, F)``;
    the output has the same leading axes and ``layers[-1]`` features. Batch norm also
    works on ``(N, *, F)``: each feature is normalised over all leading axes (see
    :class:`~multiml.task.pytorch.modules._utils.LastDimBatchNorm`).

    Args:
        layers: feature sizes, e.g. ``[4, 32, 2]``. May be shorter (even empty) when
            ``input_shape``/``output_shape`` supply the ends; at least 2 sizes in total.
        activation: activation after every hidden Linear: a ``torch.nn`` name
            (``'ReLU'``, also ``'relu'``), a ``{'name': 'LeakyReLU', 'negative_slope': 0.1}``
            mapping (for YAML configs), an ``nn.Module`` class, or an instance (copied for
            every layer), or ``None`` for Identity.
        activation_last: activation after the last Linear, same forms (default
            ``'Identity'``: raw outputs, e.g. logits for ``CrossEntropyLoss``).
        batch_norm: insert ``BatchNorm1d`` between each hidden Linear and its activation.
        initialize: re-initialise weights deterministically from torch's global RNG
            (so ``torch.manual_seed`` fixes them): each Linear weight with
            ``kaiming_uniform_`` (fan-in) using the gain of the activation that follows it
            (ReLU gain for ReLU-like activations, 1 for Identity, see
            ``torch.nn.init.calculate_gain``), biases with zeros, batch norm with weight 1
            and bias 0. ``False`` keeps PyTorch's default ``nn.Linear`` initialisation.
        input_shape: input feature size, an int or a 1-tuple; prepended to ``layers``.
        output_shape: output feature size, an int or a 1-tuple; appended to ``layers``.
        dropout: dropout probability after every hidden activation (0 disables it).

    Attributes:
        layer_sizes: the full list of sizes, ``input_shape`` and ``output_shape`` included.
        in_features / out_features: ``layer_sizes[0]`` / ``layer_sizes[-1]``.

    Example:
        >>> import torch
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> mlp = MLPBlock([16, 8], activation='ELU', input_shape=(4,), output_shape=2)
        >>> mlp.layer_sizes
        [4, 16, 8, 2]
        >>> mlp(torch.randn(10, 4)).shape
        torch.Size([10, 2])
        >>> mlp(torch.randn(10, 7, 4)).shape  # (N, *, F): applied on the last axis
        torch.Size([10, 7, 2])
    """

    def __init__(
        self,
        layers: list[int] | tuple[int, ...] | None,
        activation: ActivationSpec = "ReLU",
        activation_last: ActivationSpec = "Identity",
        batch_norm: bool = False,
        initialize: bool = True,
        input_shape: int | tuple[int] | None = None,
        output_shape: int | tuple[int] | None = None,
        dropout: float = 0.0,
    ) -> None:
        sizes = as_sizes(layers, "layers")
        if input_shape is not None:
            sizes.insert(0, as_size(input_shape, "input_shape"))
        if output_shape is not None:
            sizes.append(as_size(output_shape, "output_shape"))
        if len(sizes) < 2:
            raise ValueError(
                f"MLPBlock needs at least 2 sizes (input and output features); got "
                f"layers={layers!r}, input_shape={input_shape!r}, output_shape={output_shape!r}"
                f" -> {sizes}"
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout={dropout!r}: expected a probability in [0, 1)")
        hidden_act = get_activation(activation, "activation")
        last_act = get_activation(activation_last, "activation_last")

        super().__init__()
        self.layer_sizes: list[int] = sizes
        self.in_features: int = sizes[0]
        self.out_features: int = sizes[-1]
        self.batch_norm: bool = bool(batch_norm)

        num_linear = len(sizes) - 1
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            is_last = i == num_linear - 1
            linear = nn.Linear(n_in, n_out)
            act = get_activation(last_act if is_last else hidden_act)
            if initialize:
                init_for_activation(linear, act)
            self.add_module(f"linear{i}", linear)
            if is_last:
                self.add_module("activation_last", act)
                break
            if batch_norm:
                self.add_module(f"batchnorm{i}", LastDimBatchNorm(n_out))
            self.add_module(f"activation{i}", act)
            if dropout > 0:
                self.add_module(f"dropout{i}", nn.Dropout(float(dropout)))
        logger.debug("built MLPBlock with sizes %s", sizes)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``(N, F)`` or ``(N, *, F)`` input; returns ``(..., out)``."""
        if input.dim() == 0 or input.shape[-1] != self.in_features:
            raise ValueError(
                f"MLPBlock expects inputs with {self.in_features} features on the last axis; "
                f"got shape {tuple(input.shape)}"
            )
        return super().forward(input)
