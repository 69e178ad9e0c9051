"""ModelConnectionTask (PyTorch) and ConnectionModel: wiring, losses, freezing, write-back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from multiml import StoreGate
from multiml.task.basic import MLBaseTask
from multiml.task.pytorch import ModelConnectionTask, PytorchBaseTask
from multiml.task.pytorch.modules import ConnectionModel, MLPBlock

SPLIT = (0.5, 0.25, 0.25)  # 40 / 20 / 20 rows
A = np.array([[1.0, -1.0], [0.5, 0.0], [0.0, 2.0]], dtype=np.float32)
B = np.array([[1.5], [-0.5]], dtype=np.float32)


@pytest.fixture
def sg() -> StoreGate:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3)).astype(np.float32)
    truth = x @ A  # the true intermediate
    sg = StoreGate(data_id="chain")
    sg.add_data("x", x, phase=SPLIT)
    sg.add_data("x2", rng.normal(size=(80, 2)).astype(np.float32), phase=SPLIT)
    sg.add_data("truth", truth, phase=SPLIT)
    sg.add_data("y", truth @ B, phase=SPLIT)
    sg.compile()
    return sg


def step(sg, task_id, var_names, model, **kwargs) -> PytorchBaseTask:
    args = {
        "storegate": sg,
        "var_names": var_names,
        "model": model,
        "optimizer": "SGD",
        "optimizer_args": {"lr": 0.05},
        "loss": "MSELoss",
        "num_epochs": 2,
        "batch_size": 10,
        "device": "cpu",
    }
    args.update(kwargs)
    task = PytorchBaseTask(**args)
    task.task_id = task_id
    task.subtask_id = model if isinstance(model, str) else type(model).__name__
    return task


def linear(n_in: int, n_out: int, seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out)


def chain(sg, step1_input: str = "mid"):
    """step0: x -> mid (true: truth); step1: step1_input -> pred (true: y); never compiled."""
    step0 = step(sg, "step0", "x mid truth", linear(3, 2, 0))
    step1 = step(sg, "step1", f"{step1_input} pred y", linear(2, 1, 1))
    return step0, step1


def connect(subtasks, sg, **kwargs) -> ModelConnectionTask:
    args = {
        "storegate": sg,
        "optimizer": "SGD",
        "optimizer_args": {"lr": 0.05},
        "num_epochs": 2,
        "batch_size": 10,
        "device": "cpu",
    }
    args.update(kwargs)
    return ModelConnectionTask(subtasks=subtasks, **args)


def stored(sg: StoreGate, name: str, phase: str) -> torch.Tensor:
    return torch.from_numpy(np.array(sg.get_data(name, phase)))


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Stacked(nn.Module):
    """(N, 2, 2) -> (N, 1)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.linear = nn.Linear(4, 1)
        self.shapes: list = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return self.linear(x.flatten(1))


