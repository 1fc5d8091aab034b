"""The insights' list-price estimate: token totals priced linearly equal the sum of each short
call priced on its own by genai-prices."""

from __future__ import annotations

from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from inferline.api.erasure import parts
from inferline.api.insights import SHORT_INPUT_TOKENS, SHORT_OUTPUT_TOKENS, list_cost

pytestmark = pytest.mark.unit

CALLS = [(12, 3), (480, 199), (250, 0), (0, 150)]


@pytest.mark.parametrize(
    ("provider", "model", "provider_id"),
    [
        ("openai", "gpt-4o", "openai"),
        ("openai", "gpt-4o-mini", "openai"),
        ("anthropic", "claude-3-5-haiku-20241022", "anthropic"),
        ("gcp.gemini", "gemini-1.5-flash", "google"),
    ],
)
def test_totals_priced_at_once_equal_each_call_priced(provider: str, model: str, provider_id: str) -> None:
    assert all(i < SHORT_INPUT_TOKENS and o < SHORT_OUTPUT_TOKENS for i, o in CALLS)
    each = sum(
        (
            calc_price(
                Usage(input_tokens=i, output_tokens=o), model_ref=model, provider_id=provider_id
            ).total_price
            for i, o in CALLS
        ),
        Decimal(0),
    )
    total = list_cost(provider, model, len(CALLS), sum(i for i, _ in CALLS), sum(o for _, o in CALLS))
    assert total is not None and total == pytest.approx(each, rel=Decimal("1e-9"))


def test_an_unpriced_model_has_no_estimate() -> None:
    assert list_cost("openai", "house-llm-1", 3, 100, 10) is None
    assert list_cost("self-hosted-vllm", "gpt-4o", 3, 100, 10) is None  # a provider we cannot map


def test_erasure_covers_the_usage_rollup_for_users_only_and_inferences_last() -> None:
    users, sessions = [p.table for p in parts("user")], [p.table for p in parts("session")]
    # Scores are found through the inferences' trace and response ids: erased before them.
    raw = ["feedback", "scores", "otel_logs", "otel_traces"]
    assert users == [*raw, "inference_usage_by_day", "llm_inferences"]
    assert sessions == [*raw, "llm_inferences"]
    session_spans = next(p.where for p in parts("session") if p.table == "otel_traces")
    assert "'gen_ai.conversation.id'" in session_spans and "'session.id'" in session_spans
