"""Analytics against a running service: a known set of calls goes in through OTLP, and every
figure the API gives is checked against what that set implies (prices from the price table),
the rollup answer against the raw table's, and a second project's key against seeing nothing."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.conftest import Service
from tests.otlp_helpers import json_span, traces_json

pytestmark = pytest.mark.e2e

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
# USD per token of the price table (docs/pricing.md)
PRICES = {
    "gpt-4o-mini": (Decimal("0.15e-6"), Decimal("0.60e-6")),
    "claude-sonnet-4-5": (Decimal("3e-6"), Decimal("15e-6")),
}


@dataclass(frozen=True)
class Call:
    start: datetime
    model: str
    provider: str
    latency_ms: float
    ttft_ms: float | None
    input_tokens: int
    output_tokens: int
    user: str
    tenant: str
    feature: str
    success: bool

    @property
    def session(self) -> str:
        return f"conv-{self.user}-{self.feature or 'none'}"

    @property
    def cost(self) -> tuple[Decimal, Decimal] | None:
        if self.model not in PRICES:
            return None
        price_in, price_out = PRICES[self.model]
        return self.input_tokens * price_in, self.output_tokens * price_out


BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 3 * HOUR
CALLS = (
    [  # three hours of gpt-4o-mini, every 3 minutes; every tenth fails
        Call(
            BASE + (i - 1) * 3 * MINUTE,
            "gpt-4o-mini",
            "openai",
            10.0 * i,
            float(i),
            1000,
            100,
            "u_a" if i % 2 else "u_b",
            "acme",
            "chat" if i <= 40 else "search",
            i % 10 != 0,
        )
        for i in range(1, 61)
    ]
    + [  # claude every 4.5 minutes, no time to first token, growing answers
        Call(
            BASE + (j - 1) * 270 * timedelta(seconds=1),
            "claude-sonnet-4-5",
            "anthropic",
            15.0 * j + 3,
            None,
            1000,
            50 + 5 * j,
            "u_c",
            "globex",
            "chat",
            True,
        )
        for j in range(1, 41)
    ]
    + [
        Call(
            BASE + 30 * MINUTE + timedelta(seconds=7),
            "in-house-llm",
            "vllm",
            777.0,
            None,
            10,
            10,
            "u_a",
            "acme",
            "",
            True,
        )
    ]
)


def span(call: Call) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": call.provider,
        "gen_ai.request.model": call.model,
        "gen_ai.response.model": call.model,
        "gen_ai.usage.input_tokens": call.input_tokens,
        "gen_ai.usage.output_tokens": call.output_tokens,
        "user.id": call.user,
        "tenant.id": call.tenant,
        "gen_ai.conversation.id": call.session,
    }
    if call.feature:
        attributes["traceloop.association.properties.feature"] = call.feature
    if call.ttft_ms is not None:
        attributes["gen_ai.response.time_to_first_chunk"] = call.ttft_ms / 1000
    if not call.success:
        attributes["error.type"] = "RateLimitError"
    start_ns = int(call.start.timestamp()) * 10**9
    return json_span(
        attributes,
        name=f"chat {call.model}",
        start_ns=start_ns,
        end_ns=start_ns + int(call.latency_ms * 1_000_000),
        status_code=1 if call.success else 2,
    )


def send(service: Service, calls: list[Call], key: str) -> None:
    send_spans(service, [span(c) for c in calls], key)


def send_spans(service: Service, spans: list[dict[str, Any]], key: str) -> None:
    r = httpx.post(
        f"{service.http_url}/v1/traces",
        content=traces_json(spans),
        headers={"Authorization": f"Bearer {key}", "content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    service.settle()  # acknowledged once in the local log; queryable a flush later


@pytest.fixture(scope="module")
def known(service: Service) -> Service:
    send(service, CALLS, service.key)
    return service


def ask(service: Service, route: str, key: str | None = None, **body: Any) -> dict[str, Any]:
    return post(service, f"analytics/{route}", body, key)


def post(
    service: Service, path: str, body: dict[str, Any], key: str | None = None, status: int = 200
) -> dict[str, Any]:
    """POST `body` to /api/v1/metrics/`path`; the answer, which must have `status`."""
    r = httpx.post(
        f"{service.api_url}/api/v1/metrics/{path}",
        json=body,
        headers={"Authorization": f"Bearer {key or service.key}"},
        timeout=30,
    )
    assert r.status_code == status, r.text
    return r.json()


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    low = math.floor(pos)
    return xs[low] + (xs[min(low + 1, len(xs) - 1)] - xs[low]) * (pos - low)


def near(value: float | None, values: list[float], q: float) -> bool:
    """Within the t-digest's error: between the exact quantiles 2% (at least one rank) either side."""
    slack = max(0.02, 1 / max(1, len(values) - 1))
    low, high = quantile(values, max(0.0, q - slack)), quantile(values, min(1.0, q + slack))
    return value is not None and low - 1e-6 <= value <= high + 1e-6


