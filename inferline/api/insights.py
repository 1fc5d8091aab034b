"""Cost insights for the caller's project over a time range (issue #16 item 4):

- **repeated prompts**: successful calls whose prompt messages are identical, byte for byte, on
  the same model; a response cache would have paid for the first of them only, so the saving is
  the cost of every call but the first (the earliest);
- **short calls on an expensive model**: successful, priced calls with fewer than
  `SHORT_INPUT_TOKENS` input and `SHORT_OUTPUT_TOKENS` output tokens, on a model that costs at
  least `EXPENSIVE_RATIO` times as much, at list price for the same tokens, as the cheapest
  comparable model: another model of the same provider that the project itself called in the
  range (same API and SDK, so switching is a model name, and one the project already trusts).

The prompt hash is computed in the query (`cityHash64(prompt_messages)`), not stored: see
docs/analytics.md#cost-insights for why. Reads go through the project's read-only session only.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from inferline.api.deps import CallerDep, ContextDep, audit
from inferline.api.errors import documented
from inferline.processors.pricing import Pricer
from inferline.storage.queries import PROMPT_PREVIEW

router = APIRouter(prefix="/api/v1/insights", tags=["insights"], responses=documented(401, 504))

SHORT_INPUT_TOKENS = 500
SHORT_OUTPUT_TOKENS = 200
EXPENSIVE_RATIO = Decimal(2)
DEFAULT_DAYS = 7
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(2262, 4, 11, tzinfo=UTC)


class RepeatedPrompt(BaseModel):
    prompt_hash: str = Field(description="cityHash64 of the stored (PII-masked) prompt messages, hex.")
    prompt_preview: str = Field(description="First 100 characters of the last user message.")
    model: str
    provider: str
    calls: int = Field(description="Successful calls with this prompt on this model.")
    cost_usd: float = Field(description="Their cost (unpriced calls count 0).")
    cacheable_cost_usd: float = Field(
        description="What a response cache would have saved: the cost of every call but the first."
    )
    unpriced_calls: int
    first_seen: datetime
    last_seen: datetime


class CheaperModel(BaseModel):
    provider: str
    model: str = Field(description="The expensive model the short calls used.")
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float = Field(description="What the calls cost as recorded.")
    list_cost_usd: float = Field(description="The same tokens at this model's list price today.")
    cheaper_model: str = Field(description="The project's cheapest comparable model (same provider).")
    cheaper_cost_usd: float = Field(description="The same tokens at the cheaper model's list price.")
    savings_usd: float = Field(description="list_cost_usd - cheaper_cost_usd.")


class Insights(BaseModel):
    since: datetime
    until: datetime
    repeated_prompts: list[RepeatedPrompt] = Field(description="Top groups, by cacheable cost.")
    repeated_groups: int = Field(description="Every group of repeated prompts in the range.")
    repeated_calls: int = Field(description="Calls a cache would have answered (all groups).")
    cacheable_cost_usd: float = Field(description="What a response cache would have saved (all groups).")
    short_input_tokens: int = Field(description="Threshold: a short call has fewer input tokens.")
    short_output_tokens: int = Field(description="Threshold: a short call has fewer output tokens.")
    expensive_ratio: float = Field(description="A model is expensive at this many times the cheapest's cost.")
    cheaper_models: list[CheaperModel]
    cheaper_savings_usd: float


_PREVIEW = PROMPT_PREVIEW.replace("prompt_messages", "prompt_sample")
_REPEATS = f"""
SELECT hex(h) AS prompt_hash, {_PREVIEW} AS prompt_preview, model, provider, calls, cost_usd,
    cost_usd - first_cost AS cacheable_cost_usd, unpriced_calls,
    formatDateTime(first_at, '%Y-%m-%dT%H:%i:%S.%fZ') AS first_seen,
    formatDateTime(last_at, '%Y-%m-%dT%H:%i:%S.%fZ') AS last_seen
