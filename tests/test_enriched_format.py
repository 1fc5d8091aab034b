"""The enriched topics' message formats (docs/kafka-topics.md): schema version 2 (NDJSON, many
records per message, a trace's records in one partition) by default, version 1 (one keyed record
per message) on request, and the writer reading both, dead-lettering a bad line alone."""

from __future__ import annotations

import asyncio
import gc
import time
import zlib
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from inferline.core.config import KafkaSettings
from inferline.core.records import Batch
from inferline.exporters.clickhouse.new_inferences import CERTAINLY_NEW
from inferline.exporters.kafka.enriched import (
    TRUNCATED,
    EnrichedLines,
    EnrichedMessages,
    Message,
    fit_row,
    ndjson_messages,
    without_vouching,
)
from inferline.kafka.clients import H_CALLS_REMEMBERED_SINCE
from inferline.service.writer_role import WriterRole
from inferline.storage.schema import LLM_INFERENCES, OTEL_TRACES
from tests.genai_examples import chat_inference_rows

pytestmark = pytest.mark.unit

TRACES = [f"{i:032x}" for i in range(1, 40)]


def _span(trace_id: str, project: str = "default", name: str = "op") -> dict[str, Any]:
    return {"TraceId": trace_id, "SpanId": "00000000000000aa", "ProjectId": project, "SpanName": name}


def _log(trace_id: str) -> dict[str, Any]:
    return {"TraceId": trace_id, "SpanId": "", "ProjectId": "default", "Body": "hello"}


def _messages(encoder: EnrichedMessages, batch: Batch, partitions: int = 12) -> list[Message]:
    out: list[Message] = []
    for item in encoder(batch):
        assert isinstance(item, EnrichedLines)
        out += ndjson_messages(item, partitions, 5, "inferline-project", encoder.max_value_bytes)
    return out


def _lines(m: Message) -> list[dict[str, Any]]:
    assert m.value is not None
    return [orjson.loads(line) for line in m.value.split(b"\n")]


def test_ndjson_messages_hold_many_records_and_keep_a_trace_in_one_partition() -> None:
    encoder = EnrichedMessages.for_topics(KafkaSettings())
    spans = [_span(t) for t in TRACES for _ in range(3)] + [_span(TRACES[0], project="other")]
    messages = _messages(encoder, Batch(spans=spans, logs=[_log(""), _log("")]))

    span_messages = [m for m in messages if m.topic == "inferline.spans"]
    assert len(span_messages) <= 12 + 1, "one message per partition and project"
    seen = []
    for m in span_messages:
        h = dict(m.headers)
        assert h["schema-version"] == b"2" and h["content-type"] == b"application/x-ndjson"
        assert h["record-kind"] == b"span"
        assert m.key is None and m.partition is not None
        for row in _lines(m):
            assert row["ProjectId"] == h["inferline-project"].decode()
            assert m.partition == zlib.crc32(row["TraceId"].encode()) % 12, "a trace's partition"
            seen.append(row)
    assert sorted(seen, key=repr) == sorted(spans, key=repr), "every record, once"

    # Records without a trace id go together to the batch's round-robin partition.
    [logs] = [m for m in messages if m.topic == "inferline.logs"]
    assert logs.partition == 5 % 12 and len(_lines(logs)) == 2


def test_ndjson_messages_are_cut_at_the_message_limit() -> None:
    encoder = EnrichedMessages.for_topics(KafkaSettings(max_message_bytes=10_000))
    big = [_span(TRACES[0], name="x" * 500) for _ in range(100)]
    messages = _messages(encoder, Batch(spans=big))
    assert len(messages) > 1
    assert all(m.value is not None and len(m.value) <= encoder.max_value_bytes for m in messages)
    assert sum(len(_lines(m)) for m in messages) == 100
    assert {m.partition for m in messages} == {zlib.crc32(TRACES[0].encode()) % 12}


