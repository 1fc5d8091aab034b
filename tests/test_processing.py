"""The processing both wirings share (`inferline.service.processing`): a run of durable-log
entries in, rows out for the next stage; an entry that cannot be processed is reported with its
stage and reason while the others go on."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.core import metrics
from inferline.core.config import ProcessorSettings
from inferline.core.records import LOGS, SPANS, Batch, SourceEntry
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.otlp.json_codec import decode_json
from inferline.processors.chain import ProcessorChain
from inferline.service.processing import DECODE, ENCODE, PROCESS, native_blocks, process_entries
from inferline.storage.clickhouse import connect
from inferline.storage.schema import migrate
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, logs_json, sdk_spans, traces_json

pytestmark = pytest.mark.unit


def _request(count: int, name: str = "chat gpt-4o-mini") -> ExportTraceServiceRequest:
    return encode_spans(sdk_spans(count=count, name=name))


def _entries(*requests: ExportTraceServiceRequest | bytes) -> list[SourceEntry]:
    return [
        SourceEntry("raw", 0, offset, SPANS, "proj", r if isinstance(r, bytes) else r.SerializeToString())
        for offset, r in enumerate(requests)
    ]


def _rows(out: Batch, table: str) -> int:
    return sum(n for name, n, _ in out.encoded if name == table)


def _chain() -> ProcessorChain:
    return ProcessorChain(ProcessorSettings(chain=["pricing"]))


def test_an_unreadable_entry_is_reported_and_the_others_are_processed() -> None:
    processed = process_entries(
        _chain(), _entries(_request(2), b"\xff not protobuf", _request(3)), native_blocks
    )
    assert [(f.entry, f.stage) for f in processed.failed] == [(1, DECODE)]
    assert "DecodeError" in processed.failed[0].reason
    assert _rows(processed.output, "otel_traces") == 5
    assert _rows(processed.output, "llm_inferences") == 5


def test_records_that_cannot_be_stored_are_reported_and_their_neighbours_processed() -> None:
    request = _request(3)
    request.resource_spans[0].scope_spans[0].spans[1].trace_id = bytes(16)  # invalid in OTLP
    processed = process_entries(_chain(), _entries(request), native_blocks)
    assert [(f.entry, f.stage) for f in processed.failed] == [(0, DECODE)]
    assert processed.failed[0].reason.startswith("1 of 3 spans cannot be stored")
    assert _rows(processed.output, "otel_traces") == 2


class _FailsOnSpanName:
    """A stage with a bug that only some records trigger."""

    def __init__(self, name: str) -> None:
        self._name = name

    def process(self, batch: Batch) -> None:
        if any(row["SpanName"] == self._name for row in batch.spans):
            raise RuntimeError("stage bug")


def test_an_entry_the_chain_fails_on_is_reported_and_the_rest_of_the_run_is_processed() -> None:
    chain = _chain()
    chain.stages.append(_FailsOnSpanName("poison"))  # type: ignore[arg-type]
    entries = _entries(_request(2), _request(1, name="poison"), _request(4))
    processed = process_entries(chain, entries, native_blocks)
    assert [(f.entry, f.stage) for f in processed.failed] == [(1, PROCESS)]
    assert "stage bug" in processed.failed[0].reason
    assert _rows(processed.output, "otel_traces") == 6
    assert _rows(processed.output, "llm_inferences") == 6


def test_processing_a_batch_leaves_no_reference_cycles() -> None:
    """Workers freeze what outlives a batch (core/memory.py `freeze_survivors`), so garbage in a
    reference cycle would stay until the once-a-minute full collection: under load, hundreds of
    MB (a recursive closure in the PII pre-scan kept each batch's detections that way). Every
    stage of the default chain runs here, on content with PII in plain text and in JSON."""
    messages = '[{"role": "user", "content": "Mail jane.doe@example.com or call +44 20 7946 0958"}]'
    attributes = {
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.input.messages": messages,
        "gen_ai.prompt": "my card is 4111 1111 1111 1111, thanks, this was spot on!",
        "app.note": "server 10.0.3.17 answered for Dr. Anna Schmidt",
    }
    entries = _entries(encode_spans(sdk_spans(attributes, count=20)))
    chain = ProcessorChain(ProcessorSettings())
    process_entries(chain, entries, native_blocks)  # warm: caches that live as long as the chain
    gc.collect()
    gc.disable()
    try:
        processed = process_entries(
            chain, _entries(encode_spans(sdk_spans(attributes, count=20))), native_blocks
        )
        assert _rows(processed.output, "llm_inferences") == 20
        del processed
        assert gc.collect() == 0
    finally:
        gc.enable()


@pytest.mark.integration
def test_a_usage_count_no_column_can_hold_leaves_its_entry_out_and_the_rest_is_stored(tmp_path: Path) -> None:
    """`gen_ai.usage.audio.input_tokens` = 1e30 went into `usage_details` (a map of UInt64) unchecked:
    the worker's encoder raised, the workers restarted and replayed the same entry forever, and
    nothing after it was stored. Now the entry is left out of the map (counted in a metric) and
    the rows, with their other usage figures, are stored."""
    attributes = {
        **GENAI_ATTRIBUTES,
        "gen_ai.usage.audio.input_tokens": 1e30,
        "gen_ai.usage.audio.output_tokens": 7,
    }
    processed = process_entries(
        _chain(), _entries(encode_spans(sdk_spans(attributes, count=2))), native_blocks
    )
    assert processed.failed == []
    client = connect(f"chdb://{tmp_path}/clickhouse")
    migrate(client)
    Inserter(client).insert(processed.output, "t1")
    stored = client.query("SELECT usage_details, input_tokens FROM llm_inferences").result_rows
    assert len(stored) == 2
    for usage, input_tokens in stored:
        assert usage == {"output.audio": 7}
        assert input_tokens == GENAI_ATTRIBUTES["gen_ai.usage.input_tokens"]
    client.close()


@pytest.mark.parametrize("index", ["²", "1" * 5000])
def test_an_indexed_key_whose_index_is_not_a_plain_number_is_ignored_not_fatal(index: str) -> None:
    """`str.isdigit` accepts "²" (and int() refuses 5,000 digits): the span's inference row was
    silently not built. Such a key is ignored; the row is built from the rest."""
    attributes = {
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.prompt.0.content": "hello",
        "gen_ai.prompt.0.role": "user",
        f"gen_ai.prompt.{index}.content": "odd",
        f"llm.input_messages.{index}.message.content": "odd",
    }
    processed = process_entries(_chain(), _entries(encode_spans(sdk_spans(attributes))), native_blocks)
    assert processed.failed == []
    assert _rows(processed.output, "llm_inferences") == 1


def test_a_row_that_cannot_be_encoded_is_left_out_and_the_others_are_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A value no column rule foresaw (here: a stage bug puts a string where a count goes) costs
    its row, counted, not the batch: a batch that could not be encoded was replayed forever."""

    class _BreaksOneRow:
        def process(self, batch: Batch) -> None:
            batch.inferences[1]["latency_ms"] = "not a number"

    chain = _chain()
    chain.stages.append(_BreaksOneRow())  # type: ignore[arg-type]
    before = metrics.ROWS_NOT_STORED.labels("llm_inferences")._value.get()
    processed = process_entries(chain, _entries(_request(3)), native_blocks)
    assert _rows(processed.output, "llm_inferences") == 2
    assert _rows(processed.output, "otel_traces") == 3
    assert metrics.ROWS_NOT_STORED.labels("llm_inferences")._value.get() == before + 1
    # Not a silent drop: the entry is kept as a dead letter with the reason (its span is stored,
    # so the ledger still counts its three spans stored).
    assert [(f.entry, f.stage) for f in processed.failed] == [(0, ENCODE)]
    assert "llm_inferences" in processed.failed[0].reason
    assert "latency_ms" in processed.failed[0].reason or "not a number" in processed.failed[0].reason
    assert _ledger(processed.output) == {("raw/0/0", "accepted", ""): 3, ("raw/0/0", "stored", ""): 3}


def test_a_span_that_cannot_be_encoded_is_counted_dead_lettered_against_its_own_entry() -> None:
    """The ledger promises accepted = stored + dead-lettered per entry: a span row left out by
    the encoder was counted stored. Now it is dead-lettered (with a reason) in the ledger of the
    entry it came from, that entry is kept as a dead letter, and its neighbours are untouched."""

    class _BreaksTheFourthSpan:
        def process(self, batch: Batch) -> None:
            batch.spans[3]["SpanAttributes"] = 42  # a map column

    chain = _chain()
    chain.stages.append(_BreaksTheFourthSpan())  # type: ignore[arg-type]
    processed = process_entries(chain, _entries(_request(2), _request(3)), native_blocks)
    assert _rows(processed.output, "otel_traces") == 4
    assert _rows(processed.output, "llm_inferences") == 5
    assert [(f.entry, f.stage) for f in processed.failed] == [(1, ENCODE)]
    assert "otel_traces" in processed.failed[0].reason
    assert _ledger(processed.output) == {
        ("raw/0/0", "accepted", ""): 2,
        ("raw/0/0", "stored", ""): 2,
        ("raw/0/1", "accepted", ""): 3,
        ("raw/0/1", "stored", ""): 2,
        ("raw/0/1", "dead_lettered", "unencodable_row"): 1,
    }


def test_a_score_that_cannot_be_encoded_is_charged_to_the_entry_that_carried_it() -> None:
    """A score row of an evaluation log record was looked up by the span it judges: the traces
    entry of that span was kept as a dead letter instead, and with the span elsewhere nothing was
    reported at all."""
    traces = encode_spans(sdk_spans(count=1))
    span = traces.resource_spans[0].scope_spans[0].spans[0]
    evaluation = {
        "timeUnixNano": str(time.time_ns()),
        "traceId": span.trace_id.hex(),
        "spanId": span.span_id.hex(),
        "eventName": "gen_ai.evaluation.result",
        "attributes": {"gen_ai.evaluation.name": "relevance"},
        "body": "",
    }
    logs = decode_json(logs_json([evaluation]), ExportLogsServiceRequest)

    class _BreaksScores:
        def process(self, batch: Batch) -> None:
            for row in batch.scores:
                row["value"] = "not a number"

    for entries, carrier in (
        ([_entry(0, SPANS, traces), _entry(1, LOGS, logs)], 1),
        ([_entry(0, LOGS, logs)], 0),
    ):
        chain = _chain()
        chain.stages.append(_BreaksScores())  # type: ignore[arg-type]
        processed = process_entries(chain, entries, native_blocks)
        assert [(f.entry, f.stage) for f in processed.failed] == [(carrier, ENCODE)]
        assert "scores" in processed.failed[0].reason


def test_a_score_is_charged_to_its_carrier_even_when_another_record_judges_the_same_span() -> None:
    """Looked up by ids, a span's own evaluation event was charged to a log entry that judged the
    same span; each score row now knows the record it came from."""
    event = {"name": "gen_ai.evaluation.result", "attributes": {"gen_ai.evaluation.name": "tone"}}
    span = json_span(GENAI_ATTRIBUTES, events=[event])
    traces = decode_json(traces_json([span]), ExportTraceServiceRequest)
    judging = {
        "traceId": span["traceId"],
        "spanId": span["spanId"],
        "eventName": "gen_ai.evaluation.result",
        "attributes": {"gen_ai.evaluation.name": "relevance"},
        "body": "",
    }
    logs = decode_json(logs_json([judging]), ExportLogsServiceRequest)

    class _BreaksTheSpansScore:
        def process(self, batch: Batch) -> None:
            for row in batch.scores:
                if row["name"] == "tone":
                    row["value"] = "not a number"

    chain = _chain()
    chain.stages.append(_BreaksTheSpansScore())  # type: ignore[arg-type]
    processed = process_entries(chain, [_entry(0, SPANS, traces), _entry(1, LOGS, logs)], native_blocks)
    assert [(f.entry, f.stage) for f in processed.failed] == [(0, ENCODE)]
    assert _rows(processed.output, "scores") == 1


def _entry(
    offset: int, kind: int, request: ExportTraceServiceRequest | ExportLogsServiceRequest
) -> SourceEntry:
    return SourceEntry("raw", 0, offset, kind, "proj", request.SerializeToString())


def _ledger(out: Batch) -> dict[tuple[str, str, str], int]:
    return {(str(r["source"]), str(r["outcome"]), str(r["reason"])): int(r["records"]) for r in out.ledger}
