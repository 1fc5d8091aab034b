"""Compiled Hyperscan databases, kept on disk between processes.

Compiling the PII detectors takes seconds on an idle core and tens of seconds on a busy one (the
names gazetteer, ~80k literals, is most of it), and every process that builds the processor chain
did it: the main process, each worker, and again each worker that replaces a dead one, while the
log it should be processing waits. A compiled database is serialised (`hyperscan.dumpb`) into a
cache directory under a key of everything that decides its bytes; the next process loads it in
milliseconds. Hyperscan tunes a database to the CPU it is compiled on, so the key includes the
CPU's feature flags; the file carries a SHA-256 of its payload, so a torn or altered file is
compiled afresh, never loaded.

The directory is `$INFERLINE_CACHE_DIR`, else `$XDG_CACHE_HOME/inferline`, else
`~/.cache/inferline`; where it cannot be written, databases are compiled in memory as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import tempfile
from collections.abc import Iterator, Sequence
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import hyperscan
import structlog

log = structlog.get_logger()

_FORMAT = b"inferline-hyperscan-1"  # bump when the file layout changes


def cache_dir() -> Path:
    explicit = os.environ.get("INFERLINE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "inferline"


def compile_database(
    expressions: Sequence[bytes],
    ids: Sequence[int],
    flags: Sequence[int] | int,
    *,
    literal: bool = False,
) -> Any:
    """A block-mode database of `expressions`, from the cache when an identical one was compiled
    on this kind of CPU before. Raises `hyperscan.error` for a pattern Hyperscan cannot compile."""
    key = _key(expressions, ids, flags, literal)
    directory = cache_dir() / "hyperscan"
    path = directory / f"{key}.hsdb"
    db = _load(path)
    if db is not None:
        return db
    with _exclusive(directory, key):  # a process compiling the same database: wait, then load
        db = _load(path)
        if db is not None:
            return db
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        db.compile(
            expressions=list(expressions),
            ids=list(ids),
            elements=len(expressions),
            flags=flags if isinstance(flags, int) else list(flags),
            literal=literal,
        )
        _store(path, hyperscan.dumpb(db))
        return db


def _key(expressions: Sequence[bytes], ids: Sequence[int], flags: Sequence[int] | int, literal: bool) -> str:
    h = hashlib.sha256(_FORMAT)
    for part in (version("hyperscan"), platform.machine(), _cpu_flags(), f"literal={literal}", repr(flags)):
        h.update(part.encode() + b"\x00")
    h.update(repr(list(ids)).encode() + b"\x00")
    for e in expressions:
        h.update(len(e).to_bytes(4, "little") + e)
    return h.hexdigest()[:40]


@cache
def _cpu_flags() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    return platform.processor()


def _load(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    digest, payload = data[:32], data[32:]
    if hashlib.sha256(payload).digest() != digest:
        log.warning("a cached Hyperscan database is damaged; compiling it again", path=str(path))
        return None
    try:
        return hyperscan.loadb(payload, hyperscan.HS_MODE_BLOCK)
    except hyperscan.error:
        return None


def _store(path: Path, payload: bytes) -> None:
    temporary: str | None = None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as f:
            temporary = f.name
            f.write(hashlib.sha256(payload).digest() + payload)
        os.replace(temporary, path)  # readers see the whole file or none
    except OSError as e:
        log.info("Hyperscan cache not written; compiling in each process", error=str(e)[:200])
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


@contextlib.contextmanager
def _exclusive(directory: Path, key: str) -> Iterator[None]:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = open(directory / f".{key}.lock", "wb")  # noqa: SIM115 - held for the block
    except OSError:
        yield  # no cache directory: compile without coordination
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