FROM (
    SELECT cityHash64(prompt_messages) AS h, model, provider,
        any(prompt_messages) AS prompt_sample, count() AS calls,
        toDecimal128(sum(ifNull(total_cost_usd, 0)), 12) AS cost_usd,
        argMin(ifNull(total_cost_usd, 0), (start_time, inference_id)) AS first_cost,
        countIf(total_cost_usd IS NULL) AS unpriced_calls,
        min(start_time) AS first_at, max(start_time) AS last_at
    FROM llm_inferences FINAL
    WHERE {{where}}
    GROUP BY h, model, provider
    HAVING calls > 1
)
"""
_WHERE = (
    "project_id = {project:String} AND start_time >= {since:DateTime64(6, 'UTC')} "
    "AND start_time < addMicroseconds({until:DateTime64(6, 'UTC')}, 1) AND success"
)
_REPEAT_WHERE = _WHERE + " AND prompt_messages NOT IN ('', '[]')"
_TOP = (
    _REPEATS.format(where=_REPEAT_WHERE)
    + "ORDER BY cacheable_cost_usd DESC, calls DESC, prompt_hash LIMIT {limit:UInt32}"
)
_REPEAT_TOTALS = (
    "SELECT count() AS groups, sum(calls - 1) AS calls, sum(cacheable_cost_usd) AS cacheable_cost_usd "
    "FROM (" + _REPEATS.format(where=_REPEAT_WHERE) + ")"
)
_SHORT = (
    "SELECT provider, model, count() AS calls, sum(input_tokens) AS in_tokens, "
    "sum(output_tokens) AS out_tokens, toDecimal128(sum(total_cost_usd), 12) AS cost_usd "
    "FROM llm_inferences FINAL WHERE " + _WHERE + " AND total_cost_usd IS NOT NULL "
    f"AND input_tokens < {SHORT_INPUT_TOKENS} AND output_tokens < {SHORT_OUTPUT_TOKENS} "
    "GROUP BY provider, model"
)
# The models the project called in the range (the hourly rollup: a few rows per hour and model).
_MODELS = (
    "SELECT DISTINCT provider, model FROM inference_stats_by_hour WHERE project_id = {project:String} "
    "AND hour >= toStartOfHour({since:DateTime64(6, 'UTC')}) AND hour <= {until:DateTime64(6, 'UTC')} "
    "AND model != ''"
)

_pricer: Pricer | None = None
_pricer_lock = threading.Lock()


def list_cost(provider: str, model: str, calls: int, input_tokens: int, output_tokens: int) -> Decimal | None:
    """What `calls` calls with these token totals cost on the model at today's list price (the
    price table, no overrides), or None when the table has no price for it. Each short call is
    within the first price tier, so the price is linear: per call, per input and per output token."""
    global _pricer
    with _pricer_lock:
        if _pricer is None:
            _pricer = Pricer()
        pricer = _pricer

        def one(inp: int, out: int) -> Decimal | None:
            row: dict[str, Any] = {
                "provider": provider,
                "model": model,
                "request_model": "",
                "input_tokens": inp,
                "output_tokens": out,
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "start_time": time.time_ns(),
            }
            pricer.price(row)
            return row["total_cost_usd"] if row["price_status"] == "priced" else None

        base, per_in, per_out = one(0, 0), one(1000, 0), one(0, 1000)
    if base is None or per_in is None or per_out is None:
        return None
    return calls * base + (per_in - base) * input_tokens / 1000 + (per_out - base) * output_tokens / 1000


def _time(value: datetime) -> datetime:
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return min(max(value, _EARLIEST), _LATEST)


@router.get("", response_model=Insights, summary="Cost insights of the key's project")
def insights(
    who: CallerDep,
    ctx: ContextDep,
    since: Annotated[
        datetime | None, Query(description=f"default: {DEFAULT_DAYS} days before `until`")
    ] = None,
    until: Annotated[datetime | None, Query(description="default: now")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="repeated prompt groups listed")] = 20,
) -> Insights:
    """Repeated identical prompts with the cost a response cache would have saved, and short calls
    on an expensive model with what the project's cheapest comparable model would have cost."""
    end = _time(until) if until else datetime.now(UTC)
    start = _time(since) if since else max(end - timedelta(days=DEFAULT_DAYS), _EARLIEST)
    if start > end:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "since"), "msg": "since is after until", "input": None}]
        )
    params: dict[str, Any] = {
        "project": who.project_id,
        "since": start.strftime("%Y-%m-%d %H:%M:%S.%f"),
        "until": end.strftime("%Y-%m-%d %H:%M:%S.%f"),
    }
    top = ctx.sql.rows(who.project_id, _TOP, {**params, "limit": limit})
    totals = ctx.sql.rows(who.project_id, _REPEAT_TOTALS, params)[0]
    cheaper = _cheaper(
        ctx.sql.rows(who.project_id, _SHORT, params), ctx.sql.rows(who.project_id, _MODELS, params)
    )
    audit(who, "insights.read", rows=len(top) + len(cheaper))
    return Insights(
        since=start,
        until=end,
        repeated_prompts=[RepeatedPrompt(**r) for r in top],
        repeated_groups=int(totals["groups"]),
        repeated_calls=int(totals["calls"]),
        cacheable_cost_usd=float(totals["cacheable_cost_usd"]),
        short_input_tokens=SHORT_INPUT_TOKENS,
        short_output_tokens=SHORT_OUTPUT_TOKENS,
        expensive_ratio=float(EXPENSIVE_RATIO),
        cheaper_models=cheaper,
        cheaper_savings_usd=float(sum(Decimal(str(c.savings_usd)) for c in cheaper)),
    )


def _cheaper(short: list[dict[str, Any]], models: list[dict[str, Any]]) -> list[CheaperModel]:
    by_provider: dict[str, set[str]] = {}
    for m in models:
        by_provider.setdefault(m["provider"], set()).add(m["model"])
    found = []
    for g in short:
        calls, inp, out = int(g["calls"]), int(g["in_tokens"]), int(g["out_tokens"])
        own = list_cost(g["provider"], g["model"], calls, inp, out)
        if own is None or own <= 0:
            continue
        priced = [
            (cost, name)
            for name in sorted(by_provider.get(g["provider"], set()) - {g["model"]})
            if (cost := list_cost(g["provider"], name, calls, inp, out)) is not None
        ]
        if not priced:
            continue
        cost, name = min(priced)
        if own < EXPENSIVE_RATIO * cost:
            continue
        found.append(
            CheaperModel(
                provider=g["provider"],
                model=g["model"],
                calls=calls,
                input_tokens=inp,
                output_tokens=out,
                cost_usd=float(g["cost_usd"]),
                list_cost_usd=float(own),
                cheaper_model=name,
                cheaper_cost_usd=float(cost),
                savings_usd=float(own - cost),
            )
        )
    return sorted(found, key=lambda c: -c.savings_usd)
