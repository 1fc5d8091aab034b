"""Cost of each inference from a maintained price table (pydantic's `genai-prices`, its bundled
snapshot, offline) or from user overrides for self-hosted / negotiated prices.

- `input_tokens` is inclusive of cache reads and writes; the table's rules price those buckets
  at their own rates, and reasoning tokens at the output rate (they are inside output_tokens).
- A cost the span already carried (an instrumentation's own price file) is kept in
  `provided_cost_usd`; the table's cost is computed anyway. `prefer` says which of the two
  `total_cost_usd` holds when both exist, and `price_status` says which one it is (`provided`,
  else `priced`/`override`).
- An unknown model gets NULL costs and `price_status = 'unknown_model'` (unless the span carried a
  cost): never 0, never a guess.
"""

from __future__ import annotations

import fnmatch
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import structlog
import yaml
from genai_prices import Usage
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import TieredPrices
from pydantic import BaseModel, Field

from inferline.core.logging import error_summary
from inferline.core.records import Batch, Row

log = structlog.get_logger()

_MTOK = Decimal(1_000_000)
_SCALE = Decimal("1e-12")  # the cost columns are Decimal(18, 12)

# OTel `gen_ai.provider.name` (and older spellings) → genai-prices provider id.
PROVIDER_IDS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "azure": "azure",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "gemini": "google",
    "vertex_ai": "google",
    "google": "google",
    "groq": "groq",
    "mistral_ai": "mistral",
    "mistral": "mistral",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "deepseek": "deepseek",
    "cohere": "cohere",
    "perplexity": "perplexity",
    "together": "together",
    "together_ai": "together",
    "fireworks": "fireworks",
    "openrouter": "openrouter",
    "cerebras": "cerebras",
}


class PriceOverride(BaseModel):
    """A price for models matching `model` (a glob), optionally only for one provider."""

    model: str
    provider: str | None = None
    input_mtok: Decimal = Field(ge=0, description="USD per million uncached input tokens")
    output_mtok: Decimal = Field(ge=0, description="USD per million output tokens (reasoning included)")
    cache_read_mtok: Decimal | None = Field(None, ge=0, description="default: the input price")
    cache_write_mtok: Decimal | None = Field(None, ge=0, description="default: the input price")

    def cost(self, row: Row) -> tuple[Decimal, Decimal]:
        cache_read, cache_write = row["cache_read_tokens"], row["cache_write_tokens"]
        uncached = max(row["input_tokens"] - cache_read - cache_write, 0)
        read_price = self.input_mtok if self.cache_read_mtok is None else self.cache_read_mtok
        write_price = self.input_mtok if self.cache_write_mtok is None else self.cache_write_mtok
        input_cost = (
            uncached * self.input_mtok + cache_read * read_price + cache_write * write_price
        ) / _MTOK
        return input_cost, row["output_tokens"] * self.output_mtok / _MTOK


class PricingConfig(BaseModel):
    enabled: bool = True
    prefer: Literal["table", "provided"] = Field(
        "table",
        description="Which cost `total_cost_usd` holds when the span carried one and the price table "
        "knows the model: `table` (the table's, kept current) or `provided` (the instrumentation's). "
        "Either way the carried cost stays in `provided_cost_usd`, and the other one is used when "
        "only it exists.",
    )
    overrides_file: Path | None = Field(None, description="YAML file: a list of overrides under `models:`")
    overrides: list[PriceOverride] = Field(default_factory=list)

    def all_overrides(self) -> list[PriceOverride]:
        found = list(self.overrides)
        if self.overrides_file:
            loaded = yaml.safe_load(self.overrides_file.read_text(encoding="utf-8")) or {}
            found += [PriceOverride.model_validate(m) for m in loaded.get("models", [])]
        return found


_NOT_FOUND = object()
_COST_LIMIT = Decimal(1_000_000)  # what Decimal(18, 12) holds; no single call costs that much


def _plausible(cost: Any) -> bool:
    return isinstance(cost, Decimal) and cost.is_finite() and 0 <= cost < _COST_LIMIT


def _varies_within_a_day(info: Any) -> bool:
    prices = info.prices if isinstance(info.prices, list) else []
    return any(type(p.constraint).__name__ == "TimeOfDateConstraint" for p in prices)


_LINEAR = frozenset({"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"})
_NOT_IN_OUR_USAGE = frozenset(
    {"cache_write_1h_mtok", "input_audio_mtok", "cache_audio_read_mtok", "output_audio_mtok"}
)


