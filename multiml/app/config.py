"""Structured configs of the Hydra application: the schemas of the config groups.

The YAML files under ``multiml/conf/`` (reachable as ``conf/`` in a checkout) fill these
dataclasses; Hydra validates every value against them while composing, so a wrong type is
reported before anything runs::

    $ python -m multiml agent.seed=notanint
    Error merging override agent.seed=notanint
    Value 'notanint' of type 'str' could not be converted to Integer
        full_key: agent.seed

Schemas are registered in Hydra's ConfigStore when this module is imported:

- ``multiml_schema`` — the root (``seed``, ``devices``, ``num_threads``, and the typed
  ``task``, ``metric`` and ``storegate`` nodes);
- ``schema/agent/<option>`` — one per agent option; the option's YAML merges it first
  (``defaults: [/schema/agent/grid@_here_, _self_]``).

Nothing here imports torch: ``python -m multiml --help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING


class MetricType(StrEnum):
    """Direction of optimisation."""

    min = "min"
    max = "max"


class Backend(StrEnum):
    """StoreGate backends."""

    numpy = "numpy"
    zarr = "zarr"
    hybrid = "hybrid"


# ----------------------------------------------------------------------------- agents
@dataclass
class SequentialAgentConf:
    """``agent=sequential``: run the task's single combination."""

    _target_: str = "multiml.agent.basic.SequentialAgent"
    differentiable: str | None = None
    diff_pretrain: bool = False
    diff_task_args: dict[str, Any] = field(default_factory=dict)
    num_trials: int | None = None


@dataclass
class GridSearchAgentConf(SequentialAgentConf):
    """``agent=grid``: every combination (the search parameters every search agent has)."""

    _target_: str = "multiml.agent.basic.GridSearchAgent"
    seed: int = II("seed")
    metric_type: MetricType | None = None
    num_workers: Any = None
    context: str = "spawn"
    dump_all_results: bool = True
    disable_tqdm: bool = True


@dataclass
class RandomSearchAgentConf(GridSearchAgentConf):
    """``agent=random``: ``samplings`` distinct combinations drawn with ``seed``."""

    _target_: str = "multiml.agent.basic.RandomSearchAgent"
    samplings: Any = 4


@dataclass
class ConnectionArgs:
    """Parameters of the connection agents (pre-train, connect, re-train end to end)."""

    freeze_model_weights: Any = False
    do_pretraining: bool = True
    connectiontask_name: str | None = None
    connectiontask_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConnectionRandomSearchAgentConf(RandomSearchAgentConf, ConnectionArgs):
    """``agent=connection_random``: random search, each combination connected end to end."""

    _target_: str = "multiml.agent.basic.ConnectionRandomSearchAgent"


@dataclass
class ConnectionGridSearchAgentConf(GridSearchAgentConf, ConnectionArgs):
    """``agent=connection_grid``: grid search, each combination connected end to end."""

    _target_: str = "multiml.agent.basic.ConnectionGridSearchAgent"
    reuse_pretraining: bool = False


AGENT_SCHEMAS: dict[str, type] = {
    "sequential": SequentialAgentConf,
    "random": RandomSearchAgentConf,
    "grid": GridSearchAgentConf,
    "connection_random": ConnectionRandomSearchAgentConf,
    "connection_grid": ConnectionGridSearchAgentConf,
}


# ------------------------------------------------------------------------------ tasks
@dataclass
class SubtaskConf:
    """One candidate model of a step: the task object and its hyperparameter grid.

    ``task`` is instantiated with Hydra (``_target_`` + constructor arguments); ``hps`` maps
    a hyperparameter key (``optimizer__lr``, ``model__layers``, ``num_epochs``...) to the
    list of values to search.
    """

    task: Any = MISSING
    hps: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepConf:
    """A step: its candidate subtasks (by subtask id) and, for DAGs, its parent steps.

    A subtask set to ``null`` is dropped (``task.steps.STEP.subtasks.NAME=null``).
    """

    subtasks: dict[str, SubtaskConf | None] = field(default_factory=dict)
    parents: list[str] | None = None


@dataclass
class MetricVarsConf:
    """Which variables a metric compares."""

    pred_var_name: str = MISSING
    true_var_name: str = MISSING


@dataclass
class TaskConf:
    """A multi-step problem: where its data come from and its steps.

    ``data`` is a loader called as ``loader(storegate)`` after Hydra instantiates it
    partially (``_target_`` + arguments, e.g. :func:`multiml.data.load_npz`). ``steps``
    run in the order given (or by ``parents``). ``metrics`` maps a metric name (or
    ``default``) to the variables it compares.
    """

    name: str = MISSING
    data: Any = MISSING
    steps: dict[str, StepConf] = field(default_factory=dict)
    metrics: dict[str, MetricVarsConf] = field(default_factory=dict)
    requires: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- metric / storegate
@dataclass
class MetricConf:
    """The metric: a name of :mod:`multiml.agent.metric` and its options.

    ``pred_var_name``/``true_var_name`` default to the task's ``metrics`` entry for this
    metric name (else its ``default`` entry).
    """

    name: str = MISSING
    phase: str = "test"
    pred_var_name: str | None = None
    true_var_name: str | None = None
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class StoreGateConf:
    """The StoreGate backend and its arguments (``output_dir`` for zarr/hybrid)."""

    backend: Backend = Backend.numpy
    backend_args: dict[str, Any] = field(default_factory=dict)
    data_id: str = II("task.name")


# ------------------------------------------------------------------------------- root
@dataclass
class CombinationConf:
    """Set by the multiml sweeper in a multirun job: the one combination the job runs.

    Attributes:
        index: the combination's index in the task's search space.
        counter: its ``job_id`` (the index for grid search, the position in the sample for
            random search).
        key: the job's directory name under the sweep directory.
    """

    index: int | None = None
    counter: int | None = None
    key: str | None = None


@dataclass
class MultimlConfig:
    """The root config.

    Attributes:
        seed: seeds the agent (sampling and every step's RNGs).
        devices: device names or GPU ids the agent's worker slots use (one entry:
            everything runs in-process on that device; several: one worker per entry).
        num_threads: torch intra-op threads (pinned so results do not depend on where a
            run happens).
        tensorboard: write TensorBoard event files into the run directory.
        combination: set by the sweeper in multirun jobs.
    """

    agent: Any = MISSING
    task: TaskConf = MISSING
    metric: MetricConf = MISSING
    storegate: StoreGateConf = MISSING
    seed: int = 0
    devices: list[Any] = field(default_factory=lambda: ["cpu"])
    num_threads: int = 1
    tensorboard: bool = True
    combination: CombinationConf = field(default_factory=CombinationConf)


def register_configs() -> None:
    """Register every schema in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="multiml_schema", node=MultimlConfig)
    for option, schema in AGENT_SCHEMAS.items():
        cs.store(group="schema/agent", name=option, node=schema)


register_configs()
