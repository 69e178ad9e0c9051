"""The scripts in examples/ run end to end and produce what their docstrings promise."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RESULT_KEYS = {"task_ids", "subtask_ids", "job_id", "trial_id", "subtask_hps", "metric_value"}


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(
        f"multiml_example_{name}", EXAMPLES / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_iris_two_step():
    pytest.importorskip("sklearn")
    example = load_example("iris_two_step")
    agent = example.main([])

    history = sorted(agent.history, key=lambda r: r["job_id"])
    assert [r["job_id"] for r in history] == list(range(16))
    expected_hps = [
        [{"model__k": k}, {"model__input_shape": k, "optimizer__lr": lr}]
        for k in example.K_VALUES
        for lr in example.LEARNING_RATES
    ]
    assert [r["subtask_hps"] for r in history] == expected_hps
    for result in history:
        assert set(result) == RESULT_KEYS
        assert result["task_ids"] == ["step0", "step1"]
        assert result["subtask_ids"] == ["select_k_best", "mlp"]
        assert 0.0 <= result["metric_value"] <= 1.0
    assert agent.result["metric_value"] > 0.85
    assert agent.result == max(history, key=lambda r: r["metric_value"])
    assert agent.saver["result"] == agent.result

    # the last combination (k=4) built its MLP with 4 inputs and wrote 3-class probabilities
    mlp = agent.task_scheduler.get_subtask("step1", "mlp").env
    assert mlp.ml.model.in_features == 4
    storegate = agent.storegate
    assert storegate.get_data("features", "test").shape == (30, 4)
    prob = storegate.get_data("pred", "test")
    accuracy = np.mean(prob.argmax(axis=1) == storegate.get_data("label", "test"))
    assert history[-1]["metric_value"] == pytest.approx(accuracy)


def test_connection():
    example = load_example("connection")
    agent = example.main([])

    best = agent.get_best_result()
    assert set(best) == RESULT_KEYS
    assert best["task_ids"] == ["step0", "step1"]
    assert best["subtask_ids"] == ["regress_h", "classify"]
    assert best["trial_id"] is None
    assert best["metric_value"] > 0.85
    history = sorted(agent.history, key=lambda r: r["job_id"])
    assert [r["subtask_hps"] for r in history] == [
        [{"model__layers": layers}, {"optimizer__lr": lr}]
        for layers in ([16], [32, 32])
        for lr in (3e-3, 1e-2)
    ]
    assert best == max(history, key=lambda r: r["metric_value"])

    # the connected model of the last combination wrote both steps' outputs
    storegate = agent.storegate
    assert storegate.get_data("h_pred", "test").shape == (400, 1)
    prob = storegate.get_data("prob", "test")
    assert prob.shape == (400, 2)
    accuracy = np.mean(prob.argmax(axis=1) == storegate.get_data("label", "test"))
    assert history[-1]["metric_value"] == pytest.approx(accuracy)
