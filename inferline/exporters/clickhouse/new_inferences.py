"""The ClickHouse exporter's `InsertFilter` for inference rows ClickHouse already holds.

`llm_inferences` collapses copies of a row when it merges, but the rollups' views count every
insert: a copy stored again would be a call counted twice in every overview. Copies come from a
Kafka processor that replays what it had not committed, and from an OTLP sender that retries a
request later than the normaliser's join window (which only remembers the calls of the last
`join_window_s`). Both wirings therefore look up, before a flush's first insert, which of its
inference rows (id and version) are stored already, and leave them out; the plan records the
keys, so a rebuilt flush leaves out the same.

Rows given as dicts are dropped from the batch. Rows a worker encoded (embedded mode) cannot be
taken out of their Native block here: their keys come with the block (`Batch.observed`), and the
inserter leaves them out in ClickHouse (`Batch.already_stored`).

The look-up reads the flush's time range of the table (~20 µs of the engine per span: the ids are
hashes, no index narrows it). Rows skip it when the normaliser that made them vouches for them:
a call it remembers every call since (`GenAINormaliser.calls_remembered_since`: the join window
back from when the records at hand were received, so a backlog does not shorten it; less if its
memory filled up) that started later than that, and that it did not recognise, made no row
before. Only calls that started earlier, which a retry past the window is, are looked up. A new
normaliser's memory is empty: it vouches only for calls that started after itself, unless told
more. The embedded service reads the newest stored call's start before its first insert
(`calls_remembered_since_store`), so a call that started later, and within the window, is vouched
for from the first flush on (on a fresh store, the whole first window's rows were looked up
before: 67-86% of the bench's maximum-load phase). A Kafka processor says the same on each
enriched inference message (header `inferline-calls-remembered-since`, no earlier than its last
partition assignment: the previous owner's calls are not in its memory), dropped when it sends a
message again after a failed acknowledgement; the writer marks the rows it vouches for as the
embedded main process does.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection

from clickhouse_connect.driver.client import Client

from inferline.core import metrics
from inferline.core.records import Batch, Row
from inferline.exporters.clickhouse.exporter import Filtered

# How far ahead of ours a sender's clock may run (span start times are the sender's) and a retry of
# its calls still be found.
SENDER_CLOCK_LEAD_S = 10.0
# The field of `Batch.observed` rows saying the row needs no look-up (`certainly_new`).
CERTAINLY_NEW = "certainly_new"
# Inference ids per look-up query (37 bytes each in the query's text: ClickHouse's
# `max_query_size` is 256 KiB, and a flush holds tens of thousands of rows).
LOOKUP_CHUNK = 5_000

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch

_VOUCHED, _LOOKED_UP, _FOUND = (
    metrics.STORED_ROW_LOOKUPS.labels(o) for o in ("vouched", "looked_up", "found")
)


class NewInferences:
    """Leaves out the inference rows whose (inference_id, version) ClickHouse holds. One trace's
    records reach one exporter (a partition of the log, or of the enriched topics), so no other
    exporter inserts the same row meanwhile."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._database = database

    def filter_new(self, batch: Batch) -> Filtered:
        rows = (*batch.inferences, *batch.observed)
        maybe_stored = [row for row in rows if not row.get(CERTAINLY_NEW)]
        stored = self.stored_keys(maybe_stored)
        _VOUCHED.inc(len(rows) - len(maybe_stored))
        _LOOKED_UP.inc(len(maybe_stored))
        _FOUND.inc(len(stored))
        return Filtered(leave_out(batch, stored), sorted(stored))

    def filter_recorded(self, batch: Batch, left_out: frozenset[str]) -> Batch:
        return leave_out(batch, left_out)

    def stored_keys(self, rows: list[Row]) -> set[str]:
        """Keys (`row_key`) of the rows ClickHouse holds already: the same (inference_id, version),
        or for a version-1 row any version of its inference (content that came later made a
        version 2, which a merge keeps instead of version 1; the views counted the call at its
        version 1)."""
        starts: dict[str, int] = {}  # inference id -> its start time (ns)
        wanted: dict[str, set[int]] = {}  # inference id -> the versions asked about
        # Rows' other spellings of an id (capitals, braces): their keys are their own spelling.
        spellings: dict[str, set[str]] = {}
        for row in rows:
            try:
                raw = row.get("inference_id")
                inference_id = _canonical_uuid(raw)
                starts[inference_id] = int(row["start_time"])
                wanted.setdefault(inference_id, set()).add(int(row["version"]))
            except (ValueError, TypeError, KeyError):
                continue  # such a row is refused before it gets here; nothing to look up
            if raw is not inference_id:
                spellings.setdefault(inference_id, set()).add(str(raw))
        # In chunks: the ids are written into the query, and a query past `max_query_size` is a
        # syntax error (a large flush retried it forever: acknowledged, never stored). By start
        # time, so each chunk reads a narrow range of the table's daily partitions. The ids are one
        # string literal split by the engine, not a literal each: parsing thousands of literals
        # was half of the look-up's CPU (docs/performance.md, "2026-12-06, night"). Each id is
        # `_canonical_uuid` (hex digits and dashes), so nothing in it can end the literal.
        ordered = sorted(starts, key=starts.__getitem__)
        stored: set[str] = set()
        for at in range(0, len(ordered), LOOKUP_CHUNK):
            chunk = ordered[at : at + LOOKUP_CHUNK]
            found = self._client.query(
                f"SELECT toString(inference_id), version FROM `{self._database}`.llm_inferences "
                f"WHERE start_time BETWEEN fromUnixTimestamp64Nano({starts[chunk[0]]}) "
                f"AND fromUnixTimestamp64Nano({starts[chunk[-1]]}) "
                f"AND inference_id IN (SELECT toUUID(arrayJoin(splitByChar(',', '{','.join(chunk)}'))))"
            ).result_rows
            for inference_id, version in found:
                asked = wanted[inference_id]  # toString(UUID) spells it as str(uuid.UUID) does
                for spelled in (inference_id, *spellings.get(inference_id, ())):
                    if version in asked:
                        stored.add(f"{spelled}/{version}")
                    if 1 in asked:
                        stored.add(f"{spelled}/1")
        return stored


