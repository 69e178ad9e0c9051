"""Every option of every config group composes against its schema and builds its object.

The options are found by globbing ``multiml/conf/<group>/*.yaml``, so a new option is
tested as soon as it is added. Objects are built with the functions of
:mod:`multiml.app.build` (the same ones ``python -m multiml`` uses), in process, against
small data; running them is the CLI tests' job.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ValidationError

from multiml.app import build
from multiml.app.build import ConfigError
from multiml.app.config import AGENT_SCHEMAS

CONF_DIR = Path(__file__).resolve().parents[2] / "multiml" / "conf"
GROUPS = ("agent", "task", "metric", "storegate")
SMALL_DATA = ["task.data.num_events=200"]


def options(group: str) -> list[str]:
    """The options of a config group, from the YAML files shipped with the package."""
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def hydra_init() -> Iterator[None]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


@pytest.fixture(autouse=True)
def _reset_hydra_config() -> Iterator[None]:
    """``make_cfg`` sets Hydra's global runtime config; unset it after each test (other
    code asks it for the original working directory)."""
    yield
    HydraConfig.instance().cfg = None


def make_cfg(overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``config`` with ``overrides`` as ``python -m multiml`` would, with Hydra's
    runtime config set so ``${hydra:runtime.output_dir}`` resolves to ``output_dir``."""
    cfg = compose(
        "config",
        overrides=[*overrides, f"hydra.runtime.output_dir={output_dir}"],
        return_hydra_config=True,
    )
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_every_group_has_the_options_the_issue_names() -> None:
    assert set(options("agent")) >= {
        "sequential",
        "random",
        "grid",
        "connection_random",
        "connection_grid",
    }
    assert set(options("task")) >= {"two_step", "iris"}
    assert set(options("metric")) >= {"acc", "auc", "mse", "value", "zero", "random"}
    assert set(options("storegate")) == {"numpy", "zarr", "hybrid"}
    # every agent option has a schema of the same name (its YAML extends it)
    assert set(options("agent")) == set(AGENT_SCHEMAS)


def test_default_config_composes_to_the_default_experiment(hydra_init: None) -> None:
    cfg = compose("config")
    assert cfg.agent._target_ == "multiml.agent.basic.GridSearchAgent"
    assert cfg.task.name == "two_step"
    assert cfg.metric.name in {"acc", "auc"}
    assert cfg.storegate.backend == "numpy"
    assert cfg.seed == 0 and list(cfg.devices) == ["cpu"]
    # the agent and data seeds follow the top-level seed
    cfg = compose("config", overrides=["seed=7"])
    assert cfg.agent.seed == 7 and cfg.task.data.seed == 7


# ------------------------------------------------------------------------------ agents
AGENT_TASKS = {"sequential": "two_step_single"}
"""The task each agent option is built against (sequential needs one combination)."""


@pytest.mark.parametrize("option", options("agent"))
def test_every_agent_option_builds_its_agent(hydra_init: None, tmp_path: Path, option: str) -> None:
    from multiml.saver import Saver

    task = AGENT_TASKS.get(option, "two_step")
    cfg = make_cfg([f"agent={option}", f"task={task}", "seed=5", *SMALL_DATA], tmp_path)
    storegate = build.build_storegate(cfg)
    ts = build.build_task_scheduler(cfg)
    build.check_wiring(cfg, storegate, ts)
    metric = build.build_metric(cfg)
    saver = Saver(save_dir=str(tmp_path / "saver"))
    agent = build.build_agent(cfg, storegate, saver, ts, metric)

    assert f"{type(agent).__module__.rsplit('.', 1)[0]}.{type(agent).__name__}".endswith(
        cfg.agent._target_.rsplit(".", 1)[1]
    )
    assert type(agent).__name__ == cfg.agent._target_.rsplit(".", 1)[1]
    assert agent.task_scheduler is ts and agent.storegate is storegate
    assert agent.saver is saver and agent.metric is metric
    assert agent.device == "cpu"  # devices=[cpu]: combinations run in this process on cpu
    assert agent.seed == 5  # the top-level seed reaches every agent (sequential included)
    if "samplings" in cfg.agent:
        indices = agent.sample_indices()
        assert len(indices) == cfg.agent.samplings == len(set(indices))


