"""Token usage and the cost a span itself reports (priced cost is computed later, in `pricing`).

Counts are normalised so that input includes cache reads/writes and output includes reasoning.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final, NamedTuple

from inferline.processors.conventions import langfuse, langsmith, vercel_ai
from inferline.processors.conventions.field_sources import Chains, first_count
from inferline.processors.conventions.openinference import ResponseUsage
from inferline.processors.conventions.values import as_count, as_decimal

_IN_DETAILS: Final = "gen_ai.usage.input_token_details"
_OUT_DETAILS: Final = "gen_ai.usage.output_token_details"

# Usage broken down by modality -> `usage_details` keys. OTel semconv-genai (after 1.42) names
# first, then OpenInference's audio details.
USAGE_DETAILS: Final = (
    ("gen_ai.usage.text.input_tokens", "input.text"),
    ("gen_ai.usage.image.input_tokens", "input.image"),
    ("gen_ai.usage.audio.input_tokens", "input.audio"),
    ("gen_ai.usage.video.input_tokens", "input.video"),
    ("gen_ai.usage.text.output_tokens", "output.text"),
    ("gen_ai.usage.image.output_tokens", "output.image"),
    ("gen_ai.usage.audio.output_tokens", "output.audio"),
    ("gen_ai.usage.video.output_tokens", "output.video"),
    ("llm.token_count.prompt_details.audio", "input.audio"),
    ("llm.token_count.completion_details.audio", "output.audio"),
)


class TokenCounts(NamedTuple):
    """A call's token counts, each 0 when unknown."""

    input: int
    output: int
    total: int
    cache_read: int
    cache_write: int
    reasoning: int
    details: dict[str, int]  # by modality: `input.audio`, `output.image`, ... (only those reported)


_DETAIL_ATTRIBUTES: Final = frozenset(attribute for attribute, _ in USAGE_DETAILS)


def usage_details(a: dict[str, Any]) -> dict[str, int]:
    """Token counts by modality; the first name found for a key wins."""
    details: dict[str, int] = {}
    if _DETAIL_ATTRIBUTES.isdisjoint(a):  # most spans: one C-level pass over their keys
        return details
    for attribute, key in USAGE_DETAILS:
        v = a.get(attribute)
        if v is not None and key not in details:
            n = as_count(v)
            if n is not None:
                details[key] = n
    return details


def tokens(
    a: dict[str, Any],
    ch: Chains,
    is_langfuse: bool,
    is_vercel: bool,
    response: ResponseUsage | None = None,
) -> tuple[TokenCounts, dict[str, str]]:
    """The row's token counts, and the tags that say which counts were made inclusive (see
    `_inclusive`). `response` is the usage of a raw response document, for counts no attribute
    carries."""
    inp = first_count(a, ch.input)
    out = first_count(a, ch.output)
    total = first_count(a, ch.total)
    cache_read = first_count(a, ch.cache_read)
    cache_write = first_count(a, ch.cache_write)
    reasoning = first_count(a, ch.reasoning)
    details = usage_details(a)
    if response is not None:
        if inp is not None and inp == response.uncached_input:
            inp = response.input  # the prompt count copied Anthropic's cache-less input_tokens
        inp = inp if inp is not None else response.input
        out = out if out is not None else response.output
        total = total if total is not None else response.total
        cache_read = cache_read if cache_read is not None else response.cache_read
        cache_write = cache_write if cache_write is not None else response.cache_write
        reasoning = reasoning if reasoning is not None else response.reasoning
        for k, n in response.details.items():
            details.setdefault(k, n)
    if is_langfuse:
        u = langfuse.usage(a)
        if u is not None:
            inp = inp if inp is not None else u.input
            out = out if out is not None else u.output
            total = total if total is not None else u.total
            cache_read = cache_read if cache_read is not None else u.cache_read
            cache_write = cache_write if cache_write is not None else u.cache_write
            reasoning = reasoning if reasoning is not None else u.reasoning
    if inp is None and "ai.usage.tokens" in a:  # Vercel embeddings
        inp = as_count(a["ai.usage.tokens"])
    if is_vercel and (cache_read is None or cache_write is None or reasoning is None):
        pm = vercel_ai.provider_metadata(a) if "ai.response.providerMetadata" in a else None
        if pm:
            if cache_read is None:
                cache_read = vercel_ai.metadata_cache_read(pm)
            if cache_write is None:
                cache_write = vercel_ai.metadata_cache_write(pm)
            if reasoning is None:
                reasoning = vercel_ai.metadata_reasoning(pm)
    if _IN_DETAILS in a or _OUT_DETAILS in a:
        cache_read, cache_write, reasoning = _langsmith_details(a, cache_read, cache_write, reasoning)
    if total is None and "gen_ai.client.token.usage" in a:  # OpenLIT mid-2025
        total = as_count(a["gen_ai.client.token.usage"])
    adjusted = _NO_ADJUSTMENT
    if cache_read or cache_write or reasoning or (out is None and total is not None):
        inp, out, total, adjusted = _inclusive(
            inp, out, total, cache_read or 0, cache_write or 0, reasoning or 0, is_vercel
        )
    inp = inp or 0
    out = out or 0
    if total is None:
        total = inp + out
    # NamedTuple built without its generated Python `__new__` (see normalise._record)
    counts = tuple.__new__(
        TokenCounts, (inp, out, total, cache_read or 0, cache_write or 0, reasoning or 0, details)
    )
    return counts, adjusted


