"""add_data / get_data on every backend: phases, splits, shuffling, shape conventions."""

from __future__ import annotations

import random

import numpy as np
import pytest

from multiml import StoreGate
from multiml.storegate import NotCompiledError


def table(n: int, width: int = 3) -> np.ndarray:
    return np.arange(n * width, dtype=np.float64).reshape(n, width)


def test_quickstart_from_the_brief(make_sg):
    sg = make_sg()
    x = table(150)
    sg.add_data("x", x, phase=(0.8, 0.1, 0.1))
    sg.compile()
    np.testing.assert_array_equal(sg.get_data("x", "train"), x[:120])
    assert sg.data_id == "default"


def test_single_phase_and_read_before_compile(sg):
    sg.add_data("x", table(5), phase="valid")
    with pytest.raises(NotCompiledError, match="never compiled"):
        sg.get_data("x", "valid")
    sg.compile()
    np.testing.assert_array_equal(sg.get_data("x", "valid"), table(5))
    assert sg.get_var_names("train") == []


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ((0.8, 0.1, 0.1), (120, 15, 15)),
        ([0.5, 0.25, 0.25], (75, 37, 38)),  # int(150*.5)=75, int(75+37.5)=112
        ((100, 30, 20), (100, 30, 20)),
        ((0.0, 0.0, 1.0), (0, 0, 150)),
    ],
)
def test_phase_splits(sg, phase, expected):
    x = table(150)
    sg.add_data("x", x, phase=phase)
    sg.compile()
    sizes = sg.get_metadata()["sizes"]
    assert (sizes["train"], sizes["valid"], sizes["test"]) == expected
    start = 0
    for name, n in zip(("train", "valid", "test"), expected, strict=True):
        if n:
            np.testing.assert_array_equal(sg.get_data("x", name), x[start : start + n])
        else:
            assert "x" not in sg.get_var_names(name)  # phases without rows get no variable
        start += n


def test_split_points_use_the_documented_formula(sg):
    # int(N*f0) and int(N*f0 + N*f1): 7 rows with (0.3, 0.3, 0.4) -> 2, 4 -> 2/2/3
    sg.add_data("x", np.arange(7), phase=(0.3, 0.3, 0.4))
    sg.compile()
    assert [len(sg[p]) for p in ("train", "valid", "test")] == [2, 2, 3]


@pytest.mark.parametrize(
    ("phase", "match"),
    [
        ((0.8, 0.1, 0.2), "sum to 1.0"),
        ((0.8, 0.2), "invalid phase"),
        ((100, 30, 30), "sum to 160 but 'x' has 150 rows"),
        ("training", "unknown phase 'training'"),
        ((0.5, "a", 0.5), "invalid phase"),
        ((1.5, -0.5, 0.0), r"\[0, 1\]"),
    ],
)
def test_bad_phases_raise_and_store_nothing(sg, snapshot, phase, match):
    sg.add_data("y", np.ones(150), phase=(0.8, 0.1, 0.1))
    before = snapshot(sg)
    with pytest.raises(ValueError, match=match):
        sg.add_data("x", table(150), phase=phase)
    assert snapshot(sg) == before


def test_all_and_auto_split_by_compiled_sizes(sg, snapshot):
    sg.add_data("x", table(150), phase=(0.8, 0.1, 0.1))
    with pytest.raises(ValueError, match="never compiled"):
        sg.add_data("y", np.arange(150), phase="all")
    sg.compile()
    sg.add_data("y", np.arange(150), phase="all")
    sg.add_data("z", np.arange(150) * 2, phase="auto")
    sg.compile()
    np.testing.assert_array_equal(sg.get_data("y", "valid"), np.arange(120, 135))
    np.testing.assert_array_equal(sg.get_data("z", "test"), np.arange(135, 150) * 2)
    before = snapshot(sg)
    with pytest.raises(ValueError, match=r"149 rows but the compiled sizes .* total 150"):
        sg.add_data("w", np.arange(149), phase="all")
    assert snapshot(sg) == before


