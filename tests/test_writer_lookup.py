"""The ClickHouse exporter's filter of inference rows already stored (`NewInferences`), against
the real engine: a Kafka processor replay's copies, and in embedded mode a sender's retry later
than the join window, are inserted once (table and rollups), at any flush size; what a flush left
out is recorded so its rebuild leaves out the same."""

from __future__ import annotations

import time

import pytest
from clickhouse_connect.driver.client import Client
from prometheus_client import REGISTRY

from inferline.core.records import Batch, Row
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.exporters.clickhouse.new_inferences import (
    NewInferences,
    calls_remembered_since_store,
    certainly_new,
)
from inferline.service.processing import native_blocks
from inferline.storage.rollups import ROLLUPS, ROLLUPS_9
from tests.genai_examples import chat_inference_rows

pytestmark = pytest.mark.integration


def test_a_flush_larger_than_one_query_can_name_still_finds_what_is_stored(store: Client) -> None:
    """12,000 inference ids do not fit in one query (ClickHouse's `max_query_size`, 256 KiB: a
    syntax error the writer retried forever, its flush never stored); the look-up goes in chunks
    and still finds the rows a replay would insert twice."""
    rows = chat_inference_rows(12_000, time.time_ns(), seed="s")  # within the tables' retention
    assert len({r["inference_id"] for r in rows}) == 12_000
    already = [rows[5], rows[6_000], rows[11_999]]  # stored by the flush before a crash
    Inserter(store).insert(Batch(inferences=[dict(r) for r in already]), "before-the-crash")
    kept, left_out = NewInferences(store, "default").filter_new(Batch(inferences=[*rows, dict(rows[7])]))
    assert len(kept.inferences) == 12_000 - 3  # the three stored ones and the replayed copy of row 7 go
    assert {r["inference_id"] for r in already}.isdisjoint(r["inference_id"] for r in kept.inferences)
    assert sorted(left_out) == sorted(f"{r['inference_id']}/{r['version']}" for r in already)


def test_an_id_that_is_not_a_uuid_cannot_change_the_look_up(store: Client) -> None:
    """The ids are written into the look-up's text: one that is not a UUID (a quote, SQL) is not
    looked up at all, and the rows around it are still found, an id spelled in capitals too."""
    rows = chat_inference_rows(3, time.time_ns(), seed="q")
    Inserter(store).insert(Batch(inferences=[dict(rows[0])]), "stored")
    hostile = dict(rows[1], inference_id="00000000-0000-0000-0000-000000000000')) OR 1 = 1 --")
    spelled = dict(rows[0], inference_id=rows[0]["inference_id"].upper())
    kept, left_out = NewInferences(store, "default").filter_new(
        Batch(inferences=[hostile, dict(rows[0]), spelled, dict(rows[2])])
    )
    assert [r["inference_id"] for r in kept.inferences] == [hostile["inference_id"], rows[2]["inference_id"]]
    version = rows[0]["version"]
    assert sorted(left_out) == sorted(f"{r['inference_id']}/{version}" for r in (rows[0], spelled))


class _Recording(NewInferences):
    """Records how many rows each flush looked up."""

    looked_up: list[int]

    def stored_keys(self, rows: list[Row]) -> set[str]:
        self.looked_up = [*getattr(self, "looked_up", []), len(rows)]
        return super().stored_keys(rows)


def _calls_counted(store: Client) -> tuple[int, int, list[int]]:
    """Rows in llm_inferences (no FINAL: a copy counts), calls in the minute rollup, in each rollup."""
    rows = int(str(store.command("SELECT count() FROM llm_inferences")))
    by_minute = int(str(store.command("SELECT sum(calls) FROM llm_inferences_by_minute")))
    each = [int(str(store.command(f"SELECT sum(requests) FROM `{r.table}`"))) for r in (*ROLLUPS, *ROLLUPS_9)]
    return rows, by_minute, each


