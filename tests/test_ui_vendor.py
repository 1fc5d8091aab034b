"""The dashboard's vendored front-end libraries are exactly what ui/package-lock.json pins: `npm ci`
into a temporary folder (as `make ui` does) and the committed copies are compared byte for byte."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

UI = ROOT / "ui"
VENDOR = ROOT / "inferline" / "ui" / "static" / "vendor"


def vendor_files() -> list[tuple[str, str]]:
    """(path under node_modules, name in static/vendor) from ui/vendor-files.txt, as `make ui` reads it."""
    lines = (UI / "vendor-files.txt").read_text().splitlines()
    pairs = [line.split() for line in lines if line.strip() and not line.startswith("#")]
    return [(source, dest) for source, dest in pairs]


@pytest.mark.unit
def test_every_vendored_file_is_listed_and_served_by_the_pages() -> None:
    listed = {dest for _, dest in vendor_files()}
    assert listed == {p.name for p in VENDOR.iterdir()}
    base = (ROOT / "inferline" / "ui" / "templates" / "base.html").read_text()
    assert "/ui/static/vendor/htmx.min.js" in base


@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm (and the npm registry)")
def test_committed_copies_match_the_lock_file(tmp_path: Path) -> None:
    for name in ("package.json", "package-lock.json"):
        shutil.copy(UI / name, tmp_path / name)
    subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=240,
    )
    for source, dest in vendor_files():
        installed = (tmp_path / "node_modules" / source).read_bytes()
        assert (VENDOR / dest).read_bytes() == installed, f"{dest} differs from {source}: run `make ui`"
