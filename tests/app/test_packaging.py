"""The built wheel carries what ``python -m multiml`` needs after a non-editable install.

The config groups are package data (``multiml/conf/**.yaml``), and the sweeper plugin is a
``hydra_plugins`` namespace package: Hydra discovers plugins across every installed
distribution's ``hydra_plugins``, which only works when no distribution ships a
``hydra_plugins/__init__.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".nox",
    "build",
    "dist",
    "*.egg-info",
    "outputs",
    "multirun",
    "runs",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "*.zarr",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (the checkout is untouched)."""
    pytest.importorskip("setuptools")
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=IGNORE, symlinks=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(work / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = (work / "dist").glob("multiml-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_ships_every_config_group(wheel_names: set[str]) -> None:
    conf = ROOT / "multiml" / "conf"
    expected = {f"multiml/conf/{p.relative_to(conf).as_posix()}" for p in conf.rglob("*.yaml")}
    assert "multiml/conf/config.yaml" in expected and len(expected) > 10
    assert expected <= wheel_names, sorted(expected - wheel_names)
    assert "multiml/conf/__init__.py" in wheel_names
    for group in ("agent", "task", "metric", "storegate"):
        assert any(n.startswith(f"multiml/conf/{group}/") for n in wheel_names), group


def test_wheel_ships_the_sweeper_plugin_as_a_namespace_package(wheel_names: set[str]) -> None:
    assert "hydra_plugins/multiml_sweeper/multiml_sweeper.py" in wheel_names
    assert "hydra_plugins/multiml_sweeper/__init__.py" in wheel_names
    assert "hydra_plugins/__init__.py" not in wheel_names


def test_wheel_ships_the_app_and_the_entry_points(wheel: Path, wheel_names: set[str]) -> None:
    for module in ("config", "build", "run", "tracking", "main"):
        assert f"multiml/app/{module}.py" in wheel_names
    assert "multiml/__main__.py" in wheel_names
    assert not any(name.startswith(("tests/", "conf/")) for name in wheel_names)
    (entry_points,) = [n for n in wheel_names if n.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(entry_points).decode()
    assert "multiml = multiml.app.main:main" in text