def test_all_split_works_with_stale_sizes_between_writes(sg):
    """Writing several outputs with phase='all' and do_compile=False must not need a
    compile between the writes."""
    sg.add_data("x", table(10), phase=(6, 2, 2), do_compile=True)
    sg.add_data("p", np.arange(10), phase="all")
    sg.add_data("q", np.arange(10), phase="all")
    sg.compile()
    np.testing.assert_array_equal(sg.get_data("q", "test"), [8, 9])


def test_append_when_variable_exists(sg):
    sg.add_data("x", table(4))
    sg.add_data("x", table(6)[4:])
    sg.add_data("x", table(6)[:0])  # an empty chunk is a no-op append
    sg.compile()
    np.testing.assert_array_equal(sg.get_data("x"), table(6))


def test_append_promotes_dtype_like_concatenate(sg):
    sg.add_data("x", np.arange(3, dtype=np.int32))
    sg.add_data("x", np.array([0.5]))
    sg.compile()
    out = sg.get_data("x")
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [0, 1, 2, 0.5])


def test_append_with_other_row_shape_is_an_error(sg, snapshot):
    sg.add_data("x", table(4))
    before = snapshot(sg)
    with pytest.raises(ValueError, match=r"rows of shape \(2,\) to variable 'x'.*\(3,\)"):
        sg.add_data("x", np.zeros((2, 2)))
    assert snapshot(sg) == before


def test_append_many_chunks_gives_the_concatenation(sg):
    chunks = [np.full((i % 5 + 1, 2), i, dtype=np.int64) for i in range(60)]
    for chunk in chunks:
        sg.add_data("x", chunk)
    sg.compile()
    np.testing.assert_array_equal(sg.get_data("x"), np.concatenate(chunks))


def test_shuffle_true_is_seed_one_and_keeps_variables_aligned(sg):
    x = table(50)
    y = np.arange(50)
    sg.add_data("x", x, shuffle=True)
    sg.add_data("y", y, shuffle=True)
    sg.add_data("z", y, shuffle=2)
    sg.compile()
    perm = np.random.default_rng(1).permutation(50)
    np.testing.assert_array_equal(sg.get_data("y"), perm)
    np.testing.assert_array_equal(sg.get_data("x"), x[perm])
    np.testing.assert_array_equal(sg.get_data("z"), np.random.default_rng(2).permutation(50))


def test_shuffle_happens_before_the_split(sg):
    sg.add_data("y", np.arange(150), phase=(0.8, 0.1, 0.1), shuffle=7)
    sg.compile()
    perm = np.random.default_rng(7).permutation(150)
    np.testing.assert_array_equal(sg.get_data("y", "train"), perm[:120])
    np.testing.assert_array_equal(sg.get_data("y", "test"), perm[135:])


def test_shuffle_leaves_global_rng_and_caller_array_alone(sg):
    np_state = np.random.get_state()
    py_state = random.getstate()
    x = table(30)
    original = x.copy()
    sg.add_data("x", x, shuffle=True)
    sg.add_data("y", np.arange(30), shuffle=3)
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    np.testing.assert_array_equal(x, original)


def test_shuffle_rejects_non_int(sg):
    with pytest.raises(TypeError, match="shuffle must be a bool or an int"):
        sg.add_data("x", table(3), shuffle=0.5)
    assert sg.get_var_names() == []


def test_tuple_names_split_on_axis_one_and_stack_back(sg):
    data = np.arange(10 * 2 * 3).reshape(10, 2, 3)
    sg.add_data(("a", "b"), data, phase=(6, 2, 2))
    sg.compile()
    np.testing.assert_array_equal(sg.get_data("a", "train"), data[:6, 0])
    np.testing.assert_array_equal(sg.get_data("b", "valid"), data[6:8, 1])
    np.testing.assert_array_equal(sg.get_data(("a", "b"), "test"), data[8:])
    np.testing.assert_array_equal(sg.get_data(("b", "a"), "train", 2), data[2, ::-1])
    assert sg.get_var_shapes(("a", "b"), "train") == (6, 2, 3)


def test_tuple_names_need_matching_axis_one(sg, snapshot):
    before = snapshot(sg)
    with pytest.raises(ValueError, match=r"shape \(N, 3, \.\.\.\).*got shape \(10, 2\)"):
        sg.add_data(("a", "b", "c"), np.zeros((10, 2)))
    assert snapshot(sg) == before