def test_agent_options_expose_the_seed_api_parameters(hydra_init: None) -> None:
    random_cfg = compose("config", overrides=["agent=random"]).agent
    for key in ("samplings", "seed", "metric_type", "num_trials", "dump_all_results"):
        assert key in random_cfg, key
    grid = compose("config", overrides=["agent=connection_grid"]).agent
    for key in ("reuse_pretraining", "do_pretraining", "freeze_model_weights"):
        assert key in grid, key
    assert "connectiontask_args" in compose("config", overrides=["agent=connection_random"]).agent


# ------------------------------------------------------------------------------- tasks
EXPECTED_TASKS = {
    "two_step": (["regression", "classification"], [["mlp"], ["mlp", "linear"]], 6),
    "two_step_single": (["regression", "classification"], [["mlp"], ["mlp"]], 1),
    "iris": (["features", "classification"], [["select_k_best"], ["mlp"]], 16),
}


@pytest.mark.parametrize("option", options("task"))
def test_every_task_option_builds_its_task_scheduler(
    hydra_init: None, tmp_path: Path, option: str
) -> None:
    cfg = make_cfg([f"task={option}"], tmp_path)
    for extra in cfg.task.requires:
        pytest.importorskip(build.EXTRAS.get(extra, (extra,))[0])
    if "num_events" in cfg.task.data:
        cfg = make_cfg([f"task={option}", *SMALL_DATA], tmp_path)
    storegate = build.build_storegate(cfg)
    ts = build.build_task_scheduler(cfg)
    build.check_wiring(cfg, storegate, ts)  # every step's inputs exist
    assert storegate.data_id == cfg.task.name

    step_ids, subtask_ids, combinations = EXPECTED_TASKS.get(option, (None, None, None))
    if step_ids is None:  # an option added later: at least a consistent scheduler
        assert len(ts) >= 1
        return
    assert ts.get_sorted_task_ids() == step_ids
    assert [ts.get_subtask_ids(step) for step in step_ids] == subtask_ids
    assert len(ts) == combinations
    # subtasks are the configured task classes with the configured arguments
    for step_id in step_ids:
        for subtask_id in ts.get_subtask_ids(step_id):
            node = cfg.task.steps[step_id].subtasks[subtask_id]
            env = ts.get_subtask(step_id, subtask_id).env
            assert type(env).__name__ == node.task._target_.rsplit(".", 1)[1]
            assert env.input_var_names == node.task.input_var_names
            assert env.output_var_names == node.task.output_var_names


def test_task_hyperparameter_lists_reach_the_scheduler(hydra_init: None, tmp_path: Path) -> None:
    cfg = make_cfg(
        [
            *SMALL_DATA,
            "task.steps.regression.subtasks.mlp.hps.optimizer__lr=[0.1,0.01,0.001]",
            "task.steps.classification.subtasks.linear=null",
        ],
        tmp_path,
    )
    ts = build.build_task_scheduler(cfg)
    assert ts.get_subtask_ids("classification") == ["mlp"]
    assert len(ts) == 3 * 2
    lrs = [combo[0].hps["optimizer__lr"] for combo in (ts[i] for i in range(len(ts)))]
    assert lrs == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]


