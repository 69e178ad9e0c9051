"""RandomSearchAgent and GridSearchAgent in one process: sampling, best result, history,
failures, bad input, per-step seeding."""

from __future__ import annotations

import logging
import queue
import random

import numpy as np
import pytest
import torch

from multiml.agent import GridSearchAgent, RandomSearchAgent
from multiml.agent.metric import ValueMetric
from multiml.agent.seeding import canonical, derive_seed, seeded_rngs, stable_key
from tests.agent.conftest import (
    NoiseTask,
    metric_values,
    noise_agent,
    noise_steps,
    torch_steps,
)


def agent_of(cls: type = RandomSearchAgent, **kwargs: object) -> RandomSearchAgent:
    """An agent on the 2 x 3 NoiseTask grid (6 combinations)."""
    return noise_agent(cls, **kwargs)


def index_of(agent: RandomSearchAgent, result: dict) -> int:
    """The combination index a result belongs to."""
    return agent.task_scheduler.index_of(
        list(zip(result["subtask_ids"], result["subtask_hps"], strict=True))
    )


def global_rng_states() -> tuple:
    return random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state()


def assert_same_rng_states(before: tuple, after: tuple) -> None:
    assert before[0] == after[0]
    assert np.array_equal(before[1], after[1])
    assert torch.equal(before[2], after[2])


# ------------------------------------------------------------------------ samplings
class TestSamplings:
    def test_int_draws_distinct_indices_with_own_rng(self) -> None:
        agent = agent_of(samplings=4, seed=3)
        before = global_rng_states()
        agent.execute()
        assert_same_rng_states(before, global_rng_states())
        sample = agent.sample_indices()
        assert len(sample) == 4 and len(set(sample)) == 4
        assert all(0 <= i < 6 for i in sample)
        # history: sampling order, job_id = position in the sample
        assert [r["job_id"] for r in agent.history] == [0, 1, 2, 3]
        assert [index_of(agent, r) for r in agent.history] == sample

    def test_same_seed_same_sample_other_seed_other_sample(self) -> None:
        samples = {seed: agent_of(samplings=3, seed=seed).sample_indices() for seed in range(6)}
        assert agent_of(samplings=3, seed=2).sample_indices() == samples[2]
        assert len({tuple(s) for s in samples.values()}) > 1

    def test_sampling_does_not_touch_global_rngs(self) -> None:
        random.seed(5)
        np.random.seed(5)
        expected = (random.random(), np.random.random())
        random.seed(5)
        np.random.seed(5)
        agent_of(samplings=6, seed=1).sample_indices()
        assert (random.random(), np.random.random()) == expected

    def test_numpy_integers_accepted(self) -> None:
        agent = agent_of(samplings=np.int64(2), seed=np.int32(3))
        assert agent.sample_indices() == agent_of(samplings=2, seed=3).sample_indices()

    def test_all_combinations_is_a_permutation(self) -> None:
        assert sorted(agent_of(samplings=6).sample_indices()) == list(range(6))

    def test_more_than_the_space_is_an_error_naming_both(self) -> None:
        agent = agent_of(samplings=7)
        with pytest.raises(ValueError, match=r"samplings=7.*\b6\b"):
            agent.execute()
        assert agent.history == [] and agent.result is None

    def test_list_runs_exactly_those_in_that_order(self) -> None:
        agent = agent_of(samplings=[5, 1, 3])
        agent.execute()
        assert [index_of(agent, r) for r in agent.history] == [5, 1, 3]
        assert [r["job_id"] for r in agent.history] == [0, 1, 2]

    def test_numpy_array_of_indices(self) -> None:
        agent = agent_of(samplings=np.array([2, 0]))
        agent.execute()
        assert [index_of(agent, r) for r in agent.history] == [2, 0]

    def test_duplicates_are_an_error(self) -> None:
        with pytest.raises(ValueError, match=r"\[1\] more than once"):
            agent_of(samplings=[1, 2, 1])

    @pytest.mark.parametrize("bad", [[0, 6], [-1]])
    def test_out_of_range_is_an_error(self, bad: list[int]) -> None:
        agent = agent_of(samplings=bad)
        with pytest.raises(ValueError, match=r"outside 0\.\.5"):
            agent.execute()

    @pytest.mark.parametrize("bad", [0, -2, "3", 2.5, True, [1.5], ["a"]])
    def test_bad_samplings_type(self, bad: object) -> None:
        with pytest.raises(ValueError, match="samplings"):
            agent_of(samplings=bad)

    def test_samplings_not_set(self) -> None:
        with pytest.raises(ValueError, match="samplings is not set"):
            agent_of().execute()

    def test_bad_seed(self) -> None:
        with pytest.raises(ValueError, match="seed"):
            agent_of(samplings=1, seed="1")


