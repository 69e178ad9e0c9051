"""Helpers shared by the building blocks in :mod:`multiml.task.pytorch.modules`.

- :func:`get_activation` turns an activation spec (a ``torch.nn`` name, a class, an
  instance, or a mapping such as ``{'name': 'LeakyReLU', 'negative_slope': 0.1}`` from a
  Hydra config) into a fresh ``nn.Module``.
- :func:`as_size`, :func:`as_sizes` validate layer sizes given as ints or 1-tuples.
- :func:`init_gain_args` maps an activation module to the ``nonlinearity``/``a`` arguments
  of :func:`torch.nn.init.kaiming_uniform_`, so a layer is initialised for the activation
  that follows it.
- :class:`LastDimBatchNorm` is a ``BatchNorm1d`` over the *last* axis, for ``(N, F)`` and
  ``(N, *, F)`` inputs.

>>> get_activation('ReLU')
ReLU()
>>> get_activation({'name': 'LeakyReLU', 'negative_slope': 0.1})
LeakyReLU(negative_slope=0.1)
"""

from __future__ import annotations

import copy
import difflib
import operator
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "ActivationSpec",
    "LastDimBatchNorm",
    "as_size",
    "as_sizes",
    "get_activation",
    "init_for_activation",
    "init_gain_args",
]

ActivationSpec = str | type | nn.Module | Mapping[str, Any] | None
"""What an ``activation`` argument accepts; ``None`` means ``Identity``."""

# Activation modules of torch.nn (what a user most likely means by a name); the lookup
# itself accepts any nn.Module subclass exported by torch.nn.
_ACTIVATION_NAMES: tuple[str, ...] = (
    *torch.nn.modules.activation.__all__,
    "Identity",
)
_COMMON_NAMES = ("Identity", "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Tanh", "Sigmoid")

# Activation class name -> nonlinearity name understood by torch.nn.init.calculate_gain.
# ReLU-like activations that calculate_gain does not tabulate use the ReLU gain.
_GAIN_NAMES = {
    "ReLU": "relu",
    "ReLU6": "relu",
    "RReLU": "relu",
    "ELU": "relu",
    "CELU": "relu",
    "GELU": "relu",
    "SiLU": "relu",
    "Mish": "relu",
    "Hardswish": "relu",
    "Softplus": "relu",
    "LeakyReLU": "leaky_relu",
    "PReLU": "leaky_relu",
    "Tanh": "tanh",
    "Hardtanh": "tanh",
    "Softsign": "tanh",
    "Sigmoid": "sigmoid",
    "Hardsigmoid": "sigmoid",
    "LogSigmoid": "sigmoid",
    "SELU": "selu",
}


def _lookup_name(name: str, arg_name: str) -> type[nn.Module]:
    """Find an ``nn.Module`` subclass in ``torch.nn`` by exact, then case-insensitive name."""
    candidate = getattr(nn, name, None)
    if isinstance(candidate, type) and issubclass(candidate, nn.Module):
        return candidate
    folded = {n.lower(): n for n in _ACTIVATION_NAMES}
    if name.lower() in folded:
        return getattr(nn, folded[name.lower()])
    close = difflib.get_close_matches(name.lower(), folded, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(folded[c]) for c in close)}?)" if close else ""
    raise ValueError(
        f"{arg_name}={name!r} is not an nn.Module in torch.nn{hint}. Valid names include "
        f"{', '.join(_COMMON_NAMES)} and any other activation class of torch.nn."
    )


