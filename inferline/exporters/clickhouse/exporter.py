"""The ClickHouse exporter: gathers the rows processed from a durable log, inserts them in large
batches (one insert per table per flush), and reports each flush's source ranges once stored, so
the log's positions are committed only after ClickHouse has the rows.

Replays insert nothing twice. Before its insert, a flush is recorded in a *plan* (per source
partition, the offsets [start, end) it holds) and inserted with the plan's token as ClickHouse's
`insert_deduplication_token`, so a retry of the same insert is a no-op. After a crash the log is
read again from the committed positions and the recorded plans are rebuilt, one by one; the
consumers read only within the plan being rebuilt (`limit`), so no other rows join it.

How a rebuilt flush is inserted depends on its source. Records that read back as the same rows
(Kafka's enriched topics: `replays_exactly`) are inserted again as the original insert was, with
its token, leaving out what the original left out (`InsertFilter`): ClickHouse then adds exactly
what it misses, in each table and in each rollup view. That matters because an insert writes
its table before its views: a process killed in between leaves rows in the table that the
rollups never counted, and only the views' own deduplication can tell. Records processed again
(embedded mode: the raw log through the chain, whose joins may complete rows differently) insert
only the rows their tables do not hold yet (`Inserter.insert_missing`), so no row is stored twice.

Nobody waits on a flush: senders were acknowledged when the log had their data. A flush that fails
is retried with the same token until it succeeds; meanwhile consumers wait (`max_pending_rows`)
and the log fills up to its bound, past which receivers refuse with a retryable status.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

import structlog

from inferline.core import metrics
from inferline.core.config import BatchSettings
from inferline.core.logging import error_summary
from inferline.core.records import Batch
from inferline.exporters.clickhouse.flush_policy import FlushDelay
from inferline.exporters.clickhouse.inserter import Inserter

log = structlog.get_logger()

_PENDING = metrics.QUEUE_DEPTH.labels("pending_rows")

# A source partition: a local-log partition (int) or a Kafka TopicPartition; opaque here (Any:
# each wiring's plan book takes its own kind).
Source = Any
Ranges = dict[Source, tuple[int, int]]  # source partition -> offsets [start, end)


class Delivery(NamedTuple):
    """Rows processed from one source partition's offsets [start, end) (maybe none)."""

    partition: Source
    start: int
    end: int
    batch: Batch


class RecordedFlush(NamedTuple):
    """A flush's plan as the plan book holds it."""

    token: str
    ranges: Ranges
    # False for a share of a flush split by a rebalance (told in the log). Without the rest of the
    # flush a share is rebuilt like a flush processed again: what ClickHouse has of it is not
    # inserted again.
    exact: bool = True
    left_out: frozenset[str] = frozenset()  # keys of the rows the original insert left out
    # A share's rest: the ranges of the flush's partitions held elsewhere, and the token of the
    # whole flush. An exporter with a `RestReader` reads them and inserts the whole flush again.
    rest: Mapping[Source, tuple[int, int]] = MappingProxyType({})
    whole: str = ""


class PlanBook(Protocol):
    """Where flush plans are recorded durably before their insert (the local log; a table)."""

    def record_flush(self, ranges: Ranges, left_out: Collection[str] = ()) -> str:
        """Records the plan (with the keys of rows its insert leaves out); returns its
        deduplication token. Called from the exporter's thread."""
        ...


class Filtered(NamedTuple):
    batch: Batch
    left_out: list[str]  # keys of the rows left out, recorded in the flush's plan


class InsertFilter(Protocol):
    """Rows a new flush leaves out (e.g. copies of rows ClickHouse already holds), decided once
    and recorded in the plan, so a rebuilt flush leaves out the same. Called in the exporter's
    thread."""

    def filter_new(self, batch: Batch) -> Filtered:
        """Before a new flush's first insert attempt: the rows to insert."""
        ...

    def filter_recorded(self, batch: Batch, left_out: frozenset[str]) -> Batch:
        """A rebuilt flush: the rows its original insert held."""
        ...