def linear_cost(model_price: Any, row: Row) -> tuple[Decimal, Decimal] | None:
    """Plain per-token prices computed directly: genai-prices' general `calc_price` costs ~60 µs
    a call. Anything else (tiers, per-request fees, audio, a cache bucket without its own price)
    returns None and goes through `calc_price`. Tests check both paths agree."""
    prices = {}
    for key, value in model_price.__dict__.items():
        if value is None or key.startswith("_"):
            continue
        if key in _LINEAR:
            if isinstance(value, TieredPrices):
                value = _tier_price(value, row["input_tokens"])
            elif not isinstance(value, Decimal):
                return None
            prices[key] = value
        elif key not in _NOT_IN_OUR_USAGE and not (key.endswith("_kcount") and key != "requests_kcount"):
            return None  # search fees (`*_kcount`), 1-hour cache writes, audio: counts rows never carry
    cache_read, cache_write = row["cache_read_tokens"], row["cache_write_tokens"]
    read_price, write_price = prices.get("cache_read_mtok"), prices.get("cache_write_mtok")
    if (cache_read and read_price is None) or (cache_write and write_price is None):
        return None
    input_price = prices.get("input_mtok") or Decimal(0)
    uncached = row["input_tokens"] - cache_read - cache_write
    if uncached < 0:
        return None
    input_cost = uncached * input_price
    if cache_read:
        input_cost += cache_read * read_price
    if cache_write:
        input_cost += cache_write * write_price
    return input_cost / _MTOK, row["output_tokens"] * (prices.get("output_mtok") or Decimal(0)) / _MTOK


_Costs = tuple[Decimal | None, Decimal | None, Decimal]  # input, output, total


def _provided(row: Row) -> _Costs | None:
    """The cost the span carried (the normaliser leaves it in the cost columns with
    `price_status = 'provided'`), quantized; None without one or when it is impossible."""
    if row.get("price_status") != "provided":
        return None
    total = row.get("total_cost_usd")
    if not isinstance(total, Decimal) or not _plausible(total):
        return None  # an impossible carried cost: only the table's counts
    if not total and (row.get("input_tokens") or row.get("output_tokens")):
        # A call that used tokens and cost nothing: OpenLIT's value for a model its price file
        # lacks. Taken as no cost at all, so the call counts as unpriced instead of free.
        return None

    def part(column: str) -> Decimal | None:
        v = row.get(column)
        return v.quantize(_SCALE) if isinstance(v, Decimal) and _plausible(v) else None

    return part("input_cost_usd"), part("output_cost_usd"), total.quantize(_SCALE)


def _set_provided(row: Row, costs: _Costs) -> None:
    row["input_cost_usd"], row["output_cost_usd"], row["total_cost_usd"] = costs
    row["price_status"] = "provided"


_SNAPSHOT_SUFFIX = re.compile(r"(?:[-@:._/](?:\d+|v\d+|latest|preview|exp|experimental))*")


def _variant_of(model: str, requested: str) -> bool:
    """Whether the response's model may be priced as the requested one: the same name with a
    snapshot or variant after it (`gpt-4o` answered by `gpt-4o-2024-11-20`, newer than the
    table), or no response model at all. Another name (`gpt-4o-mini` answered by an unknown
    `gpt-4o-mystery`) is another model: unpriced, never priced as the one asked for."""
    if not model:
        return True
    model, requested = model.lower(), requested.lower()
    # Only dates, versions and release tags after it: `gpt-4o-mini-…` is not `gpt-4o`, nor
    # `o1-pro-…` `o1`.
    return model.startswith(requested) and _SNAPSHOT_SUFFIX.fullmatch(model[len(requested) :]) is not None


def _tier_price(prices: TieredPrices, input_tokens: int) -> Decimal:
    """genai-prices' "cliff" tiers: past a tier's start (in input tokens, cache included) that
    tier's price applies to every token."""
    for tier in reversed(prices.tiers):
        if input_tokens > tier.start:
            return tier.price
    return prices.base


