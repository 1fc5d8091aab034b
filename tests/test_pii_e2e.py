"""PII never reaches ClickHouse: a running service, OTLP carrying PII in prompts, responses,
content attributes, span events, a configured attribute and log bodies; every table read back
in full. Lookalikes (order numbers, UUIDs, versions, timestamps, prices) survive unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Service, make_service
from tests.otlp_helpers import json_span, logs_json, new_span_id, new_trace_id, traces_json
from tests.pii_samples import LOOKALIKES, PII, chat_attributes_with_pii

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("pii")
    config = tmp / "inferline.yaml"
    config.write_text("processors:\n  pii:\n    attributes: ['enduser.email']\n")
    svc = make_service(tmp, INFERLINE_CONFIG_FILE=str(config))
    svc.start()
    yield svc
    assert svc.stop() == 0


def test_no_pii_in_any_table_and_lookalikes_survive(service: Service, tmp_path: Path) -> None:
    trace_id, span_id = new_trace_id(), new_span_id()
    attributes = chat_attributes_with_pii(
        **{"enduser.email": PII["EMAIL"], "app.note": "release v2.10.0-rc1, order 1234567"}
    )
    events = [{"name": "gen_ai.content.prompt", "attributes": {"gen_ai.prompt": f"key {PII['SECRET']}"}}]
    span = json_span(attributes, trace_id=trace_id, span_id=span_id, name="chat gpt-4o-mini", events=events)
    log = {
        "traceId": trace_id,
        "spanId": span_id,
        "eventName": "gen_ai.user.message",
        "body": {"content": f"my email is {PII['EMAIL']} and my SSN {PII['US_SSN']}"},
    }
    headers = {"x-api-key": service.key, "content-type": "application/json"}
    assert (
        httpx.post(f"{service.http_url}/v1/traces", content=traces_json([span]), headers=headers).status_code
        == 200
    )
    assert (
        httpx.post(f"{service.http_url}/v1/logs", content=logs_json([log]), headers=headers).status_code
        == 200
    )

    dumps = {
        table: service.sql(f"SELECT * FROM {table} WHERE {column} = '{trace_id}' FORMAT JSONEachRow")
        for table, column in (
            ("llm_inferences", "trace_id"),
            ("otel_traces", "TraceId"),
            ("otel_logs", "TraceId"),
        )
    }
    for table, text in dumps.items():
        assert text, f"no rows in {table}"
        # JSON output escapes some characters; compare against both spellings.
        for kind, value in PII.items():
            assert value not in text and json.dumps(value)[1:-1] not in text, f"{kind} leaked into {table}"
    everything = "".join(dumps.values())
    for lookalike in LOOKALIKES:
        assert lookalike in everything, f"lookalike {lookalike!r} was altered"
    for placeholder in (
        "<EMAIL>",
        "<PHONE>",
        "<CREDIT_CARD>",
        "<US_SSN>",
        "<IBAN>",
        "<IP_ADDRESS>",
        "<SECRET>",
    ):
        assert placeholder in everything

    found = json.loads(
        service.sql(
            f"SELECT pii_found FROM llm_inferences FINAL WHERE trace_id = '{trace_id}' FORMAT JSONEachRow"
        )
    )["pii_found"]
    assert found["EMAIL"] >= 1 and found["CREDIT_CARD"] == 1 and found["US_SSN"] >= 1
    masked_attribute = service.sql(
        f"SELECT SpanAttributes['enduser.email'], SpanAttributes['app.note'] FROM otel_traces "
        f"WHERE TraceId = '{trace_id}'"
    )
    assert masked_attribute == "<EMAIL>\trelease v2.10.0-rc1, order 1234567\n"