# ------------------------------------------------------------------ best and history
class TestBestResult:
    def test_metric_type_from_metric(self) -> None:
        agent = agent_of(samplings=6)  # 'value' is a 'min' metric
        agent.execute()
        assert agent.metric_type == "min"
        assert agent.result["metric_value"] == min(metric_values(agent.history))
        assert agent.result in agent.history

    def test_metric_type_max(self) -> None:
        agent = agent_of(samplings=6, metric_type="max")
        agent.execute()
        assert agent.metric_type == "max"
        assert agent.result["metric_value"] == max(metric_values(agent.history))
        assert agent.result["subtask_hps"] == [{"offset": 1.0}, {"offset": 20.0}]

    def test_metric_type_min(self) -> None:
        agent = agent_of(samplings=6, metric_type="min")
        agent.execute()
        assert agent.result["subtask_hps"] == [{"offset": 0.0}, {"offset": 0.0}]

    @pytest.mark.parametrize("bad", ["MAX", "minimize", ""])
    def test_other_metric_types_are_errors(self, bad: str) -> None:
        with pytest.raises(ValueError, match=r"metric_type.*'min' and 'max'"):
            agent_of(samplings=1, metric_type=bad)

    def test_nan_is_never_best(self) -> None:
        agent = agent_of(samplings=1)
        results = [{"metric_value": float("nan")}, {"metric_value": 3.0}]
        assert agent.best_of(results)["metric_value"] == 3.0

    def test_finalize_stores_result_and_optionally_history(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        agent = agent_of(samplings=[4, 0])
        agent.execute()
        with caplog.at_level(logging.INFO, logger="multiml.agent"):
            agent.finalize()
        assert agent.saver["result"] == agent.result
        assert "history" not in agent.saver
        assert "lower is better" in caplog.text
        rows = [line for line in caplog.text.splitlines() if "noise0 (offset=" in line]
        assert len(rows) == 2
        assert sum("*" in row for row in rows) == 1

        dumping = agent_of(samplings=[4, 0], dump_all_results=True)
        dumping.execute()
        dumping.finalize()
        assert dumping.saver["history"] == dumping.history
        assert len(dumping.history) == 2

    def test_finalize_before_execute(self) -> None:
        with pytest.raises(RuntimeError, match="execute"):
            agent_of(samplings=1).finalize()


class TestProgressBar:
    def test_hidden_by_default(self, capsys: pytest.CaptureFixture) -> None:
        agent_of(samplings=3).execute()
        assert "3/3" not in capsys.readouterr().err

    def test_shown_when_enabled(self, capsys: pytest.CaptureFixture) -> None:
        agent_of(samplings=3, disable_tqdm=False).execute()
        err = capsys.readouterr().err
        assert "RandomSearchAgent" in err and "3/3" in err


# --------------------------------------------------------------------------- grid
class TestGridSearch:
    def test_every_combination_job_id_is_index(self) -> None:
        agent = agent_of(GridSearchAgent)
        agent.execute()
        assert [r["job_id"] for r in agent.history] == list(range(6))
        assert [index_of(agent, r) for r in agent.history] == list(range(6))
        assert agent.history[4]["subtask_hps"] == [{"offset": 1.0}, {"offset": 10.0}]

    def test_samplings_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="samplings does not apply"):
            agent_of(GridSearchAgent, samplings=3)

    def test_values_do_not_depend_on_what_ran_before(self) -> None:
        grid = agent_of(GridSearchAgent)
        grid.execute()
        for index in (0, 4, 5):
            alone = agent_of(samplings=[index])
            alone.execute()
            assert alone.history[0]["metric_value"] == grid.history[index]["metric_value"]

    def test_num_trials(self) -> None:
        agent = agent_of(GridSearchAgent, num_trials=2)
        agent.execute()
        for result in agent.history:
            assert len(result["metric_values"]) == 2
            assert result["metric_values"][0] != result["metric_values"][1]
            assert result["metric_value"] == pytest.approx(np.mean(result["metric_values"]))
            assert result["trial_id"] is None

    def test_no_combinations(self) -> None:
        agent = agent_of(GridSearchAgent, task_scheduler=[])
        with pytest.raises(ValueError, match="no combinations"):
            agent.execute()