StoredCallback = Callable[[Ranges], Awaitable[None]]
# Reads the rows of source partitions' offset ranges that this consumer does not hold (a share's
# rest), as the consumer's own deliveries would carry them; raises if it cannot.
RestReader = Callable[[Ranges], Awaitable[Batch]]

_BLOCKED = 0  # `limit` when a partition must not read at all for now
# Reads of a share's rest before it is stored alone (~30 s of backoff): a transient failure must
# not take the path another member's whole rebuild would count twice in the views.
_REST_ATTEMPTS = 6


class ClickHouseExporter:
    def __init__(
        self,
        inserter: Inserter,
        plans: PlanBook,
        on_stored: StoredCallback,
        settings: BatchSettings,
        insert_filter: InsertFilter | None = None,
        quiet_s: float | None = None,
        replays_exactly: bool = False,
        read_rest: RestReader | None = None,
    ) -> None:
        self._inserter = inserter
        # The source's records read back as the same rows (see the module's docstring).
        self._replays_exactly = replays_exactly
        self._read_rest = read_rest if replays_exactly else None
        # Flush once no delivery came for this long (None: wait out the delay): when the sources
        # go quiet, what is gathered is all there is for now, and waiting longer only keeps it out
        # of queries (the Kafka writer, whose delay is long so that busy flushes are few).
        self._quiet_s = quiet_s
        self._last_at = 0.0
        self._filter = insert_filter
        self._plans = plans
        self._on_stored = on_stored
        self._max_rows = settings.max_rows
        self._max_pending = settings.max_pending_rows
        self._delay = FlushDelay(settings.min_delay_s, settings.max_delay_s)
        self._batch = Batch()
        self._rows = 0  # len(self._batch), kept as deliveries arrive (a Batch counts on each call)
        self._ranges: dict[Source, list[int]] = {}  # [start, end) gathered for the next flush
        self._delivered: dict[Source, int] = {}  # end of each partition's last delivery
        self._replay: deque[RecordedFlush] = deque()
        self._first_at = 0.0
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._replayed = asyncio.Event()  # set when a rebuilt flush is stored
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._closed = asyncio.Event()  # set with _closing: cuts a retry's wait short
        self._draining = False  # a stopping service: flush as soon as rows arrive
        self._awaited = 0  # callers of idle(): flush now for them
        self._task: asyncio.Task[None] | None = None
        self._io = ThreadPoolExecutor(1, thread_name_prefix="clickhouse-insert")
        self.healthy = True  # False while a flush keeps failing

    @property
    def pending_rows(self) -> int:
        return self._rows + self._in_flight

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="clickhouse-exporter")

    # -- replay ----------------------------------------------------------------------------------

    def replay(self, flushes: list[RecordedFlush], positions: dict[Source, int]) -> None:
        """Before consuming from `positions` (the committed ones): the recorded flushes to rebuild
        exactly, oldest first. Call while nothing is gathered."""
        assert not self._ranges, "replay() with rows gathered"
        self._delivered = dict(positions)
        self._replay = deque(
            f for f in flushes if any(positions.get(p, 0) < e for p, (_, e) in f.ranges.items())
        )
        if self._replay:
            shares = sum(not f.exact for f in self._replay)
            log.info("rebuilding recorded flushes", flushes=len(self._replay), split_by_a_rebalance=shares)

    def limit(self, partition: Source) -> int | None:
        """The offset below which `partition` may read now (None: no limit). While a recorded
        flush is rebuilt, only its partitions read, and only up to its end."""
        if not self._replay:
            return None
        r = self._replay[0].ranges.get(partition)
        if r is None or self._delivered.get(partition, 0) >= r[1]:
            return _BLOCKED
        return r[1]

    def _in_replayed_flush(self, delivery: Delivery) -> bool:
        r = self._replay[0].ranges.get(delivery.partition)
        return r is not None and delivery.end <= r[1]

    def _replay_complete(self) -> bool:
        flush = self._replay[0]
        return all(self._delivered.get(p, 0) >= end for p, (_, end) in flush.ranges.items())

    # -- consuming -------------------------------------------------------------------------------

    async def consume(self, delivery: Delivery) -> None:
        """Gathers a delivery for the next flush; waits while `max_pending_rows` are pending, and
        while a recorded flush is rebuilt that the delivery is not part of (callers that read
        within `limit` never wait for that)."""
        while self.pending_rows >= self._max_pending and not self._closing:
            self._space.clear()
            await self._space.wait()
        while self._replay and not self._closing and not self._in_replayed_flush(delivery):
            self._replayed.clear()
            await self._replayed.wait()
        p = delivery.partition
        r = self._ranges.get(p)
        if r is None:
            self._ranges[p] = [delivery.start, delivery.end]
        else:
            r[1] = delivery.end
        self._delivered[p] = delivery.end
        self._last_at = time.monotonic()
        if not self._rows:
            self._first_at = self._last_at
        self._batch.extend(delivery.batch)
        self._rows += len(delivery.batch)
        self._idle.clear()
        _PENDING.set(self.pending_rows)
        self._wake.set()

    def _due(self) -> bool | float:
        """True: flush now; a float: seconds until due; False: wait for more."""
        if self._replay:
            return self._replay_complete()
        if self._closing or self._draining or self._awaited or self._rows >= self._max_rows:
            return True
        now = time.monotonic()
        remaining = self._first_at + self._delay.seconds - now
        if self._quiet_s is not None:
            remaining = min(remaining, self._last_at + self._quiet_s - now)
        return True if remaining <= 0 else remaining

    async def _run(self) -> None:
        while True:
            if not self._ranges:
                self._idle.set()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            due = self._due()
            if due is True:
                await self._flush()
                continue
            if self._closing and self._replay:
                # An unfinished rebuild stays in the log; the next start rebuilds it.
                log.info("stopping during a replay; the rest is replayed at the next start")
                self._ranges.clear()
                self._batch, self._rows = Batch(), 0
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), None if due is False else due)

    async def _flush(self) -> None:
        batch, ranges = self._batch, {p: (s, e) for p, (s, e) in self._ranges.items()}
        self._batch, self._ranges, self._rows = Batch(), {}, 0
        rebuilt = self._replay.popleft() if self._replay else None
        rest = await self._rest_of(rebuilt) if rebuilt is not None else None
        token: str | None = None  # recorded at the first attempt; retries keep it
        n = len(batch)
        self._in_flight += n
        loop = asyncio.get_running_loop()
        backoff = 0.5
        try:
            while True:
                started = time.monotonic()
                try:
                    if rebuilt is not None and (n or rest):
                        batch = await loop.run_in_executor(
                            self._io, self._insert_rebuilt, batch, rebuilt, rest
                        )
                    elif n:
                        if token is None:
                            batch, plan = await loop.run_in_executor(self._io, self._record, batch, ranges)
                            token = plan
                        await loop.run_in_executor(self._io, self._inserter.insert, batch, token)
                    break
                except Exception as e:
                    self.healthy = False
                    if self._closing:
                        # Not committed: the log replays this flush (same plan, same token) at
                        # the next start.
                        log.error("stopping with a flush not stored", rows=n, error=error_summary(e))
                        return
                    log.error("flush failed; retrying", rows=n, retry_in_s=backoff, error=error_summary(e))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._closed.wait(), backoff)
                    backoff = min(backoff * 2, 10.0)
            if n:
                self._delay.observe(time.monotonic() - started)
            self.healthy = True
            # In the exporter's thread: ~1.6 µs per row, tens of ms for a flush under load, which
            # on the event loop every request in flight would wait for.
            await loop.run_in_executor(self._io, _observe_stored, batch)
            try:
                await self._on_stored(ranges)
            except Exception as e:  # stored but not committed: a replay drops it by its token
                log.error("committing log positions failed", error=error_summary(e))
        finally:
            self._in_flight -= n
            _PENDING.set(self.pending_rows)
            self._space.set()
            self._replayed.set()

    def _record(self, batch: Batch, ranges: Ranges) -> tuple[Batch, str]:
        """A new flush's plan, recorded before its first insert attempt (with what the filter left
        out), and the rows to insert."""
        left_out: list[str] = []
        if self._filter is not None:
            batch, left_out = self._filter.filter_new(batch)
        return batch, self._plans.record_flush(ranges, left_out)

    async def _rest_of(self, flush: RecordedFlush) -> Batch | None:
        """A share's rest, read from the partitions held elsewhere; None if there is none to read
        (or it cannot be read: the share is then stored on its own, as before rest reading)."""
        if not flush.rest or self._read_rest is None:
            return None
        delay = 0.5
        for attempt in range(_REST_ATTEMPTS):
            try:
                return await self._read_rest(dict(flush.rest))
            except Exception as e:
                if attempt == _REST_ATTEMPTS - 1 or self._closing:
                    # Only the views can be short then: a flush that reached its tables before the
                    # crash and not its views stays uncounted for the rows of this share. (Stored
                    # alone rather than retried for ever: the rest may be gone with retention.)
                    log.error(
                        "the rest of a flush split by a rebalance could not be read; "
                        "its share is stored alone",
                        flush=flush.whole,
                        error=error_summary(e),
                    )
                    return None
                log.warning(
                    "reading the rest of a split flush failed; retrying",
                    retry_in_s=delay,
                    error=error_summary(e),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), delay)
                delay = min(delay * 2, 8.0)
        return None

    def _insert_rebuilt(self, batch: Batch, flush: RecordedFlush, rest: Batch | None) -> Batch:
        """Inserts a rebuilt flush; returns the rows of `batch` it stored (for the metrics)."""
        if self._replays_exactly and (flush.exact or rest is not None):
            # The original insert again: ClickHouse drops what it has, in tables and views alike.
            # A share with its rest is the whole flush again, under the whole flush's token.
            whole = batch
            if rest is not None:
                whole = Batch()
                whole.extend(batch)
                whole.extend(rest)
            if self._filter is not None:
                whole = self._filter.filter_recorded(whole, flush.left_out)
            self._inserter.insert(whole, flush.whole or flush.token)
            if rest is None:
                return whole
            return batch if self._filter is None else self._filter.filter_recorded(batch, flush.left_out)
        self._inserter.insert_missing(batch, flush.token)
        return batch

    # -- stopping --------------------------------------------------------------------------------

    async def idle(self) -> None:
        """Returns once everything gathered so far is stored (or dropped at close)."""
        self._awaited += 1
        self._wake.set()
        try:
            await self._idle.wait()
        finally:
            self._awaited -= 1

    def drop_rebuild(self) -> None:
        """Drops a recorded flush being rebuilt, and what was gathered for it, uncommitted (its
        partitions are changing hands: their next holder rebuilds it from its plan)."""
        if not self._replay:
            return
        log.info("a rebuild is left to the partitions' next holder", flushes=len(self._replay))
        self._replay.clear()
        self._ranges.clear()
        self._batch, self._rows = Batch(), 0
        _PENDING.set(self.pending_rows)
        self._space.set()
        self._replayed.set()
        self._wake.set()

    def drain(self) -> None:
        """From now on flush as soon as rows arrive (a stopping service)."""
        self._draining = True
        self._wake.set()

    async def close(self) -> None:
        """Stores what is gathered (unless a replay is unfinished), then stops."""
        self._closing = True
        self._closed.set()
        self._wake.set()
        self._space.set()
        self._replayed.set()
        if self._task:
            await self._task
        self._io.shutdown(wait=True)


def _observe_stored(batch: Batch) -> None:
    """The metrics of a stored flush's rows."""
    metrics.observe_inferences(batch.inferences)
    metrics.observe_inferences(batch.observed)
    metrics.observe_ledger(batch.ledger)
