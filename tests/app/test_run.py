"""A single run in process (:func:`multiml.app.run.run_experiment`): the files it leaves,
partial and total failures, the switches of the root config."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from multiml.app.build import ConfigError
from multiml.app.run import run_experiment, set_threads, write_json, write_jsonl

CONF_DIR = Path(__file__).resolve().parents[2] / "multiml" / "conf"
TINY = [
    "task.data.num_events=200",
    "task.steps.regression.subtasks.mlp.task.num_epochs=1",
    "task.steps.classification.subtasks.mlp.task.num_epochs=1",
    "task.steps.classification.subtasks.linear.task.num_epochs=1",
    "task.steps.regression.subtasks.mlp.hps.optimizer__lr=[0.01]",
]
"""``task=two_step`` with 200 events, one epoch per step, 3 combinations (mlp lr 0.01,
0.003 and linear)."""


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """Runs pin torch's thread count; give the rest of the test session its own back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def make_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[*TINY, *overrides])


def test_run_writes_result_history_and_returns_the_best(tmp_path: Path) -> None:
    best = run_experiment(make_cfg("tensorboard=false"), tmp_path)
    result = json.loads((tmp_path / "result.json").read_text())
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert best == result["metric_value"]
    assert [r["job_id"] for r in history] == [0, 1, 2]
    assert result == max(history, key=lambda r: r["metric_value"])
    assert not (tmp_path / "tensorboard").exists()  # tensorboard=false
    assert not (tmp_path / "failures.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_some_combinations_fail(tmp_path: Path) -> None:
    cfg = make_cfg("+task.steps.classification.subtasks.linear.task.model_args.widht=3")
    run_experiment(cfg, tmp_path)
    history = (tmp_path / "history.jsonl").read_text().splitlines()
    assert len(history) == 2
    failures = [json.loads(line) for line in (tmp_path / "failures.jsonl").read_text().splitlines()]
    assert [f["job_id"] for f in failures] == [2]
    assert failures[0]["subtask_ids"] == ["mlp", "linear"]
    assert "widht" in failures[0]["error"]
    assert json.loads((tmp_path / "result.json").read_text())["subtask_ids"] == ["mlp", "mlp"]


def test_every_combination_fails(tmp_path: Path) -> None:
    cfg = make_cfg("+task.steps.regression.subtasks.mlp.task.model_args.widht=3")
    with pytest.raises(RuntimeError, match=r"(?s)all 3 combinations failed.*widht"):
        run_experiment(cfg, tmp_path)
    failures = [json.loads(line) for line in (tmp_path / "failures.jsonl").read_text().splitlines()]
    assert [f["job_id"] for f in failures] == [0, 1, 2]
    assert all("widht" in f["error"] for f in failures)
    assert not (tmp_path / "result.json").exists()


def test_num_threads_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="num_threads=0"):
        set_threads(0)


def test_json_outputs_are_written_atomically_with_numpy_values(tmp_path: Path) -> None:
    write_json(tmp_path / "r.json", {"v": np.float32(0.5), "k": np.int64(3), "a": np.arange(2)})
    assert json.loads((tmp_path / "r.json").read_text()) == {
        "v": 0.5,
        "k": 3,
        "a": {"ndarray": [0, 1], "dtype": "int64"},  # arrays keep their dtype
    }
    write_jsonl(tmp_path / "h.jsonl", [{"i": 1}, {"i": np.int32(2)}])
    assert (tmp_path / "h.jsonl").read_text() == '{"i": 1}\n{"i": 2}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.jsonl", "r.json"]  # no temp files
