"""TensorBoard event files: written by the tracker, read back as TensorBoard reads them.

Per combination and step, per-epoch train/valid curves; the final ``metric/<name>``; one
HParams session per combination so the HParams dashboard compares combinations.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from multiml.app.tracking import TensorBoardTracker

EXPERIMENT_TAG = "_hparams_/experiment"
SESSION_START_TAG = "_hparams_/session_start_info"
SESSION_END_TAG = "_hparams_/session_end_info"


def read_run(path: Path) -> EventAccumulator:
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def session_hparams(acc: EventAccumulator) -> dict[str, Any]:
    """The hyperparameters of a run's HParams session start info."""
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content[SESSION_START_TAG])
    values = {}
    for name, value in start.session_start_info.hparams.items():
        kind = value.WhichOneof("kind")
        values[name] = getattr(value, kind)
    return values


def dashboard_experiment(logdir: Path) -> api_pb2.Experiment:
    """The experiment the HParams dashboard shows for ``tensorboard --logdir logdir``:
    TensorBoard's own hparams backend over its own event multiplexer."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import backend_context

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    tb_context = base_plugin.TBContext(
        logdir=str(logdir), multiplexer=multiplexer, data_provider=provider
    )
    ctx = backend_context.Context(tb_context)
    request = context.RequestContext()
    return ctx.experiment_from_metadata(
        request,
        "",
        True,
        ctx.hparams_metadata(request, ""),
        ctx.hparams_from_data_provider(request, "", None),
    )


# ------------------------------------------------------------------ the default run
def test_default_run_has_per_epoch_curves_per_combination_and_step(default_run) -> None:
    history = default_run.history()
    runs = sorted((default_run.run_dir / "tensorboard").iterdir())
    assert len(runs) == len(history) == 6
    steps = yaml.safe_load((default_run.run_dir / ".hydra" / "config.yaml").read_text())
    steps = steps["task"]["steps"]
    for path, result in zip(runs, history, strict=True):
        assert path.name == f"job{result['job_id']:04d}"
        acc = read_run(path)
        tags = acc.Tags()["scalars"]
        for step, subtask in zip(result["task_ids"], result["subtask_ids"], strict=True):
            epochs = steps[step]["subtasks"][subtask]["task"]["num_epochs"]
            for phase in ("train", "valid"):
                events = acc.Scalars(f"{step}/{subtask}/{phase}/loss")
                assert [e.step for e in events] == list(range(1, epochs + 1))
                assert all(e.value > 0 for e in events)
        assert f"classification/{result['subtask_ids'][1]}/valid/acc" in tags
        # the final metric, equal to the history's value
        (final,) = acc.Scalars("metric/auc")
        assert final.value == pytest.approx(result["metric_value"], rel=1e-6)


def test_default_run_has_an_hparams_session_per_combination(default_run) -> None:
    history = default_run.history()
    runs = sorted((default_run.run_dir / "tensorboard").iterdir())
    for path, result in zip(runs, history, strict=True):
        acc = read_run(path)
        content = acc.PluginTagToContent("hparams")
        assert SESSION_START_TAG in content and SESSION_END_TAG in content
        # one experiment summary per run would make TensorBoard show a single run's
        # hyperparameters for all of them (it uses the first it finds)
        assert EXPERIMENT_TAG not in content
        expected: dict[str, Any] = {}
        for step, subtask, hps in zip(
            result["task_ids"], result["subtask_ids"], result["subtask_hps"], strict=True
        ):
            expected[step] = subtask
            expected.update({f"{step}/{name}": value for name, value in hps.items()})
        assert session_hparams(acc) == pytest.approx(expected)
        end = plugin_data_pb2.HParamsPluginData.FromString(content[SESSION_END_TAG])
        assert end.session_end_info.status == api_pb2.STATUS_SUCCESS


def test_hparams_dashboard_compares_every_combination(default_run) -> None:
    """What ``tensorboard --logdir <run dir>`` shows in the HParams tab: every step's
    subtask and hyperparameter as a column (the union over all combinations, including
    the ``linear`` subtask that has no ``optimizer__lr``) and the final metric."""
    experiment = dashboard_experiment(default_run.run_dir)
    hparams = {info.name: info for info in experiment.hparam_infos}
    assert set(hparams) == {
        "regression",
        "regression/optimizer__lr",
        "classification",
        "classification/optimizer__lr",
    }
    assert sorted(hparams["classification"].domain_discrete) == ["linear", "mlp"]
    lr = hparams["classification/optimizer__lr"].domain_interval
    assert (lr.min_value, lr.max_value) == (0.003, 0.01)
    metrics = {info.name.tag for info in experiment.metric_infos}
    assert "metric/auc" in metrics
    assert "classification/mlp/valid/loss" in metrics


# ------------------------------------------------------------------- the tracker alone
def _history(epochs: int) -> dict[str, list[dict[str, Any]]]:
    return {
        "train": [
            {"loss": 1.0 / (e + 1), "lr": 0.01, "subloss": [0.5, 0.25]} for e in range(epochs)
        ],
        "valid": [{"loss": 2.0 / (e + 1), "note": "text is skipped"} for e in range(epochs)],
    }


def _result(job_id: int, value: float, hps: dict[str, Any]) -> dict[str, Any]:
    return {
        "task_ids": ["step0", "step1"],
        "subtask_ids": ["a", "b"],
        "job_id": job_id,
        "trial_id": None,
        "subtask_hps": [hps, {}],
        "metric_value": value,
    }


def test_tracker_writes_curves_metric_and_session(tmp_path: Path) -> None:
    tracker = TensorBoardTracker(tmp_path)
    tracker.log_step("job0000", "step0", "a", _history(3), {"optimizer__lr": 0.1})
    tracker.log_step("job0000", "step1", "b", None, {})  # restored steps: no history
    tracker.log_result(
        "job0000",
        _result(0, 0.75, {"model__layers": [4, 2], "flag": True, "k": 3}),
        "acc",
    )
    tracker.close()

    acc = read_run(tmp_path / "job0000")
    assert sorted(acc.Tags()["scalars"]) == [
        "metric/acc",
        "step0/a/train/loss",
        "step0/a/train/lr",
        "step0/a/train/subloss/0",
        "step0/a/train/subloss/1",
        "step0/a/valid/loss",
    ]
    assert [e.value for e in acc.Scalars("step0/a/valid/loss")] == pytest.approx([2, 1, 2 / 3])
    assert [e.step for e in acc.Scalars("step0/a/train/loss")] == [1, 2, 3]
    assert acc.Scalars("metric/acc")[0].value == 0.75
    assert session_hparams(acc) == {
        "step0": "a",
        "step0/model__layers": "[4, 2]",  # lists are shown as text
        "step0/flag": True,
        "step0/k": 3.0,
        "step1": "b",
    }


def test_tracker_pickles_without_its_writers(tmp_path: Path) -> None:
    tracker = TensorBoardTracker(tmp_path)
    tracker.log_step("job0001", "step0", "a", _history(1), {})
    copy = pickle.loads(pickle.dumps(tracker))
    assert copy.logdir == str(tmp_path) and copy._writers == {}
    # a copy (a worker process's) writes its own runs into the same directory
    copy.log_result("job0002", _result(2, 0.5, {}), "auc")
    tracker.log_result("job0001", _result(1, 0.25, {}), "auc")
    assert tracker._writers == {}  # each run's writer is closed with its result
    assert read_run(tmp_path / "job0002").Scalars("metric/auc")[0].value == 0.5
    assert read_run(tmp_path / "job0001").Scalars("metric/auc")[0].value == 0.25
