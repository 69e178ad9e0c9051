"""PytorchBaseTask and PytorchClassificationTask on small synthetic data."""

from __future__ import annotations

import functools
import logging
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from multiml import Saver, StoreGate
from multiml.task.pytorch import PytorchBaseTask, PytorchClassificationTask
from multiml.task.pytorch._build import build, lookup, resolve_device
from multiml.task.pytorch.modules import MLPBlock

N = 120  # 60 train, 30 valid, 30 test
SPLIT = (0.5, 0.25, 0.25)
HAS_CUDA = torch.cuda.is_available()


def _data(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 4)).astype(np.float32)
    return {
        "x": x,
        "label": (x[:, 0] + x[:, 1] > 0).astype(np.int64),
        "target": (x @ np.array([[1.0, 0.5], [-1.0, 0.0], [0.5, 2.0], [0.0, -1.0]])).astype(
            np.float32
        ),
    }


@pytest.fixture
def data() -> dict[str, np.ndarray]:
    return _data()


@pytest.fixture
def sg(data) -> StoreGate:
    sg = StoreGate(data_id="toy")
    for name, array in data.items():
        sg.add_data(name, array, phase=SPLIT)
    sg.compile()
    return sg


def make_task(sg, cls=PytorchBaseTask, **kwargs) -> PytorchBaseTask:
    args = {
        "storegate": sg,
        "var_names": "x pred label",
        "model": "MLPBlock",
        "model_args": {"layers": [4, 8, 2]},
        "optimizer": "SGD",
        "optimizer_args": {"lr": 0.1},
        "loss": "CrossEntropyLoss",
        "num_epochs": 2,
        "batch_size": 16,
        "device": "cpu",
    }
    args.update(kwargs)
    return cls(**args)


def stored(sg: StoreGate, name: str, phase: str) -> torch.Tensor:
    """A stored variable as a tensor (a copy: the store's arrays are read-only views)."""
    return torch.from_numpy(np.array(sg.get_data(name, phase)))


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def differs(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


def trained(sg, seed: int = 0, **kwargs) -> PytorchBaseTask:
    torch.manual_seed(seed)
    task = make_task(sg, **kwargs)
    task.compile()
    task.fit()
    return task


class BatchLog:
    """Forward hook recording the batches a model sees."""

    def __init__(self, model: nn.Module) -> None:
        self.inputs: list[torch.Tensor] = []
        model.register_forward_hook(self)

    def __call__(self, module, args, output) -> None:
        self.inputs.append(args[0].detach().clone())

    @property
    def sizes(self) -> list[int]:
        return [len(x) for x in self.inputs]


class TwoHeads(nn.Module):
    """Returns [class logits, regression output] from one input."""

    def __init__(self, in_features: int = 4) -> None:
        super().__init__()
        self.cls = nn.Linear(in_features, 2)
        self.reg = nn.Linear(in_features, 2)

    def forward(self, x):
        return [self.cls(x), self.reg(x)]


class SumOfInputs(nn.Module):
    """Takes a list of two (N, 4) inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, inputs):
        assert isinstance(inputs, list) and len(inputs) == 2
        return self.linear(inputs[0] + 2 * inputs[1])


class StackedInput(nn.Module):
    """Takes a (N, 2, 4) stacked input."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 2)
        self.shapes: list = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return self.linear(x.flatten(1))


def identity_linear(features: int = 4) -> nn.Linear:
    layer = nn.Linear(features, features)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(features))
        layer.bias.zero_()
    return layer


# --------------------------------------------------------------- building
@pytest.mark.parametrize(
    ("kwargs", "model_type", "opt_type", "loss_type"),
    [
        ({}, MLPBlock, torch.optim.SGD, nn.CrossEntropyLoss),
        (
            {"model": MLPBlock, "optimizer": torch.optim.Adam, "loss": nn.CrossEntropyLoss},
            MLPBlock,
            torch.optim.Adam,
            nn.CrossEntropyLoss,
        ),
        (
            {
                "model": "torch.nn.Linear",
                "model_args": {"in_features": 4, "out_features": 2},
                "optimizer": "torch.optim.AdamW",
                "loss": "torch.nn.CrossEntropyLoss",
            },
            nn.Linear,
            torch.optim.AdamW,
            nn.CrossEntropyLoss,
        ),
        (
            {
                "model": "Linear",  # falls through to torch.nn
                "model_args": {"in_features": 4, "out_features": 2},
                "optimizer": functools.partial(torch.optim.SGD, momentum=0.9),
                "loss": nn.CrossEntropyLoss(label_smoothing=0.1),
            },
            nn.Linear,
            torch.optim.SGD,
            nn.CrossEntropyLoss,
        ),
    ],
)
def test_model_optimizer_loss_by_name_class_path_partial_and_instance(
    sg, kwargs, model_type, opt_type, loss_type
):
    task = make_task(sg, **kwargs)
    task.compile()
    assert type(task.ml.model) is model_type
    assert type(task.ml.optimizer) is opt_type
    assert type(task.ml.loss) is loss_type
    assert task.ml.optimizer.param_groups[0]["lr"] == 0.1
    task.fit()


