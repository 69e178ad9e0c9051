"""2-D convolutional block built from a list of layer specs."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from multiml.task.pytorch.modules._utils import (
    ActivationSpec,
    as_size,
    as_sizes,
    get_activation,
    init_for_activation,
)
from multiml.task.pytorch.modules.mlp import MLPBlock

__all__ = ["LAYER_TYPES", "Conv2DBlock"]

logger = logging.getLogger(__name__)

# Layer type (as written in ``layers_conv2d``, case-insensitive) -> (torch class, short name
# used for the submodule). 'conv2d' is handled separately (channel inference, batch norm,
# activation).
_SIMPLE_LAYERS: dict[str, tuple[type[nn.Module], str]] = {
    "maxpooling2d": (nn.MaxPool2d, "maxpool"),
    "maxpool2d": (nn.MaxPool2d, "maxpool"),
    "avgpooling2d": (nn.AvgPool2d, "avgpool"),
    "avgpool2d": (nn.AvgPool2d, "avgpool"),
    "adaptivemaxpooling2d": (nn.AdaptiveMaxPool2d, "adaptivemaxpool"),
    "adaptivemaxpool2d": (nn.AdaptiveMaxPool2d, "adaptivemaxpool"),
    "adaptiveavgpooling2d": (nn.AdaptiveAvgPool2d, "adaptiveavgpool"),
    "adaptiveavgpool2d": (nn.AdaptiveAvgPool2d, "adaptiveavgpool"),
    "upsampling2d": (nn.Upsample, "upsample"),
    "upsample": (nn.Upsample, "upsample"),
    "dropout2d": (nn.Dropout2d, "dropout"),
    "dropout": (nn.Dropout, "dropout"),
}
LAYER_TYPES: tuple[str, ...] = ("conv2d", *_SIMPLE_LAYERS)
"""Layer types accepted in ``layers_conv2d`` (matched case-insensitively)."""

# Per-layer options of a 'conv2d' entry that are not nn.Conv2d arguments.
_CONV_OPTIONS = ("activation", "batch_norm")


class Conv2DBlock(nn.Sequential):
    """Stack of 2-D convolutions, pooling and friends, with an optional flatten + MLP head.

    ``layers_conv2d`` lists the layers in order. Each entry is ``(type, kwargs)`` (a tuple,
    or a 2-element list as YAML gives it) or a bare ``type`` string for layers whose
    arguments all have defaults. Types (case-insensitive):

    - ``'conv2d'``: ``nn.Conv2d(**kwargs)`` followed by ``[BatchNorm2d] → activation``.
      ``in_channels`` may be omitted: the first conv takes it from ``input_shape``, later
      ones from the previous conv's ``out_channels`` (a given value must match). Two extra
      keys override the block defaults for that layer: ``'activation'`` and
      ``'batch_norm'``.
    - ``'maxpooling2d'``/``'maxpool2d'``, ``'avgpooling2d'``/``'avgpool2d'``,
      ``'adaptivemaxpooling2d'``, ``'adaptiveavgpooling2d'`` (``output_size=1`` is global
      pooling), ``'upsampling2d'``/``'upsample'``, ``'dropout2d'``, ``'dropout'``: the
      matching ``torch.nn`` layer built with ``kwargs``.

    Input is ``(N, C, H, W)``. The output is ``(N, C', H', W')``, or ``(N, C'*H'*W')``
    with ``flatten=True``, or ``(N, layers_mlp[-1])`` with an MLP head.

    Args:
        layers_conv2d: the layer specs described above (at least one ``'conv2d'``).
        activation: default activation after every conv (forms as in
            :class:`~multiml.task.pytorch.modules.mlp.MLPBlock`).
        batch_norm: default for inserting ``BatchNorm2d`` between a conv and its activation.
        initialize: re-initialise conv weights with ``kaiming_uniform_`` (fan-in, gain of
            the activation that follows) and zero biases, from torch's global RNG (fixed by
            ``torch.manual_seed``). ``False`` keeps PyTorch's defaults.
        input_shape: ``(C, H, W)`` of one sample, or just ``C`` (an int or 1-tuple). With
            the full shape, ``output_shape`` is computed and an MLP head can be sized.
        flatten: flatten ``(C', H', W')`` into one axis at the end.
        layers_mlp: hidden and output sizes of an :class:`MLPBlock` head applied after
            flattening (its input size is inferred; needs the full ``input_shape``).
        mlp_args: extra keyword arguments of the head, e.g. ``{'activation': 'ReLU',
            'dropout': 0.2}`` (``initialize`` defaults to this block's).

    Attributes:
        in_channels: input channels.
        output_shape: per-sample output shape, a tuple, or ``None`` when ``input_shape``
            was not given in full.

    Example:
        >>> import torch
        >>> block = Conv2DBlock(
        ...     layers_conv2d=[
        ...         ('conv2d', {'out_channels': 8, 'kernel_size': 3, 'padding': 1}),
        ...         ('maxpooling2d', {'kernel_size': 2}),
        ...         ('conv2d', {'out_channels': 16, 'kernel_size': 3}),
        ...         ('adaptiveavgpooling2d', {'output_size': 1}),
        ...     ],
        ...     input_shape=(1, 28, 28),
        ...     layers_mlp=[32, 10],
        ... )
        >>> block.output_shape
        (10,)
        >>> block(torch.randn(5, 1, 28, 28)).shape
        torch.Size([5, 10])
    """

    def __init__(
        self,
        layers_conv2d: Sequence[tuple[str, Mapping[str, Any]] | str],
        activation: ActivationSpec = "ReLU",
        batch_norm: bool = False,
        initialize: bool = True,
        input_shape: int | tuple[int, ...] | None = None,
        flatten: bool = False,
        layers_mlp: Sequence[int] | None = None,
        mlp_args: Mapping[str, Any] | None = None,
    ) -> None:
        specs = _parse_specs(layers_conv2d)
        full_shape, channels = _parse_input_shape(input_shape)
        default_act = get_activation(activation, "activation")
        mlp_sizes = as_sizes(layers_mlp, "layers_mlp") if layers_mlp is not None else None
        mlp_kwargs = _check_mlp_args(mlp_args, mlp_sizes, full_shape)

        super().__init__()
        first_conv: nn.Conv2d | None = None
        for i, (kind, kwargs) in enumerate(specs):
            where = f"layers_conv2d[{i}] ({kind!r})"
            if kind == "conv2d":
                conv = self._add_conv(
                    i, where, kwargs, channels, default_act, batch_norm, initialize
                )
                first_conv = first_conv or conv
                channels = conv.out_channels
            else:
                cls, short = _SIMPLE_LAYERS[kind]
                self.add_module(f"{short}{i}", _construct(cls, kwargs, where))
        assert first_conv is not None  # _parse_specs requires a conv2d entry
        self.in_channels: int = first_conv.in_channels
        self.output_shape: tuple[int, ...] | None = None
        if full_shape is not None:
            self.output_shape = self._probe_shape(full_shape)
        if flatten or mlp_sizes is not None:
            self.add_module("flatten", nn.Flatten(start_dim=1))
            if self.output_shape is not None:
                self.output_shape = (int(torch.Size(self.output_shape).numel()),)
        if mlp_sizes is not None:
            assert self.output_shape is not None  # checked by _check_mlp_args
            mlp_kwargs.setdefault("initialize", initialize)
            try:
                head = MLPBlock(mlp_sizes, input_shape=self.output_shape, **mlp_kwargs)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"layers_mlp/mlp_args: {exc}") from exc
            self.add_module("mlp", head)
            self.output_shape = (head.out_features,)
        logger.debug("built Conv2DBlock, output shape %s", self.output_shape)

    def _add_conv(
        self,
        index: int,
        where: str,
        kwargs: dict[str, Any],
        channels: int | None,
        default_act: nn.Module,
        default_bn: bool,
        initialize: bool,
    ) -> nn.Conv2d:
        """Append conv (+ batch norm + activation) for one spec; return the conv."""
        act_spec = kwargs.pop("activation", default_act)
        use_bn = bool(kwargs.pop("batch_norm", default_bn))
        given = kwargs.get("in_channels")
        if given is not None:
            given = as_size(given, f"{where} in_channels")
            if channels is not None and given != channels:
                raise ValueError(
                    f"{where}: in_channels={given} but the input to this layer has "
                    f"{channels} channels (from input_shape or the previous conv)"
                )
            kwargs["in_channels"] = given
        elif channels is None:
            raise ValueError(
                f"{where}: in_channels is unknown; give it in the layer's kwargs or pass "
                "input_shape=(C, H, W) or input_shape=C"
            )
        else:
            kwargs["in_channels"] = channels
        conv = _construct(nn.Conv2d, kwargs, where)
        assert isinstance(conv, nn.Conv2d)
        act = get_activation(act_spec, f"{where} activation")
        if initialize:
            init_for_activation(conv, act)
        self.add_module(f"conv{index}", conv)
        if use_bn:
            self.add_module(f"batchnorm{index}", nn.BatchNorm2d(conv.out_channels))
        self.add_module(f"activation{index}", act)
        return conv

    def _probe_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, ...]:
        """Per-sample output shape of the layers built so far, from one zero sample."""
        was_training = self.training
        self.eval()  # no batch-norm statistics update, no dropout RNG draws
        try:
            with torch.no_grad():
                out = super().forward(torch.zeros(1, *input_shape))
        except RuntimeError as exc:
            raise ValueError(
                f"input_shape={input_shape!r} does not fit layers_conv2d: {exc}"
            ) from exc
        finally:
            self.train(was_training)
        if out.numel() == 0:
            raise ValueError(
                f"input_shape={input_shape!r}: layers_conv2d reduce it to an empty output "
                f"{tuple(out.shape[1:])}"
            )
        return tuple(out.shape[1:])

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``(N, C, H, W)`` input."""
        if input.dim() != 4 or input.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2DBlock expects (N, C, H, W) input with C={self.in_channels}; got shape "
                f"{tuple(input.shape)}"
            )
        return super().forward(input)


def _parse_specs(layers_conv2d: Any) -> list[tuple[str, dict[str, Any]]]:
    """Normalise ``layers_conv2d`` into ``[(type, kwargs copy), ...]`` with clear errors."""
    if isinstance(layers_conv2d, str | bytes | Mapping) or not isinstance(layers_conv2d, Sequence):
        raise TypeError(
            f"layers_conv2d={layers_conv2d!r}: expected a list of (type, kwargs) entries, e.g. "
            "[('conv2d', {'out_channels': 8, 'kernel_size': 3})]"
        )
    specs: list[tuple[str, dict[str, Any]]] = []
    for i, entry in enumerate(layers_conv2d):
        if isinstance(entry, str):
            kind, kwargs = entry, {}
        elif (
            isinstance(entry, Sequence)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], Mapping)
        ):
            kind, kwargs = entry[0], entry[1]
        else:
            raise TypeError(
                f"layers_conv2d[{i}]={entry!r}: expected (type, kwargs) with a str type and a "
                "dict of arguments, or a bare type string"
            )
        key = kind.lower()
        if key not in LAYER_TYPES:
            raise ValueError(
                f"layers_conv2d[{i}]: unknown layer type {kind!r}; allowed: "
                f"{', '.join(LAYER_TYPES)}"
            )
        clean = {str(k): _plain(v) for k, v in kwargs.items()}
        if key != "conv2d":
            bad = [k for k in _CONV_OPTIONS if k in clean]
            if bad:
                raise ValueError(
                    f"layers_conv2d[{i}] ({kind!r}): option(s) {bad} only apply to 'conv2d'"
                )
        specs.append((key, clean))
    if not any(kind == "conv2d" for kind, _ in specs):
        raise ValueError(
            f"layers_conv2d={layers_conv2d!r} has no 'conv2d' layer; a Conv2DBlock needs one"
        )
    return specs


