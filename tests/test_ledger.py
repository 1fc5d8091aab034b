"""The ingest ledger: what senders were told was accepted is counted, and so is what was stored,
dead-lettered, rejected and corrected, per project and minute, in embedded mode and through the
Kafka roles; an operator reads it in SQL, in the API and in /metrics, and it balances."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from inferline.core.config import ProcessorSettings
from inferline.core.ledger import ReceiverTally
from inferline.core.records import LEDGER, LOGS, SPANS, SourceEntry
from inferline.processors.chain import ProcessorChain
from inferline.service.processing import native_blocks, process_entries
from tests.conftest import Service, wait_for
from tests.kafka_helpers import running_roles
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, logs_json, new_span_id, new_trace_id, traces_json
from tests.prom_helpers import metrics_text
from tests.test_processing import _request

OLD_NS = 946_684_800_000_000_000  # year 2000: older than any retention window
KAFKA_KEY = "ledger-kafka-key"


def _outcomes(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
    out: dict[tuple[str, str, str], int] = {}
    for r in rows:
        key = (r["signal"], r["outcome"], r["reason"])
        out[key] = out.get(key, 0) + int(r["records"])
    return out


@pytest.mark.unit
def test_a_run_counts_accepted_stored_dead_lettered_and_the_receivers_tally() -> None:
    request = _request(3)
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = bytes(16)  # refused after the log
    tally = ReceiverTally("spans", rejected={"invalid_id": 2}, corrected={})
    entries = [
        SourceEntry("local", 0, 7, SPANS, "proj", request.SerializeToString(), 1_764_806_430.0),
        SourceEntry("local", 0, 8, LEDGER, "proj", tally.encode(), 1_764_806_431.0),
        SourceEntry("local", 1, 9, LOGS, "proj", b"\xff not protobuf", 1_764_806_432.0),
    ]
    out = process_entries(ProcessorChain(ProcessorSettings(chain=[])), entries, native_blocks).output
    assert _outcomes(out.ledger) == {
        ("spans", "accepted", ""): 3,
        ("spans", "stored", ""): 2,
        ("spans", "dead_lettered", "invalid_id"): 1,
        ("spans", "rejected", "invalid_id"): 2,
        ("logs", "accepted", ""): 1,  # an entry no one can read: counted as one record
        ("logs", "dead_lettered", "undecodable_entry"): 1,
    }
    assert {r["minute"] for r in out.ledger} == {1_764_806_400}  # the minute it was received
    assert {r["source"] for r in out.ledger} == {"local/0/7", "local/0/8", "local/1/9"}


def _send_mixed(http_url: str, key: str) -> None:
    """3 storable spans and 2 the receiver refuses; 2 log records, one without any time."""
    spans = [json_span(GENAI_ATTRIBUTES, name=f"ledger {i}") for i in range(3)]
    spans.append(json_span(GENAI_ATTRIBUTES, name="ledger zero trace", trace_id="0" * 32))
    spans.append(json_span(GENAI_ATTRIBUTES, name="ledger old", start_ns=OLD_NS, end_ns=OLD_NS + 10**9))
    headers = {"x-api-key": key, "content-type": "application/json"}
    r = httpx.post(f"{http_url}/v1/traces", content=traces_json(spans), headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert int(r.json()["partialSuccess"]["rejectedSpans"]) == 2
    logs: list[dict[str, Any]] = [
        {"traceId": new_trace_id(), "spanId": new_span_id(), "body": "timed"},
        {"traceId": new_trace_id(), "spanId": new_span_id(), "body": "untimed", "timeUnixNano": 0},
    ]
    r = httpx.post(f"{http_url}/v1/logs", content=logs_json(logs), headers=headers, timeout=30)
    assert r.status_code == 200, r.text


EXPECTED = {
    ("spans", "accepted", ""): 3,
    ("spans", "stored", ""): 3,
    ("spans", "rejected", "invalid_id"): 1,
    ("spans", "rejected", "older_than_retention"): 1,
    ("logs", "accepted", ""): 2,
    ("logs", "stored", ""): 2,
    ("logs", "corrected", "untimed_log_stamped"): 1,
}
LEDGER_SQL = (
    "SELECT signal, outcome, reason, sum(records) AS records FROM ingest_ledger FINAL "
    "GROUP BY signal, outcome, reason FORMAT JSON"
)


def _ledger(sql: Callable[[str], str]) -> dict[tuple[str, str, str], int]:
    return _outcomes(orjson.loads(sql(LEDGER_SQL))["data"])


@pytest.mark.e2e
def test_embedded_ledger_balances_and_is_readable_in_sql_the_api_and_metrics(service: Service) -> None:
    _send_mixed(service.http_url, service.key)
    assert _ledger(service.sql) == EXPECTED

    r = httpx.get(f"{service.api_url}/api/v1/ledger", headers={"x-api-key": service.key}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["stored"], body["dead_lettered"], body["unaccounted"]) == (5, 5, 0, 0)
    assert body["balanced"] is True
    spans = next(m for m in body["minutes"] if m["signal"] == "spans")
    assert spans["received"] == 5 and spans["rejected"] == {"invalid_id": 1, "older_than_retention": 1}

    metrics = metrics_text(service.api_url)
    line = next(
        ln
        for ln in metrics.splitlines()
        if ln.startswith("inferline_ledger_records_total{") and 'outcome="stored"' in ln and '"spans"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) >= 3


@pytest.mark.e2e
def test_the_ledger_api_needs_a_key_and_sees_only_its_project(service: Service) -> None:
    assert httpx.get(f"{service.api_url}/api/v1/ledger", timeout=10).status_code == 401
    other = httpx.get(
        f"{service.api_url}/api/v1/ledger", headers={"x-api-key": "not-a-key"}, timeout=10
    ).status_code
    assert other == 401


def test_an_inverted_range_is_refused_not_called_balanced(service: Service) -> None:
    r = httpx.get(
        f"{service.api_url}/api/v1/ledger",
        params={"since": "2026-12-06T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
        headers={"Authorization": f"Bearer {service.key}"},
        timeout=10,
    )
    assert r.status_code == 422 and "since is after until" in r.text, r.text


@pytest.mark.kafka
@pytest.mark.e2e
def test_kafka_roles_keep_the_same_ledger(tmp_path: Path) -> None:
    with running_roles(tmp_path, INFERLINE_API_KEYS=f"{KAFKA_KEY}=proj-ledger") as (receiver, _, writer):
        _send_mixed(receiver.http_url, KAFKA_KEY)

        def sql(query: str) -> str:
            return writer.sql(query, KAFKA_KEY)

        assert wait_for(lambda: _ledger(sql) == EXPECTED, timeout=60, interval=0.5), _ledger(sql)
        time.sleep(1)  # a late duplicate (a replay) would add rows: it does not
        assert _ledger(sql) == EXPECTED