def test_loss_instance_is_copied_and_optimizer_covers_the_model(sg):
    loss = nn.CrossEntropyLoss(label_smoothing=0.2)
    task = make_task(sg, loss=loss, optimizer="SGD", optimizer_args={"lr": 0.3, "momentum": 0.5})
    task.compile()
    assert task.ml.loss is not loss and task.ml.loss.label_smoothing == 0.2
    params = {id(p) for g in task.ml.optimizer.param_groups for p in g["params"]}
    assert params == {id(p) for p in task.ml.model.parameters()}
    assert task.ml.optimizer.param_groups[0]["momentum"] == 0.5


@pytest.mark.parametrize("scheduler", ["StepLR", torch.optim.lr_scheduler.StepLR])
def test_scheduler_by_name_or_class_steps_per_epoch(sg, scheduler):
    task = make_task(
        sg,
        scheduler=scheduler,
        scheduler_args={"step_size": 1, "gamma": 0.5},
        metrics=["loss", "lr"],
        num_epochs=3,
    )
    task.compile()
    history = task.fit()
    assert [m["lr"] for m in history["train"]] == pytest.approx([0.1, 0.05, 0.025])
    assert [m["lr"] for m in history["valid"]] == pytest.approx([0.1, 0.05, 0.025])


def test_hps_route_into_model_optimizer_scheduler_and_loss(sg):
    task = make_task(sg, scheduler="StepLR", scheduler_args={"step_size": 5})
    task.set_hps(
        {
            "model__layers": [4, 16, 2],
            "optimizer__lr": 0.01,
            "scheduler__gamma": 0.25,
            "loss__label_smoothing": 0.3,
        }
    )
    task.compile()
    assert task.ml.model.layer_sizes == [4, 16, 2]
    assert task.ml.optimizer.param_groups[0]["lr"] == 0.01
    assert task.ml.scheduler.gamma == 0.25 and task.ml.scheduler.step_size == 5
    assert task.ml.loss.label_smoothing == 0.3
    task.reset_hps()
    task.compile()
    assert task.ml.model.layer_sizes == [4, 8, 2]
    assert task.ml.scheduler.gamma == 0.1  # StepLR's default


def test_model_instance_with_args_is_a_clear_error(sg):
    task = make_task(sg, model=nn.Linear(4, 2), model_args={"bias": False})
    with pytest.raises(ValueError, match=r"instance of Linear.*model_args"):
        task.compile()


def test_loss_instance_with_args_is_a_clear_error(sg):
    task = make_task(sg, loss=nn.MSELoss(), loss_args={"reduction": "sum"})
    with pytest.raises(ValueError, match="loss_args"):
        task.compile()


