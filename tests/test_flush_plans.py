"""The ClickHouse exporter's flush plans, against a real chDB store: a flush inserted and never
committed (the process died in between) is rebuilt from its plan and nothing of it is stored
twice, whatever blocks the rebuild arrives in and however much of it had landed; a plan
split by a rebalance loses nothing; offsets that start again at 0 (a new Kafka cluster, a
recreated topic) never collide with old tokens."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka.structs import TopicPartition
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from inferline.core.config import BatchSettings, ProcessorSettings
from inferline.core.records import SPANS, Batch, SourceEntry
from inferline.exporters.clickhouse import exporter as exporter_module
from inferline.exporters.clickhouse.exporter import (
    ClickHouseExporter,
    Delivery,
    Ranges,
    RecordedFlush,
    RestReader,
)
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.exporters.clickhouse.new_inferences import NewInferences
from inferline.exporters.clickhouse.plans import LEGACY_PLANS_TABLE, ClickHousePlans
from inferline.otlp.flatten import flatten_spans
from inferline.processors.chain import ProcessorChain
from inferline.processors.normalise import GenAINormaliser
from inferline.service.processing import native_blocks, process_entries
from inferline.storage.rollups import ROLLUPS, ROLLUPS_9
from tests.otlp_helpers import sdk_spans, span_row
from tests.rollup_helpers import views_detached

pytestmark = pytest.mark.integration

A, B = TopicPartition("inferline.spans", 0), TopicPartition("inferline.spans", 1)
BATCH = BatchSettings(max_rows=100_000, min_delay_s=0.01, max_delay_s=0.02)


@pytest.fixture
def client(store: Client) -> Client:
    return store


class Run:
    """One writer's life: an exporter over the plans; what it stored, and whether it committed.
    `kafka`: wired as the writer role wires it (its records read back as the same rows; copies of
    stored inferences left out)."""

    def __init__(
        self,
        client: Client,
        commit: bool = True,
        cluster: str = "",
        kafka: bool = False,
        read_rest: RestReader | None = None,
    ) -> None:
        self.plans = ClickHousePlans(client, "default", "writers")
        self.plans.create()
        if cluster:
            self.plans.use_cluster(cluster)
        self.committed: dict[TopicPartition, int] = {}
        self._commit = commit
        self.exporter = ClickHouseExporter(
            Inserter(client, recount_rollups_within_days=None if kafka else 180),
            self.plans,
            self._stored,
            BATCH,
            insert_filter=NewInferences(client, "default") if kafka else None,
            replays_exactly=kafka,
            read_rest=read_rest,
        )

    async def _stored(self, ranges: Ranges) -> None:
        if self._commit:  # a writer that dies after its insert never gets here
            self.committed.update({tp: end for tp, (_, end) in ranges.items()})

    async def deliver(self, *deliveries: Delivery) -> None:
        self.exporter.start()
        for d in deliveries:
            await self.exporter.consume(d)
        await self.exporter.idle()
        await self.exporter.close()


def _rows(names: list[str]) -> Batch:
    return Batch(spans=[span_row(n) for n in names])


def _count(client: Client, prefix: str) -> int:
    return int(str(client.command(f"SELECT count() FROM otel_traces WHERE SpanName LIKE '{prefix}%'")))


def test_a_flush_inserted_but_not_committed_is_dropped_when_rebuilt(client: Client) -> None:
    first = [Delivery(A, 0, 3, _rows(["r a0", "r a1", "r a2"])), Delivery(B, 0, 2, _rows(["r b0", "r b1"]))]
    crashed = Run(client, commit=False)
    asyncio.run(crashed.deliver(*first))
    assert _count(client, "r ") == 5

    # The next writer starts from the committed offsets (none): the plan is rebuilt exactly, with
    # the same rows, then new records follow.
    restarted = Run(client)
    pending = restarted.plans.pending({A: 0, B: 0})
    assert len(pending) == 1 and pending[0].ranges == {A: (0, 3), B: (0, 2)}

    async def replay() -> None:
        restarted.exporter.replay(pending, {A: 0, B: 0})
        assert restarted.exporter.limit(A) == 3 and restarted.exporter.limit(B) == 2
        await restarted.deliver(*first, Delivery(A, 3, 4, _rows(["r a3"])))

    asyncio.run(replay())
    assert _count(client, "r ") == 6  # no FINAL: a duplicate would show
    assert restarted.committed == {A: 4, B: 2}
    assert restarted.plans.pending(restarted.committed) == []


def _genai_entries(count: int, spans_each: int) -> list[SourceEntry]:
    """Log entries of GenAI spans (one request each), as a receiver appends them."""
    return [
        SourceEntry(
            "raw", 0, offset, SPANS, "p", encode_spans(sdk_spans(count=spans_each)).SerializeToString()
        )
        for offset in range(count)
    ]


def _processed(entries: list[SourceEntry]) -> Batch:
    """What a worker hands the exporter for these entries: Native blocks, one per table."""
    return process_entries(
        ProcessorChain(ProcessorSettings(chain=["pricing"])), entries, native_blocks
    ).output


def _stored_once(client: Client, calls: int, spans: int | None = None) -> None:
    """No FINAL: a row stored twice would count twice; each rollup counts each call once.
    `spans`: rows expected in otel_traces (default: one per call)."""
    expected_spans = calls if spans is None else spans
    assert int(str(client.command("SELECT count() FROM otel_traces"))) == expected_spans
    assert int(str(client.command("SELECT count() FROM llm_inferences"))) == calls
    assert int(str(client.command("SELECT sum(calls) FROM llm_inferences_by_minute"))) == calls
    for rollup in (*ROLLUPS, *ROLLUPS_9):
        assert int(str(client.command(f"SELECT sum(requests) FROM `{rollup.table}`"))) == calls, rollup.table


def test_a_flush_rebuilt_in_other_blocks_than_the_original_is_not_stored_twice(client: Client) -> None:
    """Live, the log was read in three slices (three blocks per table); the replay reads the same
    entries in one. ClickHouse's deduplication id of an insert depends on its number of blocks,
    so a token alone would store the flush a second time."""
    entries = _genai_entries(3, spans_each=2)
    crashed = Run(client, commit=False)
    asyncio.run(crashed.deliver(*(Delivery(A, e.offset, e.offset + 1, _processed([e])) for e in entries)))
    _stored_once(client, 6)

    restarted = Run(client)
    pending = restarted.plans.pending({A: 0})
    assert [p.ranges for p in pending] == [{A: (0, 3)}]

    async def replay() -> None:
        restarted.exporter.replay(pending, {A: 0})
        await restarted.deliver(Delivery(A, 0, 3, _processed(entries)))

    asyncio.run(replay())
    _stored_once(client, 6)
    assert restarted.committed == {A: 3}


def test_a_flush_that_landed_in_part_is_completed_once(client: Client) -> None:
    """The process died between the tables' inserts of a flush: its spans are stored, its
    inferences are not. The rebuild adds the inferences (and their rollup) and no span again."""
    entries = _genai_entries(2, spans_each=3)
    batch = _processed(entries)
    crashed = Run(client, commit=False)
    token = crashed.plans.record_flush({A: (0, 2)})
    spans_only = Batch(encoded=[b for b in batch.encoded if b[0] == "otel_traces"])
    Inserter(client).insert(spans_only, token)  # ... and then the kill
    assert int(str(client.command("SELECT count() FROM llm_inferences"))) == 0

    _rebuilt(client, 2, _processed(entries))
    _stored_once(client, 6)


def test_a_rebuilt_flush_keeps_a_newer_version_of_an_inference(client: Client) -> None:
    """Identity includes the version column: a rebuild whose join completed an inference (its
    content arrived within the same plan) stores that version next to the one that had landed,
    and the rollup still counts the call once."""
    request = encode_spans(sdk_spans(count=1))
    (row,) = GenAINormaliser().normalise(flatten_spans(request, "p").records, [])
    crashed = Run(client, commit=False)
    asyncio.run(crashed.deliver(Delivery(A, 0, 1, Batch(inferences=[dict(row)]))))

    restarted = Run(client)
    pending = restarted.plans.pending({A: 0})
    completed = dict(row, version=row["version"] + 1)

    async def replay() -> None:
        restarted.exporter.replay(pending, {A: 0})
        await restarted.deliver(Delivery(A, 0, 1, Batch(inferences=[dict(row), completed])))

    asyncio.run(replay())
    versions = client.query("SELECT version FROM llm_inferences ORDER BY version").result_rows
    assert versions == [(row["version"],), (row["version"] + 1,)]
    assert int(str(client.command("SELECT sum(calls) FROM llm_inferences_by_minute"))) == 1


def _inferences(count: int) -> list[dict[str, Any]]:
    spans = flatten_spans(encode_spans(sdk_spans(count=count)), "p").records
    return [dict(r) for r in GenAINormaliser().normalise(spans, [])]


def _rebuilt(client: Client, end: int, batch: Batch, kafka: bool = False) -> Run:
    """A writer restarted from no committed offset of A: it rebuilds the recorded flush of A's
    offsets [0, end), whose records come back as `batch`."""
    restarted = Run(client, kafka=kafka)
    pending = restarted.plans.pending({A: 0})
    assert [p.ranges for p in pending] == [{A: (0, end)}]

    async def replay() -> None:
        restarted.exporter.replay(pending, {A: 0})
        await restarted.deliver(Delivery(A, 0, end, batch))

    asyncio.run(replay())
    return restarted


def test_a_flush_killed_between_its_table_and_its_views_is_counted_once_when_rebuilt(client: Client) -> None:
    """Kafka writer: the inferences reached their table, the process died before the rollups'
    views had them. The table holds every row, so a rebuild that inserts only what the table
    lacks leaves the rollups short for good; inserted again as the original was (same token,
    the records read back as the same rows), ClickHouse adds exactly what the views miss."""
    rows = _inferences(4)
    crashed = Run(client, commit=False, kafka=True)
    with views_detached(client):
        asyncio.run(crashed.deliver(Delivery(A, 0, 2, Batch(inferences=[dict(r) for r in rows]))))
    assert int(str(client.command("SELECT count() FROM llm_inferences"))) == 4
    assert int(str(client.command("SELECT count() FROM llm_inferences_by_minute"))) == 0

    _rebuilt(client, 2, Batch(inferences=rows), kafka=True)
    _stored_once(client, 4, spans=0)


def test_an_embedded_flush_killed_between_its_table_and_its_views_is_recounted_when_rebuilt(
    client: Client,
) -> None:
    """Embedded mode: the rebuilt flush comes from processing the log again, in other blocks, so it
    cannot be the original insert again; the rows it finds in the table may be ones the views
    never counted. The rollup buckets it touches are recounted from the raw rows: the calls of an
    earlier flush in the same buckets count once, and so do the rebuilt flush's."""
    earlier = _genai_entries(2, spans_each=2)
    asyncio.run(Run(client).deliver(Delivery(B, 0, 2, _processed(earlier))))
    entries = _genai_entries(3, spans_each=2)
    crashed = Run(client, commit=False)
    with views_detached(client):
        asyncio.run(crashed.deliver(*(Delivery(A, e.offset, e.offset + 1, _processed([e])) for e in entries)))
    assert int(str(client.command("SELECT sum(calls) FROM llm_inferences_by_minute"))) == 4

    _rebuilt(client, 3, _processed(entries))
    _stored_once(client, 4 + 6)


