"""The ClickHouse exporter's quiet flush (the Kafka writer's `writer_quiet_s`): once deliveries
stop, what is gathered is stored without waiting out a long flush delay; deliveries that keep
coming are still gathered into one flush."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

import pytest

from inferline.core.config import BatchSettings
from inferline.core.records import Batch
from inferline.exporters.clickhouse.exporter import ClickHouseExporter, Delivery, Ranges
from inferline.exporters.clickhouse.inserter import Inserter

pytestmark = pytest.mark.unit

HOUR = BatchSettings(min_delay_s=3600, max_delay_s=3600)


class _Inserts(Inserter):
    def __init__(self) -> None:
        super().__init__(client=None)  # type: ignore[arg-type]
        self.batches: list[Batch] = []

    def insert(self, batch: Batch, token: str) -> None:
        self.batches.append(batch)


class _Plans:
    def record_flush(self, ranges: Ranges, left_out: Collection[str] = ()) -> str:
        return "token"


def _rows(n: int, start: int = 0) -> Batch:
    return Batch(spans=[{"SpanId": f"{i:016x}"} for i in range(start, start + n)])


async def _run(quiet_s: float | None, deliveries: int, until_stored: int) -> tuple[list[Batch], list[Any]]:
    inserts, stored = _Inserts(), []

    async def on_stored(ranges: Ranges) -> None:
        stored.append(ranges)

    exporter = ClickHouseExporter(inserts, _Plans(), on_stored, HOUR, quiet_s=quiet_s)
    exporter.start()
    for i in range(deliveries):  # back to back: far closer together than quiet_s
        await exporter.consume(Delivery(0, i * 10, i * 10 + 10, _rows(10, i * 10)))
    try:
        # A liveness bound, not a timing assertion: without the quiet flush nothing is stored
        # before the hour-long delay.
        async with asyncio.timeout(60):
            while sum(len(b) for b in inserts.batches) < until_stored:
                await asyncio.sleep(0.05)
    finally:
        await exporter.close()
    return inserts.batches, stored


def test_a_quiet_source_is_stored_without_waiting_out_the_delay() -> None:
    batches, stored = asyncio.run(_run(quiet_s=2.0, deliveries=5, until_stored=50))
    assert len(batches) == 1, "deliveries closer together than quiet_s go into one flush"
    assert [b["SpanId"] for b in batches[0].spans] == [f"{i:016x}" for i in range(50)]
    assert stored == [{0: (0, 50)}], "the offsets are committed once stored"


def test_without_a_quiet_flush_the_delay_is_waited_out() -> None:
    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(_run(quiet_s=None, deliveries=2, until_stored=20), 5))
