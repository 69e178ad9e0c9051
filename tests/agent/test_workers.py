"""Worker processes: results equal a serial run, crashes are blamed on exactly the
combination that was running, workers never share store files or Saver keys.

``spawn`` re-imports torch in every worker (seconds each), so only the first test uses it;
the others use ``fork`` with :class:`NoiseTask` steps, which run no torch kernels and are
fork-safe.
"""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import pytest

from multiml import Saver, StoreGate
from multiml.agent import GridSearchAgent, RandomSearchAgent
from multiml.agent import workers as workers_module
from tests.agent.conftest import (
    ACC_ARGS,
    dict_saver,
    make_store,
    noise_agent,
    noise_steps,
    torch_steps,
)

needs_fork = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)


def noise_grid(cls: type = GridSearchAgent, **kwargs: Any) -> RandomSearchAgent:
    return noise_agent(cls, **kwargs)


def torch_grid(**kwargs: Any) -> GridSearchAgent:
    step0, step1 = torch_steps()
    return GridSearchAgent(
        storegate=make_store(),
        saver=dict_saver(),
        task_scheduler=[
            [(step0, {"optimizer__lr": [0.1, 0.01]})],
            [(step1, {"optimizer__lr": [0.3, 0.03]})],
        ],
        metric="acc",
        metric_args=ACC_ARGS,
        **kwargs,
    )


@pytest.mark.slow
def test_spawn_workers_equal_serial_run(importable_tests: None) -> None:
    serial = torch_grid()
    serial.execute()
    parallel = torch_grid(num_workers=2, context="spawn")
    parallel.execute()
    assert parallel.failures == []
    assert parallel.history == serial.history  # bit-identical metric values, same order
    assert parallel.result == serial.result
    # Saver writes of the workers reach the parent, applied in execution order
    for key in ("step0", "step1"):
        assert parallel.saver[key] == serial.saver[key]


@needs_fork
def test_crash_and_exception_in_workers(caplog: pytest.LogCaptureFixture) -> None:
    """offset 10 kills the worker (os._exit(3)), offset 20 raises: each is reported for its
    own combinations; the other combinations run in fresh workers and match a serial run."""
    agent = noise_grid(
        task_scheduler=noise_steps(exit_on=10.0, fail_on=20.0),
        num_workers=["cpu", "cpu"],
        context="fork",
    )
    agent.execute()
    failures = {f["job_id"]: f for f in agent.failures}
    assert sorted(failures) == [1, 2, 4, 5]
    for job in (1, 4):
        assert (
            f"died with exit code 3 while running combination job_id={job}"
            in (failures[job]["error"])
        )
        assert failures[job]["subtask_hps"][1] == {"offset": 10.0}
        assert failures[job]["device"] == "cpu"
    for job in (2, 5):
        assert "NoiseTask refuses offset=20.0" in failures[job]["error"]
        assert "Traceback" in failures[job]["traceback"]
    serial = noise_grid()
    serial.execute()
    assert agent.history == [serial.history[0], serial.history[3]]
    assert agent.result == min(agent.history, key=lambda r: r["metric_value"])


@needs_fork
def test_crash_blame_is_exact_when_jobs_are_fast() -> None:
    """Jobs that finish in microseconds right before a crash: their results must not be
    lost and the crash must not be blamed on them (the messages of a worker that dies are
    all delivered before the parent looks at the dead process)."""
    for _ in range(5):
        agent = noise_grid(
            task_scheduler=noise_steps([0.0, 1.0, 2.0], [0.0, 10.0], exit_on=10.0),
            num_workers=2,
            context="fork",
        )
        agent.execute()
        assert sorted(f["job_id"] for f in agent.failures) == [1, 3, 5]
        assert [r["job_id"] for r in agent.history] == [0, 2, 4]


