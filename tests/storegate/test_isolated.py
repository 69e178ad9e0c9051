"""Isolated (copy-on-write) stores: ``StoreGate.isolated()`` and ``copy_on_write=True``.

The behavioural suite also runs on ``<backend>-isolated`` (see ``conftest.py``); these tests
cover what it cannot: views over variables already on disk, processes, pickles, the numpy
backend's shared arrays and the hybrid placement calls.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import zarr

from multiml import StoreGate

PHASES = ("train", "valid", "test")


def table(n: int, width: int = 3, start: float = 0.0) -> np.ndarray:
    return start + np.arange(n * width, dtype=np.float64).reshape(n, width)


def objects(n: int) -> np.ndarray:
    return np.array([{}] * n, dtype=object)


def fill(sg: StoreGate) -> None:
    """Two data_ids of compiled data (with ``active``), one uncompiled data_id; a hybrid
    store also holds a variable in memory (``mem`` of data_id ``other``)."""
    sg.set_data_id("d")
    sg.add_data("x", table(10), phase=(6, 2, 2))
    sg.add_data("y", np.arange(10), phase=(6, 2, 2))
    sg.add_data("label", np.arange(10) % 3, phase=(6, 2, 2))
    sg.compile(reset=True)
    sg.set_data_id("other")
    sg.add_data("w", np.ones((4, 2)), phase="test", do_compile=True)
    if sg.backend == "hybrid":
        sg.set_mode("numpy")
        sg.add_data("mem", np.arange(4.0) * 2, phase="test", do_compile=True)
        sg.set_mode("zarr")
    sg.set_data_id("loose")
    sg.add_data("a", np.zeros(3))
    sg.add_data("b", np.zeros(2))
    sg.set_data_id("d")


def open_store(backend: str, path: Any, **args: Any) -> StoreGate:
    return StoreGate(backend=backend, backend_args={"output_dir": str(path), **args})


def state(sg: StoreGate) -> dict[str, Any]:
    """Everything a store shows except where variables live: data, order, metadata."""
    out: dict[str, Any] = {"data_ids": sg.get_data_ids(), "current": sg.data_id}
    current = sg.data_id
    for data_id in sg.get_data_ids():
        sg.set_data_id(data_id)
        meta = sg.get_metadata()
        names = {p: list(meta["vars"][p]) for p in PHASES}
        for p in PHASES:
            for info in meta["vars"][p].values():
                info.pop("location")
        keys = [(data_id, p, v) for p in PHASES for v in names[p]]
        arrays = sg.export_vars(keys)
        out[data_id] = {
            "meta": meta,
            "order": names,
            "arrays": {k: (a.dtype, a.shape, a.tolist()) for k, a in arrays.items()},
        }
    sg.set_data_id(current)
    return out


def locations(sg: StoreGate, phase: str = "train") -> dict[str, str]:
    return {name: info["location"] for name, info in sg.get_metadata()["vars"][phase].items()}


VALID = ["x", "y", "label", "active"]

# Every write kind, aimed at variables that live in the base store on disk.
OPS: list[tuple[str, Callable[[StoreGate], Any]]] = [
    ("read batch", lambda sg: sg.get_data(("x", "x"), "all", np.array([9, 0, 7, 7]))),
    ("row write", lambda sg: sg.update_data("x", 7.0, index=2)),
    ("slice write", lambda sg: sg.update_data("x", np.ones((2, 3)), phase="valid", index=(0, 2))),
    ("index-array write", lambda sg: sg.update_data("y", [50, 60], index=np.array([1, 3]))),
    ("write over phases", lambda sg: sg.update_data("label", 9, phase="all", index=slice(4, 9))),
    ("reverse write", lambda sg: sg.update_data("y", [1, 2], "test", index=slice(None, None, -1))),
    ("append", lambda sg: sg.add_data(["x", "y", "label"], [table(2), [2.5, 3.5], [0, 1]])),
    ("append to active", lambda sg: sg.add_data("active", np.ones(2, np.int8), do_compile=True)),
    ("append, promoting", lambda sg: sg.add_data(VALID, [table(1), [0.5], [1], [1]], "valid")),
    ("compile", lambda sg: sg.compile()),
    ("whole replace", lambda sg: sg.update_data("x", table(8, 2, start=100.0))),
    ("create_empty over", lambda sg: sg.create_empty("label", (8, 3), dtype="i2")),
    ("new variable", lambda sg: sg.update_data("pred", np.linspace(0, 1, 13), phase="all")),
    ("delete", lambda sg: sg.delete_data("y", "valid")),
    ("re-add deleted", lambda sg: sg.add_data("y", np.arange(3.0), phase="valid")),
    ("astype", lambda sg: sg.astype("y", "f4", phase="all")),
    ("onehot", lambda sg: sg.onehot("label", 10, phase="test")),
    ("argmax", lambda sg: sg.argmax("label", axis=1, phase="test")),
    ("shuffle", lambda sg: sg.shuffle("all", seed=3)),
    ("reset active", lambda sg: sg.compile(reset=True)),
    ("failed compile", lambda sg: sg.add_data("z", np.zeros(3), do_compile=True)),
    ("object dtype", lambda sg: sg.add_data("o", objects(8))),
    ("bad partial dtype", lambda sg: sg.update_data("x", "s", index=0)),
    ("item syntax", lambda sg: sg["train"]["x"].__setitem__(slice(0, 3), np.zeros((3, 2)))),
    ("item delete", lambda sg: sg["test"].__delitem__(["x", "pred"])),
    ("import", lambda sg: sg.import_vars({("other", "test", "w"): np.zeros((4, 2))})),
    ("other data_id", lambda sg: (sg.set_data_id("other"), sg.update_data("w", 5.0, "test", 0))),
    ("clear base data_id", lambda sg: (sg.set_data_id("loose"), sg.clear_data())),
    ("re-create cleared", lambda sg: sg.add_data("b", np.arange(4))),
    ("new data_id", lambda sg: (sg.set_data_id("fresh"), sg.add_data("q", np.ones(2)))),
    ("back", lambda sg: sg.set_data_id("d")),
]

HYBRID_OPS: list[tuple[str, Callable[[StoreGate], Any]]] = [
    ("to_memory", lambda sg: sg.to_memory(["x", "label"])),
    ("write in memory", lambda sg: sg.update_data("label", 1, index=0)),
    ("to_storage", lambda sg: sg.to_storage(["x", "label"])),
    ("mode numpy", lambda sg: sg.set_mode("numpy")),
    ("object in memory", lambda sg: sg.add_data("o", objects(8))),
    ("object over disk variable", lambda sg: sg.update_data("x", objects(8))),
    ("mode zarr", lambda sg: sg.set_mode("zarr")),
    ("object on disk", lambda sg: sg.add_data("o2", objects(8))),
    ("memory variable", lambda sg: (sg.set_data_id("other"), sg.update_data("mem", 3, "test", 1))),
    ("memory to storage", lambda sg: sg.to_storage("mem")),
    ("object over memory", lambda sg: sg.update_data("mem", objects(4), "test")),
]


def apply(sg: StoreGate, op: Callable[[StoreGate], Any]) -> Any:
    """The op's result, or its exception as ``(type, message)``."""
    try:
        out = op(sg)
    except Exception as exc:  # the same errors must be raised on both stores
        return (type(exc), str(exc))
    return out.tolist() if isinstance(out, np.ndarray) else None


