"""Prefix reuse: a step whose subtask, hyperparameters and upstream were already executed
is restored from the cache, and the search gives exactly the re-execution result."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from multiml import Saver
from multiml.agent import GridSearchAgent, RandomSearchAgent
from multiml.agent.metric import ValueMetric
from multiml.agent.prefix_cache import (
    PrefixCache,
    StepRecord,
    restore_saver_entry,
    snapshot_saver_entry,
)
from multiml.agent.runner import CombinationRunner
from tests.agent.conftest import (
    ACC_ARGS,
    VALUE_ARGS,
    NoiseTask,
    dict_saver,
    make_store,
    metric_values,
    noise_steps,
    torch_steps,
)


def store_state(sg: Any) -> dict[tuple[str, str], np.ndarray]:
    return {
        (phase, var): np.array(sg.get_data(var, phase))
        for phase in ("train", "valid", "test")
        for var in sg.get_var_names(phase)
    }


def assert_same_store(a: Any, b: Any) -> None:
    left, right = store_state(a), store_state(b)
    assert left.keys() == right.keys()
    for key in left:
        assert np.array_equal(left[key], right[key]), key


class CountingExecute:
    """Counts ``execute`` calls of one task object (a spy that still runs it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, task: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        original = task.execute

        def execute() -> Any:
            self.calls.append(dict(task.optimizer_args))
            return original()

        monkeypatch.setattr(task, "execute", execute)


def torch_grid(saver: Saver | None = None, **step0_args: Any) -> tuple[GridSearchAgent, Any]:
    """2 step-0 learning rates x 3 step-1 learning rates; returns (agent, step0)."""
    step0, step1 = torch_steps(**step0_args)
    agent = GridSearchAgent(
        storegate=make_store(),
        saver=saver if saver is not None else dict_saver(),
        task_scheduler=[
            [(step0, {"optimizer__lr": [0.1, 0.01]})],
            [(step1, {"optimizer__lr": [0.3, 0.1, 0.03]})],
        ],
        metric="acc",
        metric_args=ACC_ARGS,
    )
    return agent, step0


class TestReuse:
    def test_noise_grid_step0_runs_once_per_value(self) -> None:
        cached = GridSearchAgent(
            storegate=make_store(),
            saver=dict_saver(),
            task_scheduler=noise_steps(),
            metric="value",
            metric_args=VALUE_ARGS,
        )
        step0 = cached.task_scheduler[0][0].env
        step1 = cached.task_scheduler[0][1].env
        cached.execute()
        assert step0.executions == [0.0, 1.0]
        assert step1.executions == [0.0, 10.0, 20.0] * 2

        plain = GridSearchAgent(
            storegate=make_store(),
            saver=dict_saver(),
            task_scheduler=noise_steps(),
            metric="value",
            metric_args=VALUE_ARGS,
        )
        plain.cache_size = 0
        plain.execute()
        assert plain.task_scheduler[0][0].env.executions == [0.0] * 3 + [1.0] * 3
        assert plain.history == cached.history  # bit-identical values
        assert_same_store(cached.storegate, plain.storegate)

    def test_torch_grid_equals_cache_disabled(self, monkeypatch: pytest.MonkeyPatch) -> None:
        cached, step0 = torch_grid(save_weights=True)
        spy = CountingExecute(monkeypatch, step0)
        cached.execute()
        assert [c["lr"] for c in spy.calls] == [0.1, 0.01]

        plain, step0_plain = torch_grid(save_weights=True)
        plain.cache_size = 0
        spy_plain = CountingExecute(monkeypatch, step0_plain)
        plain.execute()
        assert len(spy_plain.calls) == 6
        assert metric_values(plain.history) == metric_values(cached.history)
        assert plain.history == cached.history
        assert len(set(metric_values(cached.history))) > 1  # the grid is not degenerate

        # the last combination's step 0 was restored (cached) vs re-executed (plain): the
        # store variables and the Saver entries it left are the same
        assert_same_store(cached.storegate, plain.storegate)
        assert cached.saver.keys() == plain.saver.keys()
        for key in cached.saver:
            left, right = cached.saver[key], plain.saver[key]
            if isinstance(left, dict) and "timestamp" in left:
                a, b = cached.saver.load_ml(key), plain.saver.load_ml(key)
                assert a["state_dict"].keys() == b["state_dict"].keys()
                for name in a["state_dict"]:
                    assert torch.equal(a["state_dict"][name], b["state_dict"][name]), key
            else:
                assert left == right, key

    def test_restored_weights_are_saved_under_the_combinations_id(self, tmp_path: Any) -> None:
        """save_weights=True dumps under the task's unique id, which names the job: a
        restored step writes them under the restoring job's id, like a re-run would."""
        for saver in (dict_saver(), Saver(save_dir=str(tmp_path))):
            agent, _ = torch_grid(saver=saver, save_weights=True)
            agent.execute()
            for job in range(6):
                record = saver.load_ml(f"step0_reg_job{job}")
                assert record["state_dict"] is not None, (saver.mode, job)
            first, second = (saver.load_ml(f"step0_reg_job{j}")["state_dict"] for j in (0, 1))
            assert all(torch.equal(first[k], second[k]) for k in first)  # same lr 0.1: reused
            other = saver.load_ml("step0_reg_job3")["state_dict"]  # lr 0.01
            assert any(not torch.equal(first[k], other[k]) for k in first)

    def test_saver_reference_resolves_after_restore(self) -> None:
        steps = [
            [(NoiseTask(input_var="x", output_var="mid", name="n0"), {"offset": [3.0, 7.0]})],
            [
                (
                    NoiseTask(input_var="mid", output_var="pred", name="n1"),
                    {"offset": ["saver__step0__offset"], "fail_on": [None, -1.0]},
                )
            ],
        ]
        agent = GridSearchAgent(
            storegate=make_store(),
            saver=dict_saver(),
            task_scheduler=steps,
            metric="value",
            metric_args=VALUE_ARGS,
        )
        agent.execute()
        assert steps[0][0][0].executions == [3.0, 7.0]  # step 0 restored in jobs 1 and 3
        for result in agent.history:
            assert result["subtask_hps"][1]["offset"] == result["subtask_hps"][0]["offset"]
        assert steps[1][0][0].executions == [3.0, 3.0, 7.0, 7.0]

    def test_random_search_reuses_in_index_order(self) -> None:
        agent = RandomSearchAgent(
            storegate=make_store(),
            saver=dict_saver(),
            task_scheduler=noise_steps(),
            metric="value",
            metric_args=VALUE_ARGS,
            samplings=[5, 0, 4, 1],
        )
        agent.execute()
        step0 = agent.task_scheduler[0][0].env
        assert step0.executions == [0.0, 1.0]  # executed in index order: 0, 1 | 4, 5
        assert [r["job_id"] for r in agent.history] == [0, 1, 2, 3]

    def test_trials_are_cached_separately(self) -> None:
        agent = GridSearchAgent(
            storegate=make_store(),
            saver=dict_saver(),
            task_scheduler=noise_steps(),
            metric="value",
            metric_args=VALUE_ARGS,
            num_trials=2,
        )
        agent.execute()
        assert agent.task_scheduler[0][0].env.executions == [0.0, 0.0, 1.0, 1.0]


class TestRunnerAndCache:
    def test_lru_eviction_and_disable(self) -> None:
        cache = PrefixCache(2)
        for key in "abc":
            cache.put(key, StepRecord(resolved_hps={"k": key}))
        assert "a" not in cache and len(cache) == 2
        assert cache.get("b").resolved_hps == {"k": "b"}
        cache.put("d", StepRecord())
        assert "c" not in cache and "b" in cache  # 'b' was used more recently
        assert (cache.hits, cache.misses) == (1, 0)
        assert cache.get("zz") is None and cache.misses == 1
        cache.clear()
        assert len(cache) == 0
        off = PrefixCache(0)
        off.put("a", StepRecord())
        assert len(off) == 0
        with pytest.raises(ValueError, match="max_entries"):
            PrefixCache(-1)

    def test_saver_entry_roundtrip_keeps_in_memory_weights(self) -> None:
        saver = dict_saver()
        model = torch.nn.Linear(3, 2)
        saver.dump_ml("w", model=model, epochs=2)
        saver["plain"] = {"a": [1, 2]}
        entries = {key: snapshot_saver_entry(saver, key) for key in ("w", "plain")}
        saver["w"] = "overwritten"
        saver["plain"] = None
        for key, entry in entries.items():
            restore_saver_entry(saver, key, entry)
        record = saver.load_ml("w")
        assert record["epochs"] == 2
        assert torch.equal(record["state_dict"]["weight"], model.weight.detach())
        assert saver["plain"] == {"a": [1, 2]}

    def test_runner_step_restores_store_and_saver(self) -> None:
        sg = make_store()
        saver = dict_saver()
        runner = CombinationRunner(sg, saver, ValueMetric(pred_var_name="pred"), seed=4)
        combos = noise_steps([2.0], [0.0, 5.0])
        from multiml import TaskScheduler

        ts = TaskScheduler(combos)
        first = runner.run(ts[0], 0)
        mid_after_exec = np.array(sg.get_data("mid", "train"))
        saver["step0"] = "scribbled"
        sg.update_data("mid", np.zeros_like(mid_after_exec), "train")
        second = runner.run(ts[1], 1)  # step 0 restored
        assert np.array_equal(sg.get_data("mid", "train"), mid_after_exec)
        assert saver["step0"] == {"subtask_id": "noise0", "offset": 2.0}
        assert runner.cache.hits == 1
        assert first["metric_value"] != second["metric_value"]
