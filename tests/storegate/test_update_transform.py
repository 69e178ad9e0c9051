"""update_data, create_empty, delete/clear and transforms on every backend."""

from __future__ import annotations

import numpy as np
import pytest


def table(n: int, width: int = 3) -> np.ndarray:
    return np.arange(n * width, dtype=np.float64).reshape(n, width)


@pytest.fixture
def filled(sg):
    sg.add_data("x", table(10), phase=(6, 2, 2))
    sg.add_data("y", np.arange(10), phase=(6, 2, 2), do_compile=True)
    return sg


def test_whole_replace_may_change_shape_and_dtype(filled):
    filled.update_data("x", np.ones((6, 5), dtype=np.float32))
    assert filled.get_data("x").shape == (6, 5)
    assert filled.get_data("x").dtype == np.float32
    # update_data compiles by default, so the data is readable straight away
    np.testing.assert_array_equal(filled.get_data("x", "valid"), table(10)[6:8])


def test_update_adds_a_missing_variable(filled):
    filled.update_data("pred", np.arange(6) * 2.0)
    np.testing.assert_array_equal(filled.get_data("pred"), np.arange(6) * 2.0)


def test_partial_updates(filled):
    expected = table(10)[:6].copy()
    filled.update_data("x", np.full(3, 7.0), index=2)
    expected[2] = 7
    filled.update_data("x", np.zeros((2, 3)), index=(3, 5))
    expected[3:5] = 0
    filled.update_data("x", 1.5, index=slice(0, 6, 5))  # broadcasting
    expected[0:6:5] = 1.5
    filled.update_data("x", np.array([[9, 9, 9], [8, 8, 8]]), index=np.array([4, 1]))
    expected[[4, 1]] = [[9, 9, 9], [8, 8, 8]]
    np.testing.assert_array_equal(filled.get_data("x"), expected)
    np.testing.assert_array_equal(filled.get_data("x", "valid"), table(10)[6:8])


def test_partial_update_of_tuple_names(filled):
    filled.update_data("z", np.zeros(6), do_compile=True)
    filled.update_data(("y", "z"), np.array([[100, 200]]), index=(0, 1))
    filled.update_data(("y", "z"), np.array([300, 400]), index=5)
    np.testing.assert_array_equal(filled.get_data(("y", "z"), index=0), [100, 200])
    np.testing.assert_array_equal(filled.get_data(("y", "z"), index=5), [300, 400])


def test_update_with_phase_all(filled):
    filled.update_data("pred", np.arange(10) * 10, phase="all")
    np.testing.assert_array_equal(filled.get_data("pred", "valid"), [60, 70])
    filled.update_data("pred", np.array([-1, -2, -3]), phase="auto", index=np.array([9, 0, 6]))
    np.testing.assert_array_equal(
        filled.get_data("pred", "all"), [-2, 10, 20, 30, 40, 50, -3, 70, 80, -1]
    )
    filled.update_data("pred", 5, phase="all", index=(5, 7))
    np.testing.assert_array_equal(filled.get_data("pred", "all")[4:8], [40, 5, 5, 70])


def test_update_errors_change_nothing(filled, snapshot):
    before = snapshot(filled)
    with pytest.raises(TypeError, match="float64 into rows of 'y'"):
        filled.update_data("y", np.array([0.5]), index=(0, 1))
    with pytest.raises(ValueError, match=r"shape \(3,\) but the selected rows"):
        filled.update_data("y", np.zeros(3), index=(0, 2))
    with pytest.raises(KeyError, match="'nope'"):
        filled.update_data("nope", np.zeros(2), index=(0, 2))
    with pytest.raises(ValueError, match="needs one phase or 'all'"):
        filled.update_data("y", np.zeros(2), phase=(0.5, 0.5, 0.0), index=(0, 2))
    with pytest.raises(ValueError, match=r"9 rows but the compiled sizes"):
        filled.update_data("y", np.zeros(9), phase="all")
    # do_compile=True checks the lengths *before* writing: a wrong length stores nothing
    with pytest.raises(ValueError, match=r"different lengths \(x: 6, y: 4\)"):
        filled.update_data("y", np.zeros(4))
    with pytest.raises(ValueError, match="different lengths"):
        filled.add_data("x", np.zeros((1, 3)), do_compile=True)
    assert snapshot(filled) == before


def test_update_without_compile_marks_changed_lengths(filled):
    filled.update_data("y", np.zeros(4), do_compile=False)
    assert not filled.get_metadata()["compiled"]
    with pytest.raises(ValueError, match="changed since the last compile"):
        filled.get_data("x")
    with pytest.raises(ValueError, match=r"x: 6, y: 4"):
        filled.compile()