def _canonical_uuid(value: object) -> str:
    """The id as ClickHouse's `toString(UUID)` spells it (lower-case hex in 8-4-4-4-12 groups):
    nothing else, so it cannot end the look-up's literal. Ids the normaliser made are spelled so
    already: checked by a regex (~0.6 µs) rather than parsed (`uuid.UUID`, ~3 µs per row)."""
    if isinstance(value, str) and _CANONICAL_UUID(value):
        return value
    return str(uuid.UUID(str(value)))  # ValueError for what is not a UUID


def certainly_new(row: Row, calls_remembered_since: float) -> bool:
    """The row's call started after its normaliser remembered every call (with a margin for the
    sender's clock): had it made a row before, the normaliser would have recognised it."""
    start_ns = row.get("start_time")
    return isinstance(start_ns, int) and start_ns > (calls_remembered_since + SENDER_CLOCK_LEAD_S) * 1e9


def calls_remembered_since_store(client: Client, database: str) -> float:
    """What a new normaliser may take as its `calls_remembered_since` before its first record: the
    newest stored call's start, less the sender's clock lead `certainly_new` adds. A call that
    started later has no row in the store (a retry of a stored call starts when the call did), so
    it is vouched for from the first flush on instead of after a join window; on an empty store,
    every call is. Read before anything of this process is inserted."""
    query = f"SELECT toUnixTimestamp64Nano(max(start_time)) FROM `{database}`.llm_inferences"
    newest_ns = int(str(client.command(query)))
    # From the second after it: seconds as a float do not hold nanoseconds, and a retry starting
    # at exactly that call's start must fail `certainly_new` however its sum rounds.
    return newest_ns // 10**9 + 1 - SENDER_CLOCK_LEAD_S


def leave_out(batch: Batch, keys: Collection[str]) -> Batch:
    """`batch` without the inference rows whose key is in `keys`, and each dict row once (a copy
    replayed into the same batch). Encoded rows are marked for the inserter to leave out."""
    batch.inferences = _without(batch.inferences, keys)
    if keys and batch.observed:
        batch.observed = [row for row in batch.observed if row_key(row) not in keys]
        batch.already_stored = frozenset(keys)
    return batch


def row_key(row: Row) -> str:
    """An inference row's identity in the table: what `FINAL` collapses copies by."""
    return f"{row.get('inference_id')}/{row.get('version')}"


def _without(rows: list[Row], left_out: Collection[str]) -> list[Row]:
    seen = set(left_out)
    kept = []
    for row in rows:
        key = row_key(row)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept
