"""Copies of a row within one flush: written as they came (the exporter's inserts skip
ClickHouse's merge of each block at insert time, `optimize_on_insert = 0`), answered once by every
read, counted once by the rollups, and collapsed on disk by the table's merges."""

from __future__ import annotations

import time

import pytest
from clickhouse_connect.driver.client import Client

from inferline.core.records import Batch
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.processors.otel_rows import trace_row
from inferline.service.processing import native_blocks
from inferline.storage import queries
from inferline.storage.rollups import ROLLUPS, ROLLUPS_9
from tests.genai_examples import _CHAT_ATTRIBUTES, chat_inference_rows, flat_span

pytestmark = pytest.mark.integration


def _count(store: Client, sql: str) -> int:
    return int(str(store.command(sql)))


def test_copies_in_one_flush_are_answered_once_with_the_latest_version(store: Client) -> None:
    start = time.time_ns() - 10**9
    span = flat_span(_CHAT_ATTRIBUTES, name="chat gpt-4o-mini", seed="copy", start=start, end=start + 10**9)
    first, other = chat_inference_rows(2, start, seed="copy")
    # The inference's content arrived in log records of a later request of the same flush: a
    # second version of its row. The span itself came twice (a sender's retry).
    later = dict(first, version=first["version"] + 1, prompt_messages=[{"role": "user", "content": "later"}])
    flush = native_blocks(
        Batch(inferences=[dict(first), dict(other), later], spans=[trace_row(span), trace_row(span)])
    )
    Inserter(store).insert(flush, "one-flush")

    # The rows are stored as they came ...
    assert _count(store, "SELECT count() FROM llm_inferences") == 3
    assert _count(store, "SELECT count() FROM otel_traces") == 2
    # ... and what the API reads holds each once: the list's count, the detail (latest version),
    # the trace's spans.
    params = {"project": first["project_id"]}
    total = store.query(queries.count("project_id = {project:String}"), parameters=params).result_rows
    assert total == [(2,)]
    detail = store.query(
        queries.DETAIL, parameters={**params, "id": first["inference_id"]}, column_oriented=False
    ).named_results()
    assert [d["prompt_messages"] for d in detail] == ['[{"role":"user","content":"later"}]']
    spans = store.query(
        queries.TRACE_SPANS, parameters={**params, "trace": span.trace_id, "limit": 10}
    ).result_rows
    assert len(spans) == 1
    # The rollups count calls, not rows: a call's versions are one call (as before: the views
    # always saw the block as inserted).
    assert _count(store, "SELECT sum(calls) FROM llm_inferences_by_minute") == 2
    for rollup in (*ROLLUPS, *ROLLUPS_9):
        assert _count(store, f"SELECT sum(requests) FROM `{rollup.table}`") == 2, rollup.table

    # The table's merges collapse the copies on disk.
    store.command("OPTIMIZE TABLE llm_inferences FINAL")
    store.command("OPTIMIZE TABLE otel_traces FINAL")
    assert _count(store, "SELECT count() FROM llm_inferences") == 2
    assert _count(store, "SELECT count() FROM otel_traces") == 1