def test_json_format_is_one_keyed_record_per_message() -> None:
    encoder = EnrichedMessages.for_topics(KafkaSettings(enriched_format="json"))
    output = encoder(Batch(spans=[_span(TRACES[0]), _span(TRACES[1])]))
    assert len(output) == 2
    for m, trace_id in zip(output, TRACES, strict=False):
        assert isinstance(m, Message)
        assert dict(m.headers)["schema-version"] == b"1" and m.key == trace_id.encode()
        assert m.value is not None and orjson.loads(m.value)["TraceId"] == trace_id


def _writer() -> tuple[WriterRole, list[tuple[Any, ...]]]:
    sent: list[tuple[Any, ...]] = []

    async def send(topic: str, value: bytes, key: bytes | None, headers: list[Any]) -> asyncio.Future[None]:
        sent.append((topic, value, key, dict(headers)))
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)  # aiokafka's send: the record is queued, its delivery awaitable
        return delivered

    writer = WriterRole.__new__(WriterRole)
    writer._ks = KafkaSettings()
    writer._producer = SimpleNamespace(send=send)
    return writer, sent


def _record(value: bytes, version: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> Any:
    if headers is None:
        headers = [] if version is None else [("schema-version", version)]
    return SimpleNamespace(
        headers=headers, value=value, topic="inferline.spans", partition=3, offset=7, key=None
    )


def test_the_writer_reads_both_versions_and_dead_letters_a_bad_line_alone() -> None:
    writer, sent = _writer()
    good = [_span(t) for t in TRACES[:3]]
    bad_type = orjson.dumps({"TraceId": TRACES[3], "Duration": "long"})
    lines = [orjson.dumps(good[0]), b"{not json", orjson.dumps(good[1]), bad_type, orjson.dumps(good[2]), b""]
    rows = asyncio.run(writer._decode(_record(b"\n".join(lines), b"2"), OTEL_TRACES))
    assert rows == good
    assert [(value, h["inferline-dlq-source-line"]) for _, value, _, h in sent] == [
        (b"{not json", b"1"),
        (bad_type, b"3"),
    ]
    assert all(
        h["inferline-dlq-source-offset"] == b"7" and h["inferline-dlq-stage"] == b"write" for *_, h in sent
    )

    sent.clear()
    assert asyncio.run(writer._decode(_record(orjson.dumps(good[0]), b"1"), OTEL_TRACES)) == [good[0]]
    assert asyncio.run(writer._decode(_record(orjson.dumps(good[0]), None), OTEL_TRACES)) == [good[0]]
    assert asyncio.run(writer._decode(_record(orjson.dumps(good[0]), b"3"), OTEL_TRACES)) == []
    [(_, _, _, h)] = sent
    assert b"unsupported schema-version" in h["inferline-dlq-error"]
    assert "inferline-dlq-source-line" not in h


def test_the_writer_decodes_a_message_without_automatic_collections() -> None:
    """A message's rows are made at once and kept for the flush: young collections during the
    decoding would walk them again and again. None runs during it, whatever the collector's
    thresholds, and the collector is on again afterwards."""
    writer, _ = _writer()
    # Lists are what the collector tracks (a dict of strings is not): ten per row.
    lines = [orjson.dumps(_span(t) | {f"Events.{i}": [["v"]] for i in range(5)}) for t in TRACES * 3]
    collections: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    thresholds = gc.get_threshold()
    gc.set_threshold(50, 1, 1)  # a collection every 50 new tracked objects
    gc.callbacks.append(count)
    try:
        rows = asyncio.run(writer._decode(_record(b"\n".join(lines), b"2"), OTEL_TRACES))
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*thresholds)
    assert len(rows) == 3 * len(TRACES)
    # At most the event loop's own, before and after (~16 without the deferral).
    assert collections.count(0) <= 2, collections
    assert gc.isenabled()


