"""Users extend the app from their own directory: their task YAML (``--config-dir``), their
own task, model and agent classes in a module next to it (``python -m`` puts the working
directory on ``sys.path``), their agent option extending a built-in schema."""

from __future__ import annotations

from pathlib import Path

import pytest

MY_TASKS = '''\
"""A user's own step: a signal score from the invariant mass of step 1's estimate."""

import numpy as np
from torch import nn

from multiml.agent.basic import GridSearchAgent
from multiml.task.basic import MLBaseTask


class MassWindow(MLBaseTask):
    """Score = Gaussian window around ``mass`` of the reconstructed invariant mass."""

    def __init__(self, mass=1.0, width=0.1, **kwargs):
        super().__init__(**kwargs)
        self._mass = mass
        self._width = width

    def fit(self):
        return {"train": [{"loss": float(self._width)}], "valid": []}

    def predict(self, phase="test"):
        kin = self.storegate.get_data(self.input_var_names, phase)
        m2 = 2.0 * kin[:, 0] * kin[:, 1] * (1.0 - kin[:, 2])
        mass = np.sqrt(np.clip(m2, 0.0, None))
        return np.exp(-0.5 * ((mass - self._mass) / self._width) ** 2)


class Regressor(nn.Module):
    """A hand-written regression model with a configurable width."""

    def __init__(self, width=8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, width), nn.Tanh(), nn.Linear(width, 3))

    def forward(self, x):
        return self.net(x)


class LoudGrid(GridSearchAgent):
    """A user's agent: grid search that also records how many combinations it ran."""

    def finalize(self):
        super().finalize()
        self.saver["loud_grid"] = {"ran": len(self.history)}
'''

MY_TASK_YAML = """\
name: masswindow
data:
  _target_: multiml.data.synthetic.load_two_step
  num_events: 600
  seed: ${seed}
steps:
  regression:
    subtasks:
      mine:
        task:
          _target_: multiml.task.pytorch.PytorchBaseTask
          model: my_tasks.Regressor
          input_var_names: towers
          output_var_names: kinematics_pred
          true_var_names: kinematics
          optimizer: Adam
          optimizer_args: {lr: 0.01}
          loss: MSELoss
          num_epochs: 3
        hps:
          model__width: [4, 16]
  classification:
    subtasks:
      window:
        task:
          _target_: my_tasks.MassWindow
          input_var_names: kinematics_pred
          output_var_names: score
          true_var_names: label
        hps:
          width: [0.05, 0.2]
metrics:
  default: {pred_var_name: score, true_var_name: label}
"""

MY_AGENT_YAML = """\
defaults:
  - /schema/agent/grid@_here_
  - _self_

_target_: my_tasks.LoudGrid
metric_type: max
"""


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    (tmp_path / "my_tasks.py").write_text(MY_TASKS)
    (tmp_path / "my_conf" / "task").mkdir(parents=True)
    (tmp_path / "my_conf" / "task" / "masswindow.yaml").write_text(MY_TASK_YAML)
    (tmp_path / "my_conf" / "agent").mkdir()
    (tmp_path / "my_conf" / "agent" / "loud_grid.yaml").write_text(MY_AGENT_YAML)
    return tmp_path


@pytest.mark.slow
def test_own_task_model_and_agent_classes_from_the_working_directory(cli, user_dir: Path) -> None:
    run = cli(
        ["--config-dir", "my_conf", "task=masswindow", "agent=loud_grid", "metric=auc"],
        user_dir,
    ).check()
    history = run.history()
    assert len(history) == 4
    assert {r["subtask_ids"][1] for r in history} == {"window"}
    widths = sorted(
        {(r["subtask_hps"][0]["model__width"], r["subtask_hps"][1]["width"]) for r in history}
    )
    assert widths == [(4, 0.05), (4, 0.2), (16, 0.05), (16, 0.2)]
    # the user's step really ran: a mass window separates signal from background
    assert run.result()["metric_value"] > 0.6
    # the user's agent ran (and wrote through the Saver into the run directory)
    assert "loud_grid" in {p.stem for p in (run.run_dir / "saver").iterdir()}
    # the user's classes and config are recorded in the run's composed config
    composed = (run.run_dir / ".hydra" / "config.yaml").read_text()
    assert "my_tasks.LoudGrid" in composed and "my_tasks.MassWindow" in composed


def test_own_agent_option_keeps_the_schema_type_checks(cli, user_dir: Path) -> None:
    out = cli(
        ["--config-dir", "my_conf", "agent=loud_grid", "agent.seed=x", "--cfg", "job"], user_dir
    ).error()
    assert "agent.seed" in out and "GridSearchAgentConf" in out


def test_user_config_dir_through_the_search_path(cli, user_dir: Path) -> None:
    """``hydra.searchpath`` works like ``--config-dir``; the built-in options stay."""
    proc = cli(
        [f"hydra.searchpath=[file://{user_dir / 'my_conf'}]", "task=masswindow", "--cfg", "job"],
        user_dir,
    )
    assert proc.returncode == 0, proc.output
    assert "my_tasks.MassWindow" in proc.stdout
    help_text = cli(["--config-dir", "my_conf", "--help"], user_dir).stdout
    assert "masswindow" in help_text and "two_step" in help_text and "loud_grid" in help_text


def test_a_class_that_is_not_importable_is_a_config_error(cli, user_dir: Path) -> None:
    (user_dir / "my_tasks.py").unlink()
    message = cli(
        ["--config-dir", "my_conf", "task=masswindow", "task.data.num_events=100"], user_dir
    ).config_error()
    assert message.startswith(
        "task.steps.regression.subtasks.mine.task (multiml.task.pytorch.PytorchBaseTask) could "
        "not be built: PytorchBaseTask: model='my_tasks.Regressor': cannot import it"
    ), message
    assert "No module named 'my_tasks'" in message