def expected_stats(calls: list[Call]) -> dict[str, Any]:
    costs = [c.cost for c in calls if c.cost is not None]
    rated = [c.output_tokens / (c.latency_ms / 1000) for c in calls]
    return {
        "requests": len(calls),
        "successes": sum(c.success for c in calls),
        "cost_in": float(sum((i for i, _ in costs), Decimal(0))),
        "cost_out": float(sum((o for _, o in costs), Decimal(0))),
        "unpriced": len(calls) - len(costs),
        "tokens_in": sum(c.input_tokens for c in calls),
        "tokens_out": sum(c.output_tokens for c in calls),
        "latencies": [c.latency_ms for c in calls],
        "ttfts": [c.ttft_ms for c in calls if c.ttft_ms is not None],
        "tokens_per_second": sum(rated) / len(rated) if rated else None,
    }


def check_stats(got: dict[str, Any], calls: list[Call]) -> None:
    want = expected_stats(calls)
    assert got["requests"] == want["requests"]
    assert got["successes"] == want["successes"] and got["failures"] == want["requests"] - want["successes"]
    if not calls:
        assert got["success_rate"] is None and got["latency_ms"]["p50"] is None
        return
    assert got["success_rate"] == pytest.approx(want["successes"] / want["requests"])
    cost = got["cost"]
    assert cost["input_usd"] == pytest.approx(want["cost_in"], abs=1e-12)
    assert cost["output_usd"] == pytest.approx(want["cost_out"], abs=1e-12)
    assert cost["total_usd"] == pytest.approx(want["cost_in"] + want["cost_out"], abs=1e-12)
    assert cost["unpriced_requests"] == want["unpriced"]
    assert got["tokens"] == {
        "input": want["tokens_in"],
        "output": want["tokens_out"],
        "total": want["tokens_in"] + want["tokens_out"],
    }
    latencies, latency = want["latencies"], got["latency_ms"]
    assert latency["avg"] == pytest.approx(sum(latencies) / len(latencies))
    assert (latency["min"], latency["max"]) == (min(latencies), max(latencies))
    for p in (50, 95, 99):
        assert near(latency[f"p{p}"], latencies, p / 100), (p, latency)
    ttfts = want["ttfts"]
    assert got["ttft_ms"]["requests"] == len(ttfts)
    for p in (50, 95, 99):
        ttft = got["ttft_ms"][f"p{p}"]
        assert near(ttft, ttfts, p / 100) if ttfts else ttft is None, (p, got["ttft_ms"])
    assert got["tokens_per_second"] == pytest.approx(want["tokens_per_second"])


def between(start: datetime, end: datetime) -> list[Call]:
    """The calls of [start, end] (the API's range is inclusive at both ends)."""
    return [c for c in CALLS if start <= c.start <= end]


def test_overview_gives_what_the_known_calls_imply(known: Service) -> None:
    start, end = BASE - HOUR, BASE + 4 * HOUR
    got = ask(known, "overview", from_date=iso(start), to_date=iso(end))
    assert got["sources"][0] == "inference_stats_by_hour"  # whole hours: read from the rollup
    check_stats(got, CALLS)
    assert got["requests"] == 101 and got["cost"]["unpriced_requests"] == 1


