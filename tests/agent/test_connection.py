"""ConnectionRandomSearchAgent / ConnectionGridSearchAgent with a PyTorch regression →
classification chain: pre-train, (freeze,) connect, train end to end, measure."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import torch

from multiml.agent import ConnectionGridSearchAgent, ConnectionRandomSearchAgent, GridSearchAgent
from multiml.agent.runner import ConnectionSpec, connection_task_name
from tests.agent.conftest import (
    ACC_ARGS,
    RecordingTracker,
    dict_saver,
    make_store,
    metric_values,
    torch_steps,
)

CONNECTION_ARGS = {"optimizer": "SGD", "optimizer_args": {"lr": 0.1}, "num_epochs": 1}


def grid_steps(step0: Any = None, step1: Any = None) -> list[list[tuple[Any, dict[str, Any]]]]:
    """2 x 2 combinations of the torch chain."""
    default0, default1 = torch_steps()
    return [
        [(step0 or default0, {"optimizer__lr": [0.1, 0.01]})],
        [(step1 or default1, {"optimizer__lr": [0.3, 0.03]})],
    ]


def connection_agent(cls: type = ConnectionGridSearchAgent, **kwargs: Any) -> Any:
    kwargs.setdefault("storegate", make_store())
    kwargs.setdefault("saver", dict_saver())
    kwargs.setdefault("task_scheduler", grid_steps())
    kwargs.setdefault("metric", "acc")
    kwargs.setdefault("metric_args", ACC_ARGS)
    kwargs.setdefault("connectiontask_args", dict(CONNECTION_ARGS))
    return cls(**kwargs)


class SpyCalls:
    """Records calls of a task method (still running it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, task: Any, method: str) -> None:
        self.lrs: list[float] = []
        original = getattr(task, method)

        def spy(*args: Any, **kwargs: Any) -> Any:
            self.lrs.append(task.optimizer_args.get("lr"))
            return original(*args, **kwargs)

        monkeypatch.setattr(task, method, spy)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def pretrained_state(agent: Any, k: int) -> dict[str, torch.Tensor]:
    """The weights step ``k`` of combination 0 had after pre-training (from the cache)."""
    runner = agent.runner
    record = runner.cache.get(runner.step_key(agent.task_scheduler[0], k, None))
    return record.model_state


class TestConnectionGrid:
    def test_every_combination_connected(self) -> None:
        tracker = RecordingTracker()
        agent = connection_agent()
        agent.tracker = tracker
        agent.execute()
        assert [r["job_id"] for r in agent.history] == [0, 1, 2, 3]
        assert agent.history[2]["subtask_hps"] == [
            {"optimizer__lr": 0.01},
            {"optimizer__lr": 0.3},
        ]
        assert agent.get_best_result() == agent.result
        assert agent.result["metric_value"] == max(metric_values(agent.history))
        names = [sid for _, tid, sid, _, _ in tracker.steps if tid == "connection"]
        assert names == [f"ModelConnectionTask_{j}" for j in range(4)]
        assert all(len(h["train"]) == 1 for h in tracker.histories("connection"))
        agent.finalize()
        assert agent.saver["result"] == agent.result

    def test_reproducible_and_different_from_plain_grid(self) -> None:
        first, second = connection_agent(), connection_agent()
        first.execute()
        second.execute()
        assert first.history == second.history
        plain = GridSearchAgent(
            storegate=make_store(),
            saver=dict_saver(),
            task_scheduler=grid_steps(),
            metric="acc",
            metric_args=ACC_ARGS,
        )
        plain.execute()
        assert metric_values(plain.history) != metric_values(first.history)

    def test_get_best_result_before_execute(self) -> None:
        with pytest.raises(RuntimeError, match="execute"):
            connection_agent().get_best_result()

    def test_samplings_not_allowed(self) -> None:
        with pytest.raises(ValueError, match="samplings"):
            connection_agent(samplings=2)

    def test_connectiontask_args_reach_the_task(self) -> None:
        tracker = RecordingTracker()
        agent = connection_agent(
            task_scheduler=[[torch_steps()[0]], [torch_steps()[1]]],
            connectiontask_args={**CONNECTION_ARGS, "num_epochs": 3, "loss_weights": "flat_loss"},
        )
        agent.tracker = tracker
        agent.execute()
        (history,) = tracker.histories("connection")
        assert len(history["train"]) == 3
        assert all(s is not None for s in history["train"][0]["subloss"])

    def test_connectiontask_name(self) -> None:
        tracker = RecordingTracker()
        agent = connection_agent(
            task_scheduler=[[torch_steps()[0]], [torch_steps()[1]]], connectiontask_name="joint"
        )
        agent.tracker = tracker
        agent.execute()
        assert agent.connectiontask_name_with_jobid(7) == "joint_7"
        assert [s[2] for s in tracker.steps if s[1] == "connection"] == ["joint_0"]
        default = connection_agent()
        assert default.connectiontask_name_with_jobid(3) == "ModelConnectionTask_3"
        assert connection_task_name(None, 12) == "ModelConnectionTask_12"


