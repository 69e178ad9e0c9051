"""Write tracking, export/import and pickling on every backend."""

from __future__ import annotations

import multiprocessing
import pickle

import numpy as np
import pytest

from multiml import StoreGate


@pytest.fixture
def filled(sg):
    sg.add_data("x", np.arange(10.0), phase=(6, 2, 2))
    sg.add_data("y", np.arange(10), phase=(6, 2, 2), do_compile=True)
    return sg


def test_every_write_kind_is_recorded(filled):
    with filled.track_writes() as log:
        filled.add_data("a", np.zeros(6))
        filled.update_data("x", 1.0, index=(0, 2))
        filled.create_empty("e", (2,), phase="test")
        filled.astype("y", "f4", phase="valid")
        filled.onehot("y", 10, phase="test")
        filled.update_data("s", np.zeros((6, 2)), do_compile=False)
        filled.argmax("s", axis=1)
        filled.shuffle("train", seed=2)
        filled.compile(reset=True)
    d = "d"
    assert list(log.written) == [
        (d, "train", "a"),
        (d, "train", "x"),
        (d, "test", "e"),
        (d, "valid", "y"),
        (d, "test", "y"),
        (d, "train", "s"),
        (d, "train", "y"),
        (d, "train", "active"),
        (d, "valid", "active"),
        (d, "test", "active"),
    ]
    assert list(log.deleted) == []
    assert (d, "train", "x") in log.written and len(log.written) == 10


def test_deletes_and_net_effect(filled):
    with filled.track_writes() as log:
        filled.delete_data("x", "all")
        filled.add_data("tmp", np.zeros(6))
        filled.delete_data("tmp")
        filled.add_data("x", np.zeros(2), phase="valid")
    assert list(log.written) == [("d", "valid", "x")]
    assert list(log.deleted) == [("d", "train", "x"), ("d", "test", "x"), ("d", "train", "tmp")]
    with filled.track_writes() as log2:
        filled.clear_data()
    assert ("d", "valid", "x") in log2.deleted and ("d", "test", "y") in log2.deleted


def test_scopes_nest_and_close(filled):
    with filled.track_writes() as outer:
        filled.update_data("x", 0.0, index=0)
        with filled.track_writes() as inner:
            filled.update_data("y", 0, index=0)
        filled.update_data("z", np.zeros(6))
    assert list(outer.written) == [("d", "train", "x"), ("d", "train", "y"), ("d", "train", "z")]
    assert list(inner.written) == [("d", "train", "y")]
    filled.update_data("x", 2.0, index=1)  # after the scopes: not recorded
    assert len(outer.written) == 3
    with pytest.raises(RuntimeError), filled.track_writes() as failed:
        filled.update_data("x", 3.0, index=1)
        raise RuntimeError
    assert list(failed.written) == [("d", "train", "x")]
    filled.update_data("x", 4.0, index=1)
    assert len(failed.written) == 1


def test_failed_writes_are_not_recorded(filled):
    with filled.track_writes() as log, pytest.raises(ValueError):
        filled.add_data("x", np.zeros(3), do_compile=True)
    assert len(log.written) == 0


def test_export_import_round_trip(filled):
    with filled.track_writes() as log:
        filled.update_data("pred", np.arange(10) * 3.0, phase="all")
    snapshot = filled.export_vars(log.written)
    assert set(snapshot) == {("d", p, "pred") for p in ("train", "valid", "test")}
    snapshot[("d", "train", "pred")][0] = -1  # a copy: the store is unchanged
    assert filled.get_data("pred")[0] == 0
    filled.delete_data("pred", "all")
    filled.update_data("y", np.zeros(6))
    filled.import_vars(snapshot)
    np.testing.assert_array_equal(filled.get_data("pred", "valid"), [18, 21])
    assert filled.get_data("pred")[0] == -1
    filled.update_data("pred", 5.0, index=0)
    assert snapshot[("d", "train", "pred")][0] == -1  # the import copied the snapshot
    filled.import_vars(snapshot)
    assert filled.get_data("pred")[0] == -1


def test_import_is_validated_and_compiles_once(filled, snapshot):
    before = snapshot(filled)
    bad = {("d", "train", "pred"): np.zeros(6), ("d", "valid", "pred"): np.zeros(5)}
    with pytest.raises(ValueError, match=r"phase 'valid'.*pred: 5"):
        filled.import_vars(bad)
    with pytest.raises(ValueError, match="unknown phase 'all'"):
        filled.import_vars({("d", "all", "p"): np.zeros(10)})
    with pytest.raises(TypeError, match="key must be"):
        filled.import_vars({("d", "p"): np.zeros(10)})
    assert snapshot(filled) == before
    # a variable of another data_id is imported there, and that data_id is compiled
    filled.import_vars({("other", "test", "w"): np.ones(4)})
    filled.set_data_id("other")
    np.testing.assert_array_equal(filled.get_data("w", "test"), np.ones(4))


def test_export_unknown_key(filled):
    with pytest.raises(KeyError, match="'nope'"):
        filled.export_vars([("d", "train", "nope")])


def test_pickle_round_trip(filled, snapshot):
    filled.set_data_id("e")
    filled.update_data("z", np.ones((6, 2)), do_compile=False)  # uncompiled state travels too
    with filled.track_writes():
        clone = pickle.loads(pickle.dumps(filled))
    assert clone.backend == filled.backend and clone.data_id == "e"
    assert snapshot(clone) == snapshot(filled)
    assert not clone.get_metadata()["compiled"]
    clone.set_data_id("d")
    np.testing.assert_array_equal(clone.get_data("x", "all"), np.arange(10.0))
    with clone.track_writes() as log:  # the clone has its own (empty) tracking state
        clone.update_data("x", 0.0, index=0)
    assert list(log.written) == [("d", "train", "x")]


def _read_in_child(sg: StoreGate) -> list[float]:
    return sg.get_data("x", "all").tolist()


def test_store_reaches_a_spawn_worker(filled):
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        assert pool.apply(_read_in_child, (filled,)) == list(np.arange(10.0))
