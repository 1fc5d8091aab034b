"""Embedded mode and the distributed roles are two wirings of the same stages: the same requests
sent to each store the same rows, column by column, in every table and rollup. (The two modes
were once two implementations that drifted apart: a span one stored, the other dropped.)

Only what batching decides may differ: an inference's `version` (the number of times its row was
rewritten as its content arrived, which depends on which records met in one batch), a log
record's `RecordIndex` (its place in its request, which Kafka's receiver splits per trace), and
where the ledger's counts came from (`source`, an offset of the local log or of a Kafka topic)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from bench.stages import _requests
from inferline.storage.schema import LLM_INFERENCES, OTEL_LOGS, OTEL_TRACES, SCORES, Table
from tests.conftest import make_service, wait_for
from tests.kafka_helpers import running_roles

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.timeout(400)]

_TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
KEY = "test-key-modes"

# Per table: its columns, each hashed with the row's identity and summed (order-free), under FINAL.
_IDENTITY = {
    "otel_traces": "TraceId, SpanId",
    "otel_logs": "TraceId, SpanId, Timestamp",
    "llm_inferences": "inference_id",
    "scores": "trace_id, span_id, name",
}
# An inference's `version`: how many batches its content arrived in. A log record's `RecordIndex`:
# its place in the request as the receiving side split it (Kafka's receiver splits per trace).
_LEFT_OUT = {"version", "RecordIndex"}
# Float sums are rounded: the order rows are added in changes the last digits.
_ROLLUP_SUMS = {
    "llm_inferences_by_minute": "sum(calls), sum(errors), sum(input_tokens), sum(output_tokens), "
    "sum(cost_usd)",
    "inference_stats_by_minute": "sum(requests), sum(successes), sum(tokens_in), sum(tokens_out), "
    "round(sum(latency_sum_ms), 3), sum(ttft_requests)",
}


def _column_hashes(table: Table) -> tuple[str, list[str]]:
    columns = [c.name for c in table.insert_columns if c.name not in _LEFT_OUT]
    identity = _IDENTITY[table.name]
    sums = ", ".join(f"toString(sum(cityHash64({identity}, `{c}`)))" for c in columns)
    return f"SELECT count(), {sums} FROM {table.name} FINAL FORMAT TSV", columns


def _stored(sql: Callable[[str], str]) -> dict[str, str]:
    """What a user can read back: every column of every table, the rollups' sums, the ledger."""
    out: dict[str, str] = {}
    for table in (OTEL_TRACES, OTEL_LOGS, LLM_INFERENCES, SCORES):
        query, columns = _column_hashes(table)
        count, *hashes = sql(query).strip().split("\t")
        out[f"{table.name} rows"] = count
        out.update({f"{table.name}.{c}": h for c, h in zip(columns, hashes, strict=True)})
    for rollup, sums in _ROLLUP_SUMS.items():
        out[rollup] = sql(f"SELECT {sums} FROM {rollup} FORMAT TSV").strip()
    out["ingest_ledger"] = sql(
        "SELECT signal, outcome, reason, sum(records) FROM ingest_ledger FINAL "
        "GROUP BY ALL ORDER BY ALL FORMAT TSV"
    ).strip()
    return out


def _send(grpc_target: str, key: str, requests: list[tuple[bytes, bytes | None, int]]) -> None:
    with grpc.insecure_channel(grpc_target) as channel:
        export_traces, export_logs = channel.unary_unary(_TRACES), channel.unary_unary(_LOGS)
        metadata = (("authorization", f"Bearer {key}"),)
        for traces, logs, _ in requests:
            export_traces(traces, metadata=metadata, timeout=60)
            if logs:
                export_logs(logs, metadata=metadata, timeout=60)


def _settled(sql: Callable[[str], str], spans: int) -> dict[str, str]:
    """The stored state once every span is in and two reads in a row agree (merges, late rows)."""
    # (the generator's requests hold one span the receivers refuse: not quite `spans` are stored)
    assert wait_for(lambda: int(sql("SELECT count() FROM otel_traces FINAL")) >= spans * 0.99, timeout=120)
    last: dict[str, str] = {}

    def stable() -> bool:
        nonlocal last
        now = _stored(sql)
        same, last = now == last, now
        return same

    assert wait_for(stable, timeout=120, interval=2), "the stored rows kept changing"
    return last


def test_both_modes_store_the_same_rows(tmp_path: Path) -> None:
    # Every convention the load generator speaks, with content log records, PII and scores.
    requests = _requests("genai", "grpc", 3, 200)
    spans = sum(n for _, _, n in requests)

    (tmp_path / "embedded").mkdir()
    (tmp_path / "kafka").mkdir()
    embedded = make_service(tmp_path / "embedded")
    embedded.start()
    try:
        _send(embedded.grpc_target, embedded.key, requests)
        in_embedded = _settled(embedded.sql, spans)
    finally:
        assert embedded.stop() == 0

    with running_roles(tmp_path / "kafka", INFERLINE_API_KEYS=f"{KEY}=default") as (receiver, _, writer):
        _send(receiver.grpc_target, KEY, requests)
        in_kafka = _settled(lambda q: writer.sql(q, KEY), spans)

    assert int(in_embedded["otel_traces rows"]) >= spans * 0.99
    assert int(in_embedded["llm_inferences rows"]) > spans // 2  # the calls among them
    differ = {k: (in_embedded[k], in_kafka[k]) for k in in_embedded if in_embedded[k] != in_kafka[k]}
    assert not differ, differ
