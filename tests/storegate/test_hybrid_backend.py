"""Hybrid-backend specifics: modes, moving variables, reopening, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from multiml import StoreGate


def locations(sg: StoreGate, phase: str = "train") -> dict[str, str]:
    return {name: info["location"] for name, info in sg.get_metadata()["vars"][phase].items()}


@pytest.fixture
def hybrid(tmp_path) -> StoreGate:
    sg = StoreGate(backend="hybrid", backend_args={"output_dir": str(tmp_path)}, data_id="d")
    sg.add_data("disk", np.arange(10.0), phase=(6, 2, 2))
    sg.set_mode("numpy")
    sg.add_data("mem", np.arange(10), phase=(6, 2, 2), do_compile=True)
    return sg


def test_mode_decides_where_new_variables_go(hybrid):
    assert hybrid.mode == "numpy"
    assert locations(hybrid) == {"disk": "zarr", "mem": "numpy"}
    hybrid.update_data("disk", np.zeros(6))  # existing variables stay where they are
    hybrid.add_data(["disk", "mem"], [np.zeros(2), np.zeros(2, int)], phase="valid")
    assert locations(hybrid) == {"disk": "zarr", "mem": "numpy"}
    hybrid.set_mode("zarr")
    hybrid.create_empty("new", (6,))
    hybrid.compile(reset=True)
    assert locations(hybrid) == {"disk": "zarr", "mem": "numpy", "new": "zarr", "active": "zarr"}


def test_moves_keep_values_order_and_compiled_state(hybrid, snapshot):
    before = snapshot(hybrid)
    hybrid.to_memory("disk")
    assert {locations(hybrid, p)["disk"] for p in ("train", "valid", "test")} == {"numpy"}
    hybrid.to_storage(["mem"], phase="valid")
    assert locations(hybrid, "valid") == {"disk": "numpy", "mem": "zarr"}
    hybrid.to_storage(("disk", "mem"))
    hybrid.to_memory("disk", "test")
    hybrid.to_storage("disk")
    after = snapshot(hybrid)
    for data_id in before:  # everything but the locations is unchanged
        for phase in ("train", "valid", "test"):
            for info in (
                *before[data_id]["meta"]["vars"][phase].values(),
                *after[data_id]["meta"]["vars"][phase].values(),
            ):
                info.pop("location")
    assert after == before
    assert hybrid.get_var_names("train") == ["disk", "mem"]


def test_memory_reads_are_zero_copy_after_to_memory(hybrid):
    hybrid.to_memory("disk")
    first = hybrid.get_data("disk")
    assert np.shares_memory(first, hybrid.get_data("disk", index=(1, 3)))


def test_moves_are_not_writes(hybrid):
    with hybrid.track_writes() as log:
        hybrid.to_memory("disk")
    assert len(log.written) == 0 and len(log.deleted) == 0


def test_reopen_sees_what_was_on_disk(hybrid, tmp_path):
    hybrid.to_storage("mem", phase="test")
    again = StoreGate(backend="hybrid", backend_args={"output_dir": str(tmp_path)}, data_id="d")
    assert again.mode == "zarr"
    assert again.get_var_names("train") == ["disk"]
    assert again.get_var_names("test") == ["disk", "mem"]
    meta = again.get_metadata()
    assert meta["compiled"] and meta["sizes"] == {"train": 6, "valid": 2, "test": 2}
    np.testing.assert_array_equal(again.get_data("mem", "test"), [8, 9])


def test_pickle_keeps_both_parts(hybrid, snapshot):
    clone = pickle.loads(pickle.dumps(hybrid))
    assert snapshot(clone) == snapshot(hybrid)
    assert locations(clone) == {"disk": "zarr", "mem": "numpy"}
    assert clone.mode == "numpy"


def test_placement_errors(hybrid, snapshot):
    before = snapshot(hybrid)
    with pytest.raises(ValueError, match=r"unknown hybrid mode 'disk'; allowed: 'numpy', 'zarr'"):
        hybrid.set_mode("disk")
    with pytest.raises(KeyError, match="'nope'"):
        hybrid.to_memory(["disk", "nope"])
    with pytest.raises(ValueError, match="unknown phase"):
        hybrid.to_storage("mem", phase="dev")
    assert snapshot(hybrid) == before
    assert hybrid.mode == "numpy"
    with pytest.raises(ValueError, match="unknown hybrid mode"):
        StoreGate(backend="hybrid", backend_args={"mode": "memory"})


def test_placement_needs_the_hybrid_backend():
    sg = StoreGate()
    sg.add_data("x", np.zeros(2))
    assert sg.mode == "numpy"
    with pytest.raises(ValueError, match=r"set_mode needs backend='hybrid'.*'numpy'"):
        sg.set_mode("zarr")
    with pytest.raises(ValueError, match="to_memory needs backend='hybrid'"):
        sg.to_memory("x")
    with pytest.raises(ValueError, match="to_storage needs backend='hybrid'"):
        sg.to_storage("x")
