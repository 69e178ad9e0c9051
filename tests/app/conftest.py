"""Helpers for the Hydra application tests: run ``python -m multiml`` as a user types it.

``cli(args, cwd)`` runs the command in a directory (a subprocess with this interpreter, so
the package under test is the one installed in this environment) and returns a
:class:`Run` with the exit code, the output and the run directory the command created.
``default_run`` is ``python -m multiml`` with no arguments, run once per session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Run:
    """The outcome of one ``python -m multiml ...`` command."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path | None
    wall_s: float
    """Seconds the command took."""

    @property
    def output(self) -> str:
        """stdout and stderr together (Hydra logs to stdout, errors go to stderr)."""
        return self.stdout + self.stderr

    def result(self) -> dict[str, Any]:
        """The run's ``result.json``."""
        assert self.run_dir is not None, self.output[-3000:]
        return json.loads((self.run_dir / "result.json").read_text())

    def history(self) -> list[dict[str, Any]]:
        """The run's ``history.jsonl``, one dict per line."""
        assert self.run_dir is not None, self.output[-3000:]
        lines = (self.run_dir / "history.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def error(self) -> str:
        """The output of a run that must fail: non-zero exit, no Python traceback."""
        assert self.returncode != 0, f"{self.args} succeeded\n{self.output[-2000:]}"
        assert "Traceback" not in self.output, f"{self.args} printed a traceback:\n{self.output}"
        return self.output

    def config_error(self) -> str:
        """The one-paragraph message of a run stopped by a configuration error (exit 2)."""
        output = self.error()
        assert self.returncode == 2, f"{self.args}: exit {self.returncode}\n{output[-2000:]}"
        lines = [line for line in output.splitlines() if "configuration error: " in line]
        assert len(lines) == 1, output
        return lines[0].split("configuration error: ", 1)[1]

    def check(self) -> Run:
        """Assert the command succeeded (showing its output when it did not)."""
        assert self.returncode == 0, f"{self.args}\n{self.output[-4000:]}"
        assert self.run_dir is not None, f"{self.args}: no run directory\n{self.output[-2000:]}"
        return self


def _run_dirs(cwd: Path) -> set[Path]:
    return {p for p in (cwd / "outputs").glob("*/*") if p.is_dir()}


def run_cli(
    args: Sequence[str],
    cwd: Path,
    timeout: float = 600,
    env: dict[str, str] | None = None,
    python: str = sys.executable,
) -> Run:
    """Run ``python -m multiml *args`` in ``cwd``.

    The run directory is the one the command created under ``cwd/outputs/DATE/TIME`` (or
    ``hydra.run.dir`` when given as a relative override).
    """
    cwd.mkdir(parents=True, exist_ok=True)
    before = _run_dirs(cwd)
    full_env = dict(os.environ)
    full_env.pop("HYDRA_FULL_ERROR", None)
    full_env.update(env or {})
    start = time.perf_counter()
    proc = subprocess.run(
        [python, "-m", "multiml", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    run_dir: Path | None = None
    explicit = [a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")]
    if explicit:
        candidate = cwd / explicit[-1]
        run_dir = candidate if candidate.is_dir() else None
    else:
        created = sorted(_run_dirs(cwd) - before)
        assert len(created) <= 1, f"several run directories: {created}"
        run_dir = created[0] if created else None
    wall_s = time.perf_counter() - start
    return Run(list(args), proc.returncode, proc.stdout, proc.stderr, run_dir, wall_s)


@pytest.fixture(scope="session")
def cli() -> Callable[..., Run]:
    """``cli(args, cwd)`` runs ``python -m multiml *args`` in ``cwd`` (see :func:`run_cli`)."""
    return run_cli


def run_many(commands: Sequence[tuple[Sequence[str], Path]]) -> list[Run]:
    """Run several ``(args, cwd)`` commands concurrently, one per CPU core; results in order.

    Each run is pinned to one torch thread (``num_threads=1``), so runs on different cores
    do not slow each other down and their results do not depend on running together.
    """
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        futures = [pool.submit(run_cli, args, cwd) for args, cwd in commands]
        return [future.result() for future in futures]


@pytest.fixture(scope="session")
def cli_many() -> Callable[..., list[Run]]:
    """``cli_many([(args, cwd), ...])`` runs the commands concurrently (see :func:`run_many`)."""
    return run_many


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """``python -m multiml`` exactly as typed, no arguments (shared by several tests)."""
    return run_cli([], tmp_path_factory.mktemp("default_run")).check()