_NO_ADJUSTMENT: Final[dict[str, str]] = {}  # shared, never written: most rows need none
INPUT_ADJUSTED: Final = "inferline.input_tokens_adjusted"
OUTPUT_ADJUSTED: Final = "inferline.output_tokens_adjusted"


def _inclusive(
    inp: int | None,
    out: int | None,
    total: int | None,
    cache_read: int,
    cache_write: int,
    reasoning: int,
    is_vercel: bool,
) -> tuple[int | None, int | None, int | None, dict[str, str]]:
    """Input that includes its cache and output that includes its reasoning, where the counts
    show the sender left them out; and the tags saying so. Only what the counts prove:
    - an input below its own cache reads and writes cannot include them (AI SDK v5 reported
      Anthropic's and Bedrock's cache-less `inputTokens`; an instrumentation copying Anthropic's
      `input_tokens`): they are added. An exclusive input above its cache cannot be told apart.
    - a total of input + output + reasoning means output left reasoning out (AI SDK v5's Google
      provider: `candidatesTokenCount` without `thoughtsTokenCount`, billed at the output price).
    - output missing with input and total known is their difference.
    A total that was input + output before is input + output after; the cache comes first, so
    that a total including it leaves the right output."""
    adjusted: dict[str, str] = {}
    base = inp or 0
    missing = 0
    if cache_read and base < cache_read:
        missing = cache_read + cache_write  # below its reads: it includes neither
    elif cache_write and base < cache_read + cache_write:
        missing = cache_write  # its reads in (OpenAI-style), its writes out
    if missing:
        if total is not None and out is not None and total == base + out:
            total += missing
        inp = base + missing
        adjusted[INPUT_ADJUSTED] = "vercel_v5_anthropic_cache" if is_vercel else "cache_outside_input"
    if out is None and total is not None and inp is not None and total >= inp:
        out = total - inp
    elif reasoning and out is not None and total is not None and total == (inp or 0) + out + reasoning:
        out += reasoning
        adjusted[OUTPUT_ADJUSTED] = "reasoning_outside_output"
    return inp, out, total, adjusted or _NO_ADJUSTMENT


def _langsmith_details(
    a: dict[str, Any], cache_read: int | None, cache_write: int | None, reasoning: int | None
) -> tuple[int | None, int | None, int | None]:
    """Missing detail counts from LangSmith's `str(dict)` token details."""
    if _IN_DETAILS in a:
        if cache_read is None:
            cache_read = langsmith.token_detail(a, _IN_DETAILS, "cache_read")
        if cache_write is None:
            cache_write = langsmith.token_detail(a, _IN_DETAILS, "cache_creation")
    if reasoning is None and _OUT_DETAILS in a:
        reasoning = langsmith.token_detail(a, _OUT_DETAILS, "reasoning")
    return cache_read, cache_write, reasoning


class ProvidedCost(NamedTuple):
    """USD the span itself reports, None where it does not."""

    total: Decimal | None
    input: Decimal | None
    output: Decimal | None


_NO_COST: Final = ProvidedCost(
    None, None, None
)  # shared: most spans carry no cost, and records are immutable


def provided_cost(a: dict[str, Any], is_langfuse: bool) -> ProvidedCost:
    """The cost the span carries, if any; a missing total is the sum of the parts."""
    total = in_cost = out_cost = None
    if is_langfuse:
        total, in_cost, out_cost = langfuse.cost(a)
    if total is None and "gen_ai.usage.cost" in a:
        total = as_decimal(a["gen_ai.usage.cost"])
    if "llm.cost.prompt" in a or "llm.cost.completion" in a or "llm.cost.total" in a:
        in_cost = in_cost if in_cost is not None else as_decimal(a.get("llm.cost.prompt"))
        out_cost = out_cost if out_cost is not None else as_decimal(a.get("llm.cost.completion"))
        if total is None:
            total = as_decimal(a.get("llm.cost.total"))
    if total is None and (in_cost is not None or out_cost is not None):
        total = (in_cost or Decimal(0)) + (out_cost or Decimal(0))
    # a total is set whenever a part is
    return _NO_COST if total is None else ProvidedCost(total, in_cost, out_cost)