def test_same_length_replace_without_compile_stays_compiled(filled):
    filled.update_data("y", np.zeros(6), do_compile=False)
    assert filled.get_metadata()["compiled"]
    np.testing.assert_array_equal(filled.get_data("y"), np.zeros(6))


def test_create_empty(sg):
    sg.create_empty("pred", (10, 2), phase=(0.6, 0.2, 0.2), dtype="f8")
    sg.create_empty(("a", "b"), (6, 2, 4), phase="train", dtype=np.int16)
    sg.create_empty(["c", "d"], [(6,), (6, 3)], dtype=bool)
    sg.create_empty(["e", "f"], (6, 1))
    sg.compile()
    assert sg.get_var_shapes("pred", "all") == (10, 2)
    assert sg.get_var_shapes("pred", "valid") == (2, 2)
    assert sg.get_data("a").dtype == np.int16 and sg.get_data("a").shape == (6, 4)
    assert not sg.get_data("d").any() and sg.get_data("d").dtype == bool
    assert sg.get_data("f").dtype == np.float32
    np.testing.assert_array_equal(sg.get_data("pred", "all"), np.zeros((10, 2)))


def test_create_empty_replaces_and_validates(sg, snapshot):
    sg.add_data("x", table(4), do_compile=True)
    sg.create_empty("x", (4, 1), dtype="i4")
    sg.compile()
    np.testing.assert_array_equal(sg.get_data("x"), np.zeros((4, 1)))
    before = snapshot(sg)
    with pytest.raises(ValueError, match="shape must be"):
        sg.create_empty("z", (-1, 2))
    with pytest.raises(ValueError, match=r"takes shape \(N, 2, \.\.\.\)"):
        sg.create_empty(("a", "b"), (4, 3))
    with pytest.raises(TypeError, match="invalid dtype"):
        sg.create_empty("z", (4,), dtype="notadtype")
    assert snapshot(sg) == before


def test_delete_data(filled):
    filled.delete_data("x", "valid")
    assert filled.get_var_names("valid") == ["y"]
    assert filled.get_var_names("train") == ["x", "y"]
    filled.delete_data(["x", "y"], "all")
    assert filled.get_var_names() == []
    with pytest.raises(KeyError, match=r"'x'.*available: \[\]"):
        filled.delete_data("x", "train")


def test_delete_keeps_compiled_and_refreshes_sizes(filled):
    filled.delete_data(["x", "y"], "valid")
    meta = filled.get_metadata()
    assert meta["compiled"]
    assert meta["sizes"] == {"train": 6, "valid": 0, "test": 2}
    np.testing.assert_array_equal(filled.get_data("y", "all"), [0, 1, 2, 3, 4, 5, 8, 9])


def test_delete_unknown_name_deletes_nothing(filled, snapshot):
    before = snapshot(filled)
    with pytest.raises(KeyError, match="'nope'"):
        filled.delete_data(["x", "nope"], "train")
    assert snapshot(filled) == before


def test_clear_data_only_touches_the_current_data_id(filled):
    filled.set_data_id("other")
    filled.add_data("x", np.zeros(2), do_compile=True)
    filled.set_data_id("d")
    filled.clear_data()
    assert filled.get_data_ids() == ["other"]
    assert filled.get_var_names() == []
    assert filled.get_metadata()["sizes"] is None
    filled.set_data_id("other")
    np.testing.assert_array_equal(filled.get_data("x"), [0, 0])


def test_astype(filled):
    filled.astype("y", np.float32, phase="all")
    assert all(filled.get_data("y", p).dtype == np.float32 for p in ("train", "valid", "test"))
    filled.astype(["x", "y"], "int8")
    assert filled.get_data("x").dtype == np.int8
    assert filled.get_data("x", "valid").dtype == np.float64
    assert filled.get_metadata()["compiled"]


def test_onehot(filled):
    filled.onehot("y", 10, phase="all")
    np.testing.assert_array_equal(filled.get_data("y", "all"), np.eye(10, dtype=np.float32))
    filled.update_data("lab", np.array([[0, 1], [2, 0], [1, 1], [0, 0], [2, 2], [1, 0]]))
    filled.onehot("lab", 3, dtype=np.int64)
    out = filled.get_data("lab")
    assert out.shape == (6, 2, 3) and out.dtype == np.int64
    np.testing.assert_array_equal(out[1], [[0, 0, 1], [1, 0, 0]])