# ------------------------------------------------------------------------- seeding
class TestSeeding:
    def test_order_independent_bit_identical(self) -> None:
        first = agent_of(samplings=[3, 0, 2])
        second = agent_of(samplings=[0, 2, 3])
        first.execute()
        second.execute()
        by_index = {index_of(first, r): r["metric_value"] for r in first.history}
        assert {index_of(second, r): r["metric_value"] for r in second.history} == by_index

    def test_agent_seed_changes_every_value(self) -> None:
        values = []
        for seed in (0, 1):
            agent = agent_of(GridSearchAgent, seed=seed)
            agent.execute()
            values.append(metric_values(agent.history))
        assert all(a != b for a, b in zip(*values, strict=True))

    def test_torch_steps_reproducible(self) -> None:
        runs = []
        for _ in range(2):
            agent = agent_of(
                samplings=[1, 0],
                task_scheduler=[
                    [(torch_steps()[0], {"optimizer__lr": [0.1]})],
                    [(torch_steps()[1], {"optimizer__lr": [0.3, 0.03]})],
                ],
                metric="acc",
                metric_args={"pred_var_name": "pred", "true_var_name": "label"},
            )
            agent.execute()
            runs.append(agent.history)
        assert runs[0] == runs[1]

    def test_seeded_rngs_seeds_and_restores(self) -> None:
        before = global_rng_states()
        with seeded_rngs(123):
            first = (random.random(), np.random.random(), torch.rand(1).item())
        assert_same_rng_states(before, global_rng_states())
        with seeded_rngs(123):
            again = (random.random(), np.random.random(), torch.rand(1).item())
        assert first == again
        with pytest.raises(RuntimeError), seeded_rngs(7):
            np.random.random()
            raise RuntimeError("a failing step")
        assert_same_rng_states(before, global_rng_states())

    def test_derive_seed_is_stable_and_canonical(self) -> None:
        prefix = [("step0", "mlp", {"lr": 0.1, "layers": (4, 2)})]
        seed = derive_seed(0, prefix, None)
        assert 0 <= seed < 2**63
        # dict order, tuples vs lists and numpy scalars do not matter
        same = [("step0", "mlp", {"layers": [4, 2], "lr": np.float64(0.1)})]
        assert derive_seed(0, same, None) == seed
        assert derive_seed(1, prefix, None) != seed
        assert derive_seed(0, prefix, 0) != seed
        assert stable_key({"b": 1, "a": 2}) == '[{"a":2,"b":1}]'
        assert canonical(np.arange(2)) == {"ndarray": [0, 1], "dtype": "int64"}
        assert canonical(ValueMetric) == "multiml.agent.metric.ValueMetric"

    def test_objects_with_default_repr_seed_by_class_and_state(self) -> None:
        class Sampler:
            def __init__(self, size: int) -> None:
                self.size = size

        key = canonical(Sampler(3))
        assert key == canonical(Sampler(3))  # not the memory address
        assert "0x" not in stable_key(Sampler(3))
        assert key["state"] == {"size": 3}
        assert key["object"].endswith("Sampler")
        assert canonical(Sampler(4)) != key

    def test_derive_seed_is_fixed_across_processes(self) -> None:
        # a regression guard: sha256 of the canonical JSON, not the salted hash()
        assert derive_seed("a") == int.from_bytes(
            __import__("hashlib").sha256(b'["a"]').digest()[:8], "little"
        ) & (2**63 - 1)