def test_optimizer_instance_is_a_clear_error(sg):
    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    task = make_task(sg, optimizer=optimizer, optimizer_args={})
    with pytest.raises(ValueError, match=r"name, a class or a factory.*SGD"):
        task.compile()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"model": "MLPBlok"}, r"model='MLPBlok'.*did you mean \['MLPBlock'"),
        ({"optimizer": "Adamm"}, r"optimizer='Adamm'.*'Adam'"),
        ({"scheduler": "StepLr"}, r"scheduler='StepLr'.*'StepLR'"),
        ({"loss": "CrossEntropy"}, r"loss='CrossEntropy'.*'CrossEntropyLoss'"),
        ({"model": "torch.nn.NoSuchLayer"}, r"model='torch.nn.NoSuchLayer': cannot import"),
        ({"model": "no_such_module.Model"}, r"cannot import"),
    ],
)
def test_unknown_names_are_clear_errors_with_suggestions(sg, kwargs, expected):
    # Checked when the task is built, not first when it trains...
    with pytest.raises(ValueError, match=expected):
        make_task(sg, **kwargs)
    # ...and when a hyperparameter sets one, before anything changes.
    task = make_task(sg)
    ((key, value),) = kwargs.items()
    with pytest.raises(ValueError, match=expected):
        task.set_hps({key: value})
    task.compile()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"num_epochs": "abc"}, r"num_epochs='abc': expected an int >= 0"),
        ({"batch_size": -3}, r"batch_size=-3: expected an int >= 1"),
        ({"batch_size": {"trian": 8}}, r"unknown keys \['trian'\]"),
        ({"batch_size": {"type": "equal_length"}}, r"batch_size=.*expected"),
        ({"max_patience": -1}, r"max_patience=-1"),
        ({"verbose": 3}, r"verbose=3"),
        ({"device": "gpu"}, r"device='gpu' is not a device"),
    ],
)
def test_bad_settings_are_refused_when_given(sg, kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        make_task(sg, **kwargs)
    task = make_task(sg)
    with pytest.raises(ValueError, match=expected):
        task.set_hps(kwargs)


def test_wrong_constructor_arguments_name_the_kind_and_args(sg):
    task = make_task(sg, model_args={"layers": [4, 2], "widht": 3})
    with pytest.raises(TypeError, match=r"model=MLPBlock cannot be built with model_args=.*widht"):
        task.compile()


def test_model_must_be_set_and_be_a_module(sg):
    with pytest.raises(ValueError, match="model is not set"):
        make_task(sg, model=None).compile()
    with pytest.raises(TypeError, match=r"not an nn\.Module"):
        make_task(sg, model=dict, model_args={}).compile()


@pytest.mark.parametrize(
    "hps",
    [
        {"model_args": {"layers": [4, 2], "widht": 3}},
        {"optimizer__momentum": "x"},
        {"input_var_names": "nothing"},
    ],
)
def test_a_failed_compile_keeps_the_previous_model(sg, hps):
    task = make_task(sg)
    task.compile()
    ml, model, optimizer = task.ml, task.ml.model, task.ml.optimizer
    task.set_hps(hps)
    with pytest.raises((ValueError, TypeError, KeyError)):
        task.compile()
    assert task.ml is ml and task.ml.model is model and task.ml.optimizer is optimizer
    assert task.torch_device == torch.device("cpu")
    task.reset_hps()
    task.compile()
    assert task.ml.model is not model


def test_lookup_and_build_helpers():
    assert lookup("Linear", [nn], "model") is nn.Linear
    assert lookup("torch.optim.SGD", [nn], "optimizer") is torch.optim.SGD
    assert build(None, {}, [nn], "scheduler") is None
    linear = nn.Linear(2, 2)
    copy_ = build(linear, {}, [nn], "model")
    assert copy_ is not linear and torch.equal(copy_.weight, linear.weight)


# ------------------------------------------------------------ fresh models
def test_every_compile_builds_a_fresh_model(sg):
    torch.manual_seed(7)
    expected = state(MLPBlock([4, 8, 2]))
    torch.manual_seed(7)
    task = make_task(sg)
    task.compile()
    assert_same_state(state(task.ml.model), expected)
    task.fit()
    trained_state = state(task.ml.model)
    assert differs(trained_state, expected)
    first_model = task.ml.model
    torch.manual_seed(7)
    task.compile()
    assert task.ml.model is not first_model
    assert_same_state(state(task.ml.model), expected)  # not the trained weights


def test_a_model_instance_is_never_modified_by_training(sg):
    torch.manual_seed(0)
    model = MLPBlock([4, 8, 2])
    before = state(model)
    task = make_task(sg, model=model, model_args={})
    task.compile()
    task.fit()
    assert task.ml.model is not model
    assert differs(state(task.ml.model), before)
    assert_same_state(state(model), before)
    task.compile()  # a new copy of the untouched instance
    assert_same_state(state(task.ml.model), before)


# ---------------------------------------------------------------- history
def test_fit_history_metrics_match_the_final_model(sg, data):
    def mean_output(outputs, targets):
        return outputs.mean()

    task = trained(sg, metrics=["loss", "acc", "lr", mean_output], num_epochs=3)
    history = task.history
    assert set(history) == {"train", "valid"}
    assert len(history["train"]) == len(history["valid"]) == 3
    for epoch in history["train"] + history["valid"]:
        assert set(epoch) == {"loss", "acc", "lr", "mean_output"}
        assert isinstance(epoch["loss"], float) and 0.0 <= epoch["acc"] <= 1.0
    # the last valid epoch ran the final model over the whole valid phase
    x_valid = stored(sg, "x", "valid")
    y_valid = stored(sg, "label", "valid")
    with torch.no_grad():
        logits = task.ml.model.eval()(x_valid)
    last = history["valid"][-1]
    assert last["loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, y_valid)), 1e-5)
    assert last["acc"] == pytest.approx(float((logits.argmax(1) == y_valid).float().mean()))
    assert last["mean_output"] == pytest.approx(float(logits.mean()), abs=1e-5)
    assert last["lr"] == 0.1
    assert history["train"][-1]["loss"] < history["train"][0]["loss"]


def test_unknown_metric_is_a_clear_error(sg):
    task = make_task(sg, metrics=["loss", "accuracy"])
    task.compile()
    with pytest.raises(ValueError, match=r"unknown metric 'accuracy'.*acc"):
        task.fit()


def test_subloss_per_output_with_a_list_of_losses(sg):
    task = trained(
        sg,
        model=TwoHeads,
        model_args={},
        output_var_names=["logits", "reg"],
        true_var_names=["label", "target"],
        loss=["CrossEntropyLoss", "MSELoss"],
        loss_weights=[1.0, 0.5],
        metrics=["loss", "subloss"],
        var_names=None,
        input_var_names="x",
    )
    for epoch in task.history["train"] + task.history["valid"]:
        sub = epoch["subloss"]
        assert len(sub) == 2
        assert epoch["loss"] == pytest.approx(sub[0] + sub[1], rel=1e-5)
    x = stored(sg, "x", "valid")
    with torch.no_grad():
        logits, reg = task.ml.model(x)
    y = stored(sg, "label", "valid")
    t = stored(sg, "target", "valid")
    ce = float(nn.functional.cross_entropy(logits, y))
    mse = float(nn.functional.mse_loss(reg, t))
    assert task.history["valid"][-1]["subloss"] == pytest.approx([ce, 0.5 * mse], rel=1e-4)


def test_a_number_as_loss_weights_scales_the_loss(sg):
    plain = trained(sg, seed=1, optimizer_args={"lr": 0.0})
    scaled = trained(sg, seed=1, optimizer_args={"lr": 0.0}, loss_weights=3.0)
    for a, b in zip(plain.history["valid"], scaled.history["valid"], strict=True):
        assert b["loss"] == pytest.approx(3.0 * a["loss"], rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss": ["MSELoss", "MSELoss"], "loss_args": {"reduction": "sum"}}, "loss_args"),
        ({"loss": ["MSELoss", "MSELoss"], "loss_weights": [1.0]}, "one weight per loss"),
        ({"loss": ["MSELoss", "MSELoss"], "loss_weights": "flat_loss"}, "one weight per loss"),
        ({"loss": "MSELoss", "loss_weights": [1.0, 2.0]}, "must be None or a number"),
    ],
)
def test_loss_and_loss_weights_must_agree(sg, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_task(sg, **kwargs).compile()


def test_pred_var_names_picks_the_output_the_loss_sees(sg):
    task = trained(
        sg,
        model=TwoHeads,
        model_args={},
        var_names=None,
        input_var_names="x",
        output_var_names=["logits", "reg"],
        pred_var_names="reg",
        true_var_names="target",
        loss="MSELoss",
    )
    x = stored(sg, "x", "valid")
    with torch.no_grad():
        reg = task.ml.model(x)[1]
    mse = float(nn.functional.mse_loss(reg, stored(sg, "target", "valid")))
    assert task.history["valid"][-1]["loss"] == pytest.approx(mse, rel=1e-5)


# ---------------------------------------------------------- early stopping
def _diverging(sg, **kwargs):
    """Linear regression whose learning rate jumps 200x after epoch 3: valid loss worsens."""
    args = {
        "var_names": "x pred target",
        "model": "Linear",
        "model_args": {"in_features": 4, "out_features": 2},
        "optimizer_args": {"lr": 0.02},
        "scheduler": "LambdaLR",
        "scheduler_args": {"lr_lambda": lambda epoch: 1.0 if epoch < 3 else 200.0},
        "loss": "MSELoss",
        "num_epochs": 20,
    }
    args.update(kwargs)
    return trained(sg, seed=3, **args)


@pytest.mark.parametrize("metrics", [["loss"], ["lr"]])
def test_early_stopping_stops_and_restores_the_best_epoch(sg, metrics):
    task = _diverging(sg, max_patience=2, metrics=metrics)
    best_state = state(task.ml.model)
    # the reference run records losses; it is the same training for the first epochs
    reference = _diverging(sg, num_epochs=20)
    valid_losses = [m["loss"] for m in reference.history["valid"]]
    best = int(np.argmin(valid_losses[:6])) + 1
    assert best == 3  # improves while the learning rate is sane
    assert len(task.history["train"]) == best + 2 + 1 < 20  # stopped after patience ran out
    assert differs(state(reference.ml.model), best_state)
    # the restored weights are exactly those after the best epoch
    rerun = _diverging(sg, num_epochs=best)
    assert_same_state(state(rerun.ml.model), best_state)


def test_early_stopping_needs_a_valid_phase(sg, caplog):
    with caplog.at_level(logging.WARNING):
        task = trained(sg, phases=["train", "test"], max_patience=0, num_epochs=3)
    assert "early stopping is off" in caplog.text
    assert len(task.history["train"]) == 3 and task.history["valid"] == []


def test_max_patience_must_be_a_non_negative_int(sg):
    with pytest.raises(ValueError, match="max_patience"):
        make_task(sg, max_patience=-1)


def test_reduce_lr_on_plateau_uses_the_valid_loss_even_when_not_reported(sg):
    task = trained(
        sg,
        metrics=["lr"],
        scheduler="ReduceLROnPlateau",
        scheduler_args={"patience": 0, "factor": 0.5, "threshold": 10.0},
        num_epochs=3,
    )
    # threshold=10 (relative): no epoch counts as an improvement after the first
    assert [m["lr"] for m in task.history["train"]] == pytest.approx([0.1, 0.05, 0.025])


# ----------------------------------------------------------------- predict
@pytest.mark.parametrize("streaming", [False, True])
def test_predict_returns_rows_in_store_order(sg, streaming):
    extra = {"dataloader_args": {}} if streaming else {}
    task = make_task(
        sg,
        model=identity_linear(),
        model_args={},
        var_names="x pred x",
        loss="MSELoss",
        optimizer_args={"lr": 0.0},
        batch_size=7,
        **extra,
    )
    task.compile()
    task.fit()  # shuffles the train phase, changes nothing
    for phase in ("train", "valid", "test"):
        np.testing.assert_array_equal(task.predict(phase), sg.get_data("x", phase))


@pytest.mark.parametrize("streaming", [None, {}, {"num_workers": 1}])
def test_trained_predictions_are_aligned_with_their_rows(sg, streaming):
    extra = {"dataloader_args": streaming} if streaming is not None else {}
    task = trained(sg, batch_size=8, **extra)
    task.predict_update()
    model = task.ml.model.eval()
    for phase in ("train", "valid", "test"):
        with torch.no_grad():
            expected = model(stored(sg, "x", phase)).numpy()
        np.testing.assert_allclose(sg.get_data("pred", phase), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(task.predict(phase), expected, rtol=1e-5, atol=1e-6)


def test_predict_given_data(sg, data):
    task = trained(sg)
    pred = task.predict(data=data["x"][:5])
    with torch.no_grad():
        expected = task.ml.model(torch.from_numpy(data["x"][:5])).numpy()
    np.testing.assert_allclose(pred, expected, rtol=1e-6)


def test_execute_writes_predictions_of_every_phase(sg):
    torch.manual_seed(0)
    task = make_task(sg)
    task.execute()
    for phase, size in (("train", 60), ("valid", 30), ("test", 30)):
        assert sg.get_data("pred", phase).shape == (size, 2)
    assert len(task.history["train"]) == 2


def test_predict_and_fit_need_a_compiled_model(sg):
    task = make_task(sg)
    with pytest.raises(RuntimeError, match="compile"):
        task.predict()
    with pytest.raises(RuntimeError, match="compile"):
        task.fit()


def test_fit_needs_optimizer_loss_and_targets(sg):
    for kwargs, match in (
        ({"optimizer": None}, "optimizer is not set"),
        ({"loss": None}, "loss is not set"),
        ({"var_names": None, "input_var_names": "x"}, "true_var_names"),
    ):
        task = make_task(sg, **kwargs)
        task.compile()
        with pytest.raises(ValueError, match=match):
            task.fit()


# ------------------------------------------------------------- batch sizes
@pytest.mark.parametrize(
    ("batch_size", "train", "valid", "test"),
    [
        (16, [16, 16, 16, 12], [16, 14], [16, 14]),
        ({"train": 25, "default": 7}, [25, 25, 10], [7, 7, 7, 7, 2], [7, 7, 7, 7, 2]),
        ({"train": 60, "valid": 30, "test": 11}, [60], [30], [11, 11, 8]),
        ({"type": "equal_length", "length": 4}, [15] * 4, [7, 8, 7, 8], [7, 8, 7, 8]),
        ({"type": "equal_length", "length": 7}, [8, 9, 8, 9, 8, 9, 9], [4, 4, 4, 5, 4, 4, 5], None),
    ],
)
def test_batch_size_forms(sg, batch_size, train, valid, test):
    task = make_task(sg, batch_size=batch_size, num_epochs=1)
    task.compile()
    log = BatchLog(task.ml.model)
    task.fit()
    assert log.sizes == train + valid
    log.inputs.clear()
    task.predict("test")
    assert log.sizes == (test or valid)


def test_batch_size_dict_without_the_phase_is_a_clear_error(sg):
    task = make_task(sg, batch_size={"train": 8})
    task.compile()
    with pytest.raises(ValueError, match=r"no entry for phase 'valid'.*'default'"):
        task.fit()


def test_custom_batch_sampler_drives_training_batches(sg, data):
    calls = []

    def reversed_pairs(num_samples, batch_size, phase):
        calls.append((num_samples, batch_size, phase))
        for stop in range(num_samples, 0, -batch_size):
            yield torch.arange(max(stop - batch_size, 0), stop).flip(0)

    task = make_task(sg, batch_sampler=reversed_pairs, batch_size=25, num_epochs=1)
    task.compile()
    log = BatchLog(task.ml.model)
    task.fit()
    assert calls == [(60, 25, "train")]  # valid and predict are never shuffled
    x_train = torch.from_numpy(data["x"][:60])
    assert log.sizes == [25, 25, 10, 25, 5]
    torch.testing.assert_close(log.inputs[0], x_train[35:60].flip(0))
    torch.testing.assert_close(log.inputs[2], x_train[0:10].flip(0))


def test_streaming_training_equals_in_memory_training(sg):
    in_memory = trained(sg, seed=5, num_epochs=3, batch_size=8)
    streamed = trained(sg, seed=5, num_epochs=3, batch_size=8, dataloader_args={})
    for key, value in state(in_memory.ml.model).items():
        torch.testing.assert_close(state(streamed.ml.model)[key], value, rtol=1e-5, atol=1e-6)
    for a, b in zip(in_memory.history["valid"], streamed.history["valid"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_training_is_reproducible_with_a_seed(sg):
    a = trained(sg, seed=11)
    b = trained(sg, seed=11)
    c = trained(sg, seed=12)
    assert_same_state(state(a.ml.model), state(b.ml.model))
    assert differs(state(a.ml.model), state(c.ml.model))


# ------------------------------------------------------------------ devices
@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_cpu_device(sg, device):
    task = trained(sg, device=device)
    assert task.torch_device == torch.device("cpu")
    assert next(task.ml.model.parameters()).device.type == "cpu"


def test_auto_device_resolves_to_what_exists(sg):
    task = make_task(sg, device="auto")
    task.compile()
    assert task.torch_device.type == ("cuda" if HAS_CUDA else "cpu")


@pytest.mark.skipif(HAS_CUDA, reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:3", 3])
def test_missing_cuda_device_is_a_clear_error_at_compile(sg, device):
    task = make_task(sg)  # cpu
    task.compile()
    model = task.ml.model
    task.set_hps({"device": device})
    with pytest.raises(ValueError) as info:
        task.compile()
    message = str(info.value)
    assert repr(device) in message and "no CUDA devices" in message
    assert task.ml.model is model  # a failed compile keeps what was there


def test_a_device_index_beyond_the_count_is_an_error():
    with pytest.raises(ValueError, match="cuda:99"):
        resolve_device("cuda:99")


@pytest.mark.parametrize("device", ["gpu0", "cuda:x", True])
def test_malformed_device_is_a_clear_error(device):
    with pytest.raises(ValueError, match="device="):
        resolve_device(device)


@pytest.mark.skipif(HAS_CUDA, reason="checks the error on a machine without CUDA")
def test_gpu_ids_that_do_not_exist_are_an_error_at_compile(sg):
    with pytest.raises(ValueError, match=r"gpu_ids=\[0, 1\]"):
        make_task(sg, gpu_ids=[0, 1]).compile()


@pytest.mark.parametrize("gpu_ids", [["0"], [True], [0, 99]])
def test_gpu_ids_must_be_existing_indices(sg, gpu_ids):
    with pytest.raises(ValueError, match=r"gpu_ids="):
        make_task(sg, gpu_ids=gpu_ids).compile()


def test_amp_on_cpu_is_ignored_and_trains_identically(sg):
    plain = trained(sg, seed=4)
    amp = trained(sg, seed=4, amp=True)
    assert_same_state(state(amp.ml.model), state(plain.ml.model))
    assert amp.history == plain.history


def test_device_is_a_hyperparameter_but_the_resolved_device_is_not(sg):
    task = make_task(sg)
    assert "device" in task.hyperparameter_names()
    assert "torch_device" not in task.hyperparameter_names()
    with pytest.raises(KeyError):
        task.set_hps({"torch_device": "cpu"})


# ------------------------------------------------------------------ weights
@pytest.mark.parametrize("mode", ["dict", "zarr"])
def test_save_and_load_weights_through_the_saver(sg, tmp_path, mode):
    saver = Saver(save_dir=str(tmp_path / "saver"), mode=mode)
    torch.manual_seed(0)
    source = make_task(sg, saver=saver, save_weights="clf", var_names="x pred_a label")
    source.execute()
    record = saver.load_ml("clf")
    assert record["ml_type"] == "pytorch"
    torch.manual_seed(1)  # a different initialisation, overwritten by the load
    target = make_task(
        sg, saver=saver, load_weights="clf", phases=["test"], var_names="x pred_b label"
    )
    target.execute()
    assert_same_state(state(target.ml.model), state(source.ml.model))
    for phase in ("train", "valid", "test"):
        np.testing.assert_array_equal(sg.get_data("pred_b", phase), sg.get_data("pred_a", phase))


def test_save_weights_true_uses_the_unique_id(sg):
    saver = Saver(mode="dict")
    task = make_task(sg, saver=saver, save_weights=True, phases=["train"])
    task.task_id, task.subtask_id, task.job_id = "step0", "mlp", 2
    task.execute()
    assert "step0_mlp_job2" in saver
    loader = make_task(sg, saver=saver, load_weights=True, phases=[])
    loader.task_id, loader.subtask_id, loader.job_id = "step0", "mlp", 2
    loader.execute()
    assert_same_state(state(loader.ml.model), state(task.ml.model))


def test_weights_need_a_saver_and_a_model_record(sg):
    with pytest.raises(ValueError, match="no saver"):
        make_task(sg, save_weights=True, phases=["train"]).execute()
    with pytest.raises(ValueError, match="no saver"):
        make_task(sg, load_weights="k").execute()
    saver = Saver(mode="dict")
    saver.dump_ml("empty", ml_type="pytorch")
    with pytest.raises(ValueError, match="'empty' holds no model weights"):
        make_task(sg, saver=saver, load_weights="empty").execute()


# ------------------------------------------------------- variable layouts
def test_tuple_inputs_are_stacked_on_axis_1(sg, data):
    sg.add_data("x2", 2 * data["x"], phase=SPLIT)
    sg.compile()
    torch.manual_seed(0)
    model = StackedInput()
    task = make_task(
        sg,
        model=model,
        model_args={},
        var_names=None,
        input_var_names=("x", "x2"),
        output_var_names="pred",
        true_var_names="label",
    )
    task.execute()
    assert {shape[1:] for shape in task.ml.model.shapes} == {(2, 4)}
    x = stored(sg, "x", "test")
    with torch.no_grad():
        expected = task.ml.model.linear(torch.cat([x, 2 * x], dim=1)).numpy()
    np.testing.assert_allclose(sg.get_data("pred", "test"), expected, rtol=1e-5)


def test_list_inputs_reach_the_model_as_a_list(sg, data):
    sg.add_data("x2", 2 * data["x"], phase=SPLIT)
    sg.compile()
    task = trained(sg, model=SumOfInputs, model_args={}, var_names="x,x2 pred label")
    x = stored(sg, "x", "valid")
    with torch.no_grad():
        expected = task.ml.model.linear(5 * x).numpy()
    np.testing.assert_allclose(task.predict("valid"), expected, rtol=1e-5)


def test_list_outputs_are_written_to_several_variables(sg):
    task = make_task(
        sg,
        model=TwoHeads,
        model_args={},
        var_names="x logits,reg label,target",
        loss=["CrossEntropyLoss", "MSELoss"],
        metrics=["loss", "acc", "subloss"],
    )
    torch.manual_seed(0)
    task.execute()
    x = stored(sg, "x", "train")
    with torch.no_grad():
        logits, reg = task.ml.model(x)
    np.testing.assert_allclose(sg.get_data("logits", "train"), logits.numpy(), rtol=1e-5)
    np.testing.assert_allclose(sg.get_data("reg", "train"), reg.numpy(), rtol=1e-5)
    assert 0.0 <= task.history["valid"][-1]["acc"] <= 1.0


def test_float64_inputs_and_int32_labels_train(sg, data):
    sg.add_data("x64", data["x"].astype(np.float64), phase=SPLIT)
    sg.add_data("label32", data["label"].astype(np.int32), phase=SPLIT)
    sg.compile()
    reference = trained(sg, seed=2)
    task = trained(sg, seed=2, var_names="x64 pred label32")
    assert_same_state(state(task.ml.model), state(reference.ml.model))
    assert task.predict("test").dtype == np.float32
    assert sg.get_data("x64", "train").dtype == np.float64  # the store is not converted


def test_fit_given_arrays_instead_of_the_store(sg, data):
    torch.manual_seed(0)
    task = make_task(sg, phases=["train"])
    task.compile()
    history = task.fit(train_data=(data["x"][:40], data["label"][:40]))
    assert len(history["train"]) == 2 and history["valid"] == []


def test_tasks_pickle_before_and_after_training(sg):
    """Agents send tasks to worker processes."""
    fresh = pickle.loads(pickle.dumps(make_task(sg)))
    assert fresh.ml.model is None and fresh.model_args == {"layers": [4, 8, 2]}
    task = trained(sg)
    copy_ = pickle.loads(pickle.dumps(task))
    assert_same_state(state(copy_.ml.model), state(task.ml.model))
    np.testing.assert_array_equal(copy_.predict("test"), task.predict("test"))
    assert copy_.history == task.history


# ------------------------------------------------------------ progress bars
def test_verbose_shows_progress_bars(sg, capsys):
    trained(sg, verbose=1, num_epochs=1)
    assert "epoch [  1/1] train" in capsys.readouterr().err
    trained(sg, verbose=0, num_epochs=1)
    assert "epoch" not in capsys.readouterr().err


# ---------------------------------------------------------- classification
def test_classification_task_writes_probabilities(sg):
    torch.manual_seed(0)
    task = PytorchClassificationTask(
        storegate=sg,
        var_names="x proba label",
        model="MLPBlock",
        model_args={"layers": [4, 8, 2]},
        optimizer="Adam",
        optimizer_args={"lr": 0.05},
        num_epochs=5,
        batch_size=16,
        device="cpu",
    )
    task.execute()
    assert isinstance(task.ml.loss, nn.CrossEntropyLoss)
    assert set(task.history["valid"][-1]) == {"loss", "acc"}
    assert task.history["valid"][-1]["acc"] > 0.7
    for phase in ("train", "valid", "test"):
        proba = sg.get_data("proba", phase)
        assert proba.shape[1] == 2 and (proba >= 0).all()
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    with torch.no_grad():
        logits = task.ml.model(stored(sg, "x", "test"))
    np.testing.assert_allclose(
        sg.get_data("proba", "test"), torch.softmax(logits, 1).numpy(), rtol=1e-5
    )


def test_classification_single_logit_gets_a_sigmoid(sg, data):
    sg.add_data("flag", data["label"].astype(np.float32)[:, None], phase=SPLIT)
    sg.compile()
    torch.manual_seed(0)
    task = PytorchClassificationTask(
        storegate=sg,
        var_names="x proba flag",
        model="MLPBlock",
        model_args={"layers": [4, 8, 1]},
        optimizer="Adam",
        loss="BCEWithLogitsLoss",
        num_epochs=3,
        device="cpu",
    )
    task.execute()
    proba = sg.get_data("proba", "valid")
    assert proba.shape == (30, 1) and ((proba > 0) & (proba < 1)).all()
    assert 0.0 <= task.history["valid"][-1]["acc"] <= 1.0