def test_iris_says_how_to_install_sklearn_when_it_is_missing(
    hydra_init: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_cfg(["task=iris"], tmp_path)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # find_spec('sklearn') -> None
    with pytest.raises(ConfigError, match=r"task=iris needs scikit-learn.*multiml\[sklearn\]"):
        build.check_requirements(cfg)


# ----------------------------------------------------------------------------- metrics
METRIC_CLASSES = {
    "acc": "ACCMetric",
    "auc": "AUCMetric",
    "mse": "MSEMetric",
    "value": "ValueMetric",
    "zero": "ZeroMetric",
    "random": "RandomMetric",
}


@pytest.mark.parametrize("option", options("metric"))
def test_every_metric_option_instantiates(hydra_init: None, tmp_path: Path, option: str) -> None:
    cfg = make_cfg([f"metric={option}"], tmp_path)
    metric = build.build_metric(cfg)
    assert metric.name == cfg.metric.name
    if option in METRIC_CLASSES:
        assert type(metric).__name__ == METRIC_CLASSES[option]
    # the compared variables come from the task's entry for this metric, else 'default'
    entry = cfg.task.metrics.get(option, cfg.task.metrics["default"])
    assert metric.pred_var_name == entry.pred_var_name
    if option != "value":
        assert metric.true_var_name == entry.true_var_name
    assert metric.phase == "test"


def test_metric_variables_can_be_set_on_the_command_line(hydra_init: None, tmp_path: Path) -> None:
    cfg = make_cfg(
        ["metric=mse", "metric.pred_var_name=a", "metric.true_var_name=b", "metric.phase=valid"],
        tmp_path,
    )
    metric = build.build_metric(cfg)
    assert (metric.pred_var_name, metric.true_var_name, metric.phase) == ("a", "b", "valid")


def test_unknown_metric_name_lists_the_known_ones(hydra_init: None, tmp_path: Path) -> None:
    cfg = make_cfg(["metric.name=foo"], tmp_path)
    with pytest.raises(ConfigError, match=r"metric=foo.*'foo'.*acc, auc, mse"):
        build.build_metric(cfg)


# -------------------------------------------------------------------------- storegates
@pytest.mark.parametrize("option", options("storegate"))
def test_every_storegate_option_instantiates_with_the_data(
    hydra_init: None, tmp_path: Path, option: str
) -> None:
    cfg = make_cfg([f"storegate={option}", *SMALL_DATA], tmp_path)
    storegate = build.build_storegate(cfg)
    assert storegate.backend == option
    assert storegate.data_id == "two_step"
    assert storegate.get_metadata()["sizes"] == {"train": 120, "valid": 40, "test": 40}
    assert sorted(storegate.get_var_names("train")) == ["kinematics", "label", "towers"]
    on_disk = tmp_path / "storegate"
    if option == "numpy":
        assert not on_disk.exists()
    else:  # ${hydra:runtime.output_dir}/storegate: the inputs are written in the run dir
        assert (on_disk / "two_step" / "train" / "towers").is_dir()
    if option == "hybrid":  # inputs on disk, step outputs (written next) in memory
        storegate.update_data("new", storegate.get_data("label", "train"), phase="train")
        assert not (on_disk / "two_step" / "train" / "new").exists()


# -------------------------------------------------------------------------- validation
def _composition_error(overrides: list[str]) -> str:
    with pytest.raises((ConfigCompositionException, MissingConfigException)) as info:
        compose("config", overrides=overrides)
    exc: BaseException | None = info.value
    text = []
    while exc is not None:
        text.append(str(exc))
        exc = exc.__cause__
    return "\n".join(text)


def test_wrong_type_for_agent_seed_fails_at_composition(hydra_init: None) -> None:
    message = _composition_error(["agent.seed=notanint"])
    assert "agent.seed" in message and "notanint" in message and "Integer" in message


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("agent.metric_type=foo", r"(?s)foo.*min.*max.*agent\.metric_type"),
        ("storegate.backend=foo", r"(?s)foo.*numpy.*zarr.*hybrid.*storegate\.backend"),
        ("seed=1.5", r"(?s)1\.5.*seed"),
        ("num_threads=many", r"(?s)many.*num_threads"),
        ("tensorboard=maybe", r"(?s)maybe.*tensorboard"),
        ("agent.dump_all_results=sometimes", r"(?s)sometimes.*agent\.dump_all_results"),
        ("agent=random", None),  # control: a valid override composes
    ],
)
def test_wrong_types_fail_at_composition_naming_the_key(
    hydra_init: None, override: str, expected: str | None
) -> None:
    if expected is None:
        assert compose("config", overrides=[override]).agent.samplings == 4
        return
    import re

    assert re.search(expected, _composition_error([override])), override