def test_an_unaligned_range_mixes_rollups_and_raw_rows_exactly(known: Service) -> None:
    start, end = (
        BASE + 7 * MINUTE + timedelta(seconds=30),
        BASE + 2 * HOUR + 41 * MINUTE + timedelta(seconds=10),
    )
    got = ask(known, "overview", from_date=iso(start), to_date=iso(end))
    assert got["sources"] == ["llm_inferences", "inference_stats_by_minute", "inference_stats_by_hour"]
    check_stats(got, between(start, end))


QUESTIONS: list[tuple[str, dict[str, Any]]] = [
    ("overview", {}),
    ("overview", {"model": "gpt-4o-mini"}),
    ("overview", {"provider": "anthropic", "to_date_shift_s": 5000}),
    ("overview", {"user": "u_a"}),
    ("overview", {"tags": {"feature": "search"}}),
    ("timeseries", {"interval": "minute"}),
    ("timeseries", {"interval": "hour"}),
    ("timeseries", {"interval": "day", "tenant": "acme"}),
    ("breakdown", {"group_by": "model"}),
    ("breakdown", {"group_by": "provider", "sort_by": "requests"}),
    ("breakdown", {"group_by": "user"}),
    ("breakdown", {"group_by": "tenant", "model": "gpt-4o-mini"}),
    ("breakdown", {"group_by": "feature"}),
]


@pytest.mark.parametrize(("route", "extra"), QUESTIONS)
@pytest.mark.parametrize("days", [False, True])
def test_rollups_answer_as_the_raw_table_does(
    known: Service, route: str, extra: dict[str, Any], days: bool
) -> None:
    """Each question over whole hours (minute and hour rollups) and whole days (the usage rollup),
    asked with source auto and source raw."""
    extra = dict(extra)
    shift = timedelta(seconds=extra.pop("to_date_shift_s", 0))
    if days:
        start = BASE.replace(hour=0) - timedelta(days=1)
        end = start + timedelta(days=3)
    else:
        start, end = BASE - HOUR, BASE + 4 * HOUR
    body = {"from_date": iso(start), "to_date": iso(end + shift), **extra}
    auto = ask(known, route, **body)
    raw = ask(known, route, **body, source="raw")
    assert raw["sources"] == ["llm_inferences"]
    # Users are rolled up by day only (tenants and features by hour too).
    by_day = "user" in extra or extra.get("group_by") == "user"
    if days or not by_day:
        assert any(s != "llm_inferences" for s in auto["sources"]), auto["sources"]
    assert same(auto, raw)


def same(a: Any, b: Any, path: str = "") -> bool:
    """Equal, floats to 1e-9 relative (sums added in another order); `sources` aside."""
    if isinstance(a, dict):
        keys = (set(a) | set(b)) - {"sources"}
        return all(same(a.get(k), b.get(k), f"{path}.{k}") for k in keys)
    if isinstance(a, list):
        return len(a) == len(b) and all(
            same(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b, strict=True))
        )
    if isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
        return True
    assert a == b, path
    return True


def test_usage_rollup_answers_whole_days(known: Service) -> None:
    start = BASE.replace(hour=0) - timedelta(days=1)
    got = ask(
        known, "breakdown", from_date=iso(start), to_date=iso(start + timedelta(days=3)), group_by="user"
    )
    assert got["sources"][0] == "inference_usage_by_day"


