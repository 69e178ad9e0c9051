"""SklearnPipelineTask against real scikit-learn on iris."""

from __future__ import annotations

import doctest
import pickle
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_iris
from sklearn.decomposition import PCA
from sklearn.feature_selection import SelectKBest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import multiml.task.basic.sklearn_pipeline as sklearn_pipeline
from multiml import StoreGate
from multiml.task import SklearnPipelineTask

PHASES = ("train", "valid", "test")
SPLIT = (0.6, 0.2, 0.2)
SEED = 7


@pytest.fixture(scope="module")
def iris():
    data = load_iris()
    return data.data, data.target


@pytest.fixture
def sg(iris):
    x, y = iris
    store = StoreGate(data_id="iris")
    store.add_data("x", x, phase=SPLIT, shuffle=SEED)
    store.add_data("label", y, phase=SPLIT, shuffle=SEED)
    store.compile()
    return store


def phase_data(sg, name):
    return {phase: np.array(sg.get_data(name, phase)) for phase in PHASES}


def make_task(sg, **kwargs):
    kwargs.setdefault("input_var_names", "x")
    kwargs.setdefault("output_var_names", "feat")
    return SklearnPipelineTask(storegate=sg, **kwargs)


# ------------------------------------------------------------------ transformers
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_select_k_best_matches_sklearn(sg, k):
    xs, ys = phase_data(sg, "x"), phase_data(sg, "label")
    reference = SelectKBest(k=k).fit(xs["train"], ys["train"])
    task = make_task(sg, model="SelectKBest", true_var_names="label")
    task.set_hps({"model__k": k})
    task.execute()

    support = task.ml.model.get_support()
    np.testing.assert_array_equal(support, reference.get_support())
    assert support.sum() == k
    for phase in PHASES:
        written = sg.get_data("feat", phase)
        assert written.shape == (len(xs[phase]), k)
        np.testing.assert_array_equal(written, xs[phase][:, support])


def test_standard_scaler_uses_train_statistics_only(sg):
    xs = phase_data(sg, "x")
    task = make_task(sg, model="StandardScaler")
    task.execute()

    mean, std = xs["train"].mean(axis=0), xs["train"].std(axis=0)
    for phase in PHASES:
        np.testing.assert_allclose(sg.get_data("feat", phase), (xs[phase] - mean) / std)
    np.testing.assert_allclose(sg.get_data("feat", "train").mean(axis=0), 0.0, atol=1e-12)
    # valid/test were not standardised with their own statistics
    assert np.abs(sg.get_data("feat", "test").mean(axis=0)).max() > 1e-3
    np.testing.assert_allclose(task.ml.model.mean_, mean)


def test_rows_stay_in_store_order(sg):
    xs = phase_data(sg, "x")
    task = make_task(sg, model="SelectKBest", model_args={"k": 4}, true_var_names="label")
    task.execute()
    for phase in PHASES:
        np.testing.assert_array_equal(sg.get_data("feat", phase), xs[phase])


# ------------------------------------------------------------------- predictors
def test_logistic_regression_predict_proba(sg):
    xs, ys = phase_data(sg, "x"), phase_data(sg, "label")
    task = make_task(
        sg,
        model="LogisticRegression",
        model_args={"max_iter": 500},
        output="predict_proba",
        output_var_names="proba",
        true_var_names="label",
    )
    task.execute()

    reference = LogisticRegression(max_iter=500).fit(xs["train"], ys["train"])
    for phase in PHASES:
        proba = sg.get_data("proba", phase)
        assert proba.shape == (len(xs[phase]), 3)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        np.testing.assert_allclose(proba, reference.predict_proba(xs[phase]), rtol=1e-6)
    accuracy = (sg.get_data("proba", "test").argmax(axis=1) == ys["test"]).mean()
    assert accuracy > 0.85


def test_auto_output_predicts_for_estimators_without_transform(sg):
    ys = phase_data(sg, "label")
    task = make_task(
        sg, model="LogisticRegression", model_args={"max_iter": 500}, true_var_names="label"
    )
    task.execute()
    assert task.ml.extras["output_method"] == "predict"
    predicted = sg.get_data("feat", "test")
    assert predicted.shape == ys["test"].shape
    assert set(np.unique(predicted)) <= {0, 1, 2}
    assert (predicted == ys["test"]).mean() > 0.85