@pytest.mark.parametrize("backend", ["zarr", "hybrid"])
def test_a_view_behaves_like_the_store_and_never_changes_it(backend, tmp_path, digests):
    """Differential test: every op on a view of a store on disk has the same outcome as on
    an identical plain store, while the viewed store keeps its files byte for byte."""
    original = open_store(backend, tmp_path / "original")
    fill(original)
    reference = open_store(backend, tmp_path / "reference")
    fill(reference)
    before, files = state(original), digests(tmp_path / "original")
    view = original.isolated()
    assert view.copy_on_write and not original.copy_on_write
    assert state(view) == state(reference) == before
    ops = OPS + (HYBRID_OPS if backend == "hybrid" else [])
    for name, op in ops:
        assert apply(view, op) == apply(reference, op), name
        assert state(view) == state(reference), name
    assert state(original) == before
    assert digests(tmp_path / "original") == files
    again = open_store(backend, tmp_path / "original")  # what a new process would see
    assert state(again)["d"] == before["d"]


def test_untouched_variables_are_read_from_disk(tmp_path):
    sg = open_store("zarr", tmp_path, chunk_bytes=4096)
    sg.add_data("big", np.arange(200_000.0), do_compile=True)
    sg.add_data("small", np.zeros(200_000, np.int8), do_compile=True)
    view = sg.isolated()
    memory = view._backend._memory
    assert locations(view) == {"big": "zarr", "small": "zarr"}
    np.testing.assert_array_equal(view.get_data("big", index=np.array([5, 199_999])), [5, 199_999])
    view.update_data("small", 1, index=3)
    assert locations(view) == {"big": "zarr", "small": "numpy"}
    assert not memory.has(("default", "train", "big"))
    assert memory.has(("default", "train", "small"))
    assert view.get_data("small")[:5].tolist() == [0, 0, 0, 1, 0]
    view.update_data("big", np.zeros(3), do_compile=False)  # nothing is read from disk
    assert view.get_var_shapes("big") == (3,)
    view.delete_data("big")
    assert sg.get_var_shapes("big") == (200_000,)


