"""Embedded mode's pipeline behind the local log: per partition, a consumer reads entries, has
its worker run the processor chain over them, and hands the encoded rows to the ClickHouse
exporter; once a flush is stored, the partitions' positions are committed in the log.

    OTLP receivers → LocalLogExporter → local log → [this] → processor chain → ClickHouseExporter

A position is never committed past an entry whose record the normaliser's join still holds in
memory (content waiting for its span, a row waiting for late content), so a restart replays what
rebuilds that memory. After a restart (or a worker's death, which loses that memory too) every
partition is read again from its committed position, and the exporter rebuilds the recorded
flushes exactly, so nothing is inserted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import structlog

from inferline.bus.local_log import LOCAL_TOPIC, LocalLog
from inferline.core import metrics
from inferline.core.config import BatchSettings, LocalLogSettings
from inferline.core.records import Batch, SourceEntry
from inferline.exporters.clickhouse.exporter import (
    ClickHouseExporter,
    Delivery,
    InsertFilter,
    Ranges,
    RecordedFlush,
    StoredCallback,
)
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.exporters.local_log import LocalLogExporter
from inferline.otlp.validate import TimeWindow
from inferline.service.processing import Held, Processed
from inferline.service.workers import WorkerDied

log = structlog.get_logger()

_EXPIRE_EVERY_S = 1.0  # how often an idle partition lets the join drop what outlived its window
_EMPTY = Batch()


class Processing(Protocol):
    """`InThread` or `WorkerProcesses`."""

    @property
    def count(self) -> int: ...

    async def process(self, worker: int, entries: list[SourceEntry]) -> Processed[Batch]: ...

    async def expire(self, worker: int) -> Held: ...

    async def restart(self) -> None: ...


class ExporterFactory(Protocol):
    def __call__(self, on_stored: StoredCallback) -> ClickHouseExporter: ...


class EmbeddedPipeline:
    def __init__(
        self, local_log: LocalLog, processing: Processing, exporter_factory: ExporterFactory, max_entries: int
    ) -> None:
        self._log = local_log
        self._processing = processing
        self._exporter = exporter_factory(self._stored)
        self._max_entries = max_entries
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="local-log-read")
        self._commits = ThreadPoolExecutor(1, thread_name_prefix="local-log-commit")
        self._held: dict[int, int] = {}  # partition -> lowest offset the join holds
        self._stored_end: dict[int, int] = {}  # partition -> end of what ClickHouse has
        self._committed: dict[int, int] = {}
        self._positions: dict[int, int] = {}  # partition -> next offset its consumer reads
        self._stop = asyncio.Event()
        self._stop_consumers = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        return self._exporter.healthy

    def start(self) -> None:
        # What a sender was told "accepted" for and a query cannot see yet.
        metrics.QUEUE_DEPTH.labels("unstored_entries").set_function(
            lambda: self._log.count_from(self._stored_end)
        )
        self._exporter.start()
        self._task = asyncio.create_task(self._run(), name="embedded-pipeline")

    async def _run(self) -> None:
        while not self._stop.is_set():
            consumers = await self._start_consumers()
            done, _ = await asyncio.wait(
                [*consumers, asyncio.create_task(self._stop.wait())], return_when=asyncio.FIRST_COMPLETED
            )
            failures = [t.exception() for t in done if t in consumers and t.exception() is not None]
            # Stop the others at a safe point (between deliveries), store what they delivered.
            self._stop_consumers.set()
            await asyncio.gather(*consumers, return_exceptions=True)
            if self._stop.is_set():
                return  # close() has the exporter store what it can
            await self._exporter.idle()
            # A worker's memory (the join) is gone, or its state is unknown after a failure: all
            # workers start afresh and every partition is replayed from its committed position,
            # exactly as after a restart.
            if not all(isinstance(e, WorkerDied) for e in failures):
                log.error("a log consumer failed", error=repr(failures)[:300])
            log.error("a worker died; restarting workers and replaying the local log")
            started = time.monotonic()
            await self._processing.restart()
            log.info("workers restarted", seconds=round(time.monotonic() - started, 1))

    async def _start_consumers(self) -> list[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        committed = await loop.run_in_executor(self._reads, self._log.committed)
        plans = await loop.run_in_executor(self._reads, self._log.plans)
        partitions = await loop.run_in_executor(self._reads, self._log.partitions)
        partitions = sorted(set(partitions) | set(range(self._processing.count)))
        self._committed = dict(committed)
        self._stored_end = dict(committed)
        self._held = {}
        self._exporter.replay([RecordedFlush(p.token, p.ranges) for p in plans], committed)
        self._stop_consumers = asyncio.Event()
        self._positions = {p: committed.get(p, 0) for p in partitions}
        return [asyncio.create_task(self._consume(p), name=f"log-consumer-{p}") for p in partitions]

    async def _consume(self, partition: int) -> None:
        loop = asyncio.get_running_loop()
        worker = partition % self._processing.count
        last_expire = time.monotonic()
        while not self._stop_consumers.is_set():
            position = self._positions[partition]
            until = self._exporter.limit(partition)
            if until is not None and until <= position:
                await asyncio.sleep(0.02)  # waiting for a rebuilt flush of other partitions
                continue
            entries = await loop.run_in_executor(
                self._reads, self._log.read, partition, position, self._max_entries, until
            )
            if not entries:
                if until is not None:  # everything below the limit is read
                    await self._deliver(Delivery(partition, position, until, _EMPTY), worker)
                    self._positions[partition] = until
                    continue
                if self._held.get(partition) is not None and time.monotonic() - last_expire > _EXPIRE_EVERY_S:
                    last_expire = time.monotonic()
                    self._update_held(worker, await self._processing.expire(worker))
                    await self._commit_stored()
                await self._log.wait_for_appends(0.2)
                continue
            processed = await self._processing.process(worker, entries)
            end = until if until is not None and len(entries) < self._max_entries else entries[-1].offset + 1
            await self._deliver(
                Delivery(partition, position, end, processed.output), worker, processed, entries
            )
            self._positions[partition] = end

    async def _deliver(
        self,
        delivery: Delivery,
        worker: int,
        processed: Processed[Batch] | None = None,
        entries: Sequence[SourceEntry] = (),
    ) -> None:
        if processed is not None:
            self._update_held(worker, processed.held)
            for failure in processed.failed:
                # Checked at the receiver, so this is a bug; say it loudly, keep the entry (with
                # the reason) in the log's dead_letters table, keep the rest going.
                offset = entries[failure.entry].offset
                metrics.DLQ_RECORDS.labels("embedded", failure.stage).inc()
                log.error(
                    "a local log entry could not be processed",
                    offset=offset,
                    stage=failure.stage,
                    reason=failure.reason,
                )
                await asyncio.get_running_loop().run_in_executor(
                    self._commits, self._log.dead_letter, offset, f"{failure.stage}: {failure.reason}"
                )
        await self._exporter.consume(delivery)

    def _update_held(self, worker: int, held_by_source: Held) -> None:
        held = {p: offset for (topic, p), offset in held_by_source.items() if topic == LOCAL_TOPIC}
        count = self._processing.count
        for p in list(self._held):
            if p % count == worker and p not in held:
                del self._held[p]
        self._held.update(held)

    async def _stored(self, ranges: Ranges) -> None:
        for p, (_, end) in ranges.items():
            self._stored_end[p] = max(end, self._stored_end.get(p, 0))
        await self._commit_stored()

    async def _commit_stored(self) -> None:
        positions = {}
        for p, end in self._stored_end.items():
            held = self._held.get(p)
            target = end if held is None else min(end, held)
            if target > self._committed.get(p, 0):
                positions[p] = target
        if positions:
            await asyncio.get_running_loop().run_in_executor(self._commits, self._log.commit, positions)
            self._committed.update(positions)

    def drain(self) -> None:
        self._exporter.drain()

    async def close(self, timeout_s: float) -> None:
        """Stores what the log holds within `timeout_s` (the rest is replayed at the next start).
        Call after the receivers stopped appending."""
        self._exporter.drain()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._caught_up(), timeout_s)
        self._stop.set()
        self._stop_consumers.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        await self._exporter.close()
        self._reads.shutdown(wait=True)
        self._commits.shutdown(wait=True)

    async def _caught_up(self) -> None:
        """Every consumer has read to the end of its partition, and the exporter stored it."""
        loop = asyncio.get_running_loop()
        while True:
            unread = False
            for p, position in list(self._positions.items()):
                if await loop.run_in_executor(self._reads, self._log.read, p, position, 1, None):
                    unread = True
                    break
            if not unread:
                await self._exporter.idle()
                return
            await asyncio.sleep(0.05)


class EmbeddedEngine:
    """The local log, its exporter (what receivers hand requests to) and the pipeline behind it:
    everything of embedded mode between the receivers and ClickHouse."""

    def __init__(
        self,
        data_dir: Path,
        processing: Processing,
        inserter: Inserter,
        batch: BatchSettings,
        local_log: LocalLogSettings,
        window: TimeWindow | None = None,
        insert_filter: InsertFilter | None = None,
    ) -> None:
        self.log = LocalLog(data_dir / "log" / "otlp.sqlite3", max_bytes=local_log.max_bytes)
        recovery = self.log.open()
        log.info(
            "local log opened",
            path=str(self.log.path),
            pending_entries=recovery.pending_entries,
            pending_bytes=recovery.pending_bytes,
            discarded_bytes=recovery.discarded_bytes,
        )
        self.sink = LocalLogExporter(self.log, processing.count, window)
        self.pipeline = EmbeddedPipeline(
            self.log,
            processing,
            lambda on_stored: ClickHouseExporter(inserter, self.log, on_stored, batch, insert_filter),
            local_log.read_entries,
        )

    @property
    def healthy(self) -> bool:
        return self.pipeline.healthy

    def start(self) -> None:
        self.log.start()
        self.pipeline.start()

    async def close(self, timeout_s: float) -> None:
        """After the receivers stopped: finish the appends, store what the log holds within
        `timeout_s` (the rest waits in the log for the next start)."""
        await self.log.stop_appending()
        await self.pipeline.close(timeout_s)
        await self.log.close()