def _plain(value: Any) -> Any:
    """Turn list-like config values (YAML lists, ListConfig) into tuples for torch."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(_plain(v) for v in value)
    return value


def _parse_input_shape(
    input_shape: Any,
) -> tuple[tuple[int, int, int] | None, int | None]:
    """Return ``(full (C, H, W) or None, channels or None)``."""
    if input_shape is None:
        return None, None
    if isinstance(input_shape, Sequence) and not isinstance(input_shape, str | bytes):
        if len(input_shape) == 3:
            c, h, w = as_sizes(input_shape, "input_shape")
            return (c, h, w), c
        if len(input_shape) != 1:
            raise ValueError(
                f"input_shape={input_shape!r}: expected (C, H, W) or the channel count C"
            )
    channels = as_size(input_shape, "input_shape")
    return None, channels


def _check_mlp_args(
    mlp_args: Mapping[str, Any] | None,
    mlp_sizes: list[int] | None,
    full_shape: tuple[int, int, int] | None,
) -> dict[str, Any]:
    """Validate the MLP head arguments before anything is built; return a kwargs copy."""
    kwargs = {str(k): v for k, v in (mlp_args or {}).items()}
    if kwargs and mlp_sizes is None:
        raise ValueError(f"mlp_args={dict(kwargs)!r} given without layers_mlp")
    reserved = [k for k in ("layers", "input_shape") if k in kwargs]
    if reserved:
        raise ValueError(
            f"mlp_args may not set {reserved}: use layers_mlp; the head's input size is "
            "inferred from the conv output"
        )
    if mlp_sizes is not None:
        if full_shape is None:
            raise ValueError(
                "layers_mlp needs input_shape=(C, H, W) so the flattened size is known"
            )
        if not mlp_sizes:
            raise ValueError("layers_mlp is empty; give at least the output size, e.g. [10]")
    return kwargs


def _construct(cls: type[nn.Module], kwargs: dict[str, Any], where: str) -> nn.Module:
    """Build ``cls(**kwargs)``, turning a bad argument into an error naming the layer."""
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: cannot build {cls.__name__}(**{kwargs!r}): {exc}") from exc
