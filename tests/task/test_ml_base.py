"""MLBaseTask: variable names, phases, hyperparameter routing and the execute() flow."""

from __future__ import annotations

import copy
import doctest

import numpy as np
import pytest

from multiml import Hyperparameters, Saver, StoreGate
from multiml.task.basic import MLBaseTask, ml_base

W_TRUE = np.array([1.0, -2.0, 0.5])


class LeastSquares(MLBaseTask):
    """A linear least-squares model in numpy that records what the flow calls."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.calls: list = []

    def compile_model(self) -> None:
        self.calls.append("compile")
        self.ml.model = {"w": np.zeros(3)}

    def fit(self):
        self.calls.append("fit")
        x, y = self.get_input_true_data("train")
        self.ml.model["w"] = np.linalg.lstsq(x, y, rcond=None)[0]
        return {"train": [{"loss": 0.0}], "valid": []}

    def predict(self, phase="test"):
        self.calls.append(("predict", phase))
        x = self.read_vars(self.input_var_names, phase)
        pred = x @ self.ml.model["w"]
        if isinstance(self.output_var_names, list):
            return [pred, -pred]
        return pred

    def dump_model(self, extra_args=None):
        self.calls.append(("dump", self._weights_key(self._save_weights)))

    def load_model(self):
        self.calls.append(("load", self._weights_key(self._load_weights)))


@pytest.fixture
def sg():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    sg = StoreGate(data_id="lin")
    sg.add_data("x", x, phase=(0.6, 0.2, 0.2))
    sg.add_data("y", x @ W_TRUE, phase=(0.6, 0.2, 0.2))
    sg.compile()
    return sg


def _ids(task, task_id="step0", subtask_id="lsq"):
    task.task_id, task.subtask_id = task_id, subtask_id
    return task


# ---------------------------------------------------------------- var names
def test_var_names_shortcut():
    task = MLBaseTask(var_names="x pred label")
    assert (task.input_var_names, task.output_var_names, task.true_var_names) == (
        "x",
        "pred",
        "label",
    )
    assert task.save_var_names == "pred" and task.pred_var_names == "pred"


def test_var_names_shortcut_with_lists():
    task = MLBaseTask(var_names="x0,x1 p0,p1 t0,t1,")
    assert task.input_var_names == ["x0", "x1"]
    assert task.output_var_names == ["p0", "p1"]
    assert task.true_var_names == ["t0", "t1"]


@pytest.mark.parametrize("spec", ["x pred", "x pred label extra", ""])
def test_var_names_shortcut_needs_three_entries(spec):
    with pytest.raises(ValueError, match="input output true"):
        MLBaseTask(var_names=spec)


@pytest.mark.parametrize("key", ["input_var_names", "output_var_names", "true_var_names"])
def test_var_names_shortcut_clashing_with_explicit_names_is_an_error(key):
    with pytest.raises(ValueError, match=key):
        MLBaseTask(var_names="x pred label", **{key: "other"})
    assert MLBaseTask(var_names="x pred label", **{key: None}).input_var_names == "x"


def test_var_name_arguments_keep_tuples_and_split_commas():
    task = MLBaseTask(
        input_var_names=("a", "b"),
        output_var_names="p,q",
        save_var_names=["q"],
        pred_var_names="p",
        true_var_names=["t"],
    )
    assert task.input_var_names == ("a", "b")
    assert task.output_var_names == ["p", "q"]
    assert task.save_var_names == ["q"]
    assert task.pred_var_names == "p"
    assert task.true_var_names == ["t"]
    task.input_var_names = "c,d"
    task.true_var_names = ("u", "v")
    assert task.input_var_names == ["c", "d"]
    assert task.true_var_names == ("u", "v")


def test_parse_and_flatten_helpers():
    assert ml_base.parse_var_names("a, b,") == ["a", "b"]
    assert ml_base.parse_var_names("a") == "a"
    assert ml_base.parse_var_names(None) is None
    assert ml_base.flatten_var_names(["a", ("b", "c"), ["d"]]) == ["a", "b", "c", "d"]
    assert ml_base.flatten_var_names(None) == []


# ------------------------------------------------------------------- phases
def test_phases_default_string_and_validation():
    assert MLBaseTask().phases == ["train", "valid", "test"]
    assert MLBaseTask(phases="test").phases == ["test"]
    with pytest.raises(ValueError) as info:
        MLBaseTask(phases=["train", "tset"])
    assert "tset" in str(info.value) and "valid" in str(info.value)
    task = MLBaseTask()
    task.phases = ["train"]
    assert task.phases == ["train"]
    with pytest.raises(ValueError):
        task.phases = ["everything"]


def test_set_hps_validates_and_normalises_like_the_setters():
    task = MLBaseTask(var_names="x pred label")
    task.set_hps({"phases": "train", "input_var_names": "a,b"})
    assert task.phases == ["train"]
    assert task.input_var_names == ["a", "b"]
    before = copy.deepcopy(vars(task))
    with pytest.raises(ValueError, match="bogus"):
        task.set_hps({"num_epochs": 99, "phases": ["bogus"]})
    assert vars(task).keys() == before.keys()
    assert task.num_epochs == 10 and task.phases == ["train"]


# ----------------------------------------------------------------- routing
@pytest.mark.parametrize("prefix", ["model", "optimizer", "scheduler", "loss"])
def test_set_hps_routes_prefixed_keys_into_args(prefix):
    task = MLBaseTask(**{f"{prefix}_args": {"keep": 1}})
    result = task.set_hps({f"{prefix}__lr": 0.5})
    assert result == {f"{prefix}__lr": 0.5}
    assert getattr(task, f"{prefix}_args") == {"keep": 1, "lr": 0.5}
    task.reset_hps()
    assert getattr(task, f"{prefix}_args") == {"keep": 1}


def test_routed_sub_key_keeps_further_double_underscores():
    task = MLBaseTask()
    task.set_hps({"model__clf__C": 10.0})
    assert task.model_args == {"clf__C": 10.0}


def test_unknown_prefix_lists_routed_prefixes():
    task = MLBaseTask()
    with pytest.raises(KeyError) as info:
        task.set_hps({"optimiser__lr": 0.1})
    message = str(info.value)
    assert "'optimiser__lr'" in message
    for routed in ("model__<arg>", "optimizer__<arg>", "scheduler__<arg>", "loss__<arg>"):
        assert routed in message
    assert "num_epochs" in message


def test_reset_hps_restores_args_dicts_and_never_mutates_the_callers_dict():
    model_args = {"layers": [4, 2], "act": "ReLU"}
    task = MLBaseTask(model_args=model_args, optimizer_args={"lr": 0.1})
    task.set_hps({"model__layers": [4, 8, 2], "model__dropout": 0.1, "optimizer__lr": 1.0})
    task.set_hps({"model__act": "Tanh", "num_epochs": 3})
    assert task.model_args == {"layers": [4, 8, 2], "act": "Tanh", "dropout": 0.1}
    assert model_args == {"layers": [4, 2], "act": "ReLU"}
    task.reset_hps()
    assert task.model_args == {"layers": [4, 2], "act": "ReLU"}
    assert task.optimizer_args == {"lr": 0.1}
    assert task.num_epochs == 10
    assert model_args == {"layers": [4, 2], "act": "ReLU"}


def test_whole_args_dict_from_a_grid_is_copied_before_routing():
    grid = Hyperparameters({"model_args": [{"layers": [4, 2]}], "model__act": ["Tanh"]})
    task = MLBaseTask(model_args={"layers": [1, 1]})
    task.set_hps(grid[0])  # replaces model_args, then routes model__act into it
    assert task.model_args == {"layers": [4, 2], "act": "Tanh"}
    assert grid[0]["model_args"] == {"layers": [4, 2]}  # the grid is untouched
    task.reset_hps()
    assert task.model_args == {"layers": [1, 1]}


@pytest.mark.parametrize("value", [[1, 2], "layers=3", 5])
def test_whole_args_must_be_a_dict(value):
    task = MLBaseTask(model_args={"a": 1})
    with pytest.raises(TypeError, match="model_args"):
        task.set_hps({"num_epochs": 1, "model_args": value})
    assert task.model_args == {"a": 1} and task.num_epochs == 10
    task.set_hps({"model_args": None})
    assert task.model_args == {}


def test_saver_reference_in_a_routed_key():
    saver = Saver(mode="dict")
    saver["step0"] = {"subtask_id": "kbest", "model__k": 3}
    task = MLBaseTask(saver=saver, model_args={"layers": [8, 2]})
    result = task.set_hps({"model__input_shape": "saver__step0__model__k"})
    assert result == {"model__input_shape": 3}
    assert task.model_args == {"layers": [8, 2], "input_shape": 3}
    assert task.resolved_hps == {"model__input_shape": 3}


# ------------------------------------------------------------------- execute
@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        (None, ["compile", "fit", ("predict", "train"), ("predict", "valid"), ("predict", "test")]),
        (["train", "valid"], ["compile", "fit"]),
        (["test"], ["compile", ("predict", "train"), ("predict", "valid"), ("predict", "test")]),
    ],
)
def test_execute_flow_follows_the_phases(sg, phases, expected):
    task = LeastSquares(storegate=sg, var_names="x pred y", phases=phases)
    task.execute()
    assert task.calls == expected
    if "test" in (phases or ["test"]):
        assert "pred" in sg.get_var_names("test")
    else:
        assert "pred" not in sg.get_var_names("all")


def test_execute_loads_then_fits_then_dumps_then_predicts(sg):
    task = LeastSquares(
        storegate=sg, var_names="x pred y", save_weights=True, load_weights="pretrained"
    )
    _ids(task).job_id = 4
    task.execute()
    assert task.calls[:4] == ["compile", ("load", "pretrained"), "fit", ("dump", "step0_lsq_job4")]
    task = LeastSquares(storegate=sg, var_names="x pred y", save_weights="mykey")
    task.execute()
    assert ("dump", "mykey") in task.calls


def test_predictions_are_written_back_row_by_row_in_every_phase(sg):
    task = LeastSquares(storegate=sg, var_names="x pred y")
    task.execute()
    for phase in ("train", "valid", "test"):
        np.testing.assert_allclose(sg.get_data("pred", phase), sg.get_data("y", phase))
    assert task.history == {"train": [{"loss": 0.0}], "valid": []}


def test_save_var_names_picks_outputs_to_write(sg):
    task = LeastSquares(
        storegate=sg,
        input_var_names="x",
        output_var_names=["pos", "neg"],
        save_var_names=["neg"],
        true_var_names="y",
    )
    task.execute()
    assert "pos" not in sg.get_var_names("test")
    np.testing.assert_allclose(sg.get_data("neg", "valid"), -sg.get_data("y", "valid"))


def test_predict_update_without_outputs_is_a_clear_error(sg):
    task = LeastSquares(storegate=sg, input_var_names="x", true_var_names="y")
    with pytest.raises(ValueError, match="output_var_names"):
        task.execute()


def test_missing_variable_error_names_step_subtask_variable_phase_and_store(sg):
    task = _ids(LeastSquares(storegate=sg, var_names="x_scaled pred y"))
    with pytest.raises(KeyError) as info:
        task.execute()
    message = str(info.value)
    for part in ("'step0'", "'lsq'", "x_scaled", "'train'", "'x'", "'y'", "data_id='lin'"):
        assert part in message
    assert task.calls == []  # nothing was built


def test_targets_are_not_needed_in_the_test_phase():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    sg = StoreGate(data_id="unlabelled_test")
    sg.add_data("x", x[:30], phase="train")
    sg.add_data("y", x[:30] @ W_TRUE, phase="train")
    sg.add_data("x", x[30:], phase="test")  # no labels, and no valid phase at all
    sg.compile()
    task = LeastSquares(storegate=sg, var_names="x pred y")
    task.execute()
    np.testing.assert_allclose(sg.get_data("pred", "test"), x[30:] @ W_TRUE)
    assert ("predict", "valid") not in task.calls


def test_read_vars_accepts_tuples_inside_lists(sg):
    sg.add_data("z", 2 * sg.get_data("x", "valid"), phase="valid")
    sg.compile()
    task = MLBaseTask(storegate=sg)
    x, stacked = task.read_vars(["x", ("x", "z")], "valid")
    assert x.shape == (10, 3) and stacked.shape == (10, 2, 3)
    np.testing.assert_array_equal(stacked[:, 0], x)
    np.testing.assert_array_equal(stacked[:, 1], 2 * x)


def test_base_class_needs_a_framework():
    task = MLBaseTask()
    with pytest.raises(NotImplementedError):
        task.fit()
    with pytest.raises(NotImplementedError):
        task.predict()
    with pytest.raises(NotImplementedError):
        task.load_model()
    with pytest.raises(ValueError, match="no saver"):
        task.dump_model()


def test_module_doctests():
    assert doctest.testmod(ml_base).failed == 0