def test_pickled_view_carries_its_changes_and_the_path(tmp_path):
    sg = open_store("zarr", tmp_path)
    sg.add_data("x", np.arange(100_000.0), do_compile=True)
    view = sg.isolated()
    assert len(pickle.dumps(view)) < 3000  # the base travels as its path
    view.update_data("pred", np.full(100_000, 2, np.int8))
    view.delete_data("x")
    blob = pickle.dumps(view)
    assert 100_000 < len(blob) < 105_000  # the overlay travels with its arrays
    clone = pickle.loads(blob)
    assert clone.copy_on_write and clone.get_var_names() == ["pred"]
    assert state(clone) == state(view)
    clone.update_data("pred", 3, index=0)  # the copy is independent of the view
    assert view.get_data("pred")[0] == 2
    assert sg.get_var_names() == ["x"]


def _write_and_read(
    view: StoreGate, value: float, barrier: Any, results: Any, reopen: str | None
) -> None:
    if reopen is not None:  # a job opening the shared dataset by path
        view = StoreGate(backend="zarr", backend_args={"output_dir": reopen, "copy_on_write": True})
    view.update_data("x", value, index=(0, 5))
    view.update_data("mid", np.full(10, value))
    view.delete_data("y")
    barrier.wait(timeout=60)  # both processes have written before either reads back
    results.put(
        (value, view.get_data("x").tolist(), view.get_data("mid").tolist(), view.get_var_names())
    )


def test_views_in_two_processes_write_separately(tmp_path, digests):
    sg = open_store("zarr", tmp_path)
    sg.add_data("x", np.zeros(10))
    sg.add_data("y", np.zeros(10), do_compile=True)
    files = digests(tmp_path)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_write_and_read, args=(sg.isolated(), 1.0, barrier, results, None)),
        context.Process(target=_write_and_read, args=(None, 2.0, barrier, results, str(tmp_path))),
    ]
    for worker in workers:
        worker.start()
    try:
        seen = sorted(results.get(timeout=60) for _ in workers)
    finally:
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.terminate()
    assert [worker.exitcode for worker in workers] == [0, 0]
    for value, x, mid, names in seen:
        assert x == [value] * 5 + [0.0] * 5
        assert mid == [value] * 10
        assert names == ["x", "mid"]
    assert [row[0] for row in seen] == [1.0, 2.0]
    assert digests(tmp_path) == files
    assert open_store("zarr", tmp_path).get_var_names() == ["x", "y"]