def test_unavailable_output_is_an_error_and_changes_nothing(sg):
    before = sg.get_var_names("train")
    task = make_task(sg, model="StandardScaler", output="predict_proba")
    with pytest.raises(ValueError, match=r"output='predict_proba'.*StandardScaler.*transform"):
        task.execute()
    assert sg.get_var_names("train") == before


def test_unknown_output_mode():
    with pytest.raises(ValueError, match=r"output='proba'.*predict_proba"):
        SklearnPipelineTask(model="PCA", output="proba")


# ------------------------------------------------------- hyperparameters, re-runs
def test_hyperparameters_are_routed_and_reset_between_runs(sg):
    task = make_task(sg, model="SelectKBest", model_args={"k": 3}, true_var_names="label")
    assert task.set_hps({"model__k": 1}) == {"model__k": 1}
    task.execute()
    first = task.ml.model
    assert first.k == 1
    assert sg.get_data("feat", "valid").shape == (30, 1)

    task.reset_hps()
    assert task.model_args == {"k": 3}
    task.set_hps({})
    task.execute()
    assert task.ml.model is not first  # a fresh estimator on every compile
    assert task.ml.model.k == 3
    assert first.k == 1  # the earlier fit was not touched
    assert sg.get_data("feat", "valid").shape == (30, 3)


def test_re_execution_replaces_outputs(sg):
    sizes = sg.get_metadata()["sizes"]
    task = make_task(sg, model="SelectKBest", true_var_names="label")
    for k in (4, 2, 2):
        task.reset_hps()
        task.set_hps({"model__k": k})
        task.execute()
        meta = sg.get_metadata()
        assert meta["compiled"]
        assert meta["sizes"] == sizes
        for phase in PHASES:
            assert meta["vars"][phase]["feat"]["shape"] == (sizes[phase], k)


def test_unknown_model_parameter_names_the_key(sg):
    task = make_task(sg, model="PCA")
    task.set_hps({"model__bogus__x": 3})
    with pytest.raises(ValueError, match=r"model__bogus__x.*PCA"):
        task.execute()
    assert "feat" not in sg.get_var_names("train")


def test_hyperparameter_key_that_is_no_setting_is_rejected():
    task = SklearnPipelineTask(model="PCA")
    with pytest.raises(KeyError, match="nonsense"):
        task.set_hps({"nonsense": 1})


# --------------------------------------------------------------- model specs
def test_model_by_dotted_path_and_class(sg):
    for model in ("sklearn.decomposition.PCA", PCA):
        task = make_task(sg, model=model, model_args={"n_components": 2})
        task.execute()
        assert isinstance(task.ml.model, PCA)
        assert sg.get_data("feat", "test").shape == (30, 2)


def test_unknown_name_suggests_close_matches():
    task = SklearnPipelineTask(model="SelectKBst")
    with pytest.raises(ValueError, match=r"'SelectKBst'.*did you mean.*SelectKBest"):
        task.compile()


def test_instance_is_cloned_never_fitted(sg):
    scaler = StandardScaler(with_std=False)
    task = make_task(sg, model=scaler)
    task.execute()
    assert not hasattr(scaler, "mean_")
    assert task.ml.model is not scaler
    assert task.ml.model.with_std is False
    np.testing.assert_allclose(sg.get_data("feat", "train").mean(axis=0), 0.0, atol=1e-12)


def test_instance_with_model_args_uses_set_params(sg):
    task = make_task(sg, model=PCA(n_components=3), model_args={"n_components": 1})
    task.execute()
    assert task.ml.model.n_components == 1
    assert sg.get_data("feat", "train").shape == (90, 1)


def test_pipeline_with_nested_hyperparameters(sg):
    xs = phase_data(sg, "x")
    pipe = Pipeline([("scale", StandardScaler()), ("pca", PCA())])
    task = make_task(sg, model=pipe, output_var_names=("pc0", "pc1"))
    task.set_hps({"model__pca__n_components": 2})
    task.execute()

    assert not hasattr(pipe.named_steps["scale"], "mean_")
    reference = Pipeline([("scale", StandardScaler()), ("pca", PCA(n_components=2))])
    expected = reference.fit(xs["train"]).transform(xs["test"])
    np.testing.assert_allclose(sg.get_data("pc0", "test"), expected[:, 0], atol=1e-10)
    np.testing.assert_allclose(sg.get_data("pc1", "test"), expected[:, 1], atol=1e-10)


def test_class_with_required_estimator_argument(sg):
    base = LogisticRegression(max_iter=500)
    task = make_task(
        sg,
        model="SelectFromModel",
        model_args={"estimator": base, "max_features": 2, "threshold": -np.inf},
        true_var_names="label",
    )
    task.execute()
    assert not hasattr(base, "coef_")  # the argument estimator was cloned, not fitted
    assert sg.get_data("feat", "valid").shape == (30, 2)


def test_model_not_set():
    with pytest.raises(ValueError, match="model is not set"):
        SklearnPipelineTask().compile()


# -------------------------------------------------------------------- inputs
def test_multidimensional_and_stacked_inputs_are_flattened():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 2, 3))
    b = rng.normal(size=(40, 2, 3))
    c = rng.normal(size=40)
    store = StoreGate()
    for name, array in (("a", a), ("b", b), ("c", c)):
        store.add_data(name, array, phase=(20, 10, 10))
    store.compile()

    cases = [
        ("a", a.reshape(40, 6)),
        (("a", "b"), np.stack([a, b], axis=1).reshape(40, 12)),
        (["a", "c"], np.hstack([a.reshape(40, 6), c[:, None]])),
    ]
    for inputs, matrix in cases:
        task = SklearnPipelineTask(
            storegate=store, model="StandardScaler", input_var_names=inputs, output_var_names="z"
        )
        task.execute()
        mean, std = matrix[:20].mean(axis=0), matrix[:20].std(axis=0)
        assert store.get_data("z", "train").shape == (20, matrix.shape[1])
        np.testing.assert_allclose(store.get_data("z", "test"), (matrix[30:] - mean) / std)


def test_supervised_transformer_without_targets_explains(sg):
    task = make_task(sg, model="SelectKBest", model_args={"k": 2})
    with pytest.raises((TypeError, ValueError)) as info:
        task.execute()
    assert "true_var_names" in "\n".join(getattr(info.value, "__notes__", []))


def test_fit_and_predict_on_given_arrays(sg):
    xs, ys = phase_data(sg, "x"), phase_data(sg, "label")
    task = SklearnPipelineTask(model="SelectKBest", model_args={"k": 2})
    task.compile()
    history = task.fit(train_data=(xs["train"], ys["train"]))
    assert history["train"][0]["num_samples"] == 90
    assert history["valid"] == []
    reference = SelectKBest(k=2).fit(xs["train"], ys["train"])
    np.testing.assert_array_equal(task.predict(data=xs["test"]), reference.transform(xs["test"]))


# --------------------------------------------------------------- phases, errors
def test_without_test_phase_nothing_is_written(sg):
    task = make_task(sg, model="StandardScaler", phases=["train"])
    task.execute()
    assert "feat" not in sg.get_var_names("train")
    assert hasattr(task.ml.model, "mean_")
    assert task.history["train"][0]["num_samples"] == 90


def test_predict_before_fit_is_an_error(sg):
    task = make_task(sg, model="StandardScaler", phases=["test"])
    with pytest.raises(RuntimeError, match="not fitted"):
        task.execute()
    with pytest.raises(RuntimeError, match="compile"):
        SklearnPipelineTask(model="PCA").predict()


def test_predict_update_of_selected_phases(sg):
    xs = phase_data(sg, "x")
    mean, std = xs["train"].mean(axis=0), xs["train"].std(axis=0)
    task = make_task(sg, model="StandardScaler", phases=["train"])
    task.execute()
    task.predict_update(phases=["valid"])
    assert "feat" not in sg.get_var_names("train")
    np.testing.assert_allclose(sg.get_data("feat", "valid"), (xs["valid"] - mean) / std)
    task.predict_update(phases=["train", "valid"])
    assert sg.get_metadata()["vars"]["valid"]["feat"]["shape"] == (30, 4)  # replaced
    np.testing.assert_allclose(sg.get_data("feat", "train"), (xs["train"] - mean) / std)


def test_store_without_valid_phase():
    x = np.random.default_rng(0).normal(size=(10, 3))
    store = StoreGate()
    store.add_data("x", x, phase=(6, 0, 4))
    store.compile()
    task = SklearnPipelineTask(
        storegate=store,
        model="PCA",
        model_args={"n_components": 2},
        input_var_names="x",
        output_var_names="z",
    )
    task.execute()
    shapes = {p: v.get("z", {}).get("shape") for p, v in store.get_metadata()["vars"].items()}
    assert shapes == {"train": (6, 2), "valid": None, "test": (4, 2)}
    reference = PCA(n_components=2).fit(x[:6])
    np.testing.assert_allclose(store.get_data("z", "test"), reference.transform(x[6:]))