def test_a_rebuilt_flush_leaves_out_what_its_original_left_out(client: Client) -> None:
    """Kafka writer: a processor replay published an inference again; the flush that met the copy
    left it out (the row was stored) and recorded so in its plan. The flush died between table
    and views; its rebuild leaves the copy out again, so the rollups count that call once."""
    rows = _inferences(3)
    first = Run(client, kafka=True)
    asyncio.run(first.deliver(Delivery(B, 0, 1, Batch(inferences=[dict(rows[0])]))))
    crashed = Run(client, commit=False, kafka=True)
    with views_detached(client):
        asyncio.run(crashed.deliver(Delivery(A, 0, 3, Batch(inferences=[dict(r) for r in rows]))))
    (plan,) = crashed.plans.pending({A: 0})
    assert plan.left_out == {f"{rows[0]['inference_id']}/{rows[0]['version']}"}

    _rebuilt(client, 3, Batch(inferences=rows), kafka=True)
    _stored_once(client, 3, spans=0)


def test_a_plan_split_by_a_rebalance_loses_nothing(client: Client) -> None:
    """The flush was recorded but never inserted (died in between); after the rebalance one writer
    holds A, another B: each rebuilds its share under a token of its own, so both shares land."""

    plans = ClickHousePlans(client, "default", "writers")
    plans.create()
    died = ClickHouseExporter(Inserter(client, retries=0), plans, lambda r: asyncio.sleep(0), BATCH)

    async def record() -> None:
        died.start()
        await died.consume(Delivery(A, 0, 1, _rows(["s a0"])))
        await died.consume(Delivery(B, 0, 1, _rows(["s b0"])))
        await asyncio.sleep(0.3)  # the plan is recorded, the insert fails and is retried
        await died.close()

    client.command("DETACH TABLE otel_traces")  # the insert cannot happen
    try:
        asyncio.run(record())
    finally:
        client.command("ATTACH TABLE otel_traces")
    for tp, name in ((A, "s a0"), (B, "s b0")):
        writer = Run(client)
        pending = writer.plans.pending({tp: 0})
        assert len(pending) == 1 and pending[0].ranges == {tp: (0, 1)}
        assert not pending[0].exact  # a share, under a token of its own

        async def replay(
            writer: Run = writer,
            pending: list[RecordedFlush] = pending,
            tp: TopicPartition = tp,
            name: str = name,
        ) -> None:
            writer.exporter.replay(pending, {tp: 0})
            await writer.deliver(Delivery(tp, 0, 1, _rows([name])))

        asyncio.run(replay())
    assert _count(client, "s ") == 2


