"""The compiled hot path (tools/compile_hot_path.py): what runs is what the sources say."""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path

import pytest

from inferline.core.compiled import refuse_stale_extensions
from tools.compile_hot_path import ROOT, SUFFIX, compiled_files, extension_of, sources, stale_modules

pytestmark = pytest.mark.unit


def test_the_hot_path_runs_compiled_where_it_was_built() -> None:
    """CI builds it (`make test` compiles first, .ci/run requires it): the modules it lists must
    then be imported from their extension, not silently from the .py beside it."""
    if not compiled_files() and not os.environ.get("INFERLINE_REQUIRE_COMPILED"):
        pytest.skip("interpreted here (`make pure`, or no C compiler)")
    assert len(sources()) >= 20
    for source in sources():
        name = ".".join(source.relative_to(ROOT).with_suffix("").parts)
        module = importlib.import_module(name)
        assert module.__file__ is not None and module.__file__.endswith(SUFFIX), name


def _module(root: Path, relative: str) -> tuple[Path, Path]:
    source = root / relative
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("x: int = 1\n")
    extension = extension_of(source)
    extension.write_bytes(b"")
    return source, extension


def test_a_source_edited_after_its_build_makes_the_build_stale(tmp_path: Path) -> None:
    source, extension = _module(tmp_path, "inferline/processors/normalise.py")
    past = time.time() - 60
    os.utime(source, (past, past))
    assert stale_modules(tmp_path) == []
    source.write_text("x: int = 2\n")  # edited: the extension would hide the edit
    assert stale_modules(tmp_path) == [extension]


def test_a_module_taken_off_the_hot_path_leaves_no_extension_behind(tmp_path: Path) -> None:
    _, extension = _module(tmp_path, "inferline/processors/pricing.py")  # not on the list
    assert stale_modules(tmp_path) == [extension]


def test_the_package_refuses_to_import_a_compiled_module_older_than_its_source(tmp_path: Path) -> None:
    """Also outside the tests (`inferline run` after a `git pull` without `make`)."""
    source, extension = _module(tmp_path, "inferline/processors/normalise.py")
    past = time.time() - 60
    os.utime(extension, (past, past))
    with pytest.raises(ImportError, match=r"normalise.*make compile"):
        refuse_stale_extensions(tmp_path / "inferline")
    os.utime(source, (past - 60, past - 60))
    refuse_stale_extensions(tmp_path / "inferline")
