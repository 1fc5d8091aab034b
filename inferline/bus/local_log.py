"""Embedded mode's durable point: an append-only log on local disk, with the consumer semantics
of a Kafka topic (partitions, offsets, committed positions, replay from the last commit).

Why SQLite (stdlib `sqlite3`, WAL mode, `synchronous=FULL`) and not a file format of our own:
every commit is fsynced before it returns, a torn write (kill -9, power loss, full disk) is
detected by the WAL's frame checksums and rolled back at the next open, readers never block the
writer, and the format is one that every operator can open with `sqlite3` to look inside. What we
add is small: group commit (every append waiting while one transaction is fsynced goes into the
next one, so a burst of requests costs one fsync, not one each), partitions, committed positions,
flush plans, and a size bound.

An entry is one OTLP request (or the part of one that belongs to a partition), serialized as
protobuf, with the project it was accepted for. Offsets come from one sequence shared by all
partitions (`AUTOINCREMENT`: never reused, even after every entry was deleted), so within a
partition they increase but have gaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import structlog

from inferline.core import metrics
from inferline.core.errors import Overloaded, Unavailable
from inferline.core.records import SourceEntry

log = structlog.get_logger()

_PENDING = metrics.QUEUE_DEPTH.labels("local_log_bytes")

LOCAL_TOPIC = "local"  # the `topic` of the local log's entries (one topic, many partitions)
# The WAL is checkpointed (copied into the main file) once it holds this much, looked at every
# CHECKPOINT_EVERY_S: ~1.5 s of the bench's closed-loop appends.
CHECKPOINT_BYTES = 64 << 20
CHECKPOINT_EVERY_S = 0.5
_PASSIVE_PASSES = 4
_RESTART_FRAMES = 64  # WAL frames (64 KiB pages) left to copy while appends wait: 4 MiB
_RESTART_WAIT_MS = 50
DEAD_LETTERS_KEPT = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    offset INTEGER PRIMARY KEY AUTOINCREMENT,
    partition INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    project_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    appended_at REAL NOT NULL DEFAULT 0  -- unix seconds (the ingest ledger's minute)
);
CREATE INDEX IF NOT EXISTS entries_by_partition ON entries (partition, offset);
-- Per partition: the offset of the first entry not yet stored downstream.
CREATE TABLE IF NOT EXISTS positions (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
-- Flushes recorded before their insert: which offsets of which partitions went into it.
CREATE TABLE IF NOT EXISTS plans (
    plan_id INTEGER PRIMARY KEY AUTOINCREMENT,
    token TEXT NOT NULL,
    ranges TEXT NOT NULL  -- "partition:start-end,…", each range [start, end)
);
-- Entries the pipeline could not process, kept with the reason (the newest DEAD_LETTERS_KEPT).
CREATE TABLE IF NOT EXISTS dead_letters (
    offset INTEGER PRIMARY KEY,
    partition INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    project_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL
);
"""


class Append(NamedTuple):
    """What a receiver appends: one serialized request (part) for one partition."""

    partition: int
    kind: int
    project_id: str
    payload: bytes


@dataclass(slots=True)
class Plan:
    """One flush as recorded before its insert: per partition, the offsets [start, end) it holds."""

    plan_id: int
    token: str
    ranges: dict[int, tuple[int, int]]

    def encode_ranges(self) -> str:
        return ",".join(f"{p}:{s}-{e}" for p, (s, e) in sorted(self.ranges.items()))

    @staticmethod
    def decode_ranges(text: str) -> dict[int, tuple[int, int]]:
        ranges = {}
        for part in filter(None, text.split(",")):
            p, span = part.split(":")
            s, e = span.split("-")
            ranges[int(p)] = (int(s), int(e))
        return ranges


@dataclass(slots=True)
class _Waiting:
    appends: Sequence[Append]
    size: int
    done: asyncio.Future[None]


@dataclass(slots=True)
class Recovery:
    """What opening the log found: told once in the start-up log line."""

    pending_entries: int = 0
    pending_bytes: int = 0
    discarded_bytes: int = 0  # a torn or corrupt file set aside
    positions: dict[int, int] = field(default_factory=dict)