def test_top_users_come_whole_whatever_their_ids(known: Service) -> None:
    """A breakdown by user ranks every user and returns the top ones with all their figures,
    percentiles included, for ids with quotes and backslashes too (five days before the other
    calls, in a window of their own)."""
    start = BASE - timedelta(days=5)
    users = ["o'brien", "back\\slash", "tab\tbed", "plain", "small"]
    calls = [
        Call(
            start + i * MINUTE,
            "gpt-4o-mini",
            "openai",
            100.0 + i,
            5.0,
            1000 * (6 - n),
            10,
            user,
            "acme",
            "",
            True,
        )
        for n, user in enumerate(users)
        for i in range(3)
    ]
    send(known, calls, known.key)
    body: dict[str, Any] = {
        "from_date": iso(start - HOUR),
        "to_date": iso(start + HOUR),
        "group_by": "user",
        "limit": 3,
    }
    got = ask(known, "breakdown", **body)
    assert [g["key"] for g in got["groups"]] == users[:3]  # costliest first
    for group in got["groups"]:
        check_stats(group, [c for c in calls if c.user == group["key"]])
    assert same(got, ask(known, "breakdown", **body, source="raw"))


def test_breakdown_groups_carry_the_feedback_on_their_calls(known: Service) -> None:
    """Ratings given to a model's calls average per model; feedback on calls outside the range,
    or of another group, is not counted (a window eight days before the other calls)."""
    start = BASE - timedelta(days=8)
    models = ["gpt-4o-mini"] * 3 + ["claude-sonnet-4-5"] * 2 + ["in-house-llm"]
    calls = [
        Call(start + i * MINUTE, m, "x", 100.0, None, 10, 10, "fb-user", "acme", "", True)
        for i, m in enumerate(models)
    ]
    early = Call(start - 2 * HOUR, "gpt-4o-mini", "x", 100.0, None, 10, 10, "fb-user", "acme", "", True)
    send(known, [*calls, early], known.key)
    rows = known.sql(
        "SELECT inference_id FROM llm_inferences WHERE user_id = 'fb-user' ORDER BY start_time, model"
    ).split()
    feedback: list[tuple[int, dict[str, Any]]] = [  # (call, body): the early call first
        (0, {"rating": 1}),
        (1, {"rating": 5, "thumbs_up": True}),
        (2, {"rating": 3}),
        (3, {"thumbs_up": False, "comment": "no rating here"}),
        (4, {"rating": 2}),
        (5, {"rating": 1}),
    ]
    for index, body in feedback:
        post(known, f"inferences/{rows[index]}/feedback", body, status=201)
    span = {"from_date": iso(start - MINUTE), "to_date": iso(start + HOUR), "group_by": "model"}
    got = {g["key"]: g["feedback"] for g in ask(known, "breakdown", **span)["groups"]}
    assert got["gpt-4o-mini"] == {
        "count": 3,
        "ratings": 2,
        "average_rating": 4.0,
        "thumbs_up": 1,
        "thumbs_down": 1,
        "comments": 1,
        "average_sentiment": got["gpt-4o-mini"]["average_sentiment"],
    }
    assert (got["claude-sonnet-4-5"]["ratings"], got["claude-sonnet-4-5"]["average_rating"]) == (2, 1.5)
    assert (got["in-house-llm"]["count"], got["in-house-llm"]["average_rating"]) == (0, None)
    by_user = ask(known, "breakdown", **{**span, "group_by": "user"})["groups"]
    assert [(g["key"], g["feedback"]["ratings"], g["feedback"]["average_rating"]) for g in by_user] == [
        ("fb-user", 4, 2.75)
    ]


