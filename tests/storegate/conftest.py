"""Fixtures for the StoreGate tests: every behavioural test runs on each backend."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from multiml import StoreGate

BACKENDS = [
    "numpy",
    "zarr",
    "hybrid",
    "hybrid:numpy",
    "numpy-isolated",
    "zarr-isolated",
    "hybrid-isolated",
]
"""Backends every behavioural test runs on; ``hybrid:numpy`` is hybrid in mode 'numpy';
``<name>-isolated`` is ``StoreGate(backend=name).isolated()``: every write of the test goes
through the isolated view, and the original store must be unchanged afterwards."""


def file_digests(path: Any) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``path``: equal means byte-identical."""
    root = Path(path)
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file()
    }


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_sg(backend: str, tmp_path: Any) -> Iterator[Callable[..., StoreGate]]:
    """Build a StoreGate of the parametrised backend (on-disk ones under ``tmp_path``)."""
    counter = iter(range(1000))
    name, _, mode = backend.partition(":")
    isolated = name.endswith("-isolated")
    name = name.removesuffix("-isolated")
    originals: list[tuple[StoreGate, Any]] = []

    def make(**kwargs: Any) -> StoreGate:
        args = dict(kwargs.pop("backend_args", None) or {})
        if name != "numpy":
            args.setdefault("output_dir", str(tmp_path / f"store{next(counter)}"))
        if mode:
            args["mode"] = mode
        store = StoreGate(backend=name, backend_args=args, **kwargs)
        if not isolated:
            return store
        files = file_digests(store.output_dir) if store.output_dir else None
        originals.append((store, (_snapshot(store), files)))
        return store.isolated()

    yield make
    for store, (state, files) in originals:  # the views never changed their originals
        assert _snapshot(store) == state
        if files is not None:
            assert file_digests(store.output_dir) == files


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


@pytest.fixture
def digests() -> Callable[[Any], dict[str, str]]:
    """``digests(path)``: ``{relative path: sha256}`` of every file under ``path``."""
    return file_digests
