"""Timestamps the tables cannot keep are refused to the sender, naming the field, instead of being
acknowledged and then vanishing (a 1970 start expires at once under the retention TTL; a time after
2106 does not fit the rollups' DateTime). What is accepted is stored, and the rollups count it."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import Service
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, traces_json

pytestmark = pytest.mark.e2e

NOW = time.time_ns()
EDGES = {  # name: (start, end); the refused ones' names start with "refused"
    "refused start 0": (0, 1),
    "refused start 1 ns": (1, 2),
    "refused year 2000": (946_684_800_000_000_000, 946_684_801_000_000_000),
    "refused year 2108": (4_354_819_200_000_000_000, 4_354_819_201_000_000_000),
    "refused 2^63-1": ((1 << 63) - 1, (1 << 63) - 1),
    "refused year 2262+": (1 << 63, (1 << 63) + 1),
    "stored end before start": (NOW - 10**9, NOW - 2 * 10**9),
    "stored now": (NOW - 10**9, NOW),
}


def test_edge_timestamps_are_refused_and_told_or_stored(service: Service) -> None:
    spans = [json_span(GENAI_ATTRIBUTES, name=n, start_ns=s or 1, end_ns=e) for n, (s, e) in EDGES.items()]
    spans[0]["startTimeUnixNano"] = "0"  # json_span replaces a 0 start with now
    r = httpx.post(
        f"{service.http_url}/v1/traces",
        content=traces_json(spans),
        headers={"x-api-key": service.key, "content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    partial = r.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 6
    assert "start_time_unix_nano" in partial["errorMessage"]
    assert "refused start 0" in partial["errorMessage"] and "retention window" in partial["errorMessage"]

    stored = service.sql("SELECT SpanName FROM otel_traces WHERE SpanName LIKE 'stored %' ORDER BY SpanName")
    assert stored.split("\n")[:2] == ["stored end before start", "stored now"]
    assert service.sql("SELECT count() FROM otel_traces WHERE SpanName LIKE 'refused %'") == "0\n"
    backwards = spans[6]["spanId"]
    latency = service.sql(f"SELECT latency_ms FROM llm_inferences FINAL WHERE span_id = '{backwards}'")
    assert float(latency) == 0  # end before start: stored with no negative latency
    # Every call the raw table holds is counted once in the rollup, and nothing else.
    raw = service.sql("SELECT count() FROM llm_inferences FINAL")
    rolled = service.sql("SELECT sum(calls) FROM llm_inferences_by_minute")
    assert raw == rolled