def test_breakdowns_by_model_user_tenant_feature_and_tag(known: Service) -> None:
    span = {"from_date": iso(BASE - HOUR), "to_date": iso(BASE + 4 * HOUR)}
    by_model = ask(known, "breakdown", group_by="model", **span)["groups"]
    assert [g["key"] for g in by_model] == ["claude-sonnet-4-5", "gpt-4o-mini", "in-house-llm"]  # by cost
    for group in by_model:
        check_stats(group, [c for c in CALLS if c.model == group["key"]])

    by_user = ask(known, "breakdown", group_by="user", sort_by="requests", **span)["groups"]
    assert [(g["key"], g["requests"]) for g in by_user] == [("u_c", 40), ("u_a", 31), ("u_b", 30)]
    by_tenant = ask(known, "breakdown", group_by="tenant", **span)["groups"]
    assert {g["key"]: g["requests"] for g in by_tenant} == {"acme": 61, "globex": 40}
    for group in by_tenant:
        check_stats(group, [c for c in CALLS if c.tenant == group["key"]])

    by_feature = ask(known, "breakdown", group_by="feature", sort_by="requests", **span)["groups"]
    assert [(g["key"], g["requests"]) for g in by_feature] == [("chat", 80), ("search", 20), ("", 1)]
    by_tag = ask(known, "breakdown", group_by="tag", tag_key="feature", sort_by="requests", **span)
    assert by_tag["sources"] == ["llm_inferences"]  # any tag key: the raw table
    assert same(by_tag["groups"], by_feature)

    by_session = ask(known, "breakdown", group_by="session", user="u_a", sort_by="requests", **span)
    assert by_session["sources"] == ["llm_inferences"]  # no rollup keeps sessions
    u_a = [c for c in CALLS if c.user == "u_a"]
    assert {g["key"]: g["requests"] for g in by_session["groups"]} == dict(Counter(c.session for c in u_a))
    for group in by_session["groups"]:
        check_stats(group, [c for c in u_a if c.session == group["key"]])

    slowest_provider = ask(known, "breakdown", group_by="provider", sort_by="latency", limit=1, **span)[
        "groups"
    ]
    assert [g["key"] for g in slowest_provider] == ["vllm"]


def test_a_range_ends_at_the_microsecond_it_names_as_the_list_does(service: Service) -> None:
    """Times are stored to the nanosecond, the API's to the microsecond, inclusive: a range that
    starts and ends at a call's time (copied from the list) holds that call in the analytics too."""
    at = BASE - 2 * HOUR + timedelta(seconds=17)
    start_ns = int(at.timestamp()) * 10**9 + 123_497_228
    spans = []
    for _ in range(3):
        one = span(Call(at, "gpt-4o-mini", "openai", 10.0, None, 100, 10, "u_ns", "acme", "", True))
        one["startTimeUnixNano"], one["endTimeUnixNano"] = str(start_ns), str(start_ns + 10_000_000)
        spans.append(one)
    send_spans(service, spans, service.key)
    moment = iso(at + timedelta(microseconds=123_497))
    for source in ("raw", "auto"):
        got = ask(service, "overview", from_date=moment, to_date=moment, source=source)
        assert got["requests"] == 3, (source, got)
    series = ask(service, "timeseries", from_date=moment, to_date=moment, interval="minute")
    assert sum(p["requests"] for p in series["points"]) == 3, series


def test_time_series_buckets(known: Service) -> None:
    hours = ask(
        known, "timeseries", interval="hour", from_date=iso(BASE), to_date=iso(BASE + 3 * HOUR - MINUTE)
    )
    assert [p["timestamp"] for p in hours["points"]] == [iso(BASE + h * HOUR) for h in range(3)]
    assert [p["requests"] for p in hours["points"]] == [35, 33, 33]
    for h, point in enumerate(hours["points"]):
        check_stats(point, between(BASE + h * HOUR, BASE + (h + 1) * HOUR - timedelta(microseconds=1)))

    minutes = ask(known, "timeseries", interval="minute", from_date=iso(BASE), to_date=iso(BASE + 9 * MINUTE))
    assert len(minutes["points"]) == 10
    for m, point in enumerate(minutes["points"]):
        assert point["timestamp"] == iso(BASE + m * MINUTE)
        check_stats(point, between(BASE + m * MINUTE, BASE + (m + 1) * MINUTE - timedelta(microseconds=1)))
    assert minutes["points"][1]["requests"] == 0 and minutes["points"][1]["latency_ms"]["avg"] is None


def test_top_expensive_and_slow(known: Service) -> None:
    span = {"from_date": iso(BASE - HOUR), "to_date": iso(BASE + 4 * HOUR)}
    expensive = ask(known, "top", by="cost", limit=3, **span)["items"]
    assert [i["output_tokens"] for i in expensive] == [250, 245, 240]  # claude's longest answers
    assert expensive[0]["cost_usd"] == pytest.approx(float(1000 * Decimal("3e-6") + 250 * Decimal("15e-6")))
    slow = ask(known, "top", by="latency", limit=3, **span)["items"]
    assert [i["latency_ms"] for i in slow] == [777.0, 603.0, 600.0]
    assert slow[0]["model"] == "in-house-llm" and slow[0]["cost_usd"] is None
    assert (
        ask(known, "top", by="latency", limit=2, model="gpt-4o-mini", **span)["items"][1]["latency_ms"]
        == 590.0
    )


