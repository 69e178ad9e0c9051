"""Item syntax (``sg['train']['x'][0:10]``) on every backend: stateless views."""

from __future__ import annotations

import numpy as np
import pytest


def table(n: int, width: int = 3) -> np.ndarray:
    return np.arange(n * width, dtype=np.float64).reshape(n, width)


@pytest.fixture
def filled(sg):
    sg.add_data("a", table(10), phase=(6, 2, 2))
    sg.add_data("b", table(10) + 100, phase=(6, 2, 2), do_compile=True)
    return sg


def test_reads(filled):
    np.testing.assert_array_equal(filled["train"]["a"][:], table(10)[:6])
    np.testing.assert_array_equal(
        filled["test"][("a", "b")][0:10], np.stack([table(10)[8:], table(10)[8:] + 100], axis=1)
    )
    np.testing.assert_array_equal(filled["train"]["a"][-1], table(10)[5])
    np.testing.assert_array_equal(filled["train"]["a"][-2:], table(10)[4:6])
    np.testing.assert_array_equal(filled["train"]["a"][:, 0], table(10)[:6, 0])
    np.testing.assert_array_equal(filled["train"]["a"][2, 1:], table(10)[2, 1:])
    np.testing.assert_array_equal(filled["train"]["a"][...], table(10)[:6])
    np.testing.assert_array_equal(filled["train"]["a"][[5, -6]], table(10)[[5, 0]])
    np.testing.assert_array_equal(filled["all"]["a"][7:9], table(10)[7:9])
    a, b = filled["valid"][["a", "b"]][0]
    np.testing.assert_array_equal(b - a, [100, 100, 100])


def test_writes(filled):
    filled["train"]["c"][:] = np.arange(6)  # adds (and compiles)
    np.testing.assert_array_equal(filled.get_data("c"), np.arange(6))
    filled["train"]["c"][:] = np.arange(12).reshape(6, 2)  # [:] replaces, shape may change
    assert filled.get_data("c").shape == (6, 2)
    filled["train"]["a"][1:3] = 0
    filled["train"]["a"][-1] = np.array([7, 7, 7])
    expected = table(10)[:6].copy()
    expected[1:3] = 0
    expected[-1] = 7
    np.testing.assert_array_equal(filled.get_data("a"), expected)
    filled["all"]["z"] = np.arange(10)  # PhaseView assignment replaces a whole variable
    np.testing.assert_array_equal(filled.get_data("z", "test"), [8, 9])
    with pytest.raises(TypeError, match="tuple index"):
        filled["train"]["a"][0, 1] = 5


def test_delete_len_contains_iter(filled):
    assert len(filled["train"]) == 6
    assert len(filled["all"]) == 10
    assert "a" in filled["valid"] and "nope" not in filled["valid"] and 3 not in filled["valid"]
    assert list(filled["test"]) == ["a", "b"]
    del filled["train"][["a", "b"]]
    assert "a" not in filled["train"] and "a" in filled["valid"]
    del filled["all"]["a"]
    assert "a" not in filled["all"]
    assert len(filled["train"]) == 0


def test_views_are_stateless(filled):
    train = filled["train"]
    test_a = filled["test"]["a"]
    np.testing.assert_array_equal(train["a"][:], table(10)[:6])  # a later view ...
    np.testing.assert_array_equal(test_a[:], table(10)[8:])  # ... does not change another
    np.testing.assert_array_equal(filled.get_data("a"), table(10)[:6])  # nor get_data
    # a view keeps the data_id it was made for
    filled.set_data_id("other")
    np.testing.assert_array_equal(train["a"][0:1], table(10)[:1])
    assert train.data_id == "d" and train.phase == "train"


def test_view_errors(filled):
    with pytest.raises(ValueError, match="unknown phase 'training'"):
        filled["training"]
    with pytest.raises(KeyError, match="'zz'"):
        filled["train"]["zz"][:]
    with pytest.raises(IndexError, match="out of range"):
        filled["train"]["a"][6]
    filled.add_data("b", np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"different lengths \(a: 6, b: 7\)"):
        len(filled["train"])


def test_view_repr_and_shape(filled):
    assert filled["valid"]["a"].shape == (2, 3)
    assert filled["valid"][("a", "b")].shape == (2, 2, 3)
    assert "phase='valid'" in repr(filled["valid"])
    assert "var_names='a'" in repr(filled["valid"]["a"])


def test_list_views_take_row_indices_only(filled):
    with pytest.raises(TypeError, match="row index only"):
        filled["train"][["a", "b"]][0:2, 0]