def test_the_writer_waits_longer_for_a_batch_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kafka mode's writer flushes at most every `kafka.writer_max_delay_s` (5 s) by default; an
    explicit INFERLINE_BATCH__MAX_DELAY_S still applies to it."""
    from inferline.core.config import Settings

    def max_delay() -> float:
        writer = WriterRole(Settings(), "localhost:9092", SimpleNamespace())  # type: ignore[arg-type]
        return writer._exporter._delay._max_s

    monkeypatch.delenv("INFERLINE_BATCH__MAX_DELAY_S", raising=False)
    assert max_delay() == 5.0
    monkeypatch.setenv("INFERLINE_KAFKA__WRITER_MAX_DELAY_S", "3")
    assert max_delay() == 3.0
    monkeypatch.setenv("INFERLINE_BATCH__MAX_DELAY_S", "0.2")
    assert max_delay() == 0.2


def test_a_poll_of_many_line_messages_reaches_the_exporter_in_runs_of_about_max_rows() -> None:
    """Schema-version-2 messages carry many rows each: the writer hands them over in runs that end
    at message boundaries once `max_rows` is reached, each waiting for room in the exporter, so one
    poll cannot gather more than the bound, and each run's offset range is exact for replays."""
    writer, _ = _writer()
    delivered: list[tuple[int, int, int]] = []

    class Exporter:
        def limit(self, tp: Any) -> None:
            return None

        async def consume(self, d: Any) -> None:
            delivered.append((d.start, d.end, len(d.batch.spans)))

    tp = TopicPartition("inferline.spans", 0)
    writer._exporter = Exporter()  # type: ignore[assignment]
    writer._tables = {"inferline.spans": OTEL_TRACES}
    writer._positions = {}
    writer._max_rows = 5
    writer._assigned, writer._stopping = asyncio.Event(), asyncio.Event()
    writer._assigned.set()  # the assignment's rebuilds are set up
    writer._rebalances = 0
    records = []
    for offset in range(10, 16):  # six messages of two rows each
        lines = b"\n".join(orjson.dumps(_span(t)) for t in TRACES[2 * offset : 2 * offset + 2])
        records.append(
            SimpleNamespace(
                headers=[("schema-version", b"2")], value=lines, topic="inferline.spans", partition=0,
                offset=offset, key=None,
            )
        )  # fmt: skip
    asyncio.run(writer._deliver(tp, records, 0))
    assert delivered == [(10, 13, 6), (13, 16, 6)]
    assert writer._positions[tp] == 16


def test_a_row_too_big_for_a_message_keeps_every_key_and_loses_only_the_end_of_its_longest_text() -> None:
    """A span whose one attribute is 1.2 MB used to reach the writer with its whole attribute map
    emptied (`user.id`, the model, everything); a log's body became a placeholder. Now the long
    text is cut, the rest of the row is intact, and the map says it was truncated."""
    limit = 1_000_000
    big = "jane said: " + "x" * 1_200_000
    span: dict[str, Any] = {
        "TraceId": "ab" * 16,
        "SpanId": "cd" * 8,
        "SpanAttributes": {"user.id": "u1", "gen_ai.request.model": "gpt-4o", "app.dump": big},
        "Events.Attributes": [{"note": "small"}],
    }
    line = fit_row(span, limit, "otel_traces")
    assert len(line) <= limit
    row = orjson.loads(line)
    attrs = row["SpanAttributes"]
    assert attrs["user.id"] == "u1" and attrs["gen_ai.request.model"] == "gpt-4o"
    assert attrs["inferline.truncated"] == "true"
    assert attrs["app.dump"].startswith("jane said: xxx") and attrs["app.dump"].endswith(TRUNCATED)
    assert row["Events.Attributes"] == [{"note": "small"}] and row["SpanId"] == "cd" * 8
    assert span["SpanAttributes"]["app.dump"] == big  # the caller's row is left as it was

    inference: dict[str, Any] = {
        "inference_id": "i",
        "prompt_messages": [{"role": "user", "content": big}],
        "model": "m",
    }
    row = orjson.loads(fit_row(inference, limit, "llm_inferences"))
    assert row["prompt_messages"][0]["role"] == "user" and row["model"] == "m"
    assert row["prompt_messages"][0]["content"].endswith(TRUNCATED)

    log: dict[str, Any] = {"Body": big, "LogAttributes": {"k": "v"}}
    row = orjson.loads(fit_row(log, limit, "otel_logs"))
    assert row["Body"].startswith("jane said:") and row["LogAttributes"] == {"k": "v"}


