"""compile(), the compiled state, metadata and show_info() on every backend."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from multiml.storegate import NotCompiledError


def test_compile_names_inconsistent_variables_and_counts(sg, snapshot):
    sg.add_data("x", np.zeros((10, 2)))
    sg.add_data("y", np.zeros(7))
    sg.add_data("z", np.zeros(3), phase="test")
    before = snapshot(sg)
    with pytest.raises(ValueError, match=r"phase 'train' in data_id 'd'.*\(x: 10, y: 7\)"):
        sg.compile()
    with pytest.raises(ValueError, match="different lengths"):
        sg.compile(reset=True)
    assert snapshot(sg) == before
    with pytest.raises(NotCompiledError):
        sg.get_data("z", "test")


def test_compile_records_sizes(sg):
    sg.add_data("x", np.zeros(10), phase=(0.6, 0.2, 0.2))
    sg.compile()
    meta = sg.get_metadata()
    assert meta["compiled"] is True
    assert meta["sizes"] == {"train": 6, "valid": 2, "test": 2}
    assert meta["total"] == 10
    assert meta["vars"]["valid"]["x"]["shape"] == (2,)
    assert meta["vars"]["valid"]["x"]["dtype"] == "float64"
    meta["sizes"]["train"] = 99  # a copy: the store is unaffected
    assert sg.get_metadata()["sizes"]["train"] == 6


def test_compile_of_an_empty_data_id(sg):
    sg.compile()
    assert sg.get_metadata()["sizes"] == {"train": 0, "valid": 0, "test": 0}
    assert len(sg["all"]) == 0


def test_reset_adds_active_ones_per_phase(sg):
    sg.add_data("x", np.zeros(10), phase=(7, 0, 3))
    sg.compile(reset=True)
    assert sg.get_var_names("valid") == []  # no rows: no active variable
    np.testing.assert_array_equal(sg.get_data("active", "train"), np.ones(7))
    np.testing.assert_array_equal(sg.get_data("active", "test"), np.ones(3))
    sg.update_data("active", 0, index=(0, 2), phase="train")
    np.testing.assert_array_equal(sg.get_data("active", "train")[:3], [0, 0, 1])
    # adding rows and resetting re-creates active with the new length
    sg.add_data("x", np.zeros(2))
    sg.compile(reset=True)
    np.testing.assert_array_equal(sg.get_data("active", "train"), np.ones(9))


def test_compiled_state_transitions(sg):
    sg.add_data("x", np.zeros(4))
    assert not sg.get_metadata()["compiled"]
    sg.compile()
    sg.update_data("x", np.ones(4), index=(0, 4), do_compile=False)  # lengths unchanged
    assert sg.get_metadata()["compiled"]
    sg.add_data("y", np.zeros(4))  # a new variable needs a compile
    with pytest.raises(NotCompiledError, match="changed since the last compile"):
        sg.get_data("x")
    sg.add_data("z", np.zeros(4), do_compile=True)
    np.testing.assert_array_equal(sg.get_data("x"), np.ones(4))


def test_reads_work_per_data_id(make_sg):
    sg = make_sg(data_id="a")
    sg.add_data("x", np.zeros(2), do_compile=True)
    sg.set_data_id("b")
    sg.add_data("x", np.zeros(2))
    with pytest.raises(NotCompiledError, match="data_id 'b' was never compiled"):
        sg.get_data("x")
    sg.set_data_id("a")
    assert sg.get_data("x").shape == (2,)


def test_get_var_names_keep_creation_order(sg):
    for name in ("zeta", "alpha", "mid"):
        sg.add_data(name, np.zeros(2))
    sg.add_data("beta", np.zeros(1), phase="test")
    sg.add_data("alpha", np.zeros(1), phase="test")
    assert sg.get_var_names("train") == ["zeta", "alpha", "mid"]
    assert sg.get_var_names("test") == ["beta", "alpha"]
    assert sg.get_var_names() == ["zeta", "alpha", "mid", "beta"]
    with pytest.raises(ValueError, match="unknown phase"):
        sg.get_var_names("validation")


def test_get_var_shapes_work_before_compile(sg):
    sg.add_data("x", np.zeros((10, 4, 2)), phase=(0.5, 0.3, 0.2))
    assert sg.get_var_shapes("x") == (5, 4, 2)
    assert sg.get_var_shapes("x", "all") == (10, 4, 2)
    assert sg.get_var_shapes(["x", "x"], "test") == [(2, 4, 2), (2, 4, 2)]
    with pytest.raises(KeyError, match="'y'"):
        sg.get_var_shapes("y")


def test_show_info_logs_a_table(sg, caplog):
    sg.add_data("x", np.zeros((10, 4), dtype=np.float32), phase=(0.5, 0.3, 0.2))
    with caplog.at_level(logging.INFO, logger="multiml.storegate"):
        sg.compile(show_info=True)
    text = caplog.text
    assert "data_id='d'" in text and "compiled=True" in text
    assert "phase" in text and "variable" in text
    line = next(line for line in text.splitlines() if line.startswith("valid"))
    assert "x" in line and "(3, 4)" in line and "float32" in line
