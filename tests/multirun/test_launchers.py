"""The multiml sweeper under the cluster launchers, run locally.

- ``hydra/launcher=submitit_local`` (``cluster`` extra; ``nox -s cluster``): every job is a
  fresh process started by submitit;
- ``hydra/launcher=ray`` (``ray`` extra; ``nox -s ray``): a local Ray instance with 2 CPUs.

Each test is skipped when its launcher plugin is not installed.
"""

from __future__ import annotations

import importlib.util
import itertools
from typing import Any

import pytest

TWO = [
    "task.data.num_events=300",
    "task.steps.regression.subtasks.mlp.task.num_epochs=1",
    "task.steps.classification.subtasks.mlp.task.num_epochs=1",
    "task.steps.regression.subtasks.mlp.hps.optimizer__lr=[0.01]",
    "task.steps.classification.subtasks.linear=null",
]
"""``task=two_step`` reduced to 2 tiny combinations."""

RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def needs_plugin(module: str, extra: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        pytest.skip(f"{module} is not installed (pip install 'multiml[{extra}]')")


def check_sweep(result: Any, single: Any, tmp_path: Any) -> None:
    """Both jobs done on the two slots without overlap; best equals the in-process agent."""
    result.check()
    assert result.job_keys() == ["c0000", "c0001"]
    records = list(result.records().values())
    assert [r["status"] for r in records] == ["done", "done"]
    assert result.summary()["counts"]["done"] == 2
    for slot in {r["device_slot"] for r in records}:
        mine = [r for r in records if r["device_slot"] == slot]
        held = sorted((r["started_at"], r["finished_at"]) for r in mine)
        for (_, end), (start, _) in itertools.pairwise(held):
            assert end <= start
    assert result.result() == single(TWO, tmp_path)["result"]


@pytest.mark.cluster
def test_submitit_local_runs_every_job_in_its_own_process(sweep, single, tmp_path) -> None:
    needs_plugin("hydra_plugins.hydra_submitit_launcher", "cluster")
    result = sweep(
        [
            *TWO,
            "devices=[cpu,cpu]",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            "hydra.sweeper.max_batch_size=2",
        ],
        tmp_path,
    )
    check_sweep(result, single, tmp_path)
    # submitit's own files sit in the sweep directory, one folder per job
    assert len([p for p in (result.sweep_dir / ".submitit").iterdir() if p.name != "%j"]) == 2
    # submitit hides GPUs unless asked (CUDA_VISIBLE_DEVICES=''), which scopes the slots
    assert [p.name.rsplit("_", 1)[1] for p in (result.sweep_dir / ".devices").iterdir()] == [
        "cvd-none"
    ]


@pytest.mark.ray
def test_ray_runs_the_jobs_on_a_local_two_cpu_cluster(sweep, single, tmp_path) -> None:
    needs_plugin("hydra_plugins.hydra_ray_launcher", "ray")
    result = sweep(
        [
            *TWO,
            "devices=[cpu,cpu]",
            "hydra/launcher=ray",
            "+hydra.launcher.ray.init.num_cpus=2",
            "+hydra.launcher.ray.init.include_dashboard=false",
        ],
        tmp_path,
        env=RAY_ENV,
    )
    check_sweep(result, single, tmp_path)
    assert "multiml sweep finished: 2/2 done" in result.output
