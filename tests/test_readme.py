"""The README's worked examples run as shown.

Code blocks preceded by ``<!-- readme-test: file PATH -->`` are written to PATH in a
temporary directory, blocks marked ``<!-- readme-test: run -->`` are run there as shell
commands (``python`` meaning this interpreter), ``<!-- readme-test: python -->`` blocks are
run as Python scripts.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = re.compile(
    r"<!-- readme-test: (file (?P<path>\S+)|run|python) -->\n```\w*\n(?P<body>.*?)```", re.S
)


def blocks() -> list[tuple[str, str | None, str]]:
    found = []
    for match in MARKER.finditer(README.read_text()):
        kind = match.group(1).split()[0]
        found.append((kind, match.group("path"), match.group("body")))
    return found


def test_readme_starts_with_the_two_setup_commands() -> None:
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert first_block == [
        "pip install torch==2.13.0 && pip install . && python -m multiml",
        "pip install nox && nox -s tests",
    ]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "nox -s tests" in ci


def test_readme_has_tested_examples() -> None:
    kinds = [kind for kind, _, _ in blocks()]
    assert kinds.count("file") >= 2 and "run" in kinds and "python" in kinds


@pytest.mark.slow
def test_readme_own_task_example_runs(tmp_path: Path) -> None:
    for kind, path, body in blocks():
        if kind == "file":
            target = tmp_path / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body)
    commands = [body.strip() for kind, _, body in blocks() if kind == "run"]
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "python"
        proc = subprocess.run(
            [sys.executable, *argv[1:], "hydra.run.dir=run"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["task_ids"] == ["regression", "classification"]
    assert result["subtask_ids"] == ["smearing", "mlp"]
    assert "model__width" in result["subtask_hps"][0]
    history = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert len(history) == 4


@pytest.mark.slow
def test_readme_python_api_example_runs(tmp_path: Path) -> None:
    (script,) = [body for kind, _, body in blocks() if kind == "python"]
    script = script.replace("num_events=6000", "num_events=1500").replace(
        "num_epochs=15", "num_epochs=3"
    )
    (tmp_path / "example.py").write_text(script)
    proc = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "'metric_value':" in proc.stdout