def test_encoded_rows_already_stored_are_left_out_of_the_table_and_the_rollups(store: Client) -> None:
    """Embedded mode: the rows reach the exporter as a worker's Native block. A sender's retry
    later than the join window makes rows the table holds; they are left out in ClickHouse, the
    others stored, and the metrics' rows shrink alike."""
    start = time.time_ns() - 120 * 10**9  # calls two minutes old: the normaliser cannot vouch for them
    rows = chat_inference_rows(50, start, seed="retry")
    Inserter(store).insert(Batch(inferences=[dict(r) for r in rows[:20]]), "the-first-request")
    retried = native_blocks(
        Batch(inferences=[dict(r) for r in rows], calls_remembered_since=time.time() - 30)
    )
    assert not any(r["certainly_new"] for r in retried.observed)

    kept, left_out = _Recording(store, "default").filter_new(retried)
    assert sorted(left_out) == sorted(f"{r['inference_id']}/1" for r in rows[:20])
    assert len(kept.observed) == 30 and kept.already_stored == frozenset(left_out)
    Inserter(store).insert(kept, "the-retry")
    assert _calls_counted(store) == (50, 50, [50] * len(ROLLUPS + ROLLUPS_9))
    Inserter(store).insert(kept, "the-retry")  # the same flush inserted again: its token drops it
    assert _calls_counted(store) == (50, 50, [50] * len(ROLLUPS + ROLLUPS_9))


def test_calls_the_normaliser_vouches_for_are_not_looked_up(store: Client) -> None:
    """The look-up reads the flush's time range of the table: rows of calls that started after
    the normaliser's memory is complete skip it; older ones in the same flush do not."""
    now = time.time()
    fresh = chat_inference_rows(40, time.time_ns() - 5 * 10**9, seed="fresh")
    old = chat_inference_rows(3, time.time_ns() - 300 * 10**9, seed="old")
    batch = native_blocks(Batch(inferences=[dict(r) for r in fresh + old], calls_remembered_since=now - 30))
    assert [r["certainly_new"] for r in batch.observed] == [True] * 40 + [False] * 3
    lookup = _Recording(store, "default")
    before = _lookup_counts()
    kept, left_out = lookup.filter_new(batch)
    assert lookup.looked_up == [3] and left_out == [] and not kept.already_stored
    # What operators see of it (`inferline_stored_row_lookups_total`, the bench's "rows looked up").
    assert [a - b for a, b in zip(_lookup_counts(), before, strict=True)] == [40, 3, 0]
    Inserter(store).insert(kept, "fresh")
    assert _calls_counted(store)[:2] == (43, 43)
    lookup.filter_new(
        native_blocks(Batch(inferences=[dict(r) for r in old], calls_remembered_since=now - 30))
    )
    assert [a - b for a, b in zip(_lookup_counts(), before, strict=True)] == [40, 6, 3]


def _lookup_counts() -> list[float]:
    """The process's `inferline_stored_row_lookups_total` by outcome: vouched, looked_up, found."""
    return [
        REGISTRY.get_sample_value("inferline_stored_row_lookups_total", {"outcome": o}) or 0.0
        for o in ("vouched", "looked_up", "found")
    ]


def test_versions_a_call_was_counted_at_are_found_whatever_version_the_table_kept(store: Client) -> None:
    """The views count a call at its version-1 row. Once content that came later made a version 2
    and a merge kept only that, a retried version 1 is still the same call (left out); a version 2
    of a call stored only at version 1 is new content (kept)."""
    first, second = chat_inference_rows(2, time.time_ns() - 120 * 10**9, seed="versions")
    Inserter(store).insert(Batch(inferences=[dict(first, version=2), dict(second)]), "stored")
    store.command("OPTIMIZE TABLE llm_inferences FINAL")
    kept, left_out = NewInferences(store, "default").filter_new(
        Batch(inferences=[dict(first), dict(second, version=2)])
    )
    assert left_out == [f"{first['inference_id']}/1"]
    assert [(r["inference_id"], r["version"]) for r in kept.inferences] == [(second["inference_id"], 2)]


def test_a_new_normaliser_vouches_only_for_calls_newer_than_every_stored_one(store: Client) -> None:
    """What the embedded service tells its normalisers at start (`calls_remembered_since_store`):
    on an empty store every call is new; once a call is stored, a retry of it (same start, to the
    nanosecond) is looked up, and a call that started two seconds later is not."""
    assert calls_remembered_since_store(store, "default") < 0  # nothing stored: any start is later
    (stored,) = chat_inference_rows(1, time.time_ns() - 7 * 10**9 + 123_456_789, seed="stored")
    Inserter(store).insert(Batch(inferences=[dict(stored)]), "stored")
    since = calls_remembered_since_store(store, "default")
    retry, later = dict(stored), dict(stored, start_time=stored["start_time"] + 2 * 10**9)
    assert (certainly_new(retry, since), certainly_new(later, since)) == (False, True)
