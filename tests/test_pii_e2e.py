"""PII never reaches ClickHouse: a running service, OTLP carrying PII in prompts, responses,
content attributes, span events, a configured attribute and log bodies; every table read back
in full. Lookalikes (order numbers, UUIDs, versions, timestamps, prices) survive unchanged."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Service, make_service, wait_for
from tests.otlp_helpers import json_span, logs_json, new_span_id, new_trace_id, traces_json
from tests.pii_samples import LOOKALIKES, PII, chat_attributes_with_pii
from tests.prom_helpers import Samples, scrape

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


def _corpus_lines() -> list[tuple[str, str, str, str]]:
    rows = []
    for raw in (Path(__file__).parent / "data" / "pii_corpus.tsv").read_text(encoding="utf-8").splitlines():
        if raw and not raw.startswith("#"):
            locale, kind, value, text = raw.split("\t")
            rows.append((locale, kind, value.replace("\\n", "\n"), text.replace("\\n", "\n")))
    return rows


def _appears(value: str, dump: str) -> bool:
    """The value as a whole word, in plain or JSON-escaped spelling."""
    spellings = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    spellings |= {s.replace("/", "\\/") for s in spellings}  # ClickHouse's JSON escapes '/'
    return any(re.search(rf"(?<!\w){re.escape(s)}(?!\w)", dump) for s in spellings)


def test_corpus_through_the_service_no_value_in_any_table(service: Service) -> None:
    """Every PII value of the labeled corpus (names, addresses and structured types in seven
    locales), sent as chat messages, a plain span attribute, a resource attribute and log bodies,
    is found in no table and no column; every lookalike comes back unchanged."""
    lines = _corpus_lines()
    headers = {"x-api-key": service.key, "content-type": "application/json"}
    trace_id = new_trace_id()
    spans, logs = [], []
    for locale in sorted({line[0] for line in lines}):
        texts = [text for loc, _, _, text in lines if loc == locale]
        person = next(text for loc, kind, _, text in lines if loc == locale and kind == "PERSON")
        address = next(text for loc, kind, _, text in lines if loc == locale and kind == "ADDRESS")
        span_id = new_span_id()
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.input.messages": json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": t}]} for t in texts]
            ),
            "gen_ai.output.messages": json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": address}],
                        "finish_reason": "stop",
                    }
                ]
            ),
            "app.note": address,
        }
        spans.append(json_span(attributes, trace_id=trace_id, span_id=span_id, name=f"chat {locale}"))
        logs.append({"traceId": trace_id, "spanId": span_id, "body": person})
    resource = {"service.name": "pii-corpus", "deployment.owner": "Klaus Müller"}
    for path, body in (("/v1/traces", traces_json(spans, resource=resource)), ("/v1/logs", logs_json(logs))):
        assert httpx.post(f"{service.http_url}{path}", content=body, headers=headers).status_code == 200

    def dumps() -> dict[str, str]:
        return {
            table: service.sql(f"SELECT * FROM {table} WHERE {column} = '{trace_id}' FORMAT JSONEachRow")
            for table, column in (
                ("llm_inferences", "trace_id"),
                ("otel_traces", "TraceId"),
                ("otel_logs", "TraceId"),
            )
        }

    def stored() -> dict[str, str] | None:
        d = dumps()
        return d if all(d.values()) and d["otel_logs"].count("\n") >= len(logs) else None

    tables = wait_for(stored)
    assert tables is not None, "the rows did not arrive"
    everything = "".join(tables.values())
    leaked = [
        (kind, value, table)
        for _, kind, value, _ in lines
        if kind != "LOOKALIKE"
        for table, text in tables.items()
        if _appears(value, text)
    ]
    assert not leaked, leaked[:20]
    assert not _appears("Klaus Müller", tables["otel_traces"])
    altered = [
        value for _, kind, value, _ in lines if kind == "LOOKALIKE" and not _appears(value, everything)
    ]
    assert not altered, altered
    samples = scrape(service.api_url)
    assert _masked(samples, "PERSON") > 0 and _masked(samples, "ADDRESS") > 0


def _masked(samples: Samples, pii_type: str) -> float:
    """inferline_pii_masked_total summed over projects."""
    return sum(
        v
        for (name, labels), v in samples.items()
        if name == "inferline_pii_masked_total" and ("type", pii_type) in labels
    )


def test_places_that_leaked_hold_no_pii_in_any_table(service: Service) -> None:
    """The places an adversarial run through the service found unmasked (2026-12-05), sent as a
    user would: a bare card number attribute, a JSON attribute and a log body with a person under
    "name" and an email under "id", a tool call's arguments, OpenAI's `user` in
    `llm.invocation_parameters`, trace metadata (→ `tags` and the rollups' `feature`), the agent's
    name, the server address, stop sequences, a log's scope attributes and an evaluation's label;
    and names an application gives its span events and log events.
    No raw value is in any row of any table the trace reached, rollups included."""
    name, mail, phone, card = "Dr. Hans Müller", "jane.doe@example.com", "+49 30 1234567", "4111111111111111"
    probe = f"{name}, {mail}, {phone}, card {card}"
    trace_id, span_id = new_trace_id(), new_span_id()
    arguments = json.dumps({"name": name, "id": mail})
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 3,
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "name": name, "parts": [{"type": "text", "content": "hi"}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [
                        {"type": "tool_call", "id": "call_1", "name": "lookup", "arguments": arguments}
                    ],
                }
            ]
        ),
        "gen_ai.agent.name": probe,
        "gen_ai.request.stop_sequences": [probe],
        "server.address": probe,
        "langfuse.trace.metadata.feature": probe,
        "llm.invocation_parameters": json.dumps({"user": mail, "top_p": 1}),
        "app.card": card,
        "app.payload": json.dumps({"name": name, "id": mail, "type": phone}),
    }
    events: list[dict[str, Any]] = [
        {
            "name": "gen_ai.evaluation.result",
            "attributes": {"gen_ai.evaluation.name": "tone", "gen_ai.evaluation.score.label": probe},
        },
        {"name": f"reminder sent to {mail}"},  # an application's own event, named with what it did
    ]
    span = json_span(attributes, trace_id=trace_id, span_id=span_id, name=f"chat for {mail}", events=events)
    logs = orjson.loads(
        logs_json([{"traceId": trace_id, "spanId": span_id, "body": {"name": name, "id": mail}}])
    )
    logs["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["eventName"] = f"signup of {mail}"
    logs["resourceLogs"][0]["scopeLogs"][0]["scope"] = {
        "name": "app",
        "attributes": [{"key": "app.owner", "value": {"stringValue": probe}}],
    }
    headers = {"x-api-key": service.key, "content-type": "application/json"}
    for path, body in (("/v1/traces", traces_json([span])), ("/v1/logs", orjson.dumps(logs))):
        assert httpx.post(f"{service.http_url}{path}", content=body, headers=headers).status_code == 200

    where = {
        "llm_inferences": f"trace_id = '{trace_id}'",
        "otel_traces": f"TraceId = '{trace_id}'",
        "otel_logs": f"TraceId = '{trace_id}'",
        "scores": f"trace_id = '{trace_id}'",
        "inference_usage_by_day": "1",
        "inference_attribution_by_hour": "1",
    }

    def dumps() -> dict[str, str] | None:
        d = {t: service.sql(f"SELECT * FROM {t} WHERE {w} FORMAT JSONEachRow") for t, w in where.items()}
        return d if all(d.values()) else None

    tables = wait_for(dumps)
    assert tables is not None, "the rows did not arrive"
    leaked = [
        (raw, t)
        for raw in (name, "Müller", mail, phone, card)
        for t, text in tables.items()
        if _appears(raw, text)
    ]
    assert not leaked, leaked
    assert "<CREDIT_CARD>" in tables["otel_traces"] and "<PERSON>" in tables["scores"]
