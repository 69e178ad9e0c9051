"""BaseAgent conveniences, SequentialAgent (trials, connection mode) and the result table."""

from __future__ import annotations

import logging
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from multiml import Saver, StoreGate, TaskScheduler
from multiml.agent import BaseAgent, GridSearchAgent, SequentialAgent
from multiml.agent.basic import Agent
from multiml.agent.metric import ACCMetric, BaseMetric, MSEMetric, ValueMetric, ZeroMetric
from multiml.agent.report import format_metric, result_table
from multiml.task.basic import BaseTask
from tests.agent.conftest import (
    ACC_ARGS,
    VALUE_ARGS,
    NoiseTask,
    RecordingTracker,
    dict_saver,
    make_store,
    metric_values,
    noise_steps,
    torch_steps,
)

RESULT_KEYS = {"task_ids", "subtask_ids", "job_id", "trial_id", "subtask_hps", "metric_value"}


def noise_chain() -> list[NoiseTask]:
    """One combination: x → mid → pred with fixed offsets."""
    return [
        NoiseTask(input_var="x", output_var="mid", offset=1.0, name="n0"),
        NoiseTask(input_var="mid", output_var="pred", offset=2.0, name="n1"),
    ]


# --------------------------------------------------------------------------- BaseAgent
class TestBaseAgent:
    def test_defaults(self) -> None:
        agent = BaseAgent()
        assert isinstance(agent.saver, Saver)
        assert agent.storegate is None
        assert isinstance(agent.task_scheduler, TaskScheduler)
        assert len(agent.task_scheduler.get_task_ids()) == 0
        assert isinstance(agent.metric, ZeroMetric)

    @pytest.mark.parametrize("as_path", [False, True])
    def test_saver_given_as_directory(self, tmp_path: Path, as_path: bool) -> None:
        target = tmp_path / "results"
        agent = BaseAgent(saver=target if as_path else str(target))
        assert isinstance(agent.saver, Saver)
        assert Path(agent.saver.save_dir) == target
        agent.saver["answer"] = 42
        assert Saver(save_dir=str(target))["answer"] == 42  # really persisted there

    def test_saver_instance_is_kept(self) -> None:
        saver = dict_saver()
        assert BaseAgent(saver=saver).saver is saver

    def test_storegate_given_as_dict(self) -> None:
        agent = BaseAgent(storegate={"backend": "numpy", "data_id": "mydata"})
        assert isinstance(agent.storegate, StoreGate)
        assert agent.storegate.data_id == "mydata"
        assert agent.metric.storegate is agent.storegate

    def test_task_scheduler_list_shortcut(self) -> None:
        agent = BaseAgent(task_scheduler=["prepare", "fit"])
        assert agent.task_scheduler.get_sorted_task_ids() == ["prepare", "fit"]
        envs = noise_chain()
        agent = BaseAgent(task_scheduler=envs)
        ts = agent.task_scheduler
        assert ts.get_sorted_task_ids() == ["step0", "step1"]
        assert [st.env for st in ts[0]] == envs

    @pytest.mark.parametrize("name", ["acc", "ACC", "Acc", "ACCMetric"])
    def test_metric_by_name_any_case_with_args(self, name: str) -> None:
        agent = BaseAgent(metric=name, metric_args={"pred_var_name": "p", "phase": "valid"})
        assert isinstance(agent.metric, ACCMetric)
        assert agent.metric.pred_var_name == "p"
        assert agent.metric.phase == "valid"

    def test_unknown_metric_lists_known_names(self) -> None:
        with pytest.raises(ValueError, match="unknown metric 'f1'") as info:
            BaseAgent(metric="f1")
        for known in ("acc", "auc", "mse", "value", "zero", "random"):
            assert known in str(info.value)

    def test_metric_args_with_instance_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="metric_args"):
            BaseAgent(metric=MSEMetric(), metric_args={"phase": "valid"})

    def test_metric_of_wrong_type_is_an_error(self) -> None:
        with pytest.raises(TypeError, match="metric"):
            BaseAgent(metric=3.5)

    def test_metric_instance_gets_the_storegate(self) -> None:
        sg = make_store()
        metric = MSEMetric()
        agent = BaseAgent(storegate=sg, metric=metric)
        assert agent.metric is metric
        assert metric.storegate is sg

    def test_execute_must_be_implemented(self) -> None:
        with pytest.raises(NotImplementedError, match="BaseAgent"):
            BaseAgent().execute()

    def test_execute_finalize_runs_both_in_order(self) -> None:
        calls = []

        class Recorder(Agent):
            def execute(self) -> None:
                calls.append("execute")

            def finalize(self) -> None:
                calls.append("finalize")

        Recorder().execute_finalize()
        assert calls == ["execute", "finalize"]

    def test_tracker_property(self) -> None:
        agent = BaseAgent()
        assert agent.tracker is None
        tracker = RecordingTracker()
        agent.tracker = tracker
        assert agent.tracker is tracker