def test_list_names_take_arrays_of_different_shapes(sg):
    a, b = table(4, 2), np.arange(4)
    sg.add_data(["a", "b"], [a, b])
    sg.compile()
    got = sg.get_data(["a", "b"])
    assert isinstance(got, list)
    np.testing.assert_array_equal(got[0], a)
    np.testing.assert_array_equal(got[1], b)
    assert sg.get_var_shapes(["a", "b"]) == [(4, 2), (4,)]
    with pytest.raises(ValueError, match="a list of 2 arrays; got 1 items"):
        sg.add_data(["a", "b"], [a])
    with pytest.raises(ValueError, match="repeats"):
        sg.add_data(["a", "a"], [a, a])


def test_bad_var_names(sg):
    with pytest.raises(TypeError, match="var_names must be"):
        sg.add_data(3, np.zeros(3))
    with pytest.raises(ValueError, match="not allowed"):
        sg.add_data("a/b", np.zeros(3))
    with pytest.raises(ValueError, match="row axis"):
        sg.add_data("s", 3.0)


def test_unknown_variable_lists_available_names(sg):
    sg.add_data(["x", "y"], [np.zeros(3), np.zeros(3)], do_compile=True)
    with pytest.raises(KeyError, match=r"'z'.*available: \['x', 'y'\]"):
        sg.get_data("z")
    with pytest.raises(KeyError, match="'z'"):
        sg.get_data(("x", "z"))
    with pytest.raises(ValueError, match="unknown phase 'tain'"):
        sg.get_data("x", "tain")


def test_get_data_indices(sg):
    x = table(20)
    sg.add_data("x", x, do_compile=True)
    np.testing.assert_array_equal(sg.get_data("x", index=3), x[3])
    np.testing.assert_array_equal(sg.get_data("x", index=(2, 5)), x[2:5])
    np.testing.assert_array_equal(sg.get_data("x", index=slice(1, 9, 3)), x[1:9:3])
    np.testing.assert_array_equal(sg.get_data("x", index=slice(None, None, -1)), x[::-1])
    idx = np.array([7, 2, 2, 19, 0])
    np.testing.assert_array_equal(sg.get_data("x", index=idx), x[idx])
    np.testing.assert_array_equal(sg.get_data("x", index=[-1, 0]), x[[-1, 0]])
    mask = np.arange(20) % 3 == 0
    np.testing.assert_array_equal(sg.get_data("x", index=mask), x[mask])
    assert sg.get_data("x", index=np.array([], dtype=int)).shape == (0, 3)
    assert sg.get_data("x", index=[]).shape == (0, 3)


@pytest.mark.parametrize(
    ("index", "error", "match"),
    [
        (20, IndexError, "out of range for 20 rows"),
        (-2, IndexError, "negative ints other than -1"),
        (np.array([0, 20]), IndexError, "out of range"),
        (np.ones(5, dtype=bool), IndexError, "boolean index has length 5"),
        (np.array([0.5]), TypeError, "ints or bools"),
        (np.zeros((2, 2), dtype=int), IndexError, "1-D"),
        ((1, 2, 3), TypeError, r"\(start, stop\)"),
        ("3", TypeError, "invalid index"),
    ],
)
def test_bad_indices(sg, index, error, match):
    sg.add_data("x", table(20), do_compile=True)
    with pytest.raises(error, match=match):
        sg.get_data("x", index=index)


def test_phase_all_concatenates(sg):
    x = table(20)
    sg.add_data("x", x, phase=(10, 4, 6))
    sg.add_data("y", np.arange(20), phase=(10, 4, 6), do_compile=True)
    np.testing.assert_array_equal(sg.get_data("x", "all"), x)
    np.testing.assert_array_equal(sg.get_data("x", "all", (8, 16)), x[8:16])
    np.testing.assert_array_equal(sg.get_data("x", "all", slice(1, 19, 4)), x[1:19:4])
    np.testing.assert_array_equal(sg.get_data("x", "all", 12), x[12])
    idx = np.array([19, 0, 11, 10, 14, 3])
    np.testing.assert_array_equal(sg.get_data("x", "all", idx), x[idx])
    stacked = sg.get_data(("y", "y"), "all", idx)
    np.testing.assert_array_equal(stacked, np.stack([idx, idx], axis=1))
    assert len(sg["all"]) == 20
    assert sg.get_var_shapes("x", "all") == (20, 3)