@needs_fork
def test_workers_do_not_write_the_shared_store_or_saver(tmp_path: Path) -> None:
    """A zarr store and a persistent Saver travel to workers by path: the workers must work
    on isolated views, never in those files (and saver__ references must see their own
    step 0, not another worker's)."""
    store_dir = tmp_path / "store"
    base = make_store()
    sg = StoreGate(backend="zarr", backend_args={"output_dir": str(store_dir)}, data_id="d")
    for phase in ("train", "valid", "test"):
        for var in ("x", "truth", "label"):
            sg.add_data(var, base.get_data(var, phase), phase=phase)
    sg.compile()
    steps = noise_steps([1.0, 2.0, 3.0], [0.5, 1.5])
    steps[1][0] = (steps[1][0][0], {"offset": ["saver__step0__offset"], "fail_on": [None, -1.0]})
    saver = Saver(save_dir=str(tmp_path / "saver"))
    agent = noise_grid(
        storegate=sg, saver=saver, task_scheduler=steps, num_workers=3, context="fork"
    )
    agent.execute()
    assert agent.failures == []
    reopened = StoreGate(backend="zarr", backend_args={"output_dir": str(store_dir)}, data_id="d")
    assert sorted(reopened.get_var_names("train")) == ["label", "truth", "x"]
    for result in agent.history:
        assert result["subtask_hps"][1]["offset"] == result["subtask_hps"][0]["offset"]
    serial_steps = noise_steps([1.0, 2.0, 3.0], [0.5, 1.5])
    serial_steps[1][0] = (serial_steps[1][0][0], steps[1][0][1])
    serial = noise_grid(task_scheduler=serial_steps)
    serial.execute()
    assert agent.history == serial.history
    assert saver["step1"] == serial.saver["step1"]  # the parent's Saver got the updates
    assert Saver(save_dir=str(tmp_path / "saver"))["step1"] == serial.saver["step1"]


@needs_fork
def test_execute_jobs_fresh_process_per_job() -> None:
    agent = noise_grid(
        RandomSearchAgent,
        samplings=[0, 1, 2],
        task_scheduler=noise_steps(record_pid=True),
        num_workers=1,
        context="fork",
    )
    ctx = multiprocessing.get_context("fork")
    units = [[(0, 0), (1, 1), (2, 2)]]
    outcomes = agent.execute_jobs(ctx, ctx.SimpleQueue(), units)
    assert sorted(outcomes) == [0, 1, 2] and all(o.ok for o in outcomes.values())
    pids = {o.saver_updates[f"pid_step1_{c}"].value for c, o in outcomes.items()}
    assert len(pids) == 3  # one process per job

    pooled = agent.execute_pool_jobs(ctx, ctx.SimpleQueue(), units)
    pids = {o.saver_updates[f"pid_step1_{c}"].value for c, o in pooled.items()}
    assert len(pids) == 1  # one persistent worker ran the unit
    assert [pooled[c].result for c in range(3)] == [outcomes[c].result for c in range(3)]

    seen: list[int] = []
    agent.execute_pool_jobs(ctx, ctx.Queue(), [[(5, 3)]], lambda o: seen.append(o.counter))
    assert seen == [5]  # a plain mp Queue works too


@needs_fork
def test_one_job_per_process_switch() -> None:
    agent = noise_grid(
        task_scheduler=noise_steps([0.0], [0.0, 1.0, 2.0], record_pid=True),
        num_workers=1,
        context="fork",
    )
    agent.one_job_per_process = True
    agent.execute()
    assert len({agent.saver[f"pid_step1_{job}"] for job in range(3)}) == 3


@needs_fork
def test_worker_dying_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_worker(*args: Any) -> None:
        import os

        os._exit(7)

    monkeypatch.setattr(workers_module, "worker_loop", broken_worker)
    agent = noise_grid(num_workers=2, context="fork")
    with pytest.raises(RuntimeError, match="all 6 combinations failed") as info:
        agent.execute()
    assert "died at start-up with exit code 7" in str(info.value)
    assert len(agent.failures) == 6


def test_prepare_worker_isolates_store_and_saver(tmp_path: Path) -> None:
    sg = StoreGate(backend="zarr", backend_args={"output_dir": str(tmp_path / "s")})
    agent = noise_grid(
        RandomSearchAgent, samplings=1, storegate=sg, saver=Saver(save_dir=str(tmp_path / "v"))
    )
    worker_copy = pickle.loads(pickle.dumps(agent))
    worker_copy.prepare_worker()
    assert worker_copy.storegate.copy_on_write
    assert worker_copy.metric.storegate is worker_copy.storegate
    assert worker_copy.saver.mode == "dict"
    assert not agent.storegate.copy_on_write and agent.saver.mode == "zarr"


@needs_fork
def test_device_slots_equal_serial_run() -> None:
    """Random sample on two 'cpu' slots: history in sampling order, values and best result
    identical to a serial run."""
    serial = noise_grid(RandomSearchAgent, samplings=[4, 1, 5, 0, 2])
    serial.execute()
    parallel = noise_grid(
        RandomSearchAgent, samplings=[4, 1, 5, 0, 2], num_workers=["cpu", "cpu"], context="fork"
    )
    parallel.execute()
    assert parallel.failures == []
    assert parallel.history == serial.history
    assert parallel.result == serial.result