def test_a_share_whose_rest_cannot_be_read_is_stored_alone(
    client: Client, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka writer: a flush split by a rebalance whose other partitions can no longer be read
    (retention deleted them): the share is stored on its own, once, and the log says why."""
    rows = _inferences(4)
    crashed = Run(client, commit=False, kafka=True)
    token = crashed.plans.record_flush({A: (0, 2), B: (0, 2)})
    with views_detached(client):
        Inserter(client).insert(Batch(inferences=[dict(r) for r in rows[:2]]), token)

    reads = []

    async def gone(ranges: Ranges) -> Batch:
        reads.append(ranges)
        raise RuntimeError(f"offsets out of range: {sorted(map(str, ranges))}")

    monkeypatch.setattr(exporter_module, "_REST_ATTEMPTS", 2)  # retried, then stored alone

    writer = Run(client, kafka=True, read_rest=gone)
    (share,) = writer.plans.pending({A: 0})
    assert share.ranges == {A: (0, 2)} and share.rest == {B: (0, 2)} and share.whole == token

    async def replay() -> None:
        writer.exporter.replay([share], {A: 0})
        await writer.deliver(Delivery(A, 0, 2, Batch(inferences=[dict(r) for r in rows[2:]])))

    asyncio.run(replay())
    assert int(str(client.command("SELECT count() FROM llm_inferences"))) == 4  # no copy
    assert writer.committed == {A: 2}
    assert "the rest of a flush split by a rebalance could not be read" in capsys.readouterr().out
    assert reads == [{B: (0, 2)}, {B: (0, 2)}]


def test_offsets_that_start_again_at_zero_are_new_data(client: Client) -> None:
    """A new cluster (or a recreated topic) reuses offsets 0..n: the data is new, not a replay."""
    for generation in ("old", "new"):
        run = Run(client)
        asyncio.run(run.deliver(Delivery(A, 0, 2, _rows([f"z {generation} 0", f"z {generation} 1"]))))
    assert _count(client, "z old") == 2
    assert _count(client, "z new") == 2


def test_plans_of_earlier_versions_are_moved_over(client: Client) -> None:
    client.command(
        f"CREATE TABLE {LEGACY_PLANS_TABLE} (group_id String, topic String, partition UInt32, "
        "start_offset Int64, end_offset Int64, created_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree(created_at) ORDER BY (group_id, topic, partition, start_offset)"
    )
    client.command(
        f"INSERT INTO {LEGACY_PLANS_TABLE} (group_id, topic, partition, start_offset, end_offset) "
        "VALUES ('writers', 'inferline.spans', 1, 10, 20)"
    )
    plans = ClickHousePlans(client, "default", "writers")
    plans.create()
    assert plans.pending({B: 10}) == [RecordedFlush("writers/inferline.spans/1/10-20", {B: (10, 20)})]
    exists = client.command(f"SELECT count() FROM system.tables WHERE name = '{LEGACY_PLANS_TABLE}'")
    assert int(str(exists)) == 0


def test_two_clusters_with_one_group_name_never_rebuild_each_others_flushes(client: Client) -> None:
    """Two Kafka clusters feed one database with the same writer group name. Cluster one's writer
    died after its insert, before its commit; cluster two's writer, at the same offsets, must not
    take that plan (it would rebuild cluster one's flush from cluster two's records)."""
    one = Run(client, commit=False, cluster="cluster-one")
    ones = _rows(["c one 0", "c one 1"])
    asyncio.run(one.deliver(Delivery(A, 0, 2, ones)))

    two = Run(client, cluster="cluster-two")
    assert two.plans.pending({A: 0}) == []
    asyncio.run(two.deliver(Delivery(A, 0, 2, _rows(["c two 0", "c two 1"]))))
    assert _count(client, "c two") == 2

    # Cluster one's writer, back, still rebuilds its own flush: the same rows, not stored again.
    again = Run(client, cluster="cluster-one")
    pending = again.plans.pending({A: 0})
    assert [p.ranges for p in pending] == [{A: (0, 2)}]

    async def replay() -> None:
        again.exporter.replay(pending, {A: 0})
        await again.deliver(Delivery(A, 0, 2, ones))

    asyncio.run(replay())
    assert _count(client, "c one") == 2


def test_plans_recorded_before_cluster_ids_belong_to_the_first_cluster_seen(client: Client) -> None:
    before = Run(client, commit=False)  # an earlier version: no cluster id
    asyncio.run(before.deliver(Delivery(A, 0, 1, _rows(["u 0"]))))

    upgraded = Run(client, cluster="cluster-one")
    assert [p.ranges for p in upgraded.plans.pending({A: 0})] == [{A: (0, 1)}]
    assert Run(client, cluster="cluster-two").plans.pending({A: 0}) == []


def test_an_insert_that_fails_between_its_table_and_its_views_is_counted_once_when_retried(
    client: Client,
) -> None:
    """Kafka writer: the inferences' part is written, then a view fails (here a view made to throw
    once; in life e.g. too many parts in a rollup), and the flush is retried in place under its
    token. The retry must give the views what they missed, and the table nothing twice."""
    client.command("CREATE TABLE fail_views_once (on UInt8) ENGINE = Memory")
    client.command("INSERT INTO fail_views_once VALUES (1)")
    client.command(
        "CREATE MATERIALIZED VIEW aa_failing_mv ENGINE = Null AS SELECT "
        "throwIf((SELECT count() FROM fail_views_once) > 0, 'a view failed once') AS failed "
        "FROM llm_inferences"
    )
    rows = _inferences(4)
    run = Run(client, kafka=True)

    async def deliver() -> None:
        run.exporter.start()
        await run.exporter.consume(Delivery(A, 0, 2, Batch(inferences=[dict(r) for r in rows])))
        for _ in range(200):  # the first attempt fails; the exporter retries it
            if not run.exporter.healthy:
                break
            await asyncio.sleep(0.05)
        # The state a failed insert leaves: the table has the rows, not every rollup has them.
        assert not run.exporter.healthy and run.committed == {}
        assert int(str(client.command("SELECT count() FROM llm_inferences"))) == 4
        # (Which views ran before the throwing one varies: those have the block, the rest not.)
        rollups = ["llm_inferences_by_minute", *(r.table for r in (*ROLLUPS, *ROLLUPS_9))]
        assert 0 in [int(str(client.command(f"SELECT count() FROM `{t}`"))) for t in rollups]
        client.command("TRUNCATE TABLE fail_views_once")
        await run.exporter.idle()
        await run.exporter.close()

    asyncio.run(deliver())
    client.command("DROP TABLE aa_failing_mv")
    assert run.committed == {A: 2}
    _stored_once(client, 4, spans=0)


def test_a_partition_never_committed_forgets_only_its_plans_recorded_before_it_was_assigned(
    client: Client,
) -> None:
    """The writer drops the plans of a partition its group never committed (an earlier topic of the
    same name) before it commits its start; plans recorded since it was assigned may be another
    member's, live, and stay, and so do other partitions' plans."""
    plans = ClickHousePlans(client, "default", "writers")
    plans.create()
    plans.use_cluster("cluster-one")
    plans.record_flush({A: (0, 5)})  # of the topic before it was recreated
    plans.record_flush({B: (0, 3)})
    assigned = plans.now()
    time.sleep(0.01)  # the clock stamps milliseconds
    plans.record_flush({A: (5, 9)})  # another member's, once this one was evicted
    assert plans.forget(["inferline.spans/0"], assigned) == 1
    assert [p.ranges for p in plans.pending({A: 0, B: 0})] == [{B: (0, 3)}, {A: (5, 9)}]
    assert plans.forget(["inferline.spans/0"], assigned) == 0  # nothing left to drop: no mutation
