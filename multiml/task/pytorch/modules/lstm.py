"""Stacked LSTM block built from a list of layer sizes."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from multiml.task.pytorch.modules._utils import (
    ActivationSpec,
    LastDimBatchNorm,
    as_size,
    as_sizes,
    get_activation,
)

__all__ = ["LSTMBlock"]

logger = logging.getLogger(__name__)

_OUTPUTS = ("last", "sequence")


class LSTMBlock(nn.Module):
    """One single-layer ``nn.LSTM`` per consecutive pair of sizes in ``layers``.

    ``LSTMBlock([F, 32, 16])`` is ``LSTM(F → 32) → LSTM(32 → 16)``. Between two LSTMs the
    sequence goes through ``[BatchNorm] → activation → [Dropout]``; after the last one,
    ``activation_last`` is applied to the returned tensor. With ``bidirectional=True`` every
    LSTM runs both ways and the next layer receives ``2 * hidden`` features.

    Input is ``(N, T, F)`` (``batch_first=True``) or ``(T, N, F)``. The output is

    - ``output='last'``: ``(N, H)``, the final hidden state of the last LSTM, i.e. the last
      time step; with ``bidirectional=True`` ``(N, 2H)``, the forward direction's state
      after step ``T-1`` concatenated with the backward direction's state after step 0
      (both have then seen the whole sequence);
    - ``output='sequence'``: ``(N, T, H·D)`` (or ``(T, N, H·D)``), every time step of the
      last LSTM (``D`` = 2 if bidirectional else 1).

    Sequences are taken at full length: pad them to a common ``T`` beforehand.

    Args:
        layers: ``[input_size, hidden_1, ..., hidden_k]``; with ``input_shape`` given,
            only the hidden sizes. At least one LSTM (two sizes in total).
        activation: between LSTMs (forms as in
            :class:`~multiml.task.pytorch.modules.mlp.MLPBlock`; default ``'Identity'``,
            since LSTM outputs are already bounded).
        activation_last: applied to the returned tensor (default ``'Identity'``).
        batch_norm: per-feature batch norm of the sequence between LSTMs (statistics over
            batch and time).
        initialize: re-initialise from torch's global RNG (fixed by ``torch.manual_seed``):
            input-to-hidden weights Xavier-uniform per gate, hidden-to-hidden weights
            orthogonal per gate, biases zero except the forget-gate bias of ``bias_ih``,
            set to 1 (so the cell remembers by default). ``False`` keeps PyTorch's default
            uniform initialisation.
        input_shape: the input feature size ``F`` (an int, ``(F,)`` or ``(T, F)``: only the
            last element is used); prepended to ``layers``.
        bidirectional: run every LSTM in both directions.
        output: ``'last'`` or ``'sequence'`` (see above).
        batch_first: input/output ``(N, T, F)`` when True, ``(T, N, F)`` when False.
        dropout: dropout probability between LSTMs (0 disables it).

    Attributes:
        layer_sizes: input size followed by the hidden sizes.
        out_features: features of the output (``layer_sizes[-1]``, doubled if
            bidirectional).

    Example:
        >>> import torch
        >>> lstm = LSTMBlock([8, 16], input_shape=(20, 3), bidirectional=True)
        >>> lstm.layer_sizes, lstm.out_features
        ([3, 8, 16], 32)
        >>> lstm(torch.randn(4, 20, 3)).shape
        torch.Size([4, 32])
        >>> LSTMBlock([3, 8], output='sequence')(torch.randn(4, 20, 3)).shape
        torch.Size([4, 20, 8])
    """

    def __init__(
        self,
        layers: Sequence[int] | None,
        activation: ActivationSpec = "Identity",
        activation_last: ActivationSpec = "Identity",
        batch_norm: bool = False,
        initialize: bool = True,
        input_shape: int | tuple[int, ...] | None = None,
        bidirectional: bool = False,
        output: str = "last",
        batch_first: bool = True,
        dropout: float = 0.0,
    ) -> None:
        sizes = as_sizes(layers, "layers")
        if input_shape is not None:
            sizes.insert(0, _feature_size(input_shape))
        if len(sizes) < 2:
            raise ValueError(
                f"LSTMBlock needs at least 2 sizes (input size and one hidden size); got "
                f"layers={layers!r}, input_shape={input_shape!r} -> {sizes}"
            )
        if output not in _OUTPUTS:
            raise ValueError(f"output={output!r}: allowed values are {', '.join(_OUTPUTS)}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout={dropout!r}: expected a probability in [0, 1)")
        hidden_act = get_activation(activation, "activation")
        last_act = get_activation(activation_last, "activation_last")

        super().__init__()
        self.layer_sizes: list[int] = sizes
        self.bidirectional: bool = bool(bidirectional)
        self.output: str = output
        self.batch_first: bool = bool(batch_first)
        directions = 2 if self.bidirectional else 1
        self.out_features: int = sizes[-1] * directions

        self.lstms = nn.ModuleList()
        self.between = nn.ModuleList()
        n_in = sizes[0]
        for i, hidden in enumerate(sizes[1:]):
            lstm = nn.LSTM(
                n_in, hidden, batch_first=self.batch_first, bidirectional=self.bidirectional
            )
            if initialize:
                _init_lstm(lstm)
            self.lstms.append(lstm)
            n_in = hidden * directions
            if i < len(sizes) - 2:
                glue = nn.Sequential()
                if batch_norm:
                    glue.add_module("batchnorm", LastDimBatchNorm(n_in))
                glue.add_module("activation", get_activation(hidden_act))
                if dropout > 0:
                    glue.add_module("dropout", nn.Dropout(float(dropout)))
                self.between.append(glue)
        self.activation_last = last_act
        logger.debug("built LSTMBlock with sizes %s, output=%s", sizes, output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``(N, T, F)`` (or ``(T, N, F)``) input."""
        if x.dim() != 3 or x.shape[-1] != self.layer_sizes[0]:
            order = "(N, T, F)" if self.batch_first else "(T, N, F)"
            raise ValueError(
                f"LSTMBlock expects {order} input with F={self.layer_sizes[0]}; got shape "
                f"{tuple(x.shape)}"
            )
        for lstm, glue in itertools.zip_longest(self.lstms, self.between):
            x, (h_n, _) = lstm(x)
            if glue is not None:
                x = glue(x)
        if self.output == "last":
            # h_n: (directions, N, H); forward final state, then backward final state.
            x = torch.cat(tuple(h_n), dim=-1) if self.bidirectional else h_n[0]
        return self.activation_last(x)

    def extra_repr(self) -> str:
        return f"output={self.output!r}, batch_first={self.batch_first}"