class Pricer:
    name = "pricing"

    def __init__(self, config: PricingConfig | None = None) -> None:
        config = config or PricingConfig()
        self._prefer_provided = config.prefer == "provided"
        self._overrides = config.all_overrides()
        self._snapshot = get_snapshot()
        # (provider, model) → ModelInfo | _NOT_FOUND; the table lookup costs ~130 µs, so once per model.
        self._models: dict[tuple[str, str], Any] = {}
        self._day_prices: dict[tuple[int, int], Any] = {}
        self.unknown_models: dict[str, int] = {}

    def process(self, batch: Batch) -> None:
        for row in batch.inferences:
            provided = _provided(row)
            row["provided_cost_usd"] = provided[2] if provided is not None else None
            if provided is not None and self._prefer_provided:
                _set_provided(row, provided)
                continue
            try:
                self.price(row)
            except Exception as e:  # one odd row never costs the batch
                log.warning("pricing failed", model=row.get("model"), error=error_summary(e))
                row["input_cost_usd"] = row["output_cost_usd"] = row["total_cost_usd"] = None
                row["price_status"] = "error"
            if provided is not None and row["price_status"] in ("unknown_model", "error"):
                _set_provided(row, provided)  # the table cannot price it: the span's own cost

    def price(self, row: Row) -> None:
        model, provider = row.get("model") or "", row.get("provider") or ""
        override = self._override_for(model, provider) or self._override_for(
            row.get("request_model") or "", provider
        )
        if override is not None:
            self._set(row, *override.cost(row), "override")
            return
        info = self._model_info(provider, model)
        requested = row.get("request_model") or ""
        if info is _NOT_FOUND and requested and requested != model and _variant_of(model, requested):
            info = self._model_info(provider, requested)
        if info is _NOT_FOUND:
            row["input_cost_usd"] = row["output_cost_usd"] = row["total_cost_usd"] = None
            row["price_status"] = "unknown_model"
            key = f"{provider}/{model}"
            if key not in self.unknown_models:
                log.warning("no price for model", provider=provider, model=model)
            self.unknown_models[key] = self.unknown_models.get(key, 0) + 1
            return
        model_price = self._price_on(info, row.get("start_time", 0))
        costs = linear_cost(model_price, row)
        if costs is None:
            usage = Usage(
                input_tokens=row["input_tokens"],
                output_tokens=row["output_tokens"],
                cache_read_tokens=row["cache_read_tokens"] or None,
                cache_write_tokens=row["cache_write_tokens"] or None,
            )
            price = model_price.calc_price(usage)
            costs = price["input_price"], price["output_price"]
        self._set(row, *costs, "priced")

    def _price_on(self, info: Any, start_ns: int) -> Any:
        """The model's prices at the call's time. Prices that change by date are cached per day;
        prices that depend on the time of day (off-peak discounts) are looked up every time."""
        if _varies_within_a_day(info):
            return info.get_prices(datetime.fromtimestamp(start_ns / 1e9, tz=UTC))
        day = start_ns // 86_400_000_000_000
        key = (id(info), day)
        found = self._day_prices.get(key)
        if found is None:
            found = info.get_prices(datetime.fromtimestamp(day * 86_400, tz=UTC))
            if len(self._day_prices) > 10_000:
                self._day_prices.clear()
            self._day_prices[key] = found
        return found

    @staticmethod
    def _set(row: Row, input_cost: Decimal, output_cost: Decimal, status: str) -> None:
        if not _plausible(input_cost + output_cost):  # absurd token counts: no cost beats a wrong one
            row["input_cost_usd"] = row["output_cost_usd"] = row["total_cost_usd"] = None
            row["price_status"] = "error"
            return
        input_cost, output_cost = input_cost.quantize(_SCALE), output_cost.quantize(_SCALE)
        row["input_cost_usd"] = input_cost
        row["output_cost_usd"] = output_cost
        row["total_cost_usd"] = input_cost + output_cost
        row["price_status"] = status

    def _override_for(self, model: str, provider: str) -> PriceOverride | None:
        if not model:
            return None
        for o in self._overrides:
            if (o.provider is None or o.provider == provider) and fnmatch.fnmatchcase(model, o.model):
                return o
        return None

    def _model_info(self, provider: str, model: str) -> Any:
        key = (provider, model)
        info = self._models.get(key)
        if info is None:
            info = _NOT_FOUND
            provider_id = PROVIDER_IDS.get(provider.lower()) if provider else None
            # A provider we cannot map (say, a self-hosted vLLM) is not priced by model name alone:
            # that would be a guess.
            if model and (provider_id or not provider):
                try:
                    info = self._snapshot.find_provider_model(model, None, provider_id, None)[1]
                except LookupError:
                    info = _NOT_FOUND
            if len(self._models) > 10_000:
                self._models.clear()
            self._models[key] = info
        return info
