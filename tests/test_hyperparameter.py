"""Tests of multiml.hyperparameter: grid order, continuous values, errors."""

from __future__ import annotations

import itertools
import pickle
import time

import numpy as np
import pytest

from multiml import Hyperparameter as TopLevelHyperparameter
from multiml import Hyperparameters as TopLevelHyperparameters
from multiml.hyperparameter import Hyperparameter, Hyperparameters


def test_top_level_exports_are_the_same_classes():
    assert TopLevelHyperparameters is Hyperparameters
    assert TopLevelHyperparameter is Hyperparameter


def test_grid_order_is_insertion_order_last_key_fastest():
    hps = Hyperparameters({"a": [1, 2], "b": ["x", "y", "z"], "c": [True, False]})
    expected = [
        {"a": a, "b": b, "c": c}
        for a, b, c in itertools.product([1, 2], ["x", "y", "z"], [True, False])
    ]
    assert len(hps) == 12
    assert [hps[i] for i in range(len(hps))] == expected
    assert list(hps) == expected
    assert [list(point) for point in hps] == [["a", "b", "c"]] * 12
    assert hps.get_hp_names() == ["a", "b", "c"]


def test_negative_indices_and_out_of_range():
    hps = Hyperparameters({"a": [1, 2, 3]})
    assert hps[-1] == {"a": 3}
    assert hps[-3] == {"a": 1}
    with pytest.raises(IndexError, match="size 3"):
        hps[3]
    with pytest.raises(IndexError, match="size 3"):
        hps[-4]
    with pytest.raises(TypeError):
        hps["a"]
    with pytest.raises(TypeError):
        hps[True]
    assert hps[np.int64(1)] == {"a": 2}


def test_empty_grid_has_length_zero():
    hps = Hyperparameters()
    assert len(hps) == 0
    assert list(hps) == []
    with pytest.raises(IndexError, match="size 0"):
        hps[0]
    assert len(Hyperparameters({})) == 0


def test_scalar_values_count_as_one_value():
    hps = Hyperparameters({"shape": (16, 16), "lr": [0.1, 0.01], "name": "mlp", "n": None})
    assert len(hps) == 2
    assert hps[1] == {"shape": (16, 16), "lr": 0.01, "name": "mlp", "n": None}
    # a list-valued hyperparameter needs a list of lists
    hps = Hyperparameters({"layers": [[8, 8], [16]]})
    assert [point["layers"] for point in hps] == [[8, 8], [16]]


def test_continuous_hyperparameter_uses_arange_as_python_numbers():
    hp = Hyperparameter("units", (8, 32, 8), is_continuous=True)
    assert hp.values == [8, 16, 24]
    assert all(type(v) is int for v in hp.values)
    hp = Hyperparameter("lr", (0.0, 1.0, 0.25), is_continuous=True)
    assert hp.values == [0.0, 0.25, 0.5, 0.75]
    assert all(type(v) is float for v in hp.values)
    assert hp.values == np.arange(0.0, 1.0, 0.25).tolist()
    assert Hyperparameter("down", (3, 0, -1), is_continuous=True).values == [3, 2, 1]

    hps = Hyperparameters({"a": ["x", "y"], "b": Hyperparameter("b", (0, 3, 1), True)})
    assert len(hps) == 6
    assert hps[4] == {"a": "y", "b": 1}


@pytest.mark.parametrize(
    ("values", "error", "match"),
    [
        ((0, 1), ValueError, "min, max, step"),
        ((0, 1, 0), ValueError, "non-zero"),
        ((1, 0, 1), ValueError, "no values"),
        ((0, "1", 1), TypeError, "real numbers"),
        ((0, float("inf"), 1), ValueError, "finite"),
    ],
)
def test_continuous_hyperparameter_errors(values, error, match):
    with pytest.raises(error, match=match):
        Hyperparameter("x", values, is_continuous=True)


def test_hyperparameter_value_forms_and_errors():
    assert Hyperparameter("a", (1, 2)).values == [1, 2]
    assert Hyperparameter("a", range(3)).values == [0, 1, 2]
    assert Hyperparameter("a", np.array([0.5, 1.5])).values == [0.5, 1.5]
    with pytest.raises(ValueError, match="'a' has no values"):
        Hyperparameter("a", [])
    with pytest.raises(TypeError, match="values must be"):
        Hyperparameter("a", 3)
    with pytest.raises(ValueError, match="1-D"):
        Hyperparameter("a", np.zeros((2, 2)))
    with pytest.raises(TypeError, match="non-empty str"):
        Hyperparameter("", [1])
    hp = Hyperparameter("a", [1, 2])
    assert hp[-1] == 2
    assert list(hp) == [1, 2]
    assert hp == Hyperparameter("a", [1, 2])
    assert hp != Hyperparameter("a", [2, 1])
    values = hp.values
    values.append(3)
    assert len(hp) == 2  # .values is a copy