def test_unknown_keys_fail_at_composition(hydra_init: None) -> None:
    assert "agent.foo" in _composition_error(["agent.foo=1"])
    assert "bogus" in _composition_error(["bogus=1"])


@pytest.mark.parametrize("group", GROUPS)
def test_unknown_group_option_lists_the_options(hydra_init: None, group: str) -> None:
    message = _composition_error([f"{group}=nope"])
    assert f"{group}/nope" in message
    for option in options(group):
        assert option in message


def test_schema_types_are_enforced_after_composition(hydra_init: None) -> None:
    cfg = compose("config", overrides=["agent=random"])
    with pytest.raises(ValidationError):
        cfg.agent.seed = "x"
    with pytest.raises(ConfigAttributeError):
        cfg.agent.not_a_field = 1
    assert OmegaConf.get_type(cfg.agent).__name__ == "RandomSearchAgentConf"


def _build_all(cfg: DictConfig, tmp_path: Path) -> Any:
    from multiml.saver import Saver

    storegate = build.build_storegate(cfg)
    ts = build.build_task_scheduler(cfg)
    build.check_wiring(cfg, storegate, ts)
    metric = build.build_metric(cfg)
    return build.build_agent(cfg, storegate, Saver(mode="dict"), ts, metric)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["agent=sequential"], r"agent=sequential.*6.*agent=grid"),
        (["agent=random", "agent.samplings=7"], r"samplings=7.*6 combinations"),
        (["agent=random", "agent.samplings=[0,6]"], r"samplings.*\[6\].*0\.\.5"),
        (["agent=random", "agent.samplings=abc"], r"samplings='abc'"),
        (["agent.num_trials=0"], r"num_trials=0"),
        (
            ["task.steps.regression.subtasks.mlp.task.input_var_names=nope"],
            r"step 'regression' subtask 'mlp' reads \['nope'\].*towers",
        ),
        (
            ["task.steps.regression.subtasks.mlp.hps.optimizer__lr=[]"],
            r"task\.steps\.regression\.subtasks\.mlp\.hps\.optimizer__lr=\[\]",
        ),
        (
            ["+task.steps.regression.subtasks.mlp.hps.bogus=[1]"],
            r"task\.steps\.regression\.subtasks\.mlp\.hps.*bogus",
        ),
        (
            ["task.steps.regression.subtasks.mlp.task._target_=nope.Nope"],
            r"task\.steps\.regression\.subtasks\.mlp\.task \(nope\.Nope\)",
        ),
        (["task.steps.regression.parents=[nope]"], r"parents=\['nope'\].*unknown step"),
        (["devices=[gpu]"], r"'gpu' is not a device; allowed: cpu"),
        (["devices=[]"], r"devices=\[\]"),
        (["devices=[7]"], r"cuda:7 does not exist"),
        (["task.data.phase=[0.5,0.1,0.1]"], r"task\.data.*sum to 1"),
        (
            ["task.data._target_=multiml.data.load_nope"],
            r"task=two_step: task\.data could not be built \(Error loading "
            r"'multiml\.data\.load_nope'.*a loader such as multiml\.data\.load_npz",
        ),
        (["+task.data.bogus=1"], r"loading task\.data failed: .*unexpected keyword.*'bogus'"),
    ],
)
def test_problems_found_while_building_are_config_errors(
    hydra_init: None, tmp_path: Path, overrides: list[str], expected: str
) -> None:
    cfg = make_cfg([*SMALL_DATA, *overrides], tmp_path)
    with pytest.raises(ConfigError, match=expected):
        _build_all(cfg, tmp_path)
