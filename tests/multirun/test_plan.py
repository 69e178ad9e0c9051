"""multiml.app.plan: the sweeper's combination count and job plan match the agents'.

Every task config shipped in ``multiml/conf/task`` (and variants with subtasks set to
null, scalar hyperparameters and extra grids) is composed as ``python -m multiml`` would,
its TaskScheduler built with :func:`multiml.app.build.build_task_scheduler`, and
:func:`~multiml.app.plan.combination_count` / :func:`~multiml.app.plan.plan_search`
compared with what the agents themselves do.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
from collections.abc import Iterator

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from multiml.agent import GridSearchAgent, RandomSearchAgent
from multiml.app import build
from multiml.app import config as _config  # noqa: F401  (registers the schemas)
from multiml.app.plan import (
    PlannedCombination,
    check_search_space,
    combination_count,
    plan_search,
)

TASKS = sorted(
    entry.name.removesuffix(".yaml")
    for entry in (importlib.resources.files("multiml.conf") / "task").iterdir()
    if entry.name.endswith(".yaml")
)
REG = "task.steps.regression.subtasks.mlp"
CLS = "task.steps.classification.subtasks"

VARIANTS = {
    "linear null": ([f"{CLS}.linear=null"], 4),
    "scalar hp": ([f"{REG}.hps.optimizer__lr=0.01"], 3),
    "three values": ([f"{REG}.hps.optimizer__lr=[0.1,0.01,0.001]"], 9),
    "two hps on one subtask": ([f"+{CLS}.mlp.hps.num_epochs=[1,2]"], 10),
    "grid on the hp-less subtask": ([f"+{CLS}.linear.hps.num_epochs=[1,2,3]"], 10),
    "dict-valued scalar hp": ([f"+{CLS}.linear.hps.model_args={{layers:[3,2]}}"], 6),
    "mlp null, scalar lr": ([f"{CLS}.mlp=null", f"{REG}.hps.optimizer__lr=0.01"], 1),
}


@pytest.fixture(scope="module")
def hydra_init() -> Iterator[None]:
    with initialize_config_module(config_module="multiml.conf", version_base="1.3"):
        yield


def make_cfg(overrides: list[str]) -> DictConfig:
    return compose("config", overrides=overrides)


def needs_extras(cfg: DictConfig) -> None:
    for name in cfg.task.requires:
        module = build.EXTRAS.get(name, (name,))[0]
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"task={cfg.task.name} needs {name}")


def test_there_are_task_configs_to_check() -> None:
    assert {"two_step", "two_step_single", "iris"} <= set(TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_count_equals_the_task_scheduler_of_every_task_config(hydra_init, task: str) -> None:
    cfg = make_cfg([f"task={task}"])
    needs_extras(cfg)
    ts = build.build_task_scheduler(cfg)
    assert combination_count(cfg.task) == len(ts) > 0
    assert plan_search(cfg) == [PlannedCombination(i, i) for i in range(len(ts))]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_count_equals_the_task_scheduler_of_variants(hydra_init, name: str) -> None:
    overrides, expected = VARIANTS[name]
    cfg = make_cfg(overrides)
    ts = build.build_task_scheduler(cfg)
    assert len(ts) == expected  # the variant means what its name says
    assert combination_count(cfg.task) == expected


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("samplings", ["3", "[5,0,2]"])
def test_random_plan_is_the_agents_sample(hydra_init, seed: int, samplings: str) -> None:
    cfg = make_cfg(["agent=random", f"agent.samplings={samplings}", f"seed={seed}"])
    ts = build.build_task_scheduler(cfg)
    agent = RandomSearchAgent(task_scheduler=ts, samplings=json.loads(samplings), seed=seed)
    indices = agent.sample_indices()
    planned = plan_search(cfg)
    assert [c.index for c in planned] == indices
    assert [c.counter for c in planned] == list(range(len(indices)))  # job_id = position


def test_grid_and_sequential_plans(hydra_init) -> None:
    cfg = make_cfg(["agent=grid"])
    ts = build.build_task_scheduler(cfg)
    GridSearchAgent(task_scheduler=ts)  # the agent accepts this task
    assert [c.index for c in plan_search(cfg)] == list(range(6))
    single = make_cfg(["agent=sequential", "task=two_step_single"])
    assert plan_search(single) == [PlannedCombination(0, 0)]
    connection = make_cfg(["agent=connection_random", "agent.samplings=2", "seed=3"])
    agent = RandomSearchAgent(task_scheduler=ts, samplings=2, seed=3)
    assert [c.index for c in plan_search(connection)] == agent.sample_indices()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["agent=sequential"], "agent=sequential runs exactly one combination"),
        (["agent=random", "agent.samplings=7"], "larger than the 6 combinations"),
        (["agent=random", "agent.samplings=0"], "agent.samplings=0: expected a positive"),
        (["agent=random", "agent.samplings=[1,4,1]"], r"repeated: \[1\]"),
        (["agent=random", "agent.samplings=[]"], "give at least one combination index"),
        (["agent=random", "agent.samplings=[6]"], "outside 0..5"),
        (["agent=random", "agent.samplings=null"], "agent.samplings is not set"),
    ],
)
def test_plan_errors_name_the_problem(hydra_init, overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_search(make_cfg(overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            [f"{CLS}.mlp=null", f"{CLS}.linear=null"],
            "task.steps.classification.subtasks has no subtask",
        ),
        ([f"{REG}.hps.optimizer__lr=[]"], "regression.subtasks.mlp.hps.optimizer__lr=\\[\\] has"),
    ],
)
def test_an_empty_search_space_is_rejected_like_the_builder_does(
    hydra_init, overrides: list[str], message: str
) -> None:
    cfg = make_cfg(overrides)
    with pytest.raises(ValueError, match=message):
        check_search_space(cfg.task)
    with pytest.raises(ValueError, match=message):
        plan_search(cfg)
    with pytest.raises(build.ConfigError, match=message):
        build.build_task_scheduler(cfg)
