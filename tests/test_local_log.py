"""The local log: embedded mode's durable point (append with group commit, read by partition,
commit positions, plans, size bound, recovery from a torn or corrupt file)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from inferline.bus.local_log import Append, LocalLog
from inferline.core.errors import Overloaded
from inferline.core.records import LOGS, SPANS

pytestmark = pytest.mark.unit


def _open(path: Path, max_bytes: int = 1 << 20) -> LocalLog:
    log = LocalLog(path, max_bytes=max_bytes)
    log.open()
    return log


def test_appends_are_read_back_by_partition_in_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = _open(tmp_path / "log.sqlite3")
        log.start()
        await asyncio.gather(
            log.append([Append(0, SPANS, "p", b"a"), Append(1, LOGS, "p", b"b")]),
            log.append([Append(0, SPANS, "q", b"c")]),
        )
        zero = log.read(0, 0, 10)
        assert [(e.payload, e.project_id, e.kind) for e in zero] == [(b"a", "p", SPANS), (b"c", "q", SPANS)]
        assert [e.payload for e in log.read(1, 0, 10)] == [b"b"]
        assert [e.payload for e in log.read(0, zero[0].offset + 1, 10)] == [b"c"]
        assert log.read(0, 0, 10, until=zero[1].offset) == zero[:1]
        await log.close()

    asyncio.run(scenario())


def test_committed_entries_are_deleted_and_positions_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"

    async def write() -> int:
        log = _open(path)
        log.start()
        for i in range(5):
            await log.append([Append(0, SPANS, "p", b"x" * 100 + bytes([i]))])
        entries = log.read(0, 0, 10)
        log.commit({0: entries[3].offset})  # the first three are stored
        assert log.pending_bytes == 2 * 101
        await log.close()
        return entries[3].offset

    position = asyncio.run(write())
    log = LocalLog(path, max_bytes=1 << 20)
    recovery = log.open()
    assert recovery.positions == {0: position}
    assert recovery.pending_entries == 2 and recovery.pending_bytes == 202
    assert [e.payload[-1] for e in log.read(0, position, 10)] == [3, 4]
    assert log.read(0, 0, 10)[0].offset == position  # what lay before is gone


def test_offsets_are_never_reused_after_everything_was_deleted(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = _open(tmp_path / "log.sqlite3")
        log.start()
        await log.append([Append(0, SPANS, "p", b"a")])
        first = log.read(0, 0, 1)[0].offset
        log.commit({0: first + 1})
        await log.append([Append(0, SPANS, "p", b"b")])
        assert log.read(0, first + 1, 1)[0].offset > first
        await log.close()

    asyncio.run(scenario())


def test_past_its_size_bound_the_log_refuses_retryably(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = _open(tmp_path / "log.sqlite3", max_bytes=1 << 20)
        log.start()
        await log.append([Append(0, SPANS, "p", b"x" * (900 << 10))])
        with pytest.raises(Overloaded) as refused:
            await log.append([Append(0, SPANS, "p", b"y" * (200 << 10))])
        assert refused.value.http_status == 429
        first = log.read(0, 0, 1)[0]
        log.commit({0: first.offset + 1})  # stored downstream: room again
        await log.append([Append(0, SPANS, "p", b"y" * (200 << 10))])
        await log.close()

    asyncio.run(scenario())


def test_plans_are_kept_until_every_partition_is_committed_past_them(tmp_path: Path) -> None:
    log = _open(tmp_path / "log.sqlite3")
    token = log.record_flush({0: (1, 10), 3: (2, 7)})
    other = log.record_flush({0: (10, 20)})
    assert token != other and token.startswith("local-")
    assert [(p.token, p.ranges) for p in log.plans()] == [
        (token, {0: (1, 10), 3: (2, 7)}),
        (other, {0: (10, 20)}),
    ]
    log.commit({0: 10})
    assert [p.token for p in log.plans()] == [token, other]  # partition 3 still needs the first
    log.commit({3: 7})
    assert [p.token for p in log.plans()] == [other]


def test_a_torn_tail_from_a_kill_during_appends_loses_only_unacknowledged_entries(tmp_path: Path) -> None:
    """A process killed (SIGKILL) in the middle of a stream of appends: at the next open every
    acknowledged entry is there, and the log opens without complaint."""
    path = tmp_path / "log.sqlite3"
    acked = tmp_path / "acked"
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from inferline.bus.local_log import Append, LocalLog
        from inferline.core.records import SPANS
        async def main():
            log = LocalLog(Path({str(path)!r}), max_bytes=1 << 30)
            log.open(); log.start()
            out = open({str(acked)!r}, "a")
            i = 0
            while True:
                await log.append([Append(0, SPANS, "p", i.to_bytes(4, "big") * 5000)])
                out.write(f"{{i}}\\n"); out.flush()
                i += 1
        asyncio.run(main())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parent.parent)
    try:
        for _ in range(200):
            if acked.exists() and len(acked.read_text().split()) > 50:
                break
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    acknowledged = {int(x) for x in acked.read_text().split()}
    assert len(acknowledged) > 50
    log = LocalLog(path, max_bytes=1 << 30)
    recovery = log.open()
    assert recovery.discarded_bytes == 0
    stored = {int.from_bytes(e.payload[:4], "big") for e in log.read(0, 0, 1_000_000)}
    assert acknowledged <= stored


def test_an_unreadable_file_is_set_aside_not_a_crash_loop(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    path.write_bytes(b"this is not a database" * 1000)
    log = LocalLog(path, max_bytes=1 << 20)
    recovery = log.open()
    assert recovery.discarded_bytes == 22_000
    assert [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert log.read(0, 0, 10) == []
    # and the new file works
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert os.path.getsize(path) > 0


def test_an_entry_that_could_not_be_processed_is_kept_with_its_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = _open(tmp_path / "log.sqlite3")
        log.start()
        await log.append([Append(0, SPANS, "p", b"not protobuf"), Append(0, SPANS, "p", b"fine")])
        bad, good = log.read(0, 0, 10)
        log.dead_letter(bad.offset, "DecodeError: truncated message")
        log.commit({0: good.offset + 1})  # both are past: the bad one is gone from entries
        assert log.read(0, 0, 10) == []
        await log.close()

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / "log.sqlite3") as conn:
        rows = conn.execute("SELECT project_id, payload, reason FROM dead_letters").fetchall()
    assert rows == [("p", b"not protobuf", "DecodeError: truncated message")]


def test_the_wal_is_checkpointed_beside_the_appends_and_its_file_stays_bounded(tmp_path: Path) -> None:
    """Appends never copy the WAL into the main file themselves (SQLite's automatic checkpoint
    did, inside the commit a sender's acknowledgement waited for); the log's own thread does,
    and the WAL file is then cut back, so disk use stays bounded while entries keep coming."""
    path = tmp_path / "log.sqlite3"
    wal = Path(str(path) + "-wal")
    limit = 1 << 20
    entry = b"x" * (256 << 10)

    async def scenario() -> int:
        log = LocalLog(path, max_bytes=256 << 20, checkpoint_bytes=limit)
        log.open()
        log.start(checkpoints=False)  # what do the appends alone do?
        for _ in range(16):
            await log.append([Append(0, SPANS, "p", entry)])
        grown = wal.stat().st_size
        assert grown > 4 * limit  # 4 MiB of entries stayed in the WAL: no commit checkpointed
        # The checkpointer on again: the WAL is copied into the main file and starts over, cut
        # back, although the appends never pause (a WAL that is never wholly copied never would).
        log.start_checkpoints()
        appended, smallest = 16, grown
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and appended < 1000 and smallest > limit:  # <= 250 MiB
            await log.append([Append(0, SPANS, "p", entry)])
            appended += 1
            smallest = min(smallest, wal.stat().st_size)
            await asyncio.sleep(0.005)  # ~50 MB/s at most, about the bench's closed loop
        assert smallest <= limit < grown
        await log.close()
        return appended

    appended = asyncio.run(scenario())
    log = _open(path, max_bytes=256 << 20)  # and everything is there after a reopen
    assert [e.payload for e in log.read(0, 0, 1000)] == [entry] * appended


def test_a_commit_does_not_write_the_deleted_entries_again(tmp_path: Path) -> None:
    """Deleting what was stored frees its pages without overwriting them with zeros (Debian's
    SQLite does by default: every byte went into the WAL a second time, and the appends waited
    on it), so a commit adds little to the WAL whatever it deletes."""
    wal = tmp_path / "log.sqlite3-wal"

    async def scenario() -> None:
        log = _open(tmp_path / "log.sqlite3", max_bytes=64 << 20)
        log.start(checkpoints=False)  # the WAL only grows: what each step wrote is its growth
        for _ in range(16):
            await log.append([Append(0, SPANS, "p", os.urandom(256 << 10))])
        appended = wal.stat().st_size
        log.commit({0: log.read(0, 0, 100)[-1].offset + 1})
        assert log.read(0, 0, 100) == [] and log.pending_bytes == 0
        assert wal.stat().st_size - appended < (4 << 20) // 8  # zeroing them wrote ~4 MiB more
        await log.close()

    asyncio.run(scenario())


def test_appends_stay_fsynced_after_a_commit_that_is_not(tmp_path: Path) -> None:
    """A position commit skips its fsync (it can only cause a harmless replay); the appends after
    it, which senders are acknowledged on, are fsynced again, even after a failed commit."""
    full = 2  # PRAGMA synchronous: 1 NORMAL, 2 FULL

    async def scenario() -> None:
        log = _open(tmp_path / "log.sqlite3")
        w = log._writer
        assert w is not None
        assert w.execute("PRAGMA synchronous").fetchone() == (full,)
        log.start()
        await log.append([Append(0, SPANS, "p", b"a")])
        log.commit({0: log.read(0, 0, 1)[0].offset + 1})
        assert w.execute("PRAGMA synchronous").fetchone() == (full,)
        # A commit that fails half-way leaves the setting as it found it too.
        w.execute("DROP TABLE positions")
        with pytest.raises(sqlite3.OperationalError):
            log.commit({0: 99})
        assert w.execute("PRAGMA synchronous").fetchone() == (full,)
        await log.close()

    asyncio.run(scenario())


def test_a_failing_checkpoint_is_logged_once_and_the_appends_go_on(tmp_path: Path) -> None:
    """A checkpoint that fails (a full disk fails at every look) is one warning, not one every
    half second, and a line when checkpoints work again; appends are acknowledged throughout."""

    class FullDisk(LocalLog):
        failures = 3

        def _checkpoint(self, conn: sqlite3.Connection) -> None:
            if self.failures:
                self.failures -= 1
                raise sqlite3.OperationalError("database or disk is full")
            super()._checkpoint(conn)

    wal = Path(str(tmp_path / "log.sqlite3") + "-wal")

    async def scenario() -> None:
        log = FullDisk(tmp_path / "log.sqlite3", max_bytes=256 << 20, checkpoint_bytes=1 << 20)
        log.open()
        log.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (log.failures or wal.stat().st_size > 1 << 20):
            await log.append([Append(0, SPANS, "p", b"x" * (64 << 10))])
            await asyncio.sleep(0.02)
        assert log.failures == 0 and wal.stat().st_size <= 1 << 20
        await log.close()

    with capture_logs() as logged:
        asyncio.run(scenario())
    assert [e["event"] for e in logged if "checkpoint" in e["event"]] == [
        "local log checkpoint failed; retrying",
        "local log checkpoints work again",
    ]