class TwoInputs(nn.Module):
    """[mid (N, 2), x2 (N, 2)] -> (N, 1)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs):
        mid, extra = inputs
        return self.linear(mid - extra)


# ------------------------------------------------------------------- wiring
def test_wiring_by_variable_name(sg):
    task = connect(chain(sg), sg)
    assert task.input_var_names == ["x"]
    assert task.output_var_names == ["mid", "pred"]
    assert task.true_var_names == ["truth", "y"]
    assert task._input_var_index == [0, 1]
    task.compile()
    x = stored(sg, "x", "test")
    step0, step1 = (s.ml.model for s in task.subtasks)
    with torch.no_grad():
        mid, pred = task.ml.model([x])
        torch.testing.assert_close(mid, step0(x))
        torch.testing.assert_close(pred, step1(step0(x)))


def test_variable_mapping_connects_a_step_trained_on_the_truth(sg):
    step0, step1 = chain(sg, step1_input="truth")
    torch.manual_seed(0)
    step1.execute()  # pre-trained on the true intermediate
    # without a mapping step1 keeps reading the stored truth
    plain = connect([step0, step1], sg)
    assert plain.input_var_names == ["x", "truth"] and plain._input_var_index == [0, 1]
    task = connect([step0, step1], sg, variable_mapping=[("truth", "mid")])
    assert task.input_var_names == ["x"]
    assert task._input_var_index == [0, 1]  # step1 reads pool slot 1: step0's output
    task.compile()
    assert task.subtasks[1].ml.model is step1.ml.model  # the pre-trained model itself
    task.fit()
    task.predict_update()
    with torch.no_grad():
        x = stored(sg, "x", "valid")
        expected = step1.ml.model(step0.ml.model(x)).numpy()
    np.testing.assert_allclose(sg.get_data("pred", "valid"), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mapping", [[("a", "b", "c")], ["ab"], [("a", 1)], [None]])
def test_variable_mapping_entries_must_be_pairs(sg, mapping):
    with pytest.raises(ValueError, match="not a \\(from, to\\) pair"):
        connect(chain(sg), sg, variable_mapping=mapping)
    task = connect(chain(sg, step1_input="truth"), sg)
    with pytest.raises(ValueError, match="not a \\(from, to\\) pair"):
        task.set_hps({"num_epochs": 5, "variable_mapping": mapping})
    assert task.num_epochs == 2


def test_variable_mapping_as_a_hyperparameter(sg):
    task = connect(chain(sg, step1_input="truth"), sg)
    assert task.input_var_names == ["x", "truth"]
    task.set_hps({"variable_mapping": [["truth", "mid"]]})
    task.compile()
    assert task.input_var_names == ["x"] and task._input_var_index == [0, 1]
    task.reset_hps()
    task.compile()
    assert task.input_var_names == ["x", "truth"]


def test_tuple_input_mixing_a_produced_and_a_stored_variable_is_stacked_on_dim_1(sg):
    step0 = step(sg, "step0", "x mid truth", linear(3, 2, 0))
    model = Stacked()
    step1 = step(
        sg,
        "step1",
        None,
        model,
        input_var_names=("mid", "x2"),
        output_var_names="pred",
        true_var_names="y",
    )
    task = connect([step0, step1], sg)
    assert task.input_var_names == ["x", "x2"]
    assert task._input_var_index == [0, (2, 1)]  # pool: x, x2, mid
    task.execute()
    assert {s[1:] for s in task.subtasks[1].ml.model.shapes} == {(2, 2)}
    x, x2 = stored(sg, "x", "test"), stored(sg, "x2", "test")
    with torch.no_grad():
        mid = task.subtasks[0].ml.model(x)
        expected = task.subtasks[1].ml.model.linear(torch.stack([mid, x2], dim=1).flatten(1))
    np.testing.assert_allclose(sg.get_data("pred", "test"), expected.numpy(), rtol=1e-5)


def test_tuple_input_of_stored_variables_is_one_external_slot(sg):
    step0 = step(
        sg,
        "step0",
        None,
        Stacked(),
        input_var_names=("truth", "x2"),
        output_var_names="p0",
        true_var_names="y",
    )
    step1 = step(sg, "step1", "p0 pred y", linear(1, 1, 4))
    task = connect([step0, step1], sg)
    assert task.input_var_names == [("truth", "x2")]
    assert task._input_var_index == [0, 1]
    task.execute()
    assert task.subtasks[0].ml.model.shapes[-1][1:] == (2, 2)


def test_external_input_used_by_a_later_step(sg):
    step0 = step(sg, "step0", "x mid truth", linear(3, 2, 0))
    step1 = step(sg, "step1", "mid,x2 pred y", TwoInputs())
    task = connect([step0, step1], sg, loss_weights="flat_loss")
    assert task.input_var_names == ["x", "x2"]
    assert task._input_var_index == [0, [2, 1]]
    task.execute()
    x, x2 = stored(sg, "x", "train"), stored(sg, "x2", "train")
    with torch.no_grad():
        mid = task.subtasks[0].ml.model(x)
        expected = task.subtasks[1].ml.model([mid, x2])
    np.testing.assert_allclose(sg.get_data("mid", "train"), mid.numpy(), rtol=1e-5)
    np.testing.assert_allclose(sg.get_data("pred", "train"), expected.numpy(), rtol=1e-5)


def test_a_subtask_with_several_outputs(sg):
    class Split(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 2)

        def forward(self, x):
            out = self.linear(x)
            return [out, -out]

    step0 = step(sg, "step0", "x mid,neg truth,truth", Split(), loss=["MSELoss", "MSELoss"])
    step1 = step(sg, "step1", "neg pred y", linear(2, 1, 1))
    task = connect([step0, step1], sg)
    assert task.output_var_names == ["mid", "neg", "pred"]
    assert task._input_var_index == [0, 2]  # pool: x, mid, neg
    task.execute()
    np.testing.assert_allclose(sg.get_data("neg", "test"), -sg.get_data("mid", "test"))


def test_connection_needs_two_connectable_pytorch_subtasks(sg):
    step0, step1 = chain(sg)
    with pytest.raises(ValueError, match="at least 2 subtasks, got 1"):
        connect([step0], sg)
    with pytest.raises(ValueError, match="do not pass input_var_names"):
        connect([step0, step1], sg, input_var_names="x")
    step1.output_var_names = None
    with pytest.raises(ValueError, match="output_var_names is not set"):
        connect([step0, step1], sg)
    with pytest.raises(TypeError, match="PytorchBaseTask subtasks"):
        ModelConnectionTask(subtasks=[step0, MLBaseTask(var_names="mid pred y")])


def test_missing_external_input_names_the_connected_steps(sg):
    step0 = step(sg, "step0", "x_scaled mid truth", linear(3, 2, 0))
    step1 = step(sg, "step1", "mid pred y", linear(2, 1, 1))
    task = connect([step0, step1], sg)
    with pytest.raises(KeyError) as info:
        task.compile()
    message = str(info.value)
    assert "['step0', 'step1']" in message and "x_scaled" in message and "'train'" in message


def test_wiring_follows_subtask_changes_on_compile(sg):
    step0, step1 = chain(sg)
    task = connect([step0, step1], sg)
    step1.input_var_names = "x2"
    task.compile()
    assert task.input_var_names == ["x", "x2"] and task._input_var_index == [0, 1]


def test_derived_variable_names_are_not_hyperparameters(sg):
    task = connect(chain(sg), sg)
    with pytest.raises(KeyError):
        task.set_hps({"input_var_names": "x2"})
    task.set_hps({"loss_weights": "flat_loss", "optimizer__lr": 0.5})
    task.compile()
    assert task.ml.loss_weights == [1.0, 1.0]
    assert task.ml.optimizer.param_groups[0]["lr"] == 0.5


# --------------------------------------------------------------- loss weights
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, [0.0, 1.0]),
        ("last_loss", [0.0, 1.0]),
        ("flat_loss", [1.0, 1.0]),
        ([0.3, 2], [0.3, 2.0]),
        ((1, 0), [1.0, 0.0]),
        ({"step0": 0.5}, [0.5, 0.0]),
        ({"step1": 2.0, "step0": 1.0}, [1.0, 2.0]),
    ],
)
def test_loss_weight_forms(sg, spec, expected):
    assert connect(chain(sg), sg, loss_weights=spec).resolve_loss_weights() == expected


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ([1.0], "has 1 entries for 2 subtasks"),
        ([1.0, 1.0, 1.0], "has 3 entries for 2 subtasks"),
        ({"step9": 1.0}, r"\['step9'\] are not task ids; known: \['step0', 'step1'\]"),
        ("flat", "expected None, .*'last_loss', 'flat_loss'"),
    ],
)
def test_bad_loss_weights_are_clear_errors(sg, spec, match):
    task = connect(chain(sg), sg, loss_weights=spec)
    with pytest.raises(ValueError, match=match):
        task.compile()


def test_subloss_per_subtask_in_the_history(sg):
    task = connect(chain(sg), sg, loss_weights=[2.0, 0.5])
    task.execute()
    x = stored(sg, "x", "valid")
    with torch.no_grad():
        mid, pred = task.ml.model([x])
    l0 = float(nn.functional.mse_loss(mid, stored(sg, "truth", "valid")))
    l1 = float(nn.functional.mse_loss(pred, stored(sg, "y", "valid")))
    last = task.history["valid"][-1]
    assert last["subloss"] == pytest.approx([2.0 * l0, 0.5 * l1], rel=1e-4)
    assert last["loss"] == pytest.approx(2.0 * l0 + 0.5 * l1, rel=1e-4)
    for epoch in task.history["train"]:
        assert set(epoch) == {"loss", "subloss"} and len(epoch["subloss"]) == 2


def test_last_loss_trains_without_the_intermediate_truth(sg):
    sg.delete_data("truth", phase="train")
    sg.delete_data("truth", phase="valid")
    sg.compile()
    task = connect(chain(sg), sg)  # 'last_loss': step0's truth is not needed
    task.execute()
    assert all(epoch["subloss"][0] is None for epoch in task.history["train"])
    flat = connect(chain(sg), sg, loss_weights="flat_loss")
    with pytest.raises(KeyError, match="truth"):
        flat.compile()


def test_a_weighted_subtask_needs_a_loss(sg):
    step0, step1 = chain(sg)
    step0._loss = None
    with pytest.raises(ValueError, match=r"'step0'\) has loss weight 1.0 but no loss"):
        connect([step0, step1], sg, loss_weights="flat_loss").compile()
    connect([step0, step1], sg).execute()  # weight 0: its loss is never used


# ------------------------------------------------------------------- freezing
def test_frozen_subtask_weights_and_batchnorm_stats_do_not_move(sg):
    torch.manual_seed(0)
    step0 = step(
        sg,
        "step0",
        "x mid truth",
        "MLPBlock",
        model_args={"layers": [3, 8, 2], "batch_norm": True},
    )
    step1 = step(sg, "step1", "mid pred y", "MLPBlock", model_args={"layers": [2, 4, 1]})
    step0.execute()
    step1.execute()
    before0, before1 = state(step0.ml.model), state(step1.ml.model)
    assert any("running_mean" in key for key in before0)
    ModelConnectionTask.freeze_subtask(step0)
    task = connect([step0, step1], sg, optimizer="Adam", optimizer_args={"lr": 0.05})
    task.execute()
    assert same(state(step0.ml.model), before0)  # weights and running stats, bit for bit
    assert not same(state(step1.ml.model), before1)
    assert all(not p.requires_grad for p in step0.ml.model.parameters())
    trainable = {id(p) for g in task.ml.optimizer.param_groups for p in g["params"]}
    assert trainable == {id(p) for p in step1.ml.model.parameters()}


def test_without_freezing_every_subtask_trains(sg):
    step0, step1 = chain(sg)
    step0.execute()
    step1.execute()
    before0 = state(step0.ml.model)
    connect([step0, step1], sg, loss_weights="flat_loss").execute()
    assert not same(state(step0.ml.model), before0)


def test_freezing_needs_a_model(sg):
    step0, _ = chain(sg)
    with pytest.raises(ValueError, match="no model yet"):
        ModelConnectionTask.freeze_subtask(step0)


def test_accuracy_of_the_last_subtask_uses_its_logit_threshold(sg):
    flags = {p: (sg.get_data("y", p) > 0).astype(np.float32) for p in ("train", "valid", "test")}
    for phase, flag in flags.items():
        sg.add_data("flag", flag, phase=phase)
    sg.compile()
    assert 0.0 < flags["valid"].mean() < 1.0
    step0 = step(sg, "step0", "x mid truth", linear(3, 2, 0))
    step1 = step(sg, "step1", "mid logit flag", linear(2, 1, 1), loss="BCEWithLogitsLoss")
    task = connect([step0, step1], sg, metrics=["acc"], num_epochs=1)
    task.execute()
    with torch.no_grad():
        logit = task.ml.model([stored(sg, "x", "valid")])[1]
    expected = float(((logit > 0).float() == stored(sg, "flag", "valid")).float().mean())
    assert task.history["valid"][-1]["acc"] == pytest.approx(expected)


def test_all_frozen_is_a_clear_error(sg):
    step0, step1 = chain(sg)
    for subtask in (step0, step1):
        subtask.execute()
        ModelConnectionTask.freeze_subtask(subtask)
    with pytest.raises(ValueError, match="every subtask's weights are frozen"):
        connect([step0, step1], sg).compile()


# ------------------------------------------------------------------ write-back
def test_predict_update_writes_every_subtask_output_in_row_order(sg):
    task = connect(chain(sg), sg, loss_weights="flat_loss", batch_size=7)
    task.execute()
    step0, step1 = (s.ml.model for s in task.subtasks)
    for phase in ("train", "valid", "test"):
        x = stored(sg, "x", phase)
        with torch.no_grad():
            mid = step0(x)
            pred = step1(mid)
        np.testing.assert_allclose(sg.get_data("mid", phase), mid.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sg.get_data("pred", phase), pred.numpy(), rtol=1e-5, atol=1e-6)


def test_streaming_connection_predicts_in_order(sg):
    task = connect(chain(sg), sg, dataloader_args={}, batch_size=6)
    task.execute()
    x = stored(sg, "x", "test")
    with torch.no_grad():
        expected = task.ml.model([x])[1].numpy()
    np.testing.assert_allclose(sg.get_data("pred", "test"), expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------- ConnectionModel
def test_connection_model_index_forms():
    torch.manual_seed(0)
    first = nn.Linear(3, 3)
    stacker = Stacked.__new__(Stacked)
    nn.Module.__init__(stacker)
    stacker.linear, stacker.shapes = nn.Linear(6, 2), []

    class ListSum(nn.Module):
        def forward(self, inputs):
            return inputs[0][:, :2] + inputs[1]

    model = ConnectionModel(
        [first, stacker, ListSum()], input_var_index=[0, (2, 1), [1, 3]], num_outputs=[1, 1, 1]
    )
    x, z = torch.randn(5, 3), torch.randn(5, 3)
    out0, out1, out2 = model([x, z])
    torch.testing.assert_close(out0, first(x))
    torch.testing.assert_close(out1, stacker.linear(torch.stack([out0, z], dim=1).flatten(1)))
    torch.testing.assert_close(out2, z[:, :2] + out1)


@pytest.mark.parametrize(
    ("models", "index", "counts"),
    [(2, [0], [1, 1]), (2, [0, 1], [1]), (1, [0, 1], [1, 1])],
)
def test_connection_model_counts_must_match(models, index, counts):
    with pytest.raises(ValueError, match="must match"):
        ConnectionModel([nn.Identity() for _ in range(models)], index, counts)


@pytest.mark.parametrize("index", ["x", 1.0, (0, "a"), True, [0, None]])
def test_connection_model_bad_index_is_a_clear_error(index):
    with pytest.raises(ValueError, match="must be an int, a tuple of ints or a list"):
        ConnectionModel([nn.Identity()], [index], [1])


def test_connection_model_checks_the_number_of_outputs():
    model = ConnectionModel([nn.Identity(), nn.Identity()], [0, 1], [2, 1])
    with pytest.raises(ValueError, match="should return 2 outputs, returned a single tensor"):
        model([torch.zeros(2, 2)])


def test_connection_model_keeps_fully_frozen_models_in_eval_mode():
    frozen, free = MLPBlock([2, 4, 2], batch_norm=True), MLPBlock([2, 4, 2], batch_norm=True)
    for param in frozen.parameters():
        param.requires_grad_(False)
    model = ConnectionModel([frozen, free], [0, 1], [1, 1])
    model.train()
    assert model.training and free.training and not frozen.training
    model.eval()
    assert not free.training and not frozen.training
    stats = frozen.batchnorm0.running_mean.clone()
    model.train()
    model([torch.randn(8, 2)])
    assert torch.equal(frozen.batchnorm0.running_mean, stats)