def test_phase_all_needs_the_variable_in_every_phase_with_rows(sg):
    sg.add_data("x", table(10), phase=(6, 2, 2), do_compile=True)
    sg.update_data("pred", np.zeros(2), phase="test")
    with pytest.raises(KeyError, match=r"missing in phase\(s\) \['train', 'valid'\]"):
        sg.get_data("pred", "all")


def test_data_ids_are_separate(make_sg):
    sg = make_sg(data_id="a")
    sg.add_data("x", np.zeros(3), do_compile=True)
    sg.set_data_id("b")
    sg.add_data("x", np.ones(5), do_compile=True)
    assert sg.get_data_ids() == ["a", "b"]
    assert sg.get_data("x").tolist() == [1.0] * 5
    sg.set_data_id("a")
    assert sg.get_data("x").tolist() == [0.0] * 3
    with pytest.raises(ValueError, match="data_id"):
        sg.set_data_id("")


def test_unknown_backend_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown backend 'hdf5'; allowed: 'numpy', 'zarr'"):
        StoreGate(backend="hdf5")
    with pytest.raises(ValueError, match=r"does not take backend_args \['output_dir'\]"):
        StoreGate(backend="numpy", backend_args={"output_dir": "/tmp/x"})
    with pytest.raises(TypeError, match="backend_args must be a mapping"):
        StoreGate(backend_args=["x"])


def test_callers_arrays_are_never_mutated_or_aliased(sg):
    x = table(6)
    original = x.copy()
    sg.add_data("x", x, do_compile=True)
    sg.add_data(("a", "b"), np.stack([x, x], axis=1), do_compile=True)
    x[:] = -1  # the caller changes its array afterwards: the store keeps its copy
    np.testing.assert_array_equal(sg.get_data("x"), original)
    np.testing.assert_array_equal(sg.get_data("a"), original)
    new = np.ones((2, 3))
    sg.update_data("x", new, index=(0, 2))
    sg.shuffle("train", seed=3)
    np.testing.assert_array_equal(new, np.ones((2, 3)))


def test_basic_reads_are_read_only_and_index_array_reads_are_writable(sg):
    sg.add_data("x", table(6), do_compile=True)
    for out in (sg.get_data("x"), sg.get_data("x", index=(1, 3)), sg.get_data("x", index=2)):
        assert not out.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            out[0] = 5
    for out in (sg.get_data("x", index=[0, 1]), sg.get_data("x", "all"), sg.get_data(("x",))):
        out[0] = 5  # new arrays: writing them does not touch the store
    np.testing.assert_array_equal(sg.get_data("x"), table(6))


class _IndexLike:
    """Stands in for e.g. a torch tensor of indices: anything with ``__array__``."""

    def __init__(self, values):
        self.values = values

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.values, dtype=dtype)


def test_index_objects_with_array_interface(sg):
    sg.add_data("x", table(8), do_compile=True)
    np.testing.assert_array_equal(sg.get_data("x", index=_IndexLike([6, 1])), table(8)[[6, 1]])
    np.testing.assert_array_equal(sg.get_data("x", index=range(2, 4)), table(8)[2:4])


def test_bad_data_id_is_rejected_before_a_store_is_made(tmp_path):
    with pytest.raises(ValueError, match="data_id 'a/b' is not allowed"):
        StoreGate(backend="zarr", backend_args={"output_dir": str(tmp_path / "s")}, data_id="a/b")
    assert not (tmp_path / "s").exists()


def test_stacking_and_concatenating_need_matching_shapes(sg):
    sg.add_data(["a", "b"], [np.zeros((4, 2)), np.zeros((4, 3))], do_compile=True)
    with pytest.raises(ValueError, match=r"cannot stack \('a', 'b'\).*a: \(4, 2\), b: \(4, 3\)"):
        sg.get_data(("a", "b"))
    sg.add_data("c", np.zeros((2, 5)), phase="test")
    sg.add_data("c", np.zeros((4, 1)), phase="train", do_compile=True)
    with pytest.raises(ValueError, match=r"cannot concatenate 'c' over phases"):
        sg.get_data("c", "all")
