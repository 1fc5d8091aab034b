"""Embedded mode's serving process stores its flushes without a collection of everything: one
walked the whole process with the GIL held, and every sender's request in flight waited."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_settle_after_start import _run

pytestmark = pytest.mark.integration


def test_the_serving_process_stores_rows_without_a_collection_of_everything(tmp_path: Path) -> None:
    """Embedded mode's serving process encodes the ingest ledger's rows of every flush itself.
    Encoding runs without automatic collections, but unlike a worker's batch it freezes nothing
    and makes no periodic collection of everything: that walked the whole process with the GIL
    held, a 100-330 ms stall of every request in flight once a minute under load, the half-load
    ack p99 (docs/performance.md, "2026-12-07, night")."""
    generations, frozen_before, frozen_after, stored, enabled_after = _run(
        f"""
import gc, time
import inferline.service.embedded  # the serving process's modules, as at its start
from inferline.core import memory
from inferline.core.logging import configure_logging
from inferline.core.records import Batch
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.storage.clickhouse import connect
from inferline.storage.schema import migrate

configure_logging("error")  # stdout is the test's answer
store = connect("chdb://{tmp_path / "clickhouse"}")
migrate(store)
memory.settle_after_start()
memory._last_full_collection = float("-inf")  # as a minute after the start: one would be due
ledger = [
    dict(project_id="p", minute=int(time.time()) // 60 * 60 - 60 * i, signal="spans", outcome="accepted",
         reason="", source="otlp", records=1)
    for i in range(20_000)
]
frozen = gc.get_freeze_count()
generations = set()
gc.callbacks.append(lambda phase, info: phase == "start" and generations.add(info["generation"]))
Inserter(store).insert(Batch(ledger=ledger), "ledger-flush")
print(max(generations, default=-1), frozen, gc.get_freeze_count(),
      int(str(store.command("SELECT sum(records) FROM ingest_ledger"))), int(gc.isenabled()))
"""
    )
    assert stored == 20_000
    assert generations < 2  # no collection of everything ran during the flush
    assert frozen_after == frozen_before  # and nothing made since the start was frozen by it
    assert enabled_after == 1