# ------------------------------------------------------------------------ failures
class TestFailures:
    def test_failing_combination_is_recorded_others_kept(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        agent = agent_of(GridSearchAgent, task_scheduler=noise_steps(fail_on=0.0))
        with caplog.at_level(logging.ERROR, logger="multiml.agent"):
            agent.execute()
        failed = sorted(f["job_id"] for f in agent.failures)
        assert failed == [0, 3]  # step1 offset 0.0 under both step0 offsets
        for failure in agent.failures:
            assert failure["index"] == failure["job_id"]
            assert failure["subtask_hps"][1] == {"offset": 0.0}
            assert failure["task_ids"] == ["step0", "step1"]
            assert "NoiseTask refuses offset=0.0" in failure["error"]
            assert "while running step 'step1'" in failure["error"]
            assert "Traceback" in failure["traceback"]
        assert [r["job_id"] for r in agent.history] == [1, 2, 4, 5]
        assert agent.result["job_id"] == 1  # the best (min) among the successes
        assert "2 of 6 combinations failed" in caplog.text
        agent.finalize()
        assert [f["job_id"] for f in agent.saver["failures"]] == [0, 3]

    def test_all_failing_raises_with_first_traceback(self) -> None:
        agent = agent_of(samplings=[1, 0], task_scheduler=noise_steps(fail_on=0.0, offsets1=[0.0]))
        with pytest.raises(RuntimeError, match="all 2 combinations failed") as info:
            agent.execute()
        text = str(info.value)
        assert "job_id 0" in text
        assert "NoiseTask refuses offset=0.0" in text and "Traceback" in text
        assert len(agent.failures) == 2

    def test_missing_input_variable_names_step_variable_and_store(self) -> None:
        step0, step1 = torch_steps()
        step1.input_var_names = "middle"
        agent = agent_of(
            GridSearchAgent,
            task_scheduler=[[(step0, {"optimizer__lr": [0.1]})], [step1]],
            metric="acc",
            metric_args={"pred_var_name": "pred", "true_var_name": "label"},
        )
        with pytest.raises(RuntimeError, match="all 1 combinations failed") as info:
            agent.execute()
        text = str(info.value)
        assert "step 'step1'" in text and "'middle'" in text and "'mid'" in text

    def test_missing_input_in_some_combinations_only(self) -> None:
        """A step0 subtask that writes another variable fails only its own combinations,
        even after a combination whose step0 did write the variable step1 reads."""
        good, step1 = torch_steps()
        bad, _ = torch_steps()
        bad.output_var_names = "mid_other"
        bad._name = "reg_other"
        agent = agent_of(
            GridSearchAgent,
            task_scheduler=[[good, bad], [(step1, {"optimizer__lr": [0.3, 0.1]})]],
            metric="acc",
            metric_args={"pred_var_name": "pred", "true_var_name": "label"},
        )
        agent.execute()
        assert [r["job_id"] for r in agent.history] == [0, 1]
        assert [f["job_id"] for f in agent.failures] == [2, 3]
        for failure in agent.failures:
            assert failure["subtask_ids"] == ["reg_other", "clf"]
            assert "['mid']" in failure["error"] and "mid_other" in failure["error"]
            assert "step 'step1'" in failure["error"]


# -------------------------------------------------------------------- expert methods
def test_execute_wrapper_puts_outcome_on_queue() -> None:
    agent = agent_of(samplings=[0])
    box: queue.Queue = queue.Queue()
    agent.execute_wrapper(box, agent.task_scheduler[2], 9, None)
    kind, counter, outcome = box.get_nowait()
    assert (kind, counter) == ("done", 9)
    assert outcome.ok and outcome.result["job_id"] == 9
    assert outcome.result["subtask_hps"] == [{"offset": 0.0}, {"offset": 20.0}]
    assert {"step0", "step1"} <= set(outcome.saver_updates)
    assert outcome.saver_updates["step1"].value == {"subtask_id": "noise1", "offset": 20.0}

    failing = agent_of(samplings=[0], task_scheduler=noise_steps(fail_on=20.0))
    failing.execute_wrapper(box, failing.task_scheduler[2], 4, None)
    _, _, outcome = box.get_nowait()
    assert not outcome.ok and "refuses" in outcome.error


@pytest.mark.parametrize(
    ("num_workers", "match"),
    [(0, "num_workers=0"), (True, "num_workers=True"), (["gpu"], "'gpu'"), ([], "num_workers")],
)
def test_num_workers_validation(num_workers: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        agent_of(samplings=1, num_workers=num_workers)


def test_missing_gpu_is_a_clear_error() -> None:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    agent = agent_of(samplings=[0], num_workers=[count])
    with pytest.raises(ValueError, match=rf"num_workers=.*cuda:{count} does not exist"):
        agent.execute()


def test_context_validation() -> None:
    with pytest.raises(ValueError, match=r"context='threads'.*spawn"):
        agent_of(samplings=1, context="threads")


def test_uses_task_objects_given_directly() -> None:
    steps = [[NoiseTask(output_var="pred", name="only")]]
    agent = agent_of(GridSearchAgent, task_scheduler=steps)
    agent.execute()
    assert agent.result["subtask_ids"] == ["only"]