def test_add_hp_from_dict_and_add_hp():
    hps = Hyperparameters({"a": [1, 2]})
    hps.add_hp_from_dict({"b": [3, 4, 5]})
    hps.add_hp("c", (0, 2, 1), is_continuous=True)
    assert hps.get_hp_names() == ["a", "b", "c"]
    assert len(hps) == 12
    assert hps[0] == {"a": 1, "b": 3, "c": 0}
    assert "b" in hps
    assert hps.get_hp("b").values == [3, 4, 5]
    assert hps.to_dict() == {"a": [1, 2], "b": [3, 4, 5], "c": [0, 1]}


def test_failed_add_changes_nothing():
    hps = Hyperparameters({"a": [1, 2]})
    with pytest.raises(ValueError, match="already registered"):
        hps.add_hp_from_dict({"b": [1], "a": [3]})
    with pytest.raises(ValueError, match="no values"):
        hps.add_hp_from_dict({"b": [1], "c": []})
    with pytest.raises(TypeError, match="names must be str"):
        hps.add_hp_from_dict({"b": [1], 3: [1]})
    with pytest.raises(ValueError, match="must match"):
        hps.add_hp_from_dict({"b": Hyperparameter("c", [1])})
    with pytest.raises(TypeError, match="mapping"):
        hps.add_hp_from_dict([("b", [1])])
    assert hps.get_hp_names() == ["a"]
    assert len(hps) == 2


def test_unknown_hp_name_lists_registered():
    hps = Hyperparameters({"a": [1], "b": [2]})
    with pytest.raises(KeyError, match=r"'z'.*\['a', 'b'\]"):
        hps.get_hp("z")


def test_index_of_is_the_inverse_of_indexing():
    hps = Hyperparameters({"a": [1, 2, 3], "b": [(1, 2), (3, 4)], "c": [np.array([1.0]), None]})
    for i in range(len(hps)):
        assert hps.index_of(hps[i]) == i
    with pytest.raises(ValueError, match=r"99 is not a value of hyperparameter 'a'"):
        hps.index_of({"a": 99, "b": (1, 2), "c": None})
    with pytest.raises(ValueError, match="do not match"):
        hps.index_of({"a": 1})


def test_index_of_prefers_same_type_values():
    hps = Hyperparameters({"flag": [1, True]})
    assert hps.index_of({"flag": True}) == 1
    assert hps.index_of({"flag": 1}) == 0
    assert Hyperparameters({"x": [1.0, 2.0]}).index_of({"x": 2}) == 1


def test_huge_grid_is_indexed_without_materialising():
    hps = Hyperparameters({f"h{i}": list(range(10)) for i in range(15)})  # 10**15 points
    start = time.perf_counter()
    assert len(hps) == 10**15
    point = hps[123_456_789_012_345]
    assert [point[f"h{i}"] for i in range(15)] == [int(d) for d in "123456789012345"]
    assert hps.index_of(point) == 123_456_789_012_345
    assert hps[-1] == {f"h{i}": 9 for i in range(15)}
    assert time.perf_counter() - start < 0.1


def test_points_are_fresh_dicts_and_copy_is_independent():
    hps = Hyperparameters({"a": [1, 2]})
    point = hps[0]
    point["a"] = 100
    assert hps[0] == {"a": 1}
    clone = hps.copy()
    clone.add_hp("b", [1, 2])
    assert len(hps) == 2
    assert len(clone) == 4
    assert clone != hps
    assert hps.copy() == hps


def test_pickle_and_repr():
    hps = Hyperparameters({"a": [1, 2], "b": Hyperparameter("b", (0, 2, 1), True)})
    restored = pickle.loads(pickle.dumps(hps))
    assert restored == hps
    assert list(restored) == list(hps)
    assert restored.get_hp("b").is_continuous
    assert repr(hps) == "Hyperparameters({'a': [1, 2], 'b': [0, 1]})"


def test_mutable_sequence_values_count_as_a_list_of_candidates():
    from omegaconf import OmegaConf

    config = OmegaConf.create({"lr": [0.1, 0.01], "shape": [3, 4]})
    hps = Hyperparameters(config)
    assert len(hps) == 4
    assert hps[3] == {"lr": 0.01, "shape": 4}


def test_docstring_examples_run():
    import doctest

    import multiml.hyperparameter

    result = doctest.testmod(multiml.hyperparameter)
    assert result.attempted > 0
    assert result.failed == 0