# ---------------------------------------------------------------------- SequentialAgent
def sequential(**kwargs: object) -> SequentialAgent:
    kwargs.setdefault("storegate", make_store())
    kwargs.setdefault("saver", dict_saver())
    kwargs.setdefault("task_scheduler", noise_chain())
    kwargs.setdefault("metric", "value")
    kwargs.setdefault("metric_args", VALUE_ARGS)
    return SequentialAgent(**kwargs)


class TestSequentialAgent:
    def test_result_dict(self) -> None:
        agent = sequential()
        assert agent.result is None
        agent.execute()
        result = agent.result
        assert set(result) == RESULT_KEYS
        assert result["task_ids"] == ["step0", "step1"]
        assert result["subtask_ids"] == ["n0", "n1"]
        assert result["job_id"] == 0
        assert result["trial_id"] is None
        assert result["subtask_hps"] == [{}, {}]
        # mean(x) + 1 + noise, then + 2 + noise: the offsets are visible in the metric
        pred = agent.storegate.get_data("pred", "test")
        assert result["metric_value"] == pytest.approx(float(pred.mean()))
        assert 2.0 < result["metric_value"] < 5.0

    def test_more_than_one_combination_is_an_error(self) -> None:
        agent = sequential(task_scheduler=noise_steps([0.0, 1.0], [0.0]))
        with pytest.raises(ValueError, match="2") as info:
            agent.execute()
        assert "GridSearchAgent" in str(info.value)
        assert "RandomSearchAgent" in str(info.value)
        assert agent.result is None

    def test_num_trials_average_of_differently_seeded_trials(self) -> None:
        agent = sequential(num_trials=3)
        agent.execute()
        result = agent.result
        values = result["metric_values"]
        assert len(values) == 3
        assert len(set(values)) == 3  # each trial has its own seed
        assert result["metric_value"] == pytest.approx(statistics.fmean(values))
        assert result["trial_id"] is None
        # trial t of the aggregate is exactly what running trial t alone gives
        again = sequential()
        for trial, value in enumerate(values):
            assert again.execute_pipeline(again.task_scheduler[0], 0, trial)["metric_value"] == (
                value
            )

    @pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
    def test_num_trials_validation(self, bad: object) -> None:
        with pytest.raises(ValueError, match="num_trials"):
            sequential(num_trials=bad)

    def test_same_seed_same_value_every_run(self) -> None:
        first, second = sequential(), sequential()
        first.execute()
        second.execute()
        assert first.result["metric_value"] == second.result["metric_value"]

    def test_seed_attribute_changes_the_result_reproducibly(self) -> None:
        values = {}
        for seed in (0, 1, 1, np.int64(2)):
            agent = sequential()
            assert agent.seed == 0
            agent.seed = seed
            agent.execute()
            values.setdefault(int(seed), set()).add(agent.result["metric_value"])
        assert all(len(v) == 1 for v in values.values())  # same seed, same value
        assert len({v.pop() for v in values.values()}) == 3  # seeds differ
        with pytest.raises(ValueError, match="seed='x'"):
            sequential().seed = "x"

    def test_finalize_logs_table_and_stores_result(self, caplog: pytest.LogCaptureFixture) -> None:
        tracker = RecordingTracker()
        agent = sequential(num_trials=2)
        agent.tracker = tracker
        agent.execute()
        with caplog.at_level(logging.INFO, logger="multiml.agent"):
            agent.finalize()
        assert agent.saver["result"] == agent.result
        text = caplog.text
        assert "step0" in text and "step1" in text and "value" in text
        assert "±" in text and "(2 trials)" in text
        assert tracker.closed == 1
        assert [r[1]["metric_value"] for r in tracker.results] == [agent.result["metric_value"]]

    def test_finalize_before_execute(self) -> None:
        with pytest.raises(RuntimeError, match="execute"):
            sequential().finalize()

    def test_execute_finalize(self) -> None:
        agent = sequential()
        agent.execute_finalize()
        assert agent.saver["result"]["metric_value"] == agent.result["metric_value"]

    def test_execute_subtasktuples_and_pipeline(self) -> None:
        agent = sequential(num_trials=2)
        combination = agent.task_scheduler[0]
        aggregate = agent.execute_subtasktuples(combination, 7)
        assert aggregate["job_id"] == 7
        assert len(aggregate["metric_values"]) == 2
        single = agent.execute_pipeline(combination, 7, trial=1)
        assert single["trial_id"] == 1
        assert "metric_values" not in single
        assert single["metric_value"] == aggregate["metric_values"][1]

    def test_tracker_sees_every_step(self) -> None:
        tracker = RecordingTracker()
        agent = sequential()
        agent.tracker = tracker
        agent.execute()
        assert [(run, tid, sid) for run, tid, sid, _, _ in tracker.steps] == [
            ("job0000", "step0", "n0"),
            ("job0000", "step1", "n1"),
        ]

    def test_saver_records_resolved_hps_per_step(self) -> None:
        steps = [
            [(NoiseTask(input_var="x", output_var="mid", name="n0"), {"offset": [4.0]})],
            [(NoiseTask(input_var="mid", name="n1"), {"offset": ["saver__step0__offset"]})],
        ]
        agent = sequential(task_scheduler=steps)
        agent.execute()
        assert agent.saver["step0"] == {"subtask_id": "n0", "offset": 4.0}
        assert agent.saver["step1"] == {"subtask_id": "n1", "offset": 4.0}
        assert agent.result["subtask_hps"] == [{"offset": 4.0}, {"offset": 4.0}]

    def test_hyperparameters_do_not_leak_into_a_later_run(self) -> None:
        step = NoiseTask(output_var="pred", name="n")
        agent = sequential(task_scheduler=[[(step, {"offset": [100.0]})]])
        agent.execute()
        assert agent.result["metric_value"] > 50.0
        plain = sequential(task_scheduler=[step])  # same task object, no hyperparameters
        plain.execute()
        assert plain.result["metric_value"] < 50.0  # offset back to its constructor value


