"""Flush plans of the writer role, kept in ClickHouse itself (`flush_plans`), where every writer
of a consumer group finds them after a crash or a rebalance.

A plan is one row per source partition (`topic/partition`) of a flush: its offsets [start, end),
the token of the flush, how many partitions the flush held, and the keys of the rows its insert
left out (inference rows ClickHouse held already). Tokens are unique per flush (a
random id under the group's name), never derived from offsets: a recreated topic or a new Kafka
cluster starts its offsets at 0 again, and an offset-derived token would make ClickHouse drop new
data as a replay of old. Plans belong to the Kafka cluster they were read from (its id): offsets of
one cluster say nothing about another's records, so a writer never rebuilds another cluster's
flush, even when both use the same group name and write into one database.

On assignment a writer loads the plans that still cover offsets past its partitions' committed
positions and rebuilds them, inserted again as they were. If a rebalance split a plan between
writers, each holds a share of it (named by the plan's token plus the partitions it holds) and is
told the rest of the plan's ranges: the writer reads the rest by offset and inserts the whole
flush again under its token, so a flush that reached its tables but not the rollups' views is
completed in the views too (a share alone cannot tell what the views miss). Whichever member
comes first completes it; the others' inserts are dropped as replays.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection

from aiokafka.structs import TopicPartition
from clickhouse_connect.driver.client import Client

from inferline.exporters.clickhouse.exporter import Ranges, RecordedFlush

PLANS_TABLE = "flush_plans"
LEGACY_PLANS_TABLE = "kafka_writer_plans"  # per-partition plans of earlier versions


def plans_ddl(database: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{PLANS_TABLE}` (\n"
        "    consumer String, token String, source String, start_offset Int64, end_offset Int64,\n"
        "    partitions UInt32, created_at DateTime64(3, 'UTC') DEFAULT now64(3),\n"
        "    cluster String DEFAULT '', left_out Array(String) DEFAULT []\n"
        ") ENGINE = ReplacingMergeTree(created_at)\n"
        "ORDER BY (consumer, source, end_offset, token)\n"
        "TTL toDateTime(created_at) + INTERVAL 7 DAY"
    )


def source_name(tp: TopicPartition) -> str:
    return f"{tp.topic}/{tp.partition}"


def _source(name: str) -> TopicPartition:
    topic, partition = name.rsplit("/", 1)
    return TopicPartition(topic, int(partition))


class ClickHousePlans:
    """The writer role's `PlanBook`."""

    def __init__(self, client: Client, database: str, consumer: str) -> None:
        self._client = client
        self._table = f"`{database}`.`{PLANS_TABLE}`"
        self._database = database
        self._consumer = consumer
        self.cluster = ""  # the Kafka cluster's id; set by `use_cluster` before any flush

    def create(self) -> None:
        """The table, and the plans of earlier versions moved into it (their tokens were
        `{group}/{topic}/{partition}/{start}-{end}`, one partition each), once."""
        self._client.command(plans_ddl(self._database))
        legacy = f"`{self._database}`.`{LEGACY_PLANS_TABLE}`"
        exists = self._client.command(
            "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": self._database, "t": LEGACY_PLANS_TABLE},
        )
        if int(str(exists)):
            source = "concat(topic, '/', toString(partition))"
            token = f"concat(group_id, '/', {source}, '/', toString(start_offset), '-', toString(end_offset))"
            self._client.command(
                f"INSERT INTO {self._table} (consumer, token, source, start_offset, end_offset, partitions, "
                f"created_at) SELECT group_id, {token}, {source}, start_offset, end_offset, 1, created_at "
                f"FROM {legacy}"
            )
            self._client.command(f"DROP TABLE {legacy}")
        # Plans of versions before cluster ids keep cluster '' until a writer claims them.
        # Plans of versions before the rows left out were recorded left none out.
        for column in ("cluster String DEFAULT ''", "left_out Array(String) DEFAULT []"):
            self._client.command(f"ALTER TABLE {self._table} ADD COLUMN IF NOT EXISTS {column}")

    def use_cluster(self, cluster: str) -> None:
        """Plans from now on belong to `cluster`. The group's plans recorded before cluster ids
        existed are claimed by the first cluster seen (an upgrade keeps its cluster)."""
        if cluster == self.cluster:
            return
        unclaimed = self._client.command(
            f"SELECT count() FROM {self._table} WHERE consumer = {{c:String}} AND cluster = ''",
            parameters={"c": self._consumer},
        )
        if int(str(unclaimed)):  # a mutation only when there is something to claim (upgrades)
            self._client.command(
                f"ALTER TABLE {self._table} UPDATE cluster = {{cluster:String}} "
                "WHERE consumer = {c:String} AND cluster = ''",
                parameters={"cluster": cluster, "c": self._consumer},
                settings={"mutations_sync": 2},
            )
        self.cluster = cluster

    def now(self) -> str:
        """ClickHouse's clock, which stamps the plans (`created_at`), as it prints it."""
        return str(self._client.command("SELECT now64(3, 'UTC')"))

    def forget(self, sources: list[str], before: str) -> int:
        """Drops the plans of these partitions (`topic/partition`) recorded under this cluster
        before `before` (later ones may be another member's, which holds the partitions now); how
        many rows there were."""
        where = (
            "consumer = {c:String} AND cluster = {cluster:String} AND source IN {sources:Array(String)} "
            "AND created_at < {before:DateTime64(3, 'UTC')}"
        )
        parameters = {"c": self._consumer, "cluster": self.cluster, "sources": sources, "before": before}
        held = self._client.command(f"SELECT count() FROM {self._table} WHERE {where}", parameters=parameters)
        count = int(str(held))
        if count:  # a mutation only when there is something to drop
            self._client.command(
                f"ALTER TABLE {self._table} DELETE WHERE {where}",
                parameters=parameters,
                settings={"mutations_sync": 2},
            )
        return count

    def record_flush(self, ranges: Ranges, left_out: Collection[str] = ()) -> str:
        token = f"{self._consumer}/{uuid.uuid4().hex}"
        columns = [
            "consumer", "cluster", "token", "source", "start_offset", "end_offset", "partitions", "left_out",
        ]  # fmt: skip
        group, cluster, size, skip = self._consumer, self.cluster, len(ranges), list(left_out)
        # `left_out` on every partition's row: a share split off by a rebalance keeps it too.
        plan = [[group, cluster, token, source_name(tp), s, e, size, skip] for tp, (s, e) in ranges.items()]
        self._client.insert(self._table, plan, column_names=columns)
        return token

    def pending(self, committed: dict[TopicPartition, int]) -> list[RecordedFlush]:
        """The plans that cover offsets past `committed` of these partitions, oldest first, each
        cut to these partitions (with a token of its own when that is not all of it)."""
        if not committed:
            return []
        rows = self._client.query(
            "SELECT token, source, start_offset, end_offset, partitions, left_out, created_at "
            f"FROM {self._table} FINAL "
            "WHERE consumer = {c:String} AND cluster = {cluster:String} "
            "AND source IN {sources:Array(String)} AND end_offset > {low:Int64} ORDER BY created_at, token",
            parameters={
                "c": self._consumer,
                "cluster": self.cluster,
                "sources": [source_name(tp) for tp in committed],
                "low": min(committed.values()),
            },
        ).result_rows
        ranges: dict[str, Ranges] = defaultdict(dict)
        sizes: dict[str, int] = {}
        left_out: dict[str, frozenset[str]] = {}
        for token, source, start, end, partitions, skip, _ in rows:
            tp = _source(source)
            ranges[token][tp] = (start, end)
            sizes[token] = partitions
            left_out[token] = frozenset(skip)
        due = {
            t: held
            for t, held in ranges.items()
            if any(committed.get(tp, 0) < e for tp, (_, e) in held.items())
        }
        rests = self._rests([t for t, held in due.items() if len(held) < sizes[t]], ranges)
        flushes = []
        for token, held in due.items():  # insertion order: oldest first
            if token in rests:
                share = f"{token}/{','.join(sorted(source_name(tp) for tp in held))}"
                flushes.append(
                    RecordedFlush(
                        share, held, exact=False, left_out=left_out[token], rest=rests[token], whole=token
                    )
                )
            else:
                flushes.append(RecordedFlush(token, held, left_out=left_out[token]))
        return flushes

    def _rests(self, tokens: list[str], held: dict[str, Ranges]) -> dict[str, Ranges]:
        """For each share's token: the plan's ranges of the partitions not held here."""
        if not tokens:
            return {}
        rows = self._client.query(
            f"SELECT token, source, start_offset, end_offset FROM {self._table} FINAL "
            "WHERE consumer = {c:String} AND cluster = {cluster:String} AND token IN {tokens:Array(String)}",
            parameters={"c": self._consumer, "cluster": self.cluster, "tokens": tokens},
        ).result_rows
        rests: dict[str, Ranges] = {token: {} for token in tokens}
        for token, source, start, end in rows:
            tp = _source(source)
            if tp not in held[token]:
                rests[token][tp] = (start, end)
        return rests
