"""Per-step seeds and scoped RNG state.

A step's seed is derived from the agent seed, the step's *prefix* (its own
``(task_id, subtask_id, hps)`` and those of every step before it) and the trial. So a
step's result depends only on what it is, never on where in the search it ran, which
worker ran it, or what ran before — and reusing a cached prefix gives exactly the result
of re-running it.

>>> prefix = [('step0', 'mlp', {'lr': 0.1})]
>>> derive_seed(0, prefix, 0) == derive_seed(0, [('step0', 'mlp', {'lr': 0.1})], 0)
True
>>> derive_seed(0, 'a') != derive_seed(1, 'a')
True
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
from collections.abc import Iterator
from typing import Any

import numpy as np

_MAX_DEPTH = 16


def canonical(value: Any, _depth: int = 0) -> Any:
    """A JSON-encodable, process-independent form of a hyperparameter value.

    Classes and functions become their dotted names; an object whose ``repr`` is Python's
    default (which shows a memory address, different in every process) becomes its class
    name and the canonical form of its attributes; other objects their ``repr``.

    >>> canonical({'b': (1, 2), 'a': np.float32(0.5)})
    {'a': 0.5, 'b': [1, 2]}
    """
    if _depth > _MAX_DEPTH:
        return f"{type(value).__module__}.{type(value).__qualname__}"
    depth = _depth + 1
    if isinstance(value, dict):
        return {
            str(k): canonical(v, depth) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
        }
    if isinstance(value, list | tuple):
        return [canonical(v, depth) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"ndarray": value.tolist(), "dtype": str(value.dtype)}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    qualname = getattr(value, "__qualname__", None)
    if isinstance(value, type) or (callable(value) and isinstance(qualname, str)):
        return f"{getattr(value, '__module__', '')}.{qualname}"
    if type(value).__repr__ is object.__repr__:
        cls = type(value)
        state = getattr(value, "__dict__", None)
        return {
            "object": f"{cls.__module__}.{cls.__qualname__}",
            "state": canonical(state, depth) if state is not None else None,
        }
    return repr(value)


def stable_key(*parts: Any) -> str:
    """Canonical JSON text of ``parts`` (equal inputs give equal text in every process)."""
    return json.dumps(canonical(list(parts)), sort_keys=True, separators=(",", ":"))


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from ``parts`` via SHA-256 (never the per-process salted ``hash()``)."""
    digest = hashlib.sha256(stable_key(*parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's global RNGs inside the block; restore them after.

    Tasks (including users' own) may draw from the global RNGs; seeding them here makes a
    step reproducible, and restoring them keeps the seeding from leaking out of the step.
    torch is only touched when it has been imported already.
    """
    import sys

    torch = sys.modules.get("torch")
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state() if torch is not None else None
    cuda_states = None
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda_states = torch.cuda.get_rng_state_all()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if torch is not None:
        torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        if torch is not None:
            torch.random.set_rng_state(torch_state)
            if cuda_states is not None:
                torch.cuda.set_rng_state_all(cuda_states)