def get_activation(spec: ActivationSpec, arg_name: str = "activation") -> nn.Module:
    """Return a new activation module for ``spec``.

    Args:
        spec: one of
            - a name in ``torch.nn`` (``'ReLU'``; activation names also match
              case-insensitively, ``'relu'``), instantiated without arguments;
            - a mapping ``{'name': <name>, **kwargs}``, instantiated with ``kwargs``
              (the form to use from a Hydra/YAML config);
            - an ``nn.Module`` subclass, instantiated without arguments;
            - an ``nn.Module`` instance, which is deep-copied, so every place it is used
              gets its own module (a ``PReLU`` weight is never shared between layers);
            - ``None``, meaning ``nn.Identity()``.
        arg_name: the argument name to quote in error messages.

    Raises:
        ValueError: unknown name (the message suggests close names and lists common
            ones), or a mapping without ``'name'``.
        TypeError: a class that is not an ``nn.Module``, a value of another type, or
            arguments the activation does not accept.

    >>> get_activation('tanh')
    Tanh()
    >>> get_activation(nn.GELU)
    GELU(approximate='none')
    """
    if spec is None:
        return nn.Identity()
    if isinstance(spec, nn.Module):
        return copy.deepcopy(spec)
    kwargs: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        if "name" not in spec:
            raise ValueError(
                f"{arg_name}={dict(spec)!r}: a mapping needs a 'name' key, e.g. "
                "{'name': 'LeakyReLU', 'negative_slope': 0.1}"
            )
        kwargs = {str(k): v for k, v in spec.items() if k != "name"}
        spec = spec["name"]
    if isinstance(spec, str):
        cls = _lookup_name(spec, arg_name)
    elif isinstance(spec, type):
        if not issubclass(spec, nn.Module):
            raise TypeError(f"{arg_name}={spec!r} is a class but not an nn.Module subclass")
        cls = spec
    else:
        raise TypeError(
            f"{arg_name}={spec!r} (type {type(spec).__name__}) is not supported; give a "
            "torch.nn name, an nn.Module class or instance, a {'name': ..., **kwargs} "
            "mapping, or None"
        )
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise TypeError(
            f"{arg_name}: cannot construct {cls.__name__}(**{kwargs!r}): {exc}"
        ) from exc


def init_gain_args(activation: nn.Module) -> dict[str, Any]:
    """Keyword arguments for :func:`torch.nn.init.kaiming_uniform_` matching ``activation``.

    Returns ``{'nonlinearity': name, 'a': slope}``; activations without a known gain are
    treated as linear (gain 1).

    >>> init_gain_args(nn.LeakyReLU(0.2))
    {'nonlinearity': 'leaky_relu', 'a': 0.2}
    """
    name = _GAIN_NAMES.get(type(activation).__name__, "linear")
    slope = 0.0
    if isinstance(activation, nn.LeakyReLU):
        slope = float(activation.negative_slope)
    elif isinstance(activation, nn.PReLU):
        slope = float(activation.weight.detach().mean())
    return {"nonlinearity": name, "a": slope}


def init_for_activation(layer: nn.Module, activation: nn.Module) -> None:
    """Initialise a Linear/Conv layer for the activation that follows it.

    The weight gets :func:`torch.nn.init.kaiming_uniform_` (fan-in mode, gain from
    :func:`init_gain_args`), the bias (if any) zeros. Draws from torch's global RNG, so the
    result is fixed by ``torch.manual_seed``.
    """
    nn.init.kaiming_uniform_(layer.weight, mode="fan_in", **init_gain_args(activation))
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


def as_size(value: Any, arg_name: str) -> int:
    """Validate a feature size given as an int or a 1-tuple/list; return it as an int.

    >>> as_size((8,), 'input_shape')
    8
    """
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        items = list(value)
        if len(items) != 1:
            raise ValueError(
                f"{arg_name}={value!r}: expected an int or a 1-tuple (the size of the last "
                f"axis), got {len(items)} elements"
            )
        value = items[0]
    if isinstance(value, bool):
        raise TypeError(f"{arg_name}={value!r}: expected a positive int, got a bool")
    try:
        size = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{arg_name}={value!r}: expected a positive int, got {type(value).__name__}"
        ) from None
    if size <= 0:
        raise ValueError(f"{arg_name}={value!r}: sizes must be positive")
    return size


def as_sizes(values: Any, arg_name: str) -> list[int]:
    """Validate a list of positive int sizes; return a new list of ints.

    >>> as_sizes((4, 8), 'layers')
    [4, 8]
    """
    if values is None:
        return []
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(
            f"{arg_name}={values!r}: expected a list of positive ints, got {type(values).__name__}"
        )
    return [as_size(v, f"{arg_name}[{i}]") for i, v in enumerate(values)]


class LastDimBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` whose features are the **last** axis.

    ``(N, F)`` inputs behave exactly like ``nn.BatchNorm1d``. For ``(N, *, F)`` inputs the
    statistics of each feature are taken over all leading axes (every sample and every
    position), which is what a per-feature normalisation of e.g. a sequence of feature
    vectors means; plain ``BatchNorm1d`` would instead treat axis 1 as the features.
    State-dict keys are those of ``nn.BatchNorm1d``.

    >>> bn = LastDimBatchNorm(3)
    >>> bn(torch.randn(4, 5, 3)).shape
    torch.Size([4, 5, 3])
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() == 2:
            return super().forward(input)
        if input.dim() < 2:
            raise ValueError(
                f"batch norm needs a batched input (N, F) or (N, *, F); got shape "
                f"{tuple(input.shape)}"
            )
        shape = input.shape
        return super().forward(input.reshape(-1, shape[-1])).reshape(shape)
