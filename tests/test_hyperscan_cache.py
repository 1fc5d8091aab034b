"""Compiled Hyperscan databases are kept on disk: the next process (a worker replacing a dead one,
a restart) loads them instead of compiling for seconds, a damaged file is compiled afresh, and
without a writable cache everything still works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hyperscan
import pytest

from inferline.processors import hyperscan_cache
from inferline.processors.hyperscan_cache import compile_database
from inferline.processors.pii import PiiMasker

pytestmark = pytest.mark.unit

PATTERNS = [b"foo", b"ba[rz]+"]
FLAGS = [0, hyperscan.HS_FLAG_SOM_LEFTMOST]


def _matches(db: Any, data: bytes) -> list[tuple[int, int, int]]:
    hits: list[tuple[int, int, int]] = []
    db.scan(
        data,
        match_event_handler=lambda i, f, t, _fl, _c: hits.append((i, f, t)),
        scratch=hyperscan.Scratch(db),
    )
    return hits


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INFERLINE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "hyperscan"


class _NoCompiling:
    """Stands in for `hyperscan.Database` where a test proves nothing is compiled."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("compiled instead of loaded from the cache")


def test_a_database_compiled_once_is_loaded_by_the_next_process(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = compile_database(PATTERNS, [0, 1], FLAGS)
    assert len(list(cache.glob("*.hsdb"))) == 1
    monkeypatch.setattr(hyperscan_cache.hyperscan, "Database", _NoCompiling)
    loaded = compile_database(PATTERNS, [0, 1], FLAGS)
    assert _matches(loaded, b"xx foo baz") == _matches(first, b"xx foo baz") == [(0, 0, 6), (1, 7, 10)]


def test_other_patterns_are_not_served_from_another_database(cache: Path) -> None:
    compile_database(PATTERNS, [0, 1], FLAGS)
    other = compile_database([b"qux"], [0], [0])
    assert _matches(other, b"foo qux") == [(0, 0, 7)]
    assert len(list(cache.glob("*.hsdb"))) == 2


def test_a_damaged_cache_file_is_compiled_again(cache: Path) -> None:
    compile_database(PATTERNS, [0, 1], FLAGS)
    (path,) = cache.glob("*.hsdb")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # Hyperscan itself would load this
    path.write_bytes(bytes(data))
    db = compile_database(PATTERNS, [0, 1], FLAGS)
    assert _matches(db, b"foo") == [(0, 0, 3)]
    assert path.read_bytes() != bytes(data)  # replaced by a sound copy


def test_without_a_writable_cache_directory_databases_are_compiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("INFERLINE_CACHE_DIR", str(blocker))
    assert _matches(compile_database(PATTERNS, [0, 1], FLAGS), b"bar") == [(1, 0, 3)]


def test_a_masker_built_from_the_cache_masks_as_one_compiled(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "Hi, I'm Anna Schmidt (anna.schmidt@example.com), card 4111 1111 1111 1111."
    # Not the names database an earlier test left in this process: compiled here, into `cache`.
    monkeypatch.setattr("inferline.processors.pii._LITERAL_DATABASES", {})
    compiled = PiiMasker().mask_text(text)
    monkeypatch.setattr("inferline.processors.pii._LITERAL_DATABASES", {})  # as in a new process
    monkeypatch.setattr(hyperscan_cache.hyperscan, "Database", _NoCompiling)
    loaded = PiiMasker().mask_text(text)
    assert loaded == compiled
    assert "Schmidt" not in loaded[0] and "4111" not in loaded[0]
