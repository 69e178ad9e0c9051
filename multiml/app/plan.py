"""Plan a search from a composed config without building any task (no torch import).

The Hydra sweeper uses this to turn the agent's search into jobs. The arithmetic mirrors
:class:`~multiml.task_scheduler.TaskScheduler`: a step offers the sum of its subtasks'
grid sizes, a combination picks one of each step, so the space is their product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from multiml.agent.sampling import check_samplings, draw_indices
from multiml.hyperparameter import Hyperparameters
from multiml.task_scheduler import grid_size

SEARCH_AGENTS = ("RandomSearchAgent", "ConnectionRandomSearchAgent")
SINGLE_AGENTS = ("SequentialAgent",)


def subtask_grid_size(hps: Any) -> int:
    """Points of one subtask's grid, counted exactly as the TaskScheduler counts them."""
    values = OmegaConf.to_container(hps) if OmegaConf.is_config(hps) else (hps or {})
    return grid_size(Hyperparameters(values))


def combination_count(task: DictConfig) -> int:
    """Number of combinations of a task config (``len`` of its TaskScheduler)."""
    counts = []
    for step in task.steps.values():
        subtasks = [sub for sub in step.subtasks.values() if sub is not None]
        counts.append(sum(subtask_grid_size(sub.hps) for sub in subtasks))
    return math.prod(counts) if counts else 0


@dataclass(frozen=True)
class PlannedCombination:
    """One combination a search runs: its index and its ``job_id`` (counter)."""

    index: int
    counter: int


def plan_search(cfg: DictConfig) -> list[PlannedCombination]:
    """The combinations the configured agent runs, in its job order.

    Grid agents: every index, ``counter = index``. Random agents: ``agent.samplings``
    drawn with ``agent.seed`` exactly as :class:`RandomSearchAgent` draws them,
    ``counter`` = position in the sample. Sequential: the single combination.
    """
    check_search_space(cfg.task)
    total = combination_count(cfg.task)
    agent_class = str(cfg.agent._target_).rpartition(".")[2]
    if agent_class in SINGLE_AGENTS:
        if total != 1:
            raise ValueError(
                f"agent=sequential runs exactly one combination, but task={cfg.task.name} "
                f"defines {total}; use agent=grid or agent=random"
            )
        return [PlannedCombination(0, 0)]
    if agent_class in SEARCH_AGENTS:
        samplings = cfg.agent.samplings
        if OmegaConf.is_list(samplings):
            samplings = OmegaConf.to_container(samplings)
        samplings = check_samplings(samplings, "agent.samplings")
        if samplings is None:
            raise ValueError("agent.samplings is not set: give a number or a list of indices")
        indices = draw_indices(total, samplings, int(cfg.agent.seed))
        return [PlannedCombination(index, counter) for counter, index in enumerate(indices)]
    return [PlannedCombination(index, index) for index in range(total)]


def check_search_space(task: DictConfig) -> None:
    """Reject a task whose search space is empty, as building its TaskScheduler would.

    Raises:
        ValueError: no step, a step without subtasks, or a hyperparameter with no values.
    """
    if not task.steps:
        raise ValueError(f"task={task.name}: task.steps is empty; define at least one step")
    for step_id, step in task.steps.items():
        subtasks = {k: v for k, v in step.subtasks.items() if v is not None}
        if not subtasks:
            raise ValueError(
                f"task.steps.{step_id}.subtasks has no subtask (all are null or none given)"
            )
        for subtask_id, sub in subtasks.items():
            values = OmegaConf.to_container(sub.hps) if OmegaConf.is_config(sub.hps) else {}
            for name, value in (values or {}).items():
                if value == []:
                    raise ValueError(
                        f"task.steps.{step_id}.subtasks.{subtask_id}.hps.{name}=[] has no "
                        "values; give at least one"
                    )
