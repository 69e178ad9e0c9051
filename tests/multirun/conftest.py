"""Helpers of the multirun tests: run ``python -m multiml -m ...`` as a user types it.

``sweep(args, cwd)`` runs a multirun in ``cwd`` (a subprocess of this interpreter) with
``hydra.sweep.dir=multirun/s`` unless given, and returns a :class:`Sweep`: exit code,
output, and readers for the files the sweep leaves (``summary.json``, ``results.csv``,
every job's ``result.json``). ``single(args, cwd)`` runs the same experiment in-process
(``python -m multiml`` without ``-m``) for comparisons.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SWEEP_DIR = "multirun/s"


@dataclass
class Sweep:
    """The outcome of one ``python -m multiml -m ...`` command."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    sweep_dir: Path

    @property
    def output(self) -> str:
        """stdout and stderr together."""
        return self.stdout + self.stderr

    def check(self) -> Sweep:
        """Assert the command succeeded (showing its output when it did not)."""
        assert self.returncode == 0, f"{self.args}\n{self.output[-5000:]}"
        return self

    def summary(self) -> dict[str, Any]:
        """``summary.json`` of the sweep."""
        return json.loads((self.sweep_dir / "summary.json").read_text())

    def result(self) -> dict[str, Any]:
        """The sweep's ``result.json`` (the best job, SPEC §6 keys)."""
        return json.loads((self.sweep_dir / "result.json").read_text())

    def rows(self) -> list[dict[str, str]]:
        """``results.csv`` as dicts (strings), one per planned job."""
        with (self.sweep_dir / "results.csv").open(newline="") as handle:
            return list(csv.DictReader(handle))

    def job_keys(self) -> list[str]:
        """Keys of the planned jobs, in plan order (from ``plan.json``)."""
        plan = json.loads((self.sweep_dir / "plan.json").read_text())
        return [job["key"] for job in plan["jobs"]]

    def record(self, key: str) -> dict[str, Any]:
        """A job's ``result.json``."""
        return json.loads((self.sweep_dir / key / "result.json").read_text())

    def records(self) -> dict[str, dict[str, Any]]:
        """Every planned job's ``result.json`` by key."""
        return {key: self.record(key) for key in self.job_keys()}

    def result_mtimes(self) -> dict[str, int]:
        """``st_mtime_ns`` of every job's ``result.json``."""
        return {
            key: (self.sweep_dir / key / "result.json").stat().st_mtime_ns
            for key in self.job_keys()
        }


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(extra or {})
    return env


def run_sweep(
    args: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> Sweep:
    """Run ``python -m multiml -m *args`` in ``cwd`` (sweep dir ``multirun/s`` by default)."""
    cwd.mkdir(parents=True, exist_ok=True)
    args = list(args)
    if not any(a.startswith("hydra.sweep.dir=") for a in args):
        args.append(f"hydra.sweep.dir={SWEEP_DIR}")
    sweep_dir = cwd / [a.split("=", 1)[1] for a in args if a.startswith("hydra.sweep.dir=")][-1]
    proc = subprocess.run(
        [sys.executable, "-m", "multiml", "-m", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(env),
    )
    return Sweep(args, proc.returncode, proc.stdout, proc.stderr, sweep_dir)


def run_single(args: Sequence[str], cwd: Path) -> dict[str, Any]:
    """Run ``python -m multiml *args`` (in-process agent); return its result and history."""
    run_dir = cwd / "single"
    proc = subprocess.run(
        [sys.executable, "-m", "multiml", *args, f"hydra.run.dir={run_dir}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(None),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    history = (run_dir / "history.jsonl").read_text().splitlines()
    return {
        "result": json.loads((run_dir / "result.json").read_text()),
        "history": [json.loads(line) for line in history],
    }


@pytest.fixture(scope="session")
def sweep() -> Callable[..., Sweep]:
    """``sweep(args, cwd)`` runs a multirun (see :func:`run_sweep`)."""
    return run_sweep


@pytest.fixture(scope="session")
def single() -> Callable[..., dict[str, Any]]:
    """``single(args, cwd)`` runs the in-process agent (see :func:`run_single`)."""
    return run_single
