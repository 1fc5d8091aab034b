"""Cost insights (issue #16 item 4) on a real service, from calls sent through OTLP/HTTP JSON:
repeated prompts with what a response cache would have saved, and short calls on an expensive
model with what the project's cheapest comparable model would have cost."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from genai_prices import Usage, calc_price

from tests.api_helpers import MINUTE_NS, api, iso
from tests.conftest import Service
from tests.otlp_helpers import json_span, traces_json

pytestmark = pytest.mark.e2e

INSIGHTS = "/api/v1/insights"
REPEATED = "What is the boiling point of water at sea level?"


def call(provider: str, model: str, prompt: str, inp: int, out: int, start_ns: int) -> dict[str, Any]:
    return json_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": inp,
            "gen_ai.usage.output_tokens": out,
            "gen_ai.input.messages": orjson.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
            ).decode(),
            "gen_ai.output.messages": orjson.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": "100 °C"}],
                        "finish_reason": "stop",
                    }
                ]
            ).decode(),
        },
        name=f"chat {model}",
        start_ns=start_ns,
        end_ns=start_ns + 500_000_000,
    )


def send(svc: Service, spans: list[dict[str, Any]], key: str) -> None:
    r = httpx.post(
        f"{svc.http_url}/v1/traces",
        content=traces_json(spans, resource={"service.name": "insights-bot"}),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def list_price(model: str, inp: int, out: int) -> Decimal:
    return calc_price(
        Usage(input_tokens=inp, output_tokens=out), model_ref=model, provider_id="openai"
    ).total_price


@pytest.fixture(scope="module")
def seeded(service: Service) -> dict[str, Any]:
    base = time.time_ns() - 2 * 3600 * 1_000_000_000
    at = iter(range(base, base + 100 * MINUTE_NS, MINUTE_NS))
    spans = [
        # The same prompt four times on gpt-4o-mini (token counts differ: so do the costs) ...
        *(call("openai", "gpt-4o-mini", REPEATED, 20 + i, 5 + i, next(at)) for i in range(4)),
        # ... and three times on gpt-4o: another group. Short calls on an expensive model, too.
        *(call("openai", "gpt-4o", REPEATED, 300, 100 + i, next(at)) for i in range(3)),
        # Unique short prompts on gpt-4o, a long one (not short), an Anthropic short call (no
        # comparable model of its provider in the project).
        call("openai", "gpt-4o", "Translate 'cat' to French", 40, 3, next(at)),
        call("openai", "gpt-4o", "Summarise this report " + "x " * 3000, 4000, 150, next(at)),
        call("anthropic", "claude-3-5-sonnet-20241022", "Hello there", 30, 10, next(at)),
    ]
    send(service, spans, service.key)
    # Another project's identical prompts stay out of this project's insights.
    send(
        service,
        [call("openai", "gpt-4o-mini", REPEATED, 20, 5, next(at)) for _ in range(3)],
        service.extra_keys["other"],
    )
    return {"since": iso(base - MINUTE_NS)}


def costs(svc: Service, model: str) -> list[Decimal]:
    """The stored cost of each call with the repeated prompt on `model`, oldest first."""
    text = svc.sql(
        f"SELECT total_cost_usd FROM llm_inferences FINAL WHERE model = '{model}' "
        f"AND prompt_messages LIKE '%boiling point%' ORDER BY start_time"
    )
    return [Decimal(v) for v in text.split()]


def test_repeated_prompts_with_the_cost_a_cache_would_have_saved(
    service: Service, seeded: dict[str, Any]
) -> None:
    r = api(service, "GET", INSIGHTS, service.key, params={"since": seeded["since"]})
    assert r.status_code == 200, r.text
    body = r.json()
    groups = {g["model"]: g for g in body["repeated_prompts"]}
    assert set(groups) == {"gpt-4o-mini", "gpt-4o"}
    for model, calls in (("gpt-4o-mini", 4), ("gpt-4o", 3)):
        stored = costs(service, model)
        assert len(stored) == calls and len(set(stored)) == calls  # different costs, so the first one matters
        g = groups[model]
        assert g["calls"] == calls and g["provider"] == "openai" and g["prompt_preview"] == REPEATED
        assert g["cost_usd"] == pytest.approx(float(sum(stored)), rel=1e-9)
        assert g["cacheable_cost_usd"] == pytest.approx(float(sum(stored[1:])), rel=1e-9)
    assert body["repeated_groups"] == 2 and body["repeated_calls"] == 3 + 2
    saved = sum(sum(costs(service, m)[1:]) for m in ("gpt-4o-mini", "gpt-4o"))
    assert body["cacheable_cost_usd"] == pytest.approx(float(saved), rel=1e-9)
    # The costliest saving first.
    assert [g["model"] for g in body["repeated_prompts"]] == ["gpt-4o", "gpt-4o-mini"]


def test_short_calls_on_an_expensive_model_priced_on_the_cheapest_comparable(
    service: Service, seeded: dict[str, Any]
) -> None:
    body = api(service, "GET", INSIGHTS, service.key, params={"since": seeded["since"]}).json()
    assert body["short_input_tokens"] == 500 and body["short_output_tokens"] == 200
    # gpt-4o's short calls: the three repeats and the translation; not the long one. The
    # Anthropic model has no comparable model in the project; gpt-4o-mini is the cheapest already.
    [found] = body["cheaper_models"]
    inp, out = 3 * 300 + 40, (100 + 101 + 102) + 3
    assert (found["provider"], found["model"], found["cheaper_model"]) == ("openai", "gpt-4o", "gpt-4o-mini")
    assert (found["calls"], found["input_tokens"], found["output_tokens"]) == (4, inp, out)
    assert found["cheaper_cost_usd"] == pytest.approx(float(list_price("gpt-4o-mini", inp, out)), rel=1e-9)
    assert found["list_cost_usd"] == pytest.approx(float(list_price("gpt-4o", inp, out)), rel=1e-9)
    assert found["savings_usd"] == pytest.approx(found["list_cost_usd"] - found["cheaper_cost_usd"], rel=1e-9)
    stored = service.sql(
        "SELECT sum(total_cost_usd) FROM llm_inferences FINAL WHERE model = 'gpt-4o' AND input_tokens < 500"
    )
    assert found["cost_usd"] == pytest.approx(float(stored), rel=1e-9)
    assert body["cheaper_savings_usd"] == pytest.approx(found["savings_usd"], rel=1e-9)


def test_the_range_and_the_project_bound_what_is_found(service: Service, seeded: dict[str, Any]) -> None:
    other = api(
        service, "GET", INSIGHTS, service.extra_keys["other"], params={"since": seeded["since"]}
    ).json()
    assert [(g["model"], g["calls"]) for g in other["repeated_prompts"]] == [("gpt-4o-mini", 3)]
    assert other["cheaper_models"] == []  # one model only: nothing to compare with
    empty = api(service, "GET", INSIGHTS, service.key, params={"until": seeded["since"]}).json()
    assert (
        empty["repeated_prompts"] == [] and empty["cheaper_models"] == [] and empty["cacheable_cost_usd"] == 0
    )
    bad = api(
        service,
        "GET",
        INSIGHTS,
        service.key,
        params={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    )
    assert bad.status_code == 422
    assert api(service, "GET", INSIGHTS, None).status_code == 401