def test_another_project_sees_only_its_own(known: Service) -> None:
    other = known.extra_keys["other"]
    span = {"from_date": iso(BASE - HOUR), "to_date": iso(BASE + 4 * HOUR)}
    for source in ("auto", "raw"):
        assert ask(known, "overview", key=other, source=source, **span)["requests"] == 0
        assert ask(known, "breakdown", key=other, group_by="user", source=source, **span)["groups"] == []
    series = ask(known, "timeseries", key=other, interval="hour", **span)["points"]
    assert series and all(p["requests"] == 0 for p in series)
    assert ask(known, "top", key=other, **span)["items"] == []

    theirs = Call(
        BASE + 5 * MINUTE, "gpt-4o-mini", "openai", 42.0, None, 1000, 100, "u_x", "initech", "chat", True
    )
    send(known, [theirs], other)
    assert ask(known, "overview", key=other, **span)["requests"] == 1
    assert ask(known, "overview", **span)["requests"] == 101
    r = httpx.post(
        f"{known.api_url}/api/v1/metrics/analytics/overview",
        json={**span, "project_id": "default"},
        headers={"Authorization": f"Bearer {other}"},
    )
    assert r.status_code == 403 and "project_id" in r.text


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("overview", {}, "from_date"),
        ("overview", {"from_date": "yesterday"}, "from_date"),
        ("overview", {"from_date": "2024-01-02T00:00:00Z", "to_date": "2024-01-01T00:00:00Z"}, "to_date"),
        ("overview", {"from_date": "2024-01-01T00:00:00Z", "source": "cache"}, "source"),
        ("timeseries", {"from_date": "2024-01-01T00:00:00Z", "interval": "week"}, "interval"),
        ("timeseries", {"from_date": "2000-01-01T00:00:00Z", "interval": "minute"}, "interval"),
        ("breakdown", {"from_date": "2024-01-01T00:00:00Z"}, "group_by"),
        ("breakdown", {"from_date": "2024-01-01T00:00:00Z", "group_by": "tag"}, "tag_key"),
        ("breakdown", {"from_date": "2024-01-01T00:00:00Z", "group_by": "colour"}, "group_by"),
        ("breakdown", {"from_date": "2024-01-01T00:00:00Z", "group_by": "model", "limit": 0}, "limit"),
        ("top", {"from_date": "2024-01-01T00:00:00Z", "by": "tokens"}, "by"),
        ("top", {"from_date": "2024-01-01T00:00:00Z", "limit": 101}, "limit"),
    ],
)
def test_bad_questions_are_422_naming_the_field(service: Service, route: str, body: dict, field: str) -> None:
    r = httpx.post(
        f"{service.api_url}/api/v1/metrics/analytics/{route}",
        json=body,
        headers={"Authorization": f"Bearer {service.key}"},
    )
    assert r.status_code == 422, r.text
    assert field in r.text


@pytest.mark.parametrize("from_date", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_ranges_at_the_ends_of_time(service: Service, from_date: str) -> None:
    """Dates outside what the tables hold are answered (over nothing there), never a 500."""
    assert ask(service, "overview", from_date=from_date)["requests"] >= 0
    assert ask(service, "breakdown", from_date=from_date, group_by="tenant")["groups"] is not None
    if from_date.startswith("9999"):
        points = ask(service, "timeseries", from_date=from_date, interval="day")["points"]
        assert [p["requests"] for p in points] == [0]


def test_analytics_need_a_key(service: Service) -> None:
    r = httpx.post(
        f"{service.api_url}/api/v1/metrics/analytics/overview", json={"from_date": "2024-01-01T00:00:00Z"}
    )
    assert r.status_code == 401