def test_fitted_task_pickles(sg):
    task = make_task(sg, model="SelectKBest", model_args={"k": 2}, true_var_names="label")
    task.execute()
    clone = pickle.loads(pickle.dumps(task))
    np.testing.assert_array_equal(clone.predict("test"), task.predict("test"))
    np.testing.assert_array_equal(clone.ml.model.get_support(), task.ml.model.get_support())


@pytest.mark.parametrize("setting", ["save_weights", "load_weights"])
def test_weights_are_rejected(sg, setting):
    with pytest.raises(ValueError, match=rf"{setting}=True is not supported"):
        SklearnPipelineTask(model="PCA", **{setting: True})
    task = make_task(sg, model="PCA")
    task.set_hps({setting: "key"})
    with pytest.raises(ValueError, match=setting):
        task.execute()
    assert "feat" not in sg.get_var_names("train")


def test_torch_settings_are_rejected():
    with pytest.raises(ValueError, match="optimizer='Adam' does not apply"):
        SklearnPipelineTask(model="PCA", optimizer="Adam")


def test_list_of_several_outputs_is_rejected():
    with pytest.raises(ValueError, match="produces one array"):
        SklearnPipelineTask(model="PCA", output_var_names=["a", "b"])


# --------------------------------------------------------------- optional sklearn
def test_missing_sklearn_raises_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.base", None)
    with pytest.raises(ImportError, match=r"pip install 'multiml\[sklearn\]'"):
        SklearnPipelineTask(model="PCA")


def test_task_used_after_sklearn_disappears(monkeypatch):
    task = SklearnPipelineTask(model="PCA")
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.base", None)
    with pytest.raises(ImportError, match=r"multiml\[sklearn\]"):
        task.compile()


def test_packages_import_without_sklearn():
    code = (
        "import sys\n"
        "sys.modules['sklearn'] = None\n"
        "import multiml, multiml.task, multiml.task.basic\n"
        "from multiml.task import SklearnPipelineTask\n"
        "try:\n"
        "    SklearnPipelineTask(model='PCA')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'multiml[sklearn]'" in out.stdout


# ------------------------------------------------------------------ agents
def test_grid_search_over_sklearn_steps(sg):
    from multiml import Saver
    from multiml.agent import GridSearchAgent

    select = SklearnPipelineTask(
        model="SelectKBest", input_var_names="x", output_var_names="x_sel", true_var_names="label"
    )
    classify = SklearnPipelineTask(
        model="LogisticRegression",
        model_args={"max_iter": 500},
        output="predict_proba",
        input_var_names="x_sel",
        output_var_names="pred",
        true_var_names="label",
    )
    saver = Saver(mode="dict")
    agent = GridSearchAgent(
        storegate=sg,
        saver=saver,
        task_scheduler=[[(select, {"model__k": [1, 4]})], [(classify, {"model__C": [0.01, 1.0]})]],
        metric="acc",
        metric_args={"var_names": "pred label"},
    )
    agent.execute()
    agent.finalize()

    assert len(agent.history) == 4
    assert [r["subtask_hps"] for r in agent.history] == [
        [{"model__k": k}, {"model__C": c}] for k in (1, 4) for c in (0.01, 1.0)
    ]
    assert agent.result["metric_value"] > 0.85
    assert saver["step0"]["model__k"] == 4  # the last combination ran k=4
    assert sg.get_data("x_sel", "test").shape == (30, 4)
    xs, ys = phase_data(sg, "x"), phase_data(sg, "label")
    for result in agent.history:
        k, c = result["subtask_hps"][0]["model__k"], result["subtask_hps"][1]["model__C"]
        selector = SelectKBest(k=k).fit(xs["train"], ys["train"])
        clf = LogisticRegression(C=c, max_iter=500).fit(
            selector.transform(xs["train"]), ys["train"]
        )
        expected = (clf.predict(selector.transform(xs["test"])) == ys["test"]).mean()
        assert result["metric_value"] == pytest.approx(expected)


def test_docstring_examples():
    result = doctest.testmod(sklearn_pipeline, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