def test_copy_on_write_opens_a_store_by_path(tmp_path, snapshot, digests):
    sg = open_store("hybrid", tmp_path / "s")
    fill(sg)
    sg.set_data_id("other")
    sg.to_storage("mem")  # memory variables are not in the files
    sg.set_data_id("d")
    files = digests(tmp_path / "s")
    view = open_store("hybrid", tmp_path / "s", copy_on_write=True, mode="numpy")
    assert view.copy_on_write and view.mode == "numpy" and view.backend == "hybrid"
    assert repr(view).startswith("StoreGate(backend='hybrid', copy_on_write=True")
    view.set_data_id("d")
    assert state(view) == state(sg)
    assert set(locations(view).values()) == {"zarr"}
    view.add_data("new", np.arange(10.0), phase=(6, 2, 2), do_compile=True)
    view.update_data("x", -1.0, index=0)
    assert locations(view)["new"] == locations(view)["x"] == "numpy"
    view.set_data_id("other")
    view.clear_data()
    assert view.get_data_ids() == ["d", "loose"]
    assert digests(tmp_path / "s") == files
    again = open_store("hybrid", tmp_path / "s")
    assert again.get_data_ids() == ["d", "other", "loose"]
    assert snapshot(again) == snapshot(sg)


def test_copy_on_write_never_writes_a_foreign_store(tmp_path, digests):
    root = zarr.open_group(str(tmp_path), mode="w")
    root.create_array("exp/train/b", data=np.arange(4))
    files = digests(tmp_path)
    view = open_store("zarr", tmp_path, copy_on_write=True)
    view.set_data_id("exp")
    view.compile(reset=True)  # the plain backend would write its attributes now
    view.update_data("b", 9, index=0)
    assert view.get_data("b").tolist() == [9, 1, 2, 3]
    assert digests(tmp_path) == files
    assert "multiml_storegate" not in zarr.open_group(str(tmp_path), mode="r").attrs


def test_copy_on_write_argument_errors(tmp_path):
    with pytest.raises(TypeError, match="copy_on_write must be a bool; got 'yes'"):
        open_store("zarr", tmp_path, copy_on_write="yes")
    with pytest.raises(ValueError, match="copy_on_write=True needs output_dir"):
        StoreGate(backend="zarr", backend_args={"copy_on_write": True})
    with pytest.raises(FileNotFoundError, match="holds no zarr store to open read-only"):
        open_store("zarr", tmp_path / "missing", copy_on_write=True)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no zarr store"):
        open_store("hybrid", tmp_path / "empty", copy_on_write=True)
    assert list((tmp_path / "empty").iterdir()) == []
    with pytest.raises(ValueError, match=r"does not take backend_args \['copy_on_write'\]"):
        StoreGate(backend_args={"copy_on_write": True})
    with pytest.raises(ValueError, match="unknown hybrid mode 'disk'"):
        open_store("hybrid", tmp_path, copy_on_write=True, mode="disk")
    plain = open_store("zarr", tmp_path / "plain", copy_on_write=False)
    plain.add_data("x", np.zeros(2))
    assert not plain.copy_on_write
    assert open_store("zarr", tmp_path / "plain").get_var_names() == ["x"]


def test_numpy_views_share_arrays_until_written():
    sg = StoreGate()
    sg.add_data("x", np.arange(6.0))
    sg.add_data("x", np.arange(6.0, 8.0), do_compile=True)  # spare capacity after appends
    view = sg.isolated()
    assert not view.copy_on_write
    assert np.shares_memory(view.get_data("x"), sg.get_data("x"))  # nothing copied
    sg.add_data("x", [100.0], do_compile=True)  # fills the original's spare capacity
    assert np.shares_memory(view.get_data("x"), sg.get_data("x"))  # appended in place
    view.add_data("x", [-100.0], do_compile=True)
    assert sg.get_data("x")[-1] == 100 and view.get_data("x")[-1] == -100
    sg.update_data("x", 50.0, index=0)  # the original copies before writing in place
    assert view.get_data("x")[0] == 0
    nested = view.isolated()
    nested.update_data("x", 60.0, index=1)
    assert view.get_data("x")[1] == 1 and sg.get_data("x")[1] == 1
    assert sg.get_data("x").tolist() == [50.0, *range(1, 8), 100.0]
    assert view.get_data("x").tolist() == [*range(8), -100.0]
    assert nested.get_data("x").tolist() == [0.0, 60.0, *range(2, 8), -100.0]


