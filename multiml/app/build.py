"""Build the object graph of an experiment from its composed config.

StoreGate (+ data) → TaskScheduler (steps, subtasks, hyperparameter grids) → metric →
agent. Every problem a user can cause in the config is reported as a :class:`ConfigError`
naming the key, the value and what is allowed, before anything trains.

Importing this module registers the config schemas (:mod:`multiml.app.config`), so the
config can be composed with Hydra's compose API as well as by ``python -m multiml``::

    from hydra import compose, initialize_config_module
    from multiml.app.run import run_experiment

    with initialize_config_module("multiml.conf", version_base="1.3"):
        cfg = compose("config", overrides=["agent=random", "agent.samplings=2"])
    run_experiment(cfg, Path("my_run"))
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from multiml.app import config as _config  # noqa: F401  (registers the schemas)
from multiml.devices import check_devices_exist, device_names

logger = logging.getLogger(__name__)

EXTRAS = {"sklearn": ("sklearn", "scikit-learn", "sklearn")}
"""``requires`` names → (module to import, distribution, multiml extra)."""


class ConfigError(ValueError):
    """A configuration problem the user can fix (the message says which key and how)."""


def to_python(node: Any) -> Any:
    """A plain, resolved Python value of a config node (enums as strings)."""
    if isinstance(node, DictConfig) or OmegaConf.is_list(node):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return node


# --------------------------------------------------------------------------- devices
def resolve_devices(devices: Sequence[Any]) -> list[str]:
    """Device names of the ``devices`` list (GPU ids become ``cuda:N``), checked to exist.

    Raises:
        ConfigError: an entry is not a device, or a CUDA device does not exist here.
    """
    if not devices:
        raise ConfigError("devices=[]: give at least one device, e.g. devices=[cpu]")
    try:
        names = device_names(devices, "devices")
        check_devices_exist(names, "devices", given=list(devices))
    except ValueError as exc:
        raise ConfigError(
            f"{exc} (e.g. devices=[cpu], devices=[0,1] or devices=[cpu,cpu])"
        ) from None
    return names


# ------------------------------------------------------------------------- storegate
def build_storegate(cfg: DictConfig) -> Any:
    """The StoreGate of ``cfg.storegate`` with the task's data loaded into it."""
    from multiml.storegate import StoreGate

    options = to_python(cfg.storegate)
    backend_args = options.get("backend_args") or {}
    if backend_args.get("output_dir"):
        Path(backend_args["output_dir"]).mkdir(parents=True, exist_ok=True)
    try:
        storegate = StoreGate(
            backend=options["backend"], backend_args=backend_args, data_id=options["data_id"]
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"storegate: {exc}") from exc
    if options["backend"] == "hybrid":
        storegate.set_mode("zarr")  # inputs on disk; step outputs go to memory (below)
    load_data(cfg, storegate)
    if options["backend"] == "hybrid":
        storegate.set_mode("numpy")
    return storegate


def load_data(cfg: DictConfig, storegate: Any) -> None:
    """Call the task's data loader on the store."""
    task = cfg.task
    try:
        loader = instantiate(task.data, _partial_=True, _convert_="all")
    except Exception as exc:
        raise ConfigError(
            f"task={task.name}: task.data could not be built ({_cause(exc)}); it needs a "
            "_target_ naming a loader such as multiml.data.load_npz"
        ) from exc
    try:
        loader(storegate)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"task={task.name}: loading task.data failed: {_message(exc)}") from exc
    logger.info("data %r: %s", storegate.data_id, storegate.get_metadata()["sizes"])


def _message(exc: BaseException) -> str:
    """An exception's message (``str(KeyError)`` would quote it)."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def _cause(exc: BaseException) -> str:
    """The message of what made Hydra's ``instantiate`` fail, on one line."""
    return " ".join(_message(exc.__cause__ or exc).split())


# -------------------------------------------------------------------- task scheduler
def check_requirements(cfg: DictConfig) -> None:
    """Fail early, with the install command, when the task needs a missing extra."""
    for name in cfg.task.requires:
        module, dist, extra = EXTRAS.get(name, (name, name, None))
        if importlib.util.find_spec(module) is None:
            how = f"pip install 'multiml[{extra}]'" if extra else f"pip install {dist}"
            raise ConfigError(f"task={cfg.task.name} needs {dist}, which is not installed: {how}")


def build_task_scheduler(cfg: DictConfig) -> Any:
    """A TaskScheduler with one task per step and the step's non-null subtasks."""
    from multiml.task_scheduler import TaskScheduler

    task = cfg.task
    if not task.steps:
        raise ConfigError(f"task={task.name}: task.steps is empty; define at least one step")
    ts = TaskScheduler()
    step_ids = list(task.steps)
    for position, (step_id, step) in enumerate(task.steps.items()):
        parents = list(step.parents) if step.parents is not None else step_ids[:position][-1:]
        unknown = [p for p in parents if p not in step_ids]
        if unknown:
            raise ConfigError(
                f"task.steps.{step_id}.parents={parents}: unknown step(s) {unknown}; "
                f"steps are {step_ids}"
            )
        ts.add_task(step_id, parents=parents)
        subtasks = {k: v for k, v in step.subtasks.items() if v is not None}
        if not subtasks:
            raise ConfigError(
                f"task.steps.{step_id}.subtasks has no subtask (all are null or none given)"
            )
        for subtask_id, sub in subtasks.items():
            key = f"task.steps.{step_id}.subtasks.{subtask_id}"
            env = _instantiate_task(sub.task, key)
            hps = _hps(sub.hps, key)
            try:
                env.reset_hps()
                env.set_hps(
                    {
                        name: values[0]
                        for name, values in hps.items()
                        if values and not _is_ref(values[0])
                    }
                )
                env.reset_hps()
            except (KeyError, ValueError) as exc:
                raise ConfigError(f"{key}.hps: {_message(exc)}") from exc
            ts.add_subtask(step_id, subtask_id, env=env, hps=hps)
    return ts