def _connect(path: Path, wal_bytes: int = CHECKPOINT_BYTES) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    # Entries are requests of ~100 KB-1 MB: with 64 KiB pages (the largest; takes effect when the
    # file is created) each is a chain of a few overflow pages instead of ~100, which halves what
    # appending, reading and deleting one costs (bench stage "local log": ~15 -> ~8.5 µs/span).
    conn.execute("PRAGMA page_size=65536")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # the WAL is fsynced at every commit: the ack's promise
    # No checkpoint inside a commit: SQLite's automatic one runs in the commit that crosses its
    # threshold, so an append (and every sender waiting on it) waited while the WAL was copied
    # into the main file: 0.3-1 s, the half-load latency tail (docs/performance.md, "2026-12-06,
    # afternoon"). `LocalLog` checkpoints on a thread of its own instead.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    # Once checkpointed and started over, the WAL file is cut back to `wal_bytes`: disk use stays
    # within the log's bound plus about that.
    conn.execute(f"PRAGMA journal_size_limit={int(wal_bytes)}")
    # Deleted entries are not overwritten with zeros page by page (Debian builds SQLite with
    # SECURE_DELETE on): that wrote every byte a second time into the WAL, and a position commit
    # deleting 48 MB held the appends 44 ms instead of 8 (docs/performance.md, "2026-12-06,
    # night"). FAST still clears what deleting writes anyway; freed overflow pages keep their
    # bytes until the next appends reuse them, as the WAL's older frames do until overwritten.
    conn.execute("PRAGMA secure_delete=FAST")
    return conn


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class LocalLog:
    """Append from the event loop (`append`), read and commit from a consumer thread."""

    def __init__(self, path: Path, *, max_bytes: int, checkpoint_bytes: int = CHECKPOINT_BYTES) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._checkpoint_bytes = checkpoint_bytes
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self._writer: sqlite3.Connection | None = None
        self._reader_local = threading.local()
        self._io = ThreadPoolExecutor(1, thread_name_prefix="local-log")
        self._queue: list[_Waiting] = []
        self._wake: asyncio.Event | None = None
        self._appended: asyncio.Condition | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.pending_bytes = 0  # appended, not yet committed downstream (or queued to append)
        # The writer connection is used by the append thread and by the consumer's thread.
        self._write_lock = threading.Lock()

    # -- opening ---------------------------------------------------------------------------------

    def open(self) -> Recovery:
        """Opens (or creates) the log; a file that SQLite cannot read is set aside, never a crash
        loop. Call before `start`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        recovery = Recovery()
        try:
            self._writer = self._open_checked()
        except sqlite3.DatabaseError as e:
            recovery.discarded_bytes = self._set_aside(e)
            self._writer = self._open_checked()
        w = self._writer
        recovery.positions = dict(w.execute("SELECT partition, next_offset FROM positions").fetchall())
        self._drop_committed(w)
        n, size = w.execute("SELECT count(*), coalesce(sum(length(payload)), 0) FROM entries").fetchone()
        recovery.pending_entries, recovery.pending_bytes = n, size
        self.pending_bytes = size
        _PENDING.set(size)
        return recovery

    def _open_checked(self) -> sqlite3.Connection:
        conn = _connect(self.path, self._checkpoint_bytes)
        try:
            conn.executescript(_SCHEMA)
            columns = {name for _, name, *_ in conn.execute("PRAGMA table_info(entries)")}
            if "appended_at" not in columns:  # a log written by an earlier version
                conn.execute("ALTER TABLE entries ADD COLUMN appended_at REAL NOT NULL DEFAULT 0")
            (ok,) = conn.execute("PRAGMA quick_check").fetchone()
            if ok != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {ok}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _set_aside(self, error: Exception) -> int:
        size = 0
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                size += p.stat().st_size
                p.rename(p.with_name(p.name + f".corrupt-{stamp}"))
        log.error(
            "local log unreadable; set aside and started empty",
            path=str(self.path),
            bytes=size,
            error=str(error)[:200],
        )
        return size

    def start(self, checkpoints: bool = True) -> None:
        """Starts appending (on the running event loop) and, unless told not to, checkpointing."""
        self._wake = asyncio.Event()
        self._appended = asyncio.Condition()
        self._task = asyncio.create_task(self._group_commits(), name="local-log-append")
        if checkpoints:
            self.start_checkpoints()

    def start_checkpoints(self) -> None:
        self._stop_checkpoints.clear()
        self._checkpointer = threading.Thread(
            target=self._checkpoints, name="local-log-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoints(self) -> None:
        """Checkpoints the WAL whenever it holds `checkpoint_bytes`, until the log closes."""
        wal = Path(str(self.path) + "-wal")
        conn = _connect(self.path, self._checkpoint_bytes)
        # The RESTART waits for readers to leave the WAL while appends wait on it: not for long
        # (busy, it is tried again at the next look).
        conn.execute(f"PRAGMA busy_timeout={_RESTART_WAIT_MS}")
        failing = False
        try:
            while not self._stop_checkpoints.wait(CHECKPOINT_EVERY_S):
                if _size(wal) < self._checkpoint_bytes:
                    continue
                try:
                    self._checkpoint(conn)
                except sqlite3.Error as e:  # tried again next time; appends are unaffected
                    if not failing:  # once per failing stretch (a full disk fails every look)
                        log.warning("local log checkpoint failed; retrying", error=str(e)[:200])
                    failing = True
                    continue
                if failing:
                    failing = False
                    log.info("local log checkpoints work again")
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copies the WAL into the main file beside the appends, then has it start over.

        A PASSIVE checkpoint takes SQLite's checkpoint lock, not the writer's, so appends and
        their fsyncs go on meanwhile; but appends that never pause keep adding frames, and the
        WAL only starts over once every frame is copied (under the bench's closed loop it grew
        to 1 GiB). So: passive passes while appends go on, each copying what came during the
        last, and once little is left, a RESTART checkpoint with the appends held for that
        little (a few MiB: milliseconds)."""
        for _ in range(_PASSIVE_PASSES):
            _, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames - copied <= _RESTART_FRAMES:
                break
        else:
            return  # appends outran the copying: again at the next look
        with self._write_lock:
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()

    # -- appending (event loop) ------------------------------------------------------------------

    async def append(self, appends: Sequence[Append]) -> None:
        """Returns once every entry is on disk (fsynced). Raises Overloaded when the log holds
        `max_bytes` not yet stored downstream, Unavailable when the disk refuses the write."""
        if not appends:
            return
        if self._closing:
            raise Unavailable("shutting down")
        assert self._wake is not None, "start() first"
        size = sum(len(a.payload) for a in appends)
        if self.pending_bytes and self.pending_bytes + size > self._max_bytes:
            raise Overloaded(
                f"the local log holds {self.pending_bytes} bytes not yet stored", reason="log_full"
            )
        self.pending_bytes += size
        _PENDING.set(self.pending_bytes)
        waiting = _Waiting(appends, size, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        self._wake.set()
        # Shielded: a sender that hangs up does not cancel the write its entries belong to.
        await asyncio.shield(waiting.done)

    async def _group_commits(self) -> None:
        assert self._wake is not None and self._appended is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            group, self._queue = self._queue, []
            try:
                await loop.run_in_executor(self._io, self._write_group, group)
            except Exception as e:
                log.error("local log append failed", entries=len(group), error=str(e)[:200])
                for w in group:
                    self.pending_bytes -= w.size
                    if not w.done.done():
                        w.done.set_exception(Unavailable("the local log could not be written, retry later"))
                _PENDING.set(self.pending_bytes)
                continue
            for w in group:
                if not w.done.done():
                    w.done.set_result(None)
            async with self._appended:
                self._appended.notify_all()

    def _write_group(self, group: list[_Waiting]) -> None:
        w = self._writer
        assert w is not None
        now = time.time()
        rows = [(*a, now) for waiting in group for a in waiting.appends]
        with self._write_lock:
            w.execute("BEGIN IMMEDIATE")
            try:
                w.executemany(
                    "INSERT INTO entries (partition, kind, project_id, payload, appended_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                w.execute("COMMIT")  # fsync of the WAL
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    w.execute("ROLLBACK")
                raise

    async def wait_for_appends(self, timeout_s: float) -> None:
        """Returns after the next group commit, or after `timeout_s`."""
        assert self._appended is not None
        async with self._appended:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._appended.wait(), timeout_s)

    # -- reading and committing (any thread) -----------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = self._reader_local.conn = _connect(self.path, self._checkpoint_bytes)
        return conn

    def partitions(self) -> list[int]:
        """Partitions that hold entries or a position."""
        rows = self._reader().execute(
            "SELECT DISTINCT partition FROM entries UNION SELECT partition FROM positions"
        )
        return sorted(p for (p,) in rows)

    def read(
        self, partition: int, from_offset: int, max_entries: int, until: int | None = None
    ) -> list[SourceEntry]:
        """Entries of `partition` from `from_offset` on (below `until` when given), oldest first."""
        sql = (
            "SELECT partition, offset, kind, project_id, payload, appended_at FROM entries "
            "WHERE partition = ? AND offset >= ?"
        )
        args: list[int] = [partition, from_offset]
        if until is not None:
            sql += " AND offset < ?"
            args.append(until)
        sql += " ORDER BY offset LIMIT ?"
        args.append(max_entries)
        return [SourceEntry(LOCAL_TOPIC, *row) for row in self._reader().execute(sql, args)]

    def count_from(self, positions: dict[int, int]) -> int:
        """Entries at or after `positions` (all entries of partitions not named)."""
        conn = self._reader()
        n = 0
        for (partition,) in conn.execute("SELECT DISTINCT partition FROM entries").fetchall():
            (count,) = conn.execute(
                "SELECT count(*) FROM entries WHERE partition = ? AND offset >= ?",
                (partition, positions.get(partition, 0)),
            ).fetchone()
            n += count
        return n

    def dead_letter(self, offset: int, reason: str) -> None:
        """Keeps an entry that could not be processed, with why, before its position passes it."""
        w = self._writer
        assert w is not None
        with self._write_lock:
            w.execute(
                "INSERT OR REPLACE INTO dead_letters "
                "SELECT offset, partition, kind, project_id, payload, ?, ? FROM entries WHERE offset = ?",
                (reason, time.time(), offset),
            )
            w.execute(
                "DELETE FROM dead_letters WHERE offset <= "
                "(SELECT offset FROM dead_letters ORDER BY offset DESC LIMIT 1 OFFSET ?)",
                (DEAD_LETTERS_KEPT,),
            )

    def committed(self) -> dict[int, int]:
        return dict(self._reader().execute("SELECT partition, next_offset FROM positions").fetchall())

    def record_flush(self, ranges: dict[int, tuple[int, int]], left_out: Collection[str] = ()) -> str:
        """Records a flush before its insert (fsynced), so a replay can rebuild it exactly.
        Returns its deduplication token: unique, so two logs (or a log recreated empty) never
        share one. `left_out` is not kept: the log's records are processed again for a rebuilt
        flush, which then inserts only what the tables do not hold (`Inserter.insert_missing`),
        and so leaves out again what the original insert left out."""
        plan = Plan(0, f"local-{uuid.uuid4().hex}", ranges)
        w = self._writer
        assert w is not None
        with self._write_lock:
            w.execute("INSERT INTO plans (token, ranges) VALUES (?, ?)", (plan.token, plan.encode_ranges()))
        return plan.token

    def plans(self) -> list[Plan]:
        rows = self._reader().execute("SELECT plan_id, token, ranges FROM plans ORDER BY plan_id")
        return [Plan(i, t, Plan.decode_ranges(r)) for i, t, r in rows]

    def commit(self, positions: dict[int, int]) -> None:
        """Moves partitions' positions forward (never back), in one transaction, then deletes what
        lies before them: entries, and plans wholly below."""
        if not positions:
            return
        w = self._writer
        assert w is not None
        with self._write_lock:
            # Not fsynced (appends wait on this lock: the fsync was 20-70 ms of it under load). Lost
            # to a power cut, a commit only lets entries be read again, which is harmless (plans,
            # deduplication); and the next append's fsync makes it durable, the WAL being written
            # in order.
            w.execute("PRAGMA synchronous=NORMAL")
            try:
                w.execute("BEGIN IMMEDIATE")
                try:
                    w.executemany(
                        "INSERT INTO positions (partition, next_offset) VALUES (?, ?) ON CONFLICT "
                        "(partition) DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
                        list(positions.items()),
                    )
                    freed = self._drop_committed(w)
                    w.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        w.execute("ROLLBACK")
                    raise
            finally:
                w.execute("PRAGMA synchronous=FULL")  # appends are fsynced: the ack's promise
        self.pending_bytes -= freed
        _PENDING.set(self.pending_bytes)

    def _drop_committed(self, w: sqlite3.Connection) -> int:
        positions = dict(w.execute("SELECT partition, next_offset FROM positions").fetchall())
        freed = 0
        for partition, next_offset in positions.items():
            (size,) = w.execute(
                "SELECT coalesce(sum(length(payload)), 0) FROM entries WHERE partition = ? AND offset < ?",
                (partition, next_offset),
            ).fetchone()
            if size:
                w.execute("DELETE FROM entries WHERE partition = ? AND offset < ?", (partition, next_offset))
                freed += size
        for plan_id, ranges in w.execute("SELECT plan_id, ranges FROM plans").fetchall():
            if all(positions.get(p, -1) >= end for p, (_, end) in Plan.decode_ranges(ranges).items()):
                w.execute("DELETE FROM plans WHERE plan_id = ?", (plan_id,))
        return freed

    # -- closing ---------------------------------------------------------------------------------

    async def stop_appending(self) -> None:
        """Finishes the appends already accepted; refuses new ones (retryable)."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task

    async def close(self) -> None:
        await self.stop_appending()
        self._io.shutdown(wait=True)
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        if self._writer is not None:
            with contextlib.suppress(sqlite3.Error):
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._writer.close()