class TestPretraining:
    def test_prefix_reuse_of_pretraining(self, monkeypatch: pytest.MonkeyPatch) -> None:
        step0, step1 = torch_steps()
        spy0 = SpyCalls(monkeypatch, step0, "execute")
        spy1 = SpyCalls(monkeypatch, step1, "execute")
        agent = connection_agent(task_scheduler=grid_steps(step0, step1))
        agent.execute()
        assert spy0.lrs == [0.1, 0.01]  # identical upstream: restored, exactly
        assert spy1.lrs == [0.3, 0.03, 0.3, 0.03]  # different upstream: pre-trained again

    def test_reuse_pretraining_trains_each_subtask_once(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        step0, step1 = torch_steps()
        spy0 = SpyCalls(monkeypatch, step0, "execute")
        spy1 = SpyCalls(monkeypatch, step1, "execute")
        agent = connection_agent(task_scheduler=grid_steps(step0, step1), reuse_pretraining=True)
        agent.execute()
        assert spy0.lrs == [0.1, 0.01]
        assert spy1.lrs == [0.3, 0.03]  # reused under the other step-0 learning rate
        assert len(agent.history) == 4
        again = connection_agent(reuse_pretraining=True)
        again.execute()
        assert again.history == agent.history

    def test_no_pretraining_compiles_and_predicts_only(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        step0, step1 = torch_steps()
        fit0 = SpyCalls(monkeypatch, step0, "fit")
        fit1 = SpyCalls(monkeypatch, step1, "fit")
        predict0 = SpyCalls(monkeypatch, step0, "predict_update")
        tracker = RecordingTracker()
        agent = connection_agent(task_scheduler=grid_steps(step0, step1), do_pretraining=False)
        agent.tracker = tracker
        agent.execute()
        assert fit0.lrs == [] and fit1.lrs == []
        assert len(predict0.lrs) == 4  # compiled and predicted for every combination
        assert len(tracker.histories("step0")) == 0  # no pre-training reported
        assert len(tracker.histories("connection")) == 4
        assert agent.saver["step0"]["subtask_id"] == "reg"  # hps still recorded
        pretrained = connection_agent()
        pretrained.execute()
        assert metric_values(agent.history) != metric_values(pretrained.history)


class TestFreeze:
    def test_no_freeze_connected_training_changes_pretrained_weights(self) -> None:
        step0, step1 = torch_steps()
        agent = connection_agent(task_scheduler=[[step0], [step1]])
        agent.execute()
        assert changed(pretrained_state(agent, 0), step0.unwrapped_model)
        assert changed(pretrained_state(agent, 1), step1.unwrapped_model)

    def test_freeze_listed_steps_train_the_rest(self) -> None:
        step0, step1 = torch_steps()
        agent = connection_agent(task_scheduler=[[step0], [step1]], freeze_model_weights=["step0"])
        agent.execute()
        assert not changed(pretrained_state(agent, 0), step0.unwrapped_model)
        assert changed(pretrained_state(agent, 1), step1.unwrapped_model)

    def test_freeze_everything_evaluates_the_pretrained_chain(self) -> None:
        step0, step1 = torch_steps()
        tracker = RecordingTracker()
        agent = connection_agent(task_scheduler=[[step0], [step1]], freeze_model_weights=True)
        agent.tracker = tracker
        agent.execute()
        assert not changed(pretrained_state(agent, 0), step0.unwrapped_model)
        assert not changed(pretrained_state(agent, 1), step1.unwrapped_model)
        assert tracker.histories("connection") == [None]  # nothing was trained
        # the connected, frozen chain predicts what the step-by-step chain predicts
        plain = GridSearchAgent(
            storegate=make_store(),
            saver=dict_saver(),
            task_scheduler=[[torch_steps()[0]], [torch_steps()[1]]],
            metric="acc",
            metric_args=ACC_ARGS,
        )
        plain.execute()
        assert agent.result["metric_value"] == plain.result["metric_value"]

    def test_next_combination_starts_unfrozen(self) -> None:
        step0, step1 = torch_steps()
        agent = connection_agent(
            task_scheduler=grid_steps(step0, step1), freeze_model_weights=["step0"]
        )
        agent.execute()
        assert len(agent.history) == 4
        # after the last combination, step0's model (restored from the cache and frozen
        # for the connection) still equals its pre-trained state
        record = agent.runner.cache.get(agent.runner.step_key(agent.task_scheduler[3], 0, None))
        assert not changed(record.model_state, step0.unwrapped_model)

    @pytest.mark.parametrize(
        ("freeze", "match"),
        [(["stepX"], r"unknown task ids \['stepX'\]"), ("step0", "expected True, False")],
    )
    def test_freeze_validation(self, freeze: Any, match: str) -> None:
        with pytest.raises(ValueError, match=match):
            connection_agent(freeze_model_weights=freeze)


def test_global_rng_state_untouched() -> None:
    states = (torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    agent = connection_agent()  # restores pre-trained steps (recompiling their models)
    agent.execute()
    assert agent.runner.cache.hits > 0
    assert torch.equal(torch.random.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]


class TestConnectionRandom:
    def test_samples_and_connects(self) -> None:
        tracker = RecordingTracker()
        agent = connection_agent(ConnectionRandomSearchAgent, samplings=2, seed=5)
        agent.tracker = tracker
        agent.execute()
        sample = agent.sample_indices()
        assert len(agent.history) == 2
        assert [r["job_id"] for r in agent.history] == [0, 1]
        grid = connection_agent(seed=5)
        grid.execute()
        # per-step seeding: a combination's value does not depend on the search around it
        for result, index in zip(agent.history, sample, strict=True):
            assert result["metric_value"] == grid.history[index]["metric_value"]
        assert len(tracker.histories("connection")) == 2

    def test_connection_spec(self) -> None:
        agent = connection_agent(
            ConnectionRandomSearchAgent,
            samplings=1,
            freeze_model_weights=True,
            do_pretraining=False,
            connectiontask_name="c",
            connectiontask_args={"num_epochs": 2},
        )
        assert agent.connection_spec() == ConnectionSpec(
            pretrain=False,
            freeze=True,
            task_args={"num_epochs": 2},
            name="c",
            reuse_pretraining=False,
        )

    def test_connectiontask_args_default_is_not_shared(self) -> None:
        args = {"num_epochs": 2}
        first = connection_agent(ConnectionRandomSearchAgent, samplings=1, connectiontask_args=args)
        args["num_epochs"] = 99  # the agent keeps its own copy
        assert first.connection_spec().task_args == {"num_epochs": 2}
        first.connection_spec().task_args["num_epochs"] = 50
        second = connection_agent(
            ConnectionRandomSearchAgent, samplings=1, connectiontask_args=None
        )
        assert second.connection_spec().task_args == {}