def test_hybrid_views_share_memory_variables_and_move_without_writing(tmp_path, caplog):
    sg = open_store("hybrid", tmp_path)
    fill(sg)
    view = sg.isolated()
    assert locations(view) == locations(sg) == dict.fromkeys(["x", "y", "label", "active"], "zarr")
    view.set_data_id("other")
    sg.set_data_id("other")
    assert locations(view, "test") == locations(sg, "test") == {"w": "zarr", "mem": "numpy"}
    assert np.shares_memory(view.get_data("mem", "test"), sg.get_data("mem", "test"))
    view.update_data("mem", 1.0, "test", index=0)
    assert sg.get_data("mem", "test")[0] == 0
    view.set_data_id("d")
    sg.set_data_id("d")
    with view.track_writes() as log:
        view.to_memory("x", "train")
        assert locations(view)["x"] == "numpy"
        view.to_storage("x", "train")  # not written since: the copy is dropped
        assert locations(view)["x"] == "zarr"
        view.to_memory("y", "train")
        view.update_data("y", 5, index=0)
        with caplog.at_level(logging.DEBUG, logger="multiml.storegate.cow_backend"):
            view.to_storage("y", "train")
    assert "stays in memory" in caplog.text
    assert locations(view)["y"] == "numpy"
    assert list(log.written) == [("d", "train", "y")]
    assert sg.get_data("y")[0] == 0 and view.get_data("y")[0] == 5


def test_views_have_their_own_write_tracking(tmp_path):
    sg = open_store("zarr", tmp_path)
    fill(sg)
    with sg.track_writes() as outer:
        view = sg.isolated()
        with view.track_writes() as inner:
            view.update_data("pred", np.zeros(6))
            view.delete_data("x", "valid")
    assert len(outer.written) == 0 and len(outer.deleted) == 0
    assert list(inner.written) == [("d", "train", "pred")]
    assert list(inner.deleted) == [("d", "valid", "x")]
    snapshot = view.export_vars(inner.written)
    second = sg.isolated()
    second.import_vars(snapshot)
    np.testing.assert_array_equal(second.get_data("pred"), np.zeros(6))
    assert "pred" not in sg.get_var_names()


def test_a_view_keeps_a_temporary_store_alive(tmp_path):
    sg = StoreGate(backend="zarr")
    path = sg.output_dir
    sg.add_data("x", np.arange(3.0), do_compile=True)
    view = sg.isolated()
    del sg
    gc.collect()
    assert view.get_data("x").tolist() == [0.0, 1.0, 2.0]  # still on disk
    del view
    gc.collect()
    assert not os.path.exists(path)


@pytest.mark.parametrize("backend", ["zarr", "hybrid"])
def test_writes_to_the_original_do_not_reach_views(backend, tmp_path):
    """In-process views keep the data as it was when they were made (the original hands
    them a copy of a variable before changing it on disk)."""
    sg = open_store(backend, tmp_path)
    fill(sg)
    view = sg.isolated()
    nested = view.isolated()
    before = state(view)
    assert locations(view) == dict.fromkeys(["x", "y", "label", "active"], "zarr")
    sg.update_data("x", 5.0, index=0)
    sg.update_data("y", np.zeros(6))
    sg.add_data("label", [1, 2])
    sg.delete_data("active", "all")
    if backend == "hybrid":
        sg.to_memory("x", "valid")  # deletes the variable from the zarr part
    sg.set_data_id("other")
    sg.clear_data()
    sg.set_data_id("d")
    assert state(view) == before
    assert state(nested) == before
    assert locations(view) == dict.fromkeys(["x", "y", "label", "active"], "numpy")
    assert locations(view, "test")["x"] == "zarr"  # unchanged variables stay on disk
    views = sg._backend._storage._views if backend == "hybrid" else sg._backend._views
    assert len(views) == 2
    del view, nested
    gc.collect()
    assert len(views) == 0  # a dropped view is not copied into any more