# ------------------------------------------------------------------- connection mode
def torch_sequential(**kwargs: object) -> SequentialAgent:
    kwargs.setdefault("storegate", make_store())
    kwargs.setdefault("saver", dict_saver())
    kwargs.setdefault("task_scheduler", list(torch_steps()))
    kwargs.setdefault("metric", "acc")
    kwargs.setdefault("metric_args", ACC_ARGS)
    return SequentialAgent(**kwargs)


class TestDifferentiable:
    def test_pytorch_without_pretraining(self, monkeypatch: pytest.MonkeyPatch) -> None:
        step0, step1 = torch_steps()
        fits = []
        for step in (step0, step1):
            monkeypatch.setattr(step, "fit", lambda *a, _s=step, **k: fits.append(_s.name))
        tracker = RecordingTracker()
        agent = torch_sequential(
            task_scheduler=[step0, step1],
            differentiable="pytorch",
            diff_task_args={"optimizer": "SGD", "num_epochs": 3, "device": "cpu"},
        )
        agent.tracker = tracker
        agent.execute()
        assert fits == []  # steps only compiled and predicted
        connection = tracker.histories("connection")
        assert len(connection) == 1
        assert len(connection[0]["train"]) == 3  # diff_task_args num_epochs reached the task
        assert set(agent.result) == RESULT_KEYS
        assert 0.0 <= agent.result["metric_value"] <= 1.0

    def test_pytorch_with_pretraining_and_loss_weights(self) -> None:
        tracker = RecordingTracker()
        agent = torch_sequential(
            differentiable="pytorch",
            diff_pretrain=True,
            diff_task_args={
                "optimizer": "SGD",
                "num_epochs": 1,
                "device": "cpu",
                "loss_weights": [0.5, 1.0],
            },
        )
        agent.tracker = tracker
        agent.execute()
        assert len(tracker.histories("step0")) == 1  # pre-trained ...
        assert len(tracker.histories("step0")[0]["train"]) == 2  # ... for its own 2 epochs
        (history,) = tracker.histories("connection")
        sublosses = history["train"][0]["subloss"]
        assert all(s is not None for s in sublosses)  # both losses weighted
        default = torch_sequential(
            differentiable="pytorch",
            diff_pretrain=True,
            diff_task_args={"optimizer": "SGD", "num_epochs": 1, "device": "cpu"},
        )
        default.tracker = RecordingTracker()
        default.execute()
        (history,) = default.tracker.histories("connection")
        assert history["train"][0]["subloss"][0] is None  # default: only the last loss

    def test_pretraining_changes_the_result_and_is_reproducible(self) -> None:
        args = {"optimizer": "SGD", "num_epochs": 1, "device": "cpu"}
        values = []
        for pretrain in (False, True, True):
            agent = torch_sequential(
                differentiable="pytorch", diff_pretrain=pretrain, diff_task_args=args
            )
            agent.execute()
            values.append(agent.result["metric_value"])
        assert values[1] == values[2]
        assert values[0] != values[1]

    def test_execute_differentiable_matches_execute(self) -> None:
        args = {"optimizer": "SGD", "num_epochs": 1, "device": "cpu"}
        agent = torch_sequential(differentiable="pytorch", diff_task_args=args)
        agent.execute()
        other = torch_sequential(differentiable="pytorch", diff_task_args=args)
        direct = other.execute_differentiable(other.task_scheduler[0], 0)
        assert direct["metric_value"] == agent.result["metric_value"]
        assert direct["trial_id"] is None

    def test_keras_is_a_clear_error(self) -> None:
        with pytest.raises(ValueError, match=r"differentiable='keras'.*'pytorch'"):
            torch_sequential(differentiable="keras")

    def test_connection_trains_the_subtask_models(self) -> None:
        step0, step1 = torch_steps()
        agent = torch_sequential(
            task_scheduler=[step0, step1],
            differentiable="pytorch",
            diff_pretrain=True,
            diff_task_args={"optimizer": "SGD", "num_epochs": 1, "device": "cpu"},
        )
        agent.execute()
        record = agent.runner.cache.get(agent.runner.step_key(agent.task_scheduler[0], 1, None))
        trained = step1.unwrapped_model.state_dict()
        assert any(
            not torch.equal(trained[name], record.model_state[name]) for name in trained
        )  # connected training moved step1 away from its pre-trained weights


