"""The package's shape: one import root, and layers that import only downwards."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


def test_the_distribution_installs_one_top_level_package() -> None:
    top_level = importlib.metadata.distribution("inferline").read_text("top_level.txt") or ""
    assert top_level.split() == ["inferline"]
    for old in ("pipeline", "ingest", "storage", "processors", "api", "otlp"):
        assert not (ROOT / old).exists(), f"{old}/ is back beside inferline/"


def test_layers_import_only_downwards() -> None:
    """`lint-imports` checks the contract in pyproject.toml ([tool.importlinter]), function-level
    imports included: the base layer never reaches up into the wiring."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is part of the test extras"
    result = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout
