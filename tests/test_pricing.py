"""Pricing: exact costs from the bundled genai-prices table, overrides, provided and unknown."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from inferline.core.records import Batch
from inferline.processors.pricing import Pricer, PricingConfig, linear_cost

pytestmark = pytest.mark.unit


def row(model: str, provider: str, input_tokens: int, output_tokens: int, **extra: object) -> dict:
    base = {
        "model": model,
        "request_model": model,
        "provider": provider,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "start_time": 1_755_684_000_000_000_000,
        "price_status": "",
    }
    base.update(extra)
    return base


def priced(*rows: dict, config: PricingConfig | None = None) -> list[dict]:
    batch = Batch(inferences=list(rows))
    Pricer(config).process(batch)
    return batch.inferences


def test_openai_cached_input_is_priced_at_the_cache_rate() -> None:
    # 176 uncached × $0.15/M + 1024 cached × $0.075/M; 85 output × $0.60/M
    [r] = priced(row("gpt-4o-mini-2024-07-18", "openai", 1200, 85, cache_read_tokens=1024))
    assert r["input_cost_usd"] == Decimal("0.0001032")
    assert r["output_cost_usd"] == Decimal("0.000051")
    assert r["total_cost_usd"] == Decimal("0.0001542")
    assert r["price_status"] == "priced"


def test_anthropic_cache_read_and_write() -> None:
    # 400 uncached × $3/M + 600 read × $0.30/M + 1000 write × $3.75/M; 120 × $15/M
    [r] = priced(
        row(
            "claude-sonnet-4-5-20250929",
            "anthropic",
            2000,
            120,
            cache_read_tokens=600,
            cache_write_tokens=1000,
        )
    )
    assert r["input_cost_usd"] == Decimal("0.00513")
    assert r["output_cost_usd"] == Decimal("0.0018")
    assert r["total_cost_usd"] == Decimal("0.00693")


@pytest.mark.parametrize(
    ("provider", "model", "usd_per_million_input"),
    [
        ("gcp.gemini", "gemini-2.0-flash", "0.1"),
        ("aws.bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0", "3"),
        ("mistral_ai", "mistral-large-latest", "2"),
        ("x_ai", "grok-3", "3"),
        ("azure.ai.openai", "gpt-4o", "2.5"),
    ],
)
def test_otel_provider_names_map_to_the_price_table(
    provider: str, model: str, usd_per_million_input: str
) -> None:
    [r] = priced(row(model, provider, 1_000_000, 0))
    assert r["total_cost_usd"] == Decimal(usd_per_million_input)


def test_long_context_tier_applies() -> None:
    # Claude Sonnet 4.5 charges $6/M input above 200k input tokens.
    [r] = priced(row("claude-sonnet-4-5", "anthropic", 1_000_000, 0))
    assert r["total_cost_usd"] == Decimal("6")


def test_unknown_model_gets_null_cost_and_is_counted() -> None:
    pricer = Pricer()
    batch = Batch(
        inferences=[row("llama-3-70b-instruct", "vllm", 100, 10), row("my-private-model", "", 100, 10)]
    )
    pricer.process(batch)
    for r in batch.inferences:
        assert r["price_status"] == "unknown_model"
        assert r["total_cost_usd"] is None and r["input_cost_usd"] is None
    assert pricer.unknown_models == {"vllm/llama-3-70b-instruct": 1, "/my-private-model": 1}


def _carried(model: str, provider: str, cost: str, **extra: object) -> dict:
    """A row as the normaliser leaves it when the span carried a cost (OpenLIT `gen_ai.usage.cost`)."""
    return row(
        model,
        provider,
        1000,
        200,
        total_cost_usd=Decimal(cost),
        input_cost_usd=None,
        output_cost_usd=None,
        provided_cost_usd=Decimal(cost),
        price_status="provided",
        **extra,
    )


def test_provided_cost_kept_beside_the_table_cost_by_default() -> None:
    # A stale price file in the SDK: it says $0.01; the table says 1000 × $0.15/M + 200 × $0.60/M.
    [r] = priced(_carried("gpt-4o-mini-2024-07-18", "openai", "0.01"))
    assert r["provided_cost_usd"] == Decimal("0.01")
    assert r["total_cost_usd"] == Decimal("0.00027")
    assert (r["input_cost_usd"], r["output_cost_usd"]) == (Decimal("0.00015"), Decimal("0.00012"))
    assert r["price_status"] == "priced"


def test_prefer_provided_keeps_the_instrumentations_cost() -> None:
    config = PricingConfig(prefer="provided")
    [r, plain] = priced(
        _carried("gpt-4o-mini-2024-07-18", "openai", "0.01"),
        row("gpt-4o-mini-2024-07-18", "openai", 1000, 200),
        config=config,
    )
    assert r["total_cost_usd"] == Decimal("0.01") and r["price_status"] == "provided"
    assert r["provided_cost_usd"] == Decimal("0.01")
    # a span without a cost of its own is priced from the table as ever
    assert plain["total_cost_usd"] == Decimal("0.00027") and plain["price_status"] == "priced"
    assert plain["provided_cost_usd"] is None


def test_provided_cost_used_when_the_table_does_not_know_the_model() -> None:
    [r] = priced(_carried("house-llm-1", "vllm", "0.0042"))
    assert r["total_cost_usd"] == Decimal("0.0042") and r["price_status"] == "provided"
    assert r["provided_cost_usd"] == Decimal("0.0042")


def test_impossible_provided_cost_is_dropped_for_the_tables() -> None:
    [r] = priced(
        _carried("gpt-4o-mini-2024-07-18", "openai", "5000000"), config=PricingConfig(prefer="provided")
    )
    assert r["provided_cost_usd"] is None
    assert r["total_cost_usd"] == Decimal("0.00027") and r["price_status"] == "priced"


def test_a_carried_cost_of_zero_for_a_call_that_used_tokens_is_no_cost() -> None:
    """OpenLIT sends `gen_ai.usage.cost = 0` for every model its price file lacks: such a call is
    unpriced (never $0), and a model the table knows keeps the table's price even when the
    carried cost is preferred."""
    [unknown, known] = priced(
        _carried("house-llm-1", "vllm", "0"),
        _carried("gpt-4o-mini-2024-07-18", "openai", "0"),
        config=PricingConfig(prefer="provided"),
    )
    assert unknown["total_cost_usd"] is None and unknown["price_status"] == "unknown_model"
    assert unknown["provided_cost_usd"] is None
    assert known["total_cost_usd"] == Decimal("0.00027") and known["price_status"] == "priced"
    # A call of no tokens that cost nothing is just that.
    [empty] = priced(dict(_carried("house-llm-1", "vllm", "0"), input_tokens=0, output_tokens=0))
    assert empty["total_cost_usd"] == Decimal(0) and empty["price_status"] == "provided"


def test_an_unknown_response_model_is_priced_as_the_request_only_when_it_is_a_variant_of_it() -> None:
    newer, other = priced(
        # A snapshot newer than the table: priced as the model asked for.
        row("gpt-4o-mini-2099-01-01", "openai", 1000, 200, request_model="gpt-4o-mini"),
        # Another name: another model, whatever was asked for.
        row("gpt-4o-mystery-2099-01-01", "openai", 1000, 200, request_model="gpt-4o-mini"),
    )
    assert newer["price_status"] == "priced" and newer["total_cost_usd"] == Decimal("0.00027")
    assert other["price_status"] == "unknown_model" and other["total_cost_usd"] is None
    # A longer name is another model, a date or version after the name is not.
    from inferline.processors.pricing import _variant_of

    assert _variant_of("claude-sonnet-4-5-20990101", "claude-sonnet-4-5")
    assert _variant_of("anthropic.claude-3-5-sonnet-20990620-v1:0", "anthropic.claude-3-5-sonnet")
    assert _variant_of("gemini-2.5-pro-preview-06-05", "gemini-2.5-pro")
    assert not _variant_of("o1-pro-2099-01-01", "o1")
    assert not _variant_of("gpt-4o-mini-2099-01-01", "gpt-4o")
    assert not _variant_of("gpt-4o-2099", "gpt-4")


def test_prefer_is_validated() -> None:
    with pytest.raises(ValueError, match="prefer"):
        PricingConfig.model_validate({"prefer": "cheapest"})


def test_override_file_prices_self_hosted_models(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "models:\n"
        "  - model: 'llama-3*'\n"
        "    provider: vllm\n"
        "    input_mtok: 0.5\n"
        "    output_mtok: 1.0\n"
        "    cache_read_mtok: 0.05\n"
    )
    config = PricingConfig(overrides_file=prices)
    [r, other_provider] = priced(
        row("llama-3-70b-instruct", "vllm", 3000, 500, cache_read_tokens=2000),
        row("llama-3-70b-instruct", "other", 3000, 500),
        config=config,
    )
    # 1000 × 0.5/M + 2000 × 0.05/M = 0.0006; 500 × 1/M = 0.0005
    assert r["input_cost_usd"] == Decimal("0.0006")
    assert r["total_cost_usd"] == Decimal("0.0011")
    assert r["price_status"] == "override"
    assert other_provider["price_status"] == "unknown_model"


def test_override_beats_the_table_for_negotiated_prices() -> None:
    config = PricingConfig.model_validate(
        {"overrides": [{"model": "gpt-4o-mini*", "input_mtok": "0.10", "output_mtok": "0.40"}]}
    )
    [r] = priced(row("gpt-4o-mini-2024-07-18", "openai", 1_000_000, 1_000_000), config=config)
    assert r["total_cost_usd"] == Decimal("0.5")
    assert r["price_status"] == "override"


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4.1"),
        ("openai", "o3-mini"),
        ("anthropic", "claude-3-5-haiku-20241022"),
        ("anthropic", "claude-opus-4-1"),
        ("gcp.gemini", "gemini-2.5-flash"),
        ("groq", "llama-3.3-70b-versatile"),
        ("deepseek", "deepseek-chat"),
        # tiered: past 200k (128k) input tokens every token costs the tier's price
        ("anthropic", "claude-sonnet-4-5"),
        ("gcp.gemini", "gemini-2.5-pro"),
        ("gcp.gemini", "gemini-1.5-pro"),
    ],
)
@pytest.mark.parametrize(
    ("input_tokens", "cache_read", "cache_write", "output"),
    [(5000, 0, 0, 300), (9000, 4000, 2000, 1), (200_000, 0, 0, 10), (250_000, 50_000, 0, 900)],
)
def test_fast_path_agrees_with_genai_prices(
    provider: str, model: str, input_tokens: int, cache_read: int, cache_write: int, output: int
) -> None:
    from datetime import UTC, datetime

    from genai_prices import Usage
    from genai_prices.data_snapshot import get_snapshot

    from inferline.processors.pricing import PROVIDER_IDS

    r = row(
        model, provider, input_tokens, output, cache_read_tokens=cache_read, cache_write_tokens=cache_write
    )
    [r] = priced(r)
    info = get_snapshot().find_provider_model(model, None, PROVIDER_IDS[provider], None)[1]
    prices = info.get_prices(datetime.fromtimestamp(r["start_time"] / 1e9, tz=UTC))
    if not (cache_read and prices.cache_read_mtok is None) and not (
        cache_write and prices.cache_write_mtok is None
    ):
        assert linear_cost(prices, r) is not None  # the fast path is the one compared
    reference = prices.calc_price(
        Usage(
            input_tokens=input_tokens,
            cache_read_tokens=cache_read or None,
            cache_write_tokens=cache_write or None,
            output_tokens=output,
        )
    )
    assert r["total_cost_usd"] == reference["total_price"].quantize(Decimal("1e-12"))
    assert r["input_cost_usd"] == reference["input_price"].quantize(Decimal("1e-12"))
