"""Shared helpers of the agent tests: small stores and steps that run in milliseconds.

Two kinds of steps:

- :class:`NoiseTask` — a plain :class:`~multiml.task.basic.BaseTask` that writes
  ``input + offset + noise`` drawn from the *global* NumPy and torch RNGs (so it shows
  whether the runner seeds and scopes them), counts its executions, and can raise or kill
  its process for one chosen ``offset``;
- :func:`torch_steps` — a real two-step PyTorch chain (regression ``x → mid`` then
  classification ``mid → pred``) with tiny MLPs, 2 epochs on a few hundred rows.

Worker-process tests pickle these classes into ``spawn``-ed children, which import them
as ``tests.agent.conftest``; :func:`importable_tests` makes that import work however
pytest was started.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from multiml import Saver, StoreGate
from multiml.agent.runner import Tracker
from multiml.task.basic import BaseTask
from multiml.task.pytorch import PytorchBaseTask, PytorchClassificationTask

ROOT = Path(__file__).resolve().parents[2]
ACC_ARGS = {"pred_var_name": "pred", "true_var_name": "label"}
"""metric_args of the accuracy of the torch chain."""
VALUE_ARGS = {"pred_var_name": "pred"}
"""metric_args of the ``value`` metric (mean of ``pred``) of NoiseTask chains."""


def make_store(n_rows: int = 300, data_id: str = "d") -> StoreGate:
    """A compiled store: ``x`` (N, 8), ``truth`` (N, 2), ``label`` (N,), split 60/20/20."""
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(n_rows, 2)).astype(np.float32)
    x = (truth @ rng.normal(size=(2, 8)) + 0.1 * rng.normal(size=(n_rows, 8))).astype(np.float32)
    label = (truth[:, 0] * truth[:, 1] > 0).astype(np.int64)
    sg = StoreGate(data_id=data_id)
    for name, array in (("x", x), ("truth", truth), ("label", label)):
        sg.add_data(name, array, phase=(0.6, 0.2, 0.2))
    sg.compile()
    return sg


def dict_saver() -> Saver:
    """An in-memory Saver (fast; nothing on disk)."""
    return Saver(mode="dict")


class NoiseTask(BaseTask):
    """``output = mean(input, axis 1) + offset + noise`` in every phase.

    The noise mixes ``np.random.normal`` and ``torch.rand`` — the global RNGs the runner
    seeds per step — and ``random``-free arithmetic, so a metric on the output is a
    fingerprint of the seed the step ran with.

    Args:
        input_var, output_var: store variables read and written.
        offset: a hyperparameter.
        fail_on: raise ``RuntimeError`` when ``offset`` equals this.
        exit_on: ``os._exit(3)`` (a hard worker death) when ``offset`` equals this.
        record_pid: write the process id to ``saver['pid_<task_id>_<job_id>']``.
        **kwargs: BaseTask arguments.
    """

    def __init__(
        self,
        input_var: str = "x",
        output_var: str = "pred",
        offset: float = 0.0,
        fail_on: float | None = None,
        exit_on: float | None = None,
        record_pid: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._input_var = input_var
        self._output_var = output_var
        self._offset = offset
        self._fail_on = fail_on
        self._exit_on = exit_on
        self._record_pid = record_pid
        self.executions: list[float] = []

    def execute(self) -> None:
        self.executions.append(self._offset)
        if self._fail_on is not None and self._offset == self._fail_on:
            raise RuntimeError(f"NoiseTask refuses offset={self._offset}")
        if self._exit_on is not None and self._offset == self._exit_on:
            os._exit(3)
        if self._record_pid:
            self.saver[f"pid_{self.task_id}_{self.job_id}"] = os.getpid()
        sg = self.storegate
        outputs = {}
        for phase in ("train", "valid", "test"):
            data = np.asarray(sg.get_data(self._input_var, phase), dtype=np.float64)
            base = data.reshape(len(data), -1).mean(axis=1)
            noise = np.random.normal(size=len(data)) + torch.rand(len(data)).double().numpy()
            outputs[phase] = base + self._offset + noise
        for phase, output in outputs.items():
            sg.update_data(self._output_var, output, phase, do_compile=False)
        sg.compile()


def noise_steps(
    offsets0: list[float] | None = None,
    offsets1: list[float] | None = None,
    **task1_args: Any,
) -> list[list[tuple[NoiseTask, dict[str, Any]]]]:
    """Task-scheduler shortcut of a NoiseTask chain ``x → mid → pred``."""
    step0 = NoiseTask(input_var="x", output_var="mid", name="noise0")
    step1 = NoiseTask(input_var="mid", output_var="pred", name="noise1", **task1_args)
    return [
        [(step0, {"offset": offsets0 if offsets0 is not None else [0.0, 1.0]})],
        [(step1, {"offset": offsets1 if offsets1 is not None else [0.0, 10.0, 20.0]})],
    ]


def noise_agent(cls: type, **kwargs: Any) -> Any:
    """A search agent of class ``cls`` on the 2 x 3 NoiseTask grid (6 combinations)."""
    kwargs.setdefault("storegate", make_store())
    kwargs.setdefault("saver", dict_saver())
    kwargs.setdefault("task_scheduler", noise_steps())
    kwargs.setdefault("metric", "value")
    kwargs.setdefault("metric_args", VALUE_ARGS)
    return cls(**kwargs)


def torch_steps(
    epochs: int = 2, **common_overrides: Any
) -> tuple[PytorchBaseTask, PytorchClassificationTask]:
    """The PyTorch chain: ``x → mid`` (MSE regression), ``mid → pred`` (classification)."""
    common: dict[str, Any] = {
        "optimizer": "SGD",
        "optimizer_args": {"lr": 0.1},
        "num_epochs": epochs,
        "batch_size": 64,
        "device": "cpu",
        **common_overrides,
    }
    step0 = PytorchBaseTask(
        input_var_names="x",
        output_var_names="mid",
        true_var_names="truth",
        model="MLPBlock",
        model_args={"layers": [8, 16, 2]},
        loss="MSELoss",
        name="reg",
        **common,
    )
    step1 = PytorchClassificationTask(
        input_var_names="mid",
        output_var_names="pred",
        true_var_names="label",
        model="MLPBlock",
        model_args={"layers": [2, 8, 2]},
        loss="CrossEntropyLoss",
        name="clf",
        **common,
    )
    return step0, step1


class RecordingTracker(Tracker):
    """Remembers every step and result the runner reports."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, str, str, Any, dict[str, Any]]] = []
        self.results: list[tuple[str, dict[str, Any], str]] = []
        self.closed = 0

    def log_step(
        self, run: str, task_id: str, subtask_id: str, history: Any, resolved_hps: dict[str, Any]
    ) -> None:
        self.steps.append((run, task_id, subtask_id, history, resolved_hps))

    def log_result(self, run: str, result: dict[str, Any], metric_name: str) -> None:
        self.results.append((run, result, metric_name))

    def close(self) -> None:
        self.closed += 1

    def histories(self, task_id: str) -> list[Any]:
        """Histories reported for steps of ``task_id`` (``'connection'``: connection tasks)."""
        return [history for _, tid, _, history, _ in self.steps if tid == task_id]


def metric_values(results: list[dict[str, Any]]) -> list[float]:
    """The metric value of each result, in order."""
    return [r["metric_value"] for r in results]


@pytest.fixture
def importable_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let spawned workers import ``tests.agent.conftest`` (they inherit ``sys.path``)."""
    if str(ROOT) not in sys.path:
        monkeypatch.syspath_prepend(str(ROOT))