# ------------------------------------------------------------------------ result table
class TestReport:
    RESULTS = [
        {
            "task_ids": ["step0", "step1"],
            "subtask_ids": ["mlp", "clf"],
            "job_id": 0,
            "trial_id": None,
            "subtask_hps": [{"lr": 0.1, "layers": [4, 2]}, {}],
            "metric_value": 0.5,
            "metric_values": [0.4, 0.6],
        },
        {
            "task_ids": ["step0", "step1"],
            "subtask_ids": ["mlp", "clf"],
            "job_id": 1,
            "trial_id": None,
            "subtask_hps": [{"lr": 0.01, "layers": [4, 2]}, {}],
            "metric_value": 0.75,
            "metric_values": [0.75, 0.75],
        },
    ]

    def test_table(self) -> None:
        table = result_table(self.RESULTS, "acc", best_job_id=1)
        lines = table.splitlines()
        assert lines[0].split() == ["job", "step0", "step1", "acc"]
        assert set(lines[1].replace(" ", "")) == {"-"}
        assert lines[2].startswith("0 ")
        assert "mlp (lr=0.1, layers=[4, 2])" in lines[2]
        assert "0.5 ± 0.14 (2 trials)" in lines[2]
        assert lines[3].startswith("1 *")
        assert "0.75 ± 0 (2 trials)" in lines[3]
        # columns line up: every step1 cell starts at the same offset
        offsets = {line.index("clf") for line in lines[2:]}
        assert len(offsets) == 1 and lines[0].index("step1") in offsets

    def test_empty_and_single_values(self) -> None:
        assert result_table([], "acc") == "(no results)"
        single = dict(self.RESULTS[0])
        del single["metric_values"]
        assert format_metric(single) == "0.5"
        assert format_metric({"metric_value": 1 / 3, "metric_values": [1 / 3]}) == "0.333333"
        assert "*" not in result_table([single], "acc", best_job_id=None)


def test_metric_instances_work_with_sequential() -> None:
    agent = sequential(metric=ValueMetric(pred_var_name="pred"), metric_args=None)
    agent.execute()
    assert agent.result["metric_value"] > 0


# --------------------------------------------------------------- without a StoreGate
class ScoreTask(BaseTask):
    """Step 0 writes ``saver['score'] = value``; with ``add`` a later step adds ``value``
    to it. No StoreGate involved."""

    def __init__(self, value: float = 0.0, add: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._value = value
        self._add = add
        self.runs = 0

    def execute(self) -> None:
        self.runs += 1
        start = self.saver["score"] if self._add else 0.0
        self.saver["score"] = start + self._value


class SaverScore(BaseMetric):
    """The Saver's ``'score'`` (a metric that reads no store)."""

    name = "saver_score"
    type = "max"
    uses = ()

    def __init__(self, saver: Saver) -> None:
        super().__init__()
        self._saver = saver

    def compute(self, pred: object, true: object) -> float:
        return float(self._saver["score"])


def test_steps_that_only_use_the_saver_need_no_storegate() -> None:
    saver = dict_saver()
    step0 = ScoreTask(name="base")
    step1 = ScoreTask(add=True, name="bonus")
    agent = GridSearchAgent(
        saver=saver,
        task_scheduler=[[(step0, {"value": [1.0, 2.0]})], [(step1, {"value": [10.0, 20.0]})]],
        metric=SaverScore(saver),
    )
    assert agent.storegate is None
    agent.execute()
    assert metric_values(agent.history) == [11.0, 21.0, 12.0, 22.0]
    assert step0.runs == 2  # prefix reuse restores the Saver entry it wrote
    assert agent.result["subtask_hps"] == [{"value": 2.0}, {"value": 20.0}]
