"""Build PyTorch objects from a name, a class, a factory or an instance; resolve devices."""

from __future__ import annotations

import copy
import difflib
import functools
import importlib
import inspect
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import torch


def lookup(name: str, namespaces: Sequence[ModuleType], kind: str) -> Any:
    """Find ``name`` in the given modules (in order), or import a dotted path.

    Raises:
        ValueError: nothing has that name; the message lists close matches.
    """
    for module in namespaces:
        obj = getattr(module, name, None)
        if obj is not None and callable(obj):
            return obj
    if "." in name:
        module_name, _, attr = name.rpartition(".")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"{kind}={name!r}: cannot import it ({exc})") from None
    candidates = sorted(
        {n for m in namespaces for n in dir(m) if not n.startswith("_") and n[0].isupper()}
    )
    close = difflib.get_close_matches(name, candidates, n=5)
    where = ", ".join(m.__name__ for m in namespaces)
    hint = f"; did you mean {close}?" if close else ""
    raise ValueError(
        f"{kind}={name!r} is not defined in {where}{hint} "
        "(give a name from there, a dotted import path, a class or an instance)"
    )


def build(
    spec: Any,
    args: dict[str, Any],
    namespaces: Sequence[ModuleType],
    kind: str,
    positional: Sequence[Any] = (),
) -> Any:
    """Build a fresh object from ``spec``.

    - a string: looked up with :func:`lookup`, then called;
    - a class, a factory function or a ``functools.partial``: called with
      ``*positional, **args``;
    - an instance: deep-copied (so training never changes the caller's object and every
      build starts from the same state); ``args`` must then be empty.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = lookup(spec, namespaces, kind)
    factory = inspect.isclass(spec) or inspect.isfunction(spec) or inspect.ismethod(spec)
    if factory or isinstance(spec, functools.partial):
        try:
            return spec(*positional, **args)
        except TypeError as exc:
            raise TypeError(
                f"{kind}={_name(spec)} cannot be built with {kind}_args={args}: {exc}"
            ) from exc
    if args:
        raise ValueError(
            f"{kind} is an instance of {type(spec).__name__}, so {kind}_args={args} cannot be "
            f"applied; give the class (or its name) instead to use {kind}_args / {kind}__ hps"
        )
    if positional:
        raise ValueError(
            f"{kind} must be a name, a class or a factory (it is built around the model's "
            f"parameters), not an instance of {type(spec).__name__}"
        )
    return copy.deepcopy(spec)


def _name(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or repr(obj)


def check_device_name(device: Any) -> None:
    """Raise unless ``device`` names a device (``'auto'``, ``'cpu'``, ``'cuda[:N]'``, N, a
    ``torch.device``); whether it exists is checked when the task compiles."""
    if isinstance(device, torch.device) or device == "auto":
        return
    if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
        return
    if isinstance(device, str):
        try:
            torch.device(device)
            return
        except (RuntimeError, TypeError):
            pass
    raise ValueError(
        f"device={device!r} is not a device; expected 'auto', 'cpu', 'cuda', 'cuda:N' or N"
    )


def resolve_device(device: str | int | torch.device) -> torch.device:
    """Turn ``'auto'``, ``'cpu'``, ``'cuda'``, ``'cuda:N'``, an int N or a device into a device.

    Raises:
        ValueError: the device does not exist on this machine (the message lists what does).
    """
    if isinstance(device, bool):
        raise ValueError(f"device={device!r}: expected 'cpu', 'cuda', 'cuda:N', N or 'auto'")
    if isinstance(device, int):
        device = f"cuda:{device}"
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device={device!r} is not a device; expected 'cpu', 'cuda', 'cuda:N', N or 'auto'"
        ) from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = resolved.index if resolved.index is not None else 0
        if index >= count:
            have = ", ".join(f"cuda:{i}" for i in range(count)) or "no CUDA devices"
            raise ValueError(
                f"device={device!r} does not exist on this machine ({have}); use 'cpu', "
                "'auto' or an existing CUDA device"
            )
    return resolved