def _is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("saver__")


def _instantiate_task(node: Any, key: str) -> Any:
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(f"{key}.task needs a _target_ naming a task class")
    try:
        return instantiate(node, _convert_="all")
    except Exception as exc:
        raise ConfigError(
            f"{key}.task ({node._target_}) could not be built: {_cause(exc)}"
        ) from exc


def _hps(node: Any, key: str) -> dict[str, list[Any]]:
    hps = to_python(node) or {}
    grid: dict[str, list[Any]] = {}
    for name, values in hps.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ConfigError(f"{key}.hps.{name}=[] has no values; give at least one")
        grid[name] = values
    return grid


def check_wiring(cfg: DictConfig, storegate: Any, ts: Any) -> None:
    """Check that every subtask's inputs exist: in the data or written by an earlier step.

    Raises:
        ConfigError: naming the step, subtask, the missing variable and what exists.
    """
    from multiml.task.basic.ml_base import flatten_var_names

    available = set(storegate.get_var_names("all"))
    data_vars = sorted(available)
    written: dict[str, list[str]] = {}
    for step_id in ts.get_sorted_task_ids():
        step_outputs: set[str] = set()
        for subtask_id in ts.get_subtask_ids(step_id):
            env = ts.get_subtask(step_id, subtask_id).env
            needed = flatten_var_names(getattr(env, "input_var_names", None))
            needed += flatten_var_names(getattr(env, "true_var_names", None))
            missing = [name for name in needed if name not in available]
            if missing:
                earlier = "; ".join(f"{s} writes {v}" for s, v in written.items()) or "none"
                raise ConfigError(
                    f"task={cfg.task.name}: step {step_id!r} subtask {subtask_id!r} reads "
                    f"{missing}, which neither the data (variables: {data_vars}) nor an "
                    f"earlier step (outputs: {earlier}) provides; check "
                    f"task.steps.{step_id}.subtasks.{subtask_id}.task's variable names"
                )
            step_outputs.update(flatten_var_names(getattr(env, "output_var_names", None)))
        written[step_id] = sorted(step_outputs)
        available |= step_outputs


# ---------------------------------------------------------------------------- metric
def build_metric(cfg: DictConfig) -> Any:
    """The metric of ``cfg.metric``, comparing the variables the task names for it."""
    from multiml.agent.metric import get_metric

    metric = cfg.metric
    task_vars = to_python(cfg.task.metrics) or {}
    defaults = task_vars.get(metric.name.lower(), task_vars.get("default", {}))
    pred = metric.pred_var_name or defaults.get("pred_var_name")
    true = metric.true_var_name or defaults.get("true_var_name")
    if pred is None or true is None:
        raise ConfigError(
            f"metric={metric.name}: task={cfg.task.name} names no variables for it; set "
            "metric.pred_var_name and metric.true_var_name, or add task.metrics.default"
        )
    try:
        return get_metric(
            metric.name,
            pred_var_name=pred,
            true_var_name=true,
            phase=metric.phase,
            **to_python(metric.args),
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"metric={metric.name}: {exc}") from exc


# ----------------------------------------------------------------------------- agent
def build_agent(
    cfg: DictConfig,
    storegate: Any,
    saver: Any,
    ts: Any,
    metric: Any,
    device: str | None = None,
    devices: list[str] | None = None,
) -> Any:
    """The agent of ``cfg.agent`` over the built store, saver, scheduler and metric.

    ``cfg.devices`` with one entry runs combinations in this process on that device;
    several entries become the agent's worker slots (unless ``agent.num_workers`` is set).
    ``device`` forces in-process execution on that device (a multirun job). ``devices`` is
    ``cfg.devices`` already resolved (resolved here when not given).
    """
    options = to_python(cfg.agent)
    target = options["_target_"]
    if devices is None:
        devices = resolve_devices(list(cfg.devices))
    in_process_device = device
    if device is not None:
        if "num_workers" in options:
            options["num_workers"] = None
    elif "num_workers" in options and options["num_workers"] is None and len(devices) > 1:
        options["num_workers"] = devices
    elif len(devices) == 1:
        in_process_device = devices[0]
    if target.endswith(".SequentialAgent") and len(ts) != 1:
        raise ConfigError(
            f"agent=sequential runs exactly one combination, but task={cfg.task.name} defines "
            f"{len(ts)} (several subtasks or hyperparameter values per step); use agent=grid "
            "(or agent=random agent.samplings=N) to search them, or reduce the task to one "
            "combination"
        )
    try:
        agent = instantiate(
            options, storegate=storegate, saver=saver, task_scheduler=ts, metric=metric
        )
    except Exception as exc:
        raise ConfigError(f"agent ({target}): {_cause(exc)}") from exc
    if "samplings" in options:  # draw now: a bad sample is a config error, not a crash later
        try:
            agent.sample_indices()
        except ValueError as exc:
            raise ConfigError(
                f"agent.samplings={options['samplings']} with task={cfg.task.name} "
                f"({len(ts)} combinations): {exc}"
            ) from exc
    agent.device = in_process_device
    if "seed" not in options:  # SequentialAgent has no seed argument; the run's seed applies
        agent.seed = int(cfg.seed)
    return agent
