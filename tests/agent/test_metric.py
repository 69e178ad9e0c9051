"""Tests of multiml.agent.metric: the array arithmetic, the classes and the StoreGate reads."""

from __future__ import annotations

import itertools
import pickle
import random

import numpy as np
import pytest

from multiml import StoreGate
from multiml.agent.metric import (
    METRICS,
    ACCMetric,
    AUCMetric,
    BaseMetric,
    MSEMetric,
    RandomMetric,
    ValueMetric,
    ZeroMetric,
    accuracy,
    get_metric,
    mean_squared_error,
    mean_value,
    roc_auc,
)


def pairwise_auc(scores, labels) -> float:
    """Reference AUC by counting (positive, negative) pairs, ties counting one half."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


# ---------------------------------------------------------------------------------------
# roc_auc
# ---------------------------------------------------------------------------------------

SPEC_PRED = np.array([0.1, 0.4, 0.35, 0.8])
SPEC_TRUE = np.array([0, 0, 1, 1])


def test_roc_auc_spec_example():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: 0.35 beats 0.1 only, 0.8 beats both -> 3/4
    assert roc_auc(SPEC_PRED, SPEC_TRUE) == 0.75


def test_roc_auc_perfect_and_inverted():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0


@pytest.mark.parametrize(
    ("pred", "true", "expected"),
    [
        # every score tied: each pair counts one half
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),
        # positives 0.5, 0.5, 0.9 vs negatives 0.2, 0.5:
        # each 0.5 -> 1 (vs 0.2) + 0.5 (tie) = 1.5, twice = 3; 0.9 -> 2. Total 5 of 6 pairs.
        ([0.2, 0.5, 0.5, 0.5, 0.9], [0, 0, 1, 1, 1], 5 / 6),
        # positives 0.3, 0.7, 0.9 vs negatives 0.3, 0.7, 0.1:
        # 0.3 -> 0.5 + 0 + 1 = 1.5; 0.7 -> 1 + 0.5 + 1 = 2.5; 0.9 -> 3. Total 7 of 9.
        ([0.3, 0.3, 0.7, 0.7, 0.1, 0.9], [1, 0, 1, 0, 0, 1], 7 / 9),
        # a tie only among negatives changes nothing: 0.6 beats 0.2, 0.2 and loses to 0.8
        ([0.2, 0.2, 0.8, 0.6], [0, 0, 0, 1], 2 / 3),
    ],
)
def test_roc_auc_ties_hand_computed(pred, true, expected):
    assert roc_auc(pred, true) == pytest.approx(expected, abs=1e-12)
    assert pairwise_auc(pred, true) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_matches_pairwise_counting_with_many_ties():
    rng = np.random.default_rng(7)
    for _ in range(20):
        scores = rng.integers(0, 5, size=40).astype(float)  # heavy ties
        labels = rng.integers(0, 2, size=40)
        labels[:2] = [0, 1]
        assert roc_auc(scores, labels) == pytest.approx(pairwise_auc(scores, labels), abs=1e-12)


def test_roc_auc_invariant_under_monotonic_transform():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=200)
    labels = (scores + rng.normal(size=200) > 0).astype(int)
    assert roc_auc(np.exp(scores), labels) == pytest.approx(roc_auc(scores, labels), abs=1e-12)


def test_roc_auc_pred_n_by_1_is_squeezed():
    assert roc_auc(SPEC_PRED[:, None], SPEC_TRUE) == 0.75


def test_roc_auc_pred_n_by_2_uses_column_1():
    pred = np.stack([1.0 - SPEC_PRED, SPEC_PRED], axis=1)
    assert roc_auc(pred, SPEC_TRUE) == 0.75
    # column 1 decides, even when the columns are not complementary: column 0 alone
    # would give 1.0 and the argmax would give yet another ranking
    pred_uncoupled = np.stack([np.array([0.0, 0.0, 1.0, 1.0]), SPEC_PRED], axis=1)
    assert roc_auc(pred_uncoupled, SPEC_TRUE) == 0.75


@pytest.mark.parametrize(
    "true",
    [
        SPEC_TRUE,
        SPEC_TRUE[:, None],
        np.eye(2)[SPEC_TRUE],  # one-hot (N, 2)
        SPEC_TRUE.astype(bool),
        SPEC_TRUE.astype(float),
    ],
    ids=["labels", "labels-n1", "onehot", "bool", "float"],
)
def test_roc_auc_true_shapes(true):
    assert roc_auc(SPEC_PRED, true) == 0.75


def test_roc_auc_single_class_is_an_error():
    with pytest.raises(ValueError, match="only one class"):
        roc_auc([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match="only one class"):
        roc_auc([0.1, 0.2, 0.3], [0, 0, 0])


def test_roc_auc_unsupported_pred_shape_names_shape_and_allowed():
    with pytest.raises(ValueError, match=r"\(4, 3\).*allowed: \(N,\), \(N, 1\), or \(N, 2\)"):
        roc_auc(np.zeros((4, 3)), SPEC_TRUE)
    with pytest.raises(ValueError, match=r"\(4, 2, 1\)"):
        roc_auc(np.zeros((4, 2, 1)), SPEC_TRUE)


def test_roc_auc_bad_truth():
    with pytest.raises(ValueError, match=r"must be 0 or 1.*found 2$"):
        roc_auc(SPEC_PRED, [0, 2, 1, 1])
    with pytest.raises(ValueError, match=r"true has shape \(4, 3\)"):
        roc_auc(SPEC_PRED, np.zeros((4, 3)))


def test_roc_auc_length_mismatch_and_nan():
    with pytest.raises(ValueError, match=r"different numbers of rows \(4 vs 3"):
        roc_auc(SPEC_PRED, [0, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0.1, np.nan, 0.3, 0.4], SPEC_TRUE)


# ---------------------------------------------------------------------------------------
# accuracy, mean_squared_error, mean_value
# ---------------------------------------------------------------------------------------


def test_accuracy_1d_labels():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    assert accuracy(np.array([1.0, 0.0]), np.array([1, 1])) == 0.5  # integer-valued floats


def test_accuracy_2d_pred_is_argmaxed():
    pred = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    # argmax -> [0, 1, 2, 0]
    assert accuracy(pred, [0, 1, 2, 2]) == 0.75
    assert accuracy(pred, np.eye(3)[[0, 1, 1, 0]]) == 0.75  # one-hot true, argmax [0,1,1,0]


def test_accuracy_single_column_is_labels_not_argmax():
    # the argmax of one column is always 0; a (N, 1) array is read as labels instead
    assert accuracy(np.array([[1], [0], [1]]), np.array([[1], [1], [1]])) == pytest.approx(2 / 3)


def test_accuracy_rejects_probabilities_given_as_labels():
    with pytest.raises(ValueError, match=r"non-integer values \(e\.g\. 0\.7\)"):
        accuracy([0.7, 0.2], [1, 0])


def test_accuracy_errors():
    with pytest.raises(ValueError, match=r"different numbers of rows \(3 vs 2"):
        accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match=r"pred has shape \(2, 2, 2\); allowed"):
        accuracy(np.zeros((2, 2, 2)), [0, 1])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])


def test_mean_squared_error_values():
    assert mean_squared_error([1.0, 2.0, 3.0], [1.0, 0.0, 5.0]) == pytest.approx(8 / 3)
    # (1 + 4 + 9 + 16) / 4
    assert mean_squared_error([[1.0, 2.0], [3.0, 4.0]], np.zeros((2, 2))) == 7.5


def test_mean_squared_error_never_broadcasts_n1_against_n():
    pred = np.array([[1.0], [2.0], [3.0]])
    true = np.array([1.0, 0.0, 5.0])
    assert mean_squared_error(pred, true) == pytest.approx(8 / 3)  # (N, N) would give 6.0


def test_mean_squared_error_shape_mismatch():
    with pytest.raises(ValueError, match=r"pred has shape \(2, 2\) but true has shape \(2,\)"):
        mean_squared_error(np.zeros((2, 2)), np.zeros(2))


def test_mean_value():
    assert mean_value([1.0, 2.0, 6.0]) == 3.0
    assert mean_value(np.array([[1, 2], [3, 6]])) == 3.0
    with pytest.raises(ValueError, match="empty"):
        mean_value([])


def test_array_functions_return_python_floats():
    values = [
        roc_auc(SPEC_PRED, SPEC_TRUE),
        accuracy([0, 1], [0, 1]),
        mean_squared_error([1.0], [0.0]),
        mean_value(np.array([2], dtype=np.float32)),
    ]
    assert all(type(v) is float for v in values)


# ---------------------------------------------------------------------------------------
# Classes, construction and name lookup
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "name", "metric_type"),
    [
        (ZeroMetric, "zero", "min"),
        (RandomMetric, "random", "min"),
        (ValueMetric, "value", "min"),
        (MSEMetric, "mse", "min"),
        (ACCMetric, "acc", "max"),
        (AUCMetric, "auc", "max"),
    ],
)
def test_names_types_and_registry(cls, name, metric_type):
    assert cls.name == name
    assert cls.type == metric_type
    assert METRICS[name] is cls
    assert isinstance(cls(), BaseMetric)


def test_registry_holds_exactly_the_six_metrics():
    assert set(METRICS) == {"zero", "random", "value", "mse", "acc", "auc"}


@pytest.mark.parametrize("name", ["ACC", "acc", "Acc", "ACCMetric", "accmetric", " acc "])
def test_get_metric_accepts_names_and_class_names(name):
    metric = get_metric(name, phase="valid", var_names="y_pred y_true")
    assert type(metric) is ACCMetric
    assert (metric.phase, metric.pred_var_name, metric.true_var_name) == (
        "valid",
        "y_pred",
        "y_true",
    )


@pytest.mark.parametrize("cls", list(METRICS.values()))
def test_get_metric_finds_every_metric_by_name_and_class_name(cls):
    assert type(get_metric(cls.name.upper())) is cls
    assert type(get_metric(cls.__name__)) is cls


def test_get_metric_unknown_name_lists_known_names():
    known = "acc, auc, mse, random, value, zero"
    with pytest.raises(ValueError, match=rf"unknown metric 'f1'; known metrics: {known}"):
        get_metric("f1")
    with pytest.raises(TypeError, match="must be a str"):
        get_metric(ACCMetric)


def test_get_metric_forwards_args():
    metric = get_metric("random", seed=5)
    assert metric.calculate() == RandomMetric(seed=5).calculate()
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        get_metric("acc", bogus=1)


def test_var_names_shortcut():
    metric = MSEMetric(var_names="out label")
    assert (metric.pred_var_name, metric.true_var_name) == ("out", "label")
    metric = MSEMetric(var_names=["out", "label"], pred_var_name="ignored")
    assert (metric.pred_var_name, metric.true_var_name) == ("out", "label")
    defaults = MSEMetric()
    assert (defaults.pred_var_name, defaults.true_var_name) == ("pred", "true")
    assert (defaults.phase, defaults.data_id, defaults.storegate) == ("test", None, None)


def test_constructor_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"var_names must name exactly two.*'a b c'"):
        ACCMetric(var_names="a b c")
    with pytest.raises(ValueError, match=r"phase must be one of .*'train'.*'all'.*'tset'"):
        ACCMetric(phase="tset")
    with pytest.raises(TypeError, match=r"pred_var_name must be .*\['a', 'b'\]"):
        ACCMetric(pred_var_name=["a", "b"])
    with pytest.raises(TypeError, match="data_id must be a str"):
        ACCMetric(data_id=3)


def test_base_metric_is_abstract_and_subclass_type_is_checked():
    with pytest.raises(TypeError):
        BaseMetric()
    with pytest.raises(TypeError, match=r"type must be one of \('min', 'max'\), got 'maximize'"):

        class _Bad(BaseMetric):  # pragma: no cover - the class statement itself fails
            type = "maximize"

            def compute(self, pred, true):
                return 0.0


def test_metrics_without_inputs_need_no_storegate():
    assert ZeroMetric().calculate() == 0.0
    assert type(ZeroMetric().calculate()) is float
    assert 0.0 <= RandomMetric(seed=1).calculate() < 1.0


def test_metric_needing_data_without_storegate_says_so():
    with pytest.raises(ValueError, match="ACCMetric has no storegate"):
        ACCMetric().calculate()


def test_random_metric_is_reproducible_and_leaves_global_rng_alone():
    # advance the global generators first, so that a metric re-seeding them to any fixed
    # seed (as earlier metrics in this run would have) cannot leave them looking unchanged
    np.random.random()
    random.random()
    np_state = np.random.get_state()
    py_state = random.getstate()
    first = RandomMetric(seed=42)
    seq = [first.calculate() for _ in range(5)]
    second = RandomMetric(seed=42)
    assert [second.calculate() for _ in range(5)] == seq
    assert len(set(seq)) == 5
    assert all(0.0 <= v < 1.0 for v in seq)
    assert RandomMetric(seed=43).calculate() != seq[0]
    assert RandomMetric().calculate() != RandomMetric().calculate()  # unseeded: fresh entropy
    after = np.random.get_state()
    assert after[0] == np_state[0]
    np.testing.assert_array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]
    assert random.getstate() == py_state


def test_random_metric_sequence_survives_pickling():
    metric = RandomMetric(seed=11)
    metric.calculate()
    clone = pickle.loads(pickle.dumps(metric))
    assert clone.calculate() == metric.calculate()
    assert "seed=11" in repr(clone)


# ---------------------------------------------------------------------------------------
# Reading from a StoreGate
# ---------------------------------------------------------------------------------------


def make_store(data_id: str = "ds") -> StoreGate:
    """Binary classification data in all three phases, 4 rows each, compiled."""
    sg = StoreGate(backend="numpy", data_id=data_id)
    for phase in ("train", "valid", "test"):
        sg.add_data("pred", SPEC_PRED.copy(), phase=phase)
        sg.add_data("true", SPEC_TRUE.copy(), phase=phase)
    sg.compile()
    return sg


def test_calculate_reads_the_store_and_returns_float():
    sg = make_store()
    value = AUCMetric(storegate=sg).calculate()
    assert value == 0.75
    assert type(value) is float


def test_storegate_can_be_attached_later():
    metric = ACCMetric(var_names="label label")
    sg = StoreGate(backend="numpy", data_id="ds")
    sg.add_data("label", np.array([0, 1, 2]), phase="test")
    sg.compile()
    metric.storegate = sg
    assert metric.calculate() == 1.0


def test_phase_selects_the_data():
    sg = StoreGate(backend="numpy", data_id="ds")
    sg.add_data("pred", np.array([1.0, 1.0]), phase="train")
    sg.add_data("true", np.array([0.0, 0.0]), phase="train")
    sg.add_data("pred", np.array([3.0]), phase="valid")
    sg.add_data("true", np.array([0.0]), phase="valid")
    sg.add_data("pred", np.array([0.0, 2.0]), phase="test")
    sg.add_data("true", np.array([0.0, 0.0]), phase="test")
    sg.compile()
    assert MSEMetric(storegate=sg, phase="train").calculate() == 1.0
    assert MSEMetric(storegate=sg, phase="valid").calculate() == 9.0
    assert MSEMetric(storegate=sg).calculate() == 2.0  # default phase is test
    assert MSEMetric(storegate=sg, phase="all").calculate() == pytest.approx((2 + 9 + 4) / 5)


@pytest.mark.parametrize(
    "pred",
    [SPEC_PRED, SPEC_PRED[:, None], np.stack([1 - SPEC_PRED, SPEC_PRED], axis=1)],
    ids=["n", "n1", "n2"],
)
def test_auc_metric_with_each_pred_shape_in_the_store(pred):
    sg = StoreGate(backend="numpy", data_id="ds")
    sg.add_data("score", pred, phase="test")
    sg.add_data("label", np.eye(2)[SPEC_TRUE], phase="test")
    sg.compile()
    assert AUCMetric(storegate=sg, var_names="score label").calculate() == 0.75


def test_active_mask_drops_rows():
    sg = StoreGate(backend="numpy", data_id="ds")
    pred = np.array([0.1, 0.4, 0.35, 0.8, 0.95])
    true = np.array([0, 0, 1, 1, 0])
    sg.add_data("pred", pred, phase="test")
    sg.add_data("true", true, phase="test")
    sg.compile(reset=True)
    # all active: positives 0.35, 0.8 vs negatives 0.1, 0.4, 0.95 -> (1 + 2) / 6
    assert AUCMetric(storegate=sg).calculate() == pytest.approx(0.5)
    sg.update_data("active", np.array([1, 1, 1, 1, 0]), phase="test")
    # the spec example remains: 0.35 beats 0.1; 0.8 beats 0.1 and 0.4 -> 3/4
    assert AUCMetric(storegate=sg).calculate() == 0.75
    assert ValueMetric(storegate=sg).calculate() == pytest.approx((0.1 + 0.4 + 0.35 + 0.8) / 4)
    assert MSEMetric(storegate=sg).calculate() == pytest.approx(np.mean((pred[:4] - true[:4]) ** 2))


def test_active_mask_with_phase_all():
    sg = make_store()
    sg.compile(reset=True)
    sg.update_data("active", np.array([0, 0, 0, 0]), phase="train")
    sg.update_data("active", np.array([1, 1, 0, 0]), phase="valid")
    # valid keeps [0.1, 0.4], test keeps all four -> mean of six values
    expected = (0.1 + 0.4 + SPEC_PRED.sum()) / 6
    assert ValueMetric(storegate=sg, phase="all").calculate() == pytest.approx(expected)


def test_no_active_rows_is_an_error():
    sg = make_store()
    sg.compile(reset=True)
    sg.update_data("active", np.zeros(4, dtype=int), phase="test")
    with pytest.raises(ValueError, match=r"no rows to evaluate in phase 'test'.*all 4 rows"):
        ACCMetric(storegate=sg, var_names="true true").calculate()


def test_empty_phase_is_an_error():
    sg = StoreGate(backend="numpy", data_id="ds")
    sg.add_data("pred", np.zeros(0), phase="test")
    sg.add_data("true", np.zeros(0), phase="test")
    sg.compile()
    with pytest.raises(ValueError, match=r"no rows to evaluate in phase 'test'.*'pred' is empty"):
        MSEMetric(storegate=sg).calculate()


def test_value_metric_is_the_mean_of_pred_and_needs_no_truth():
    sg = StoreGate(backend="numpy", data_id="ds")
    sg.add_data("loss", np.array([[0.5, 1.5], [2.0, 4.0]]), phase="valid")
    sg.compile()
    metric = ValueMetric(storegate=sg, pred_var_name="loss", phase="valid")
    assert metric.calculate() == 2.0  # no 'true' variable exists, and none is read


def test_data_id_is_used_and_restored():
    sg = StoreGate(backend="numpy", data_id="first")
    sg.add_data("pred", np.array([1.0, 1.0]), phase="test")
    sg.add_data("true", np.array([1.0, 1.0]), phase="test")
    sg.compile()
    sg.set_data_id("second")
    sg.add_data("pred", np.array([3.0, 1.0]), phase="test")
    sg.add_data("true", np.array([1.0, 1.0]), phase="test")
    sg.compile()
    sg.set_data_id("first")

    assert MSEMetric(storegate=sg, data_id="second").calculate() == 2.0
    assert sg.data_id == "first"
    assert MSEMetric(storegate=sg).calculate() == 0.0  # current data_id when None

    # a failed read restores the data_id too
    with pytest.raises(KeyError):
        MSEMetric(storegate=sg, data_id="second", pred_var_name="missing").calculate()
    assert sg.data_id == "first"


def test_missing_variable_names_the_metric_and_variable():
    sg = make_store()
    with pytest.raises(KeyError, match=r"ACCMetric \(true\) cannot read 'label'.*'test'"):
        ACCMetric(storegate=sg, true_var_name="label").calculate()


def test_metric_with_storegate_pickles():
    metric = AUCMetric(storegate=make_store())
    clone = pickle.loads(pickle.dumps(metric))
    assert clone.calculate() == 0.75


def test_tuple_var_names_are_read_stacked():
    sg = StoreGate(backend="numpy", data_id="ds")
    sg.add_data(("p0", "p1"), np.array([[1.0, 2.0], [3.0, 4.0]]), phase="test")
    sg.add_data(("t0", "t1"), np.zeros((2, 2)), phase="test")
    sg.compile()
    metric = MSEMetric(storegate=sg, pred_var_name=("p0", "p1"), true_var_name=("t0", "t1"))
    assert metric.calculate() == 7.5  # (1 + 4 + 9 + 16) / 4