def _feature_size(input_shape: Any) -> int:
    """The last element of ``input_shape`` (an int, ``(F,)`` or ``(T, F)``)."""
    if isinstance(input_shape, Sequence) and not isinstance(input_shape, str | bytes):
        if len(input_shape) not in (1, 2):
            raise ValueError(
                f"input_shape={input_shape!r}: expected F, (F,) or (T, F) for LSTMBlock"
            )
        if len(input_shape) == 2:
            as_size(input_shape[0], "input_shape[0]")
        return as_size(input_shape[-1], "input_shape[-1]")
    return as_size(input_shape, "input_shape")


def _init_lstm(lstm: nn.LSTM) -> None:
    """Xavier-uniform input weights and orthogonal recurrent weights per gate; biases zero
    except the forget gate of ``bias_ih`` (gate order in PyTorch: input, forget, cell,
    output)."""
    hidden = lstm.hidden_size
    for name, param in lstm.named_parameters():
        with torch.no_grad():
            if name.startswith("weight_ih"):
                for gate in param.split(hidden, dim=0):
                    nn.init.xavier_uniform_(gate)
            elif name.startswith("weight_hh"):
                for gate in param.split(hidden, dim=0):
                    nn.init.orthogonal_(gate)
            elif name.startswith("bias"):
                nn.init.zeros_(param)
                if name.startswith("bias_ih"):
                    param[hidden : 2 * hidden] = 1.0
