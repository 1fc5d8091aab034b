"""The embedded writer: gathers the rows of many requests, flushes them by size or time
(`inferline.exporters.clickhouse.flush_policy`), and
resolves each request's wait only once its rows are committed in ClickHouse.

Memory is bounded by `max_pending_rows` (rows buffered or in flight); past it, `write` refuses
at once with `Overloaded` instead of queueing, which the receivers turn into a retryable status.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import structlog

from inferline.core import metrics
from inferline.core.errors import Overloaded, Unavailable
from inferline.core.logging import error_summary
from inferline.core.records import Batch
from inferline.exporters.clickhouse.flush_policy import FlushDelay
from inferline.exporters.clickhouse.inserter import Inserter

log = structlog.get_logger()

_PENDING = metrics.QUEUE_DEPTH.labels("pending_rows")


class BatchWriter:
    def __init__(
        self,
        inserter: Inserter,
        *,
        max_rows: int,
        max_delay_s: float,
        max_pending_rows: int,
        min_delay_s: float | None = None,
    ):
        self._inserter = inserter
        self._max_rows = max_rows
        self._delay = FlushDelay(max_delay_s if min_delay_s is None else min_delay_s, max_delay_s)
        self._max_pending = max_pending_rows
        self._batch = Batch()
        self._waiters: list[asyncio.Future[None]] = []
        self._first_at = 0.0
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="clickhouse-insert")
        self.healthy = True  # False after a failed flush, until one succeeds

    @property
    def pending_rows(self) -> int:
        return len(self._batch) + self._in_flight

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batch-writer")

    async def write(self, batch: Batch) -> None:
        """Returns once every row of `batch` is committed; raises Overloaded or Unavailable."""
        n = len(batch)
        if n == 0:
            return
        if self._closing:
            raise Unavailable("shutting down")
        if self.pending_rows + n > self._max_pending:
            raise Overloaded(f"{self.pending_rows} rows are waiting for storage", reason="pending_rows")
        if not len(self._batch):
            self._first_at = time.monotonic()
        self._batch.extend(batch)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        _PENDING.set(self.pending_rows)
        self._wake.set()
        # Shielded: a sender that hangs up does not cancel the write its rows belong to.
        await asyncio.shield(waiter)

    async def _run(self) -> None:
        while True:
            if not len(self._batch):
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            remaining = self._first_at + self._delay.seconds - time.monotonic()
            if len(self._batch) < self._max_rows and remaining > 0 and not (self._closing or self._draining):
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), remaining)
                continue
            await self._flush()

    async def _flush(self) -> None:
        batch, waiters = self._batch, self._waiters
        self._batch, self._waiters = Batch(), []
        n = len(batch)
        self._in_flight += n
        started = time.monotonic()
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, self._inserter.insert, batch, uuid.uuid4().hex
            )
            self._delay.observe(time.monotonic() - started)
        except Exception as e:
            self.healthy = False
            log.error("flush failed", rows=n, error=error_summary(e))
            for w in waiters:
                if not w.done():
                    w.set_exception(Unavailable("storage unavailable, retry later"))
        else:
            self.healthy = True
            metrics.observe_inferences(batch.inferences)
            metrics.observe_inferences(batch.observed)
            for w in waiters:
                if not w.done():
                    w.set_result(None)
        finally:
            self._in_flight -= n
            _PENDING.set(self.pending_rows)

    def drain(self) -> None:
        """From now on flush as soon as rows arrive: a stopping service should not hold the
        requests still in flight for the batch delay."""
        self._draining = True
        self._wake.set()

    async def close(self) -> None:
        """Flush everything accepted, then stop."""
        self._closing = True
        self._wake.set()
        if self._task:
            await self._task
        self._executor.shutdown(wait=True)
