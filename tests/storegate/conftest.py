"""Fixtures for the StoreGate tests: every behavioural test runs on each backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from multiml import StoreGate

BACKENDS = ["numpy", "zarr", "hybrid", "hybrid:numpy"]
"""Backends every behavioural test runs on; ``hybrid:numpy`` is hybrid in mode 'numpy'."""


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_sg(backend: str, tmp_path: Any) -> Callable[..., StoreGate]:
    """Build a StoreGate of the parametrised backend (on-disk ones under ``tmp_path``)."""
    counter = iter(range(1000))

    name, _, mode = backend.partition(":")

    def make(**kwargs: Any) -> StoreGate:
        args = dict(kwargs.pop("backend_args", None) or {})
        if name != "numpy":
            args.setdefault("output_dir", str(tmp_path / f"store{next(counter)}"))
        if mode:
            args["mode"] = mode
        return StoreGate(backend=name, backend_args=args, **kwargs)

    return make


@pytest.fixture
def sg(make_sg: Callable[..., StoreGate]) -> StoreGate:
    return make_sg(data_id="d")


def _snapshot(sg: StoreGate) -> dict[str, Any]:
    """Everything a StoreGate holds (all data_ids, arrays, metadata), for equality checks."""
    state: dict[str, Any] = {}
    current = sg.data_id
    for data_id in sg.get_data_ids():
        sg.set_data_id(data_id)
        keys = [(data_id, p, v) for p in ("train", "valid", "test") for v in sg.get_var_names(p)]
        arrays = sg.export_vars(keys)
        state[data_id] = {
            "meta": sg.get_metadata(),
            "arrays": {k: (a.dtype, a.shape, a.tobytes()) for k, a in arrays.items()},
        }
    sg.set_data_id(current)
    return state


@pytest.fixture
def snapshot() -> Callable[[StoreGate], dict[str, Any]]:
    """``snapshot(sg)``: all data_ids, arrays and metadata of a store, comparable with ==."""
    return _snapshot