@pytest.mark.parametrize("chars", [60, 66], ids=["short-values", "many-long-values"])
def test_a_row_of_thousands_of_escaped_attributes_still_fits(chars: int) -> None:
    """12,000 attributes of control characters (6 bytes of JSON each) make a 4.4 MB line from a
    0.9 MB request: a row that no cut of long strings alone brings under the limit must still fit
    (a message too large is refused by Kafka, and the processor retried it forever)."""
    limit = 998_976
    row: dict[str, Any] = {
        "TraceId": "ab" * 16,
        "SpanId": "cd" * 8,
        "SpanAttributes": {f"k{i}": "\x01" * chars for i in range(12_000)},
    }
    line = fit_row(row, limit, "otel_traces")
    assert len(line) <= limit
    assert orjson.loads(line)["SpanId"] == "cd" * 8


def test_inference_messages_say_from_when_their_calls_are_remembered_and_the_writer_trusts_only_that() -> (
    None
):
    """A processor's normaliser vouches for the calls that started after its memory of calls is
    complete (`calls_remembered_since`): the writer need not look those rows up in ClickHouse.
    The word travels as a header of inference messages only; a message sent again after a failed
    acknowledgement loses it (its first send may be stored); a row without it is looked up."""
    now = time.time()
    fresh = chat_inference_rows(2, time.time_ns() - 5 * 10**9, seed="fresh")
    old = chat_inference_rows(1, time.time_ns() - 300 * 10**9, seed="old")
    encoder = EnrichedMessages.for_topics(KafkaSettings())
    batch = Batch(inferences=fresh + old, spans=[_span(TRACES[0])], calls_remembered_since=now - 30)
    messages = _messages(encoder, batch)
    [spans] = [m for m in messages if m.topic == "inferline.spans"]
    assert H_CALLS_REMEMBERED_SINCE not in dict(spans.headers)
    inferences = [m for m in messages if m.topic == "inferline.inferences"]
    assert inferences and all(
        dict(m.headers)[H_CALLS_REMEMBERED_SINCE] == repr(now - 30).encode() for m in inferences
    )

    writer, sent = _writer()
    decoded = [
        row
        for m in inferences
        for row in asyncio.run(writer._decode(_record(m.value or b"", b"2", m.headers), LLM_INFERENCES))
    ]
    assert not sent, "no record dead-lettered"
    vouched = {r["inference_id"]: r[CERTAINLY_NEW] for r in decoded}
    assert vouched == {**{r["inference_id"]: True for r in fresh}, old[0]["inference_id"]: False}

    again = [without_vouching(m) for m in inferences]
    assert all(H_CALLS_REMEMBERED_SINCE not in dict(m.headers) for m in again)
    assert [m.value for m in again] == [m.value for m in inferences]
    for m in again:
        rows = asyncio.run(writer._decode(_record(m.value or b"", b"2", m.headers), LLM_INFERENCES))
        assert rows and not any(r.get(CERTAINLY_NEW) for r in rows)
    garbled = [*again[0].headers, (H_CALLS_REMEMBERED_SINCE, b"soon")]
    rows = asyncio.run(writer._decode(_record(again[0].value or b"", b"2", garbled), LLM_INFERENCES))
    assert rows and not any(r.get(CERTAINLY_NEW) for r in rows)