def test_onehot_errors_change_nothing(filled, snapshot):
    filled.update_data("f", np.array([0.0, 1.0, 2.5, 0, 0, 0]))
    before = snapshot(filled)
    with pytest.raises(ValueError, match=r"labels in \[0, 5\] but num_classes=3"):
        filled.onehot("y", 3, phase="all")
    with pytest.raises(ValueError, match="non-integer"):
        filled.onehot("f", 3)
    with pytest.raises(ValueError, match="num_classes must be an int"):
        filled.onehot("y", 0)
    assert snapshot(filled) == before


def test_argmax(filled):
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [1, 0], [0, 1], [0.5, 0.6]])
    filled.update_data("score", scores)
    filled.argmax("score", axis=1)
    np.testing.assert_array_equal(filled.get_data("score"), [1, 0, 1, 0, 1, 1])
    filled.update_data("s3", np.zeros((6, 2, 4)))
    filled.update_data("s3", np.ones(4), index=0)
    filled.argmax("s3", axis=-1)
    assert filled.get_data("s3").shape == (6, 2)
    with pytest.raises(ValueError, match="axis 0 is the row axis"):
        filled.argmax("x", axis=0)
    with pytest.raises(ValueError, match="axis 1 is not allowed"):
        filled.argmax("y", axis=1)


def test_shuffle_method_keeps_variables_aligned(filled):
    filled.shuffle("train", seed=5)
    perm = np.random.default_rng(5).permutation(6)
    np.testing.assert_array_equal(filled.get_data("y"), perm)
    np.testing.assert_array_equal(filled.get_data("x"), table(10)[perm])
    np.testing.assert_array_equal(filled.get_data("y", "valid"), [6, 7])
    filled.shuffle()  # every phase, seed 1
    valid_perm = np.random.default_rng(1).permutation(2)
    np.testing.assert_array_equal(filled.get_data("y", "valid"), np.array([6, 7])[valid_perm])


def test_shuffle_needs_consistent_lengths(filled, snapshot):
    filled.update_data("y", np.zeros(3), do_compile=False)
    before = snapshot(filled)
    with pytest.raises(ValueError, match="different lengths"):
        filled.shuffle("train")
    with pytest.raises(TypeError, match="seed must be an int"):
        filled.shuffle("valid", seed=True)
    assert snapshot(filled) == before


def test_transforms_of_missing_variables(filled):
    with pytest.raises(KeyError, match="no phase holds it"):
        filled.astype("nope", "f4", phase="all")
    with pytest.raises(KeyError, match="'nope'"):
        filled.argmax("nope", axis=1)


def test_index_array_write_with_repeated_rows_keeps_the_last(filled):
    filled.update_data("y", np.array([10, 20, 30]), index=np.array([1, 4, 1]))
    np.testing.assert_array_equal(filled.get_data("y"), [0, 30, 2, 3, 20, 5])


@pytest.mark.filterwarnings("ignore:The data type .* does not have a Zarr V3 specification")
def test_fixed_size_strings(sg):
    sg.add_data("name", np.array(["a", "bb", "ccc"]))
    sg.add_data("name", np.array(["dddd"]))  # promotes <U3 to <U4
    sg.compile()
    np.testing.assert_array_equal(sg.get_data("name"), ["a", "bb", "ccc", "dddd"])


def test_append_without_a_common_dtype_is_an_error(sg, snapshot):
    sg.add_data("when", np.array(["2020-01-01", "2021-06-30"], dtype="M8[D]"))
    before = snapshot(sg)
    with pytest.raises(TypeError, match="cannot append data of dtype int64 to variable 'when'"):
        sg.add_data("when", np.array([1]))
    assert snapshot(sg) == before


def test_reverse_slice_update(filled):
    filled.update_data("y", np.arange(6) * 10, index=slice(None, None, -1))
    np.testing.assert_array_equal(filled.get_data("y"), [50, 40, 30, 20, 10, 0])


@pytest.mark.filterwarnings("ignore:The data type .* does not have a Zarr V3 specification")
def test_more_validation_errors(filled, snapshot):
    filled.update_data("s", np.array(["a"] * 6))
    before = snapshot(filled)
    with pytest.raises(ValueError, match="2 variables but 3 shapes"):
        filled.create_empty(["a", "b"], [(6,), (6,), (6,)])
    with pytest.raises(TypeError, match="expected ints"):
        filled.onehot(["y", "s"], 6)
    with pytest.raises(TypeError, match="invalid dtype"):
        filled.astype("x", "nodtype")
    assert snapshot(filled) == before
