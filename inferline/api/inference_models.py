"""Request and response shapes of the inference routes (they make the OpenAPI spec)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from inferline.api.filters import InferenceFilters
from inferline.storage.queries import SortBy, SortOrder

MAX_PAGE = 1000
ExportFormat = Literal["csv", "jsonl"]


class Sorting(BaseModel):
    sort_by: SortBy = Field("timestamp", description="`timestamp`, `tokens` (total), `latency` or `cost`.")
    sort_order: SortOrder = Field("desc", description="`asc` or `desc`.")


class ListRequest(InferenceFilters, Sorting):
    """The seed's list request, with the filters every inference query shares."""

    offset: int = Field(0, ge=0, le=1_000_000_000, description="Rows to skip.")
    limit: int = Field(50, ge=1, le=MAX_PAGE, description=f"Page size, at most {MAX_PAGE}.")


class ExportRequest(InferenceFilters, Sorting):
    limit: int | None = Field(None, ge=1, le=1 << 40, description="At most this many rows; default: all.")


_TAG_HELP = "A tag filter as `key=value` (repeatable; every one must match)."
_SCORE_HELP = (
    "An evaluation filter as `name:min:max` (either bound may be empty: `relevance:0.8:`) or "
    "`name=label` (repeatable; every one must match)."
)
# GET /export takes the same fields as query parameters; tags become repeated `tag=key=value` and
# score filters repeated `score=…` (a query string has no maps). Typed as Any: a Literal is a
# valid field type, not a `type[Any]`.
_EXPORT_QUERY_FIELDS: dict[str, Any] = {
    "format": (ExportFormat, Field("csv", description="`csv` or `jsonl`.")),
    "tag": (list[str], Field(default_factory=list, description=_TAG_HELP)),
    "score": (list[str], Field(default_factory=list, description=_SCORE_HELP)),
    **{
        name: (field.annotation, field)
        for name, field in ExportRequest.model_fields.items()
        if name not in ("tags", "scores")
    },
}
ExportQuery: type[BaseModel] = create_model(
    "ExportQuery", __config__=ConfigDict(extra="forbid"), **_EXPORT_QUERY_FIELDS
)


class InferenceItem(BaseModel):
    """One row of the list (and of a JSONL export)."""

    inference_id: str
    timestamp: Annotated[str, Field(json_schema_extra={"format": "date-time"})] = Field(
        description="Start of the call, ISO 8601 UTC."
    )
    model_name: str
    provider: str
    prompt_preview: str = Field(description="First 100 characters of the last user message.")
    response_preview: str = Field(description="First 100 characters of the response.")
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cache_read_tokens: int = Field(description="Input tokens read from the provider's prompt cache.")
    cache_write_tokens: int = Field(description="Input tokens written to the provider's prompt cache.")
    reasoning_tokens: int = Field(description="Output tokens spent on reasoning.")
    response_time_ms: float
    ttft_ms: float | None
    cost: float | None = Field(description="USD; null when the model could not be priced.")
    provided_cost: float | None = Field(
        description="USD the instrumentation itself reported (e.g. OpenLIT's `gen_ai.usage.cost`), "
        "kept beside the price table's; null when the span carried none."
    )
    price_status: str = Field(
        description="Where `cost` comes from: `priced` (price table), `override` (your prices), "
        "`provided` (the instrumentation's cost), `unknown_model` or `error` (no cost)."
    )
    is_success: bool
    error_type: str


class InferenceList(BaseModel):
    items: list[InferenceItem]
    total_count: int = Field(description="Rows matching the filters, over all pages.")
    offset: int
    limit: int
    has_more: bool


class Source(BaseModel):
    service_name: str
    convention: str = Field(description="Instrumentation family (`otel_genai`, `openinference`, …).")
    instrumentation: str = Field(description="Instrumentation scope that made the span.")
    instrumentation_version: str
    environment: str
    agent_name: str
    agent_id: str


class Overview(BaseModel):
    inference_id: str
    project_id: str
    trace_id: str
    span_id: str
    parent_span_id: str
    response_id: str
    span_name: str
    start_time: str
    end_time: str
    model: str
    request_model: str
    provider: str
    operation: str
    endpoint: str = Field(description="Provider endpoint host.")
    source: Source
    is_success: bool
    error_type: str
    status_message: str
    streaming: bool
    finish_reasons: list[str]
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    request_parameters: dict[str, str] = Field(
        description="Other request parameters (seed, stop sequences, tool definitions, …), as sent."
    )
    user_id: str
    session_id: str
    tenant_id: str
    price_status: str


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # tool_calls, tool_call_id, name, reasoning when present

    role: str
    content: str | None
    part: Literal["prompt", "response"]
    tokens: int | None = Field(description="Tokens of this message where known (a side with one message).")


class Tokens(BaseModel):
    input: int
    output: int
    total: int
    cache_read: int
    cache_write: int
    reasoning: int
    details: dict[str, int] = Field(description="Tokens by modality where reported (`input.audio`, …).")


class Cost(BaseModel):
    input: float | None
    output: float | None
    total: float | None
    provided: float | None = Field(
        description="USD the instrumentation reported, beside the price table's (`price_status` says "
        "which one `total` is)."
    )


class Averages(BaseModel):
    calls: int
    avg_latency_ms: float | None
    avg_ttft_ms: float | None
    avg_tokens_per_second: float | None
    avg_cost_per_token: float | None
    latency_vs_avg_pct: float | None = Field(
        description="This call's latency above (+) or below (−) the average, %."
    )


class Comparison(BaseModel):
    window_from: str
    window_to: str
    project: Averages
    model: Averages


class TimelineEvent(BaseModel):
    event: Literal["request", "first_token", "response_complete"]
    at_ms: float


class Performance(BaseModel):
    latency_ms: float
    ttft_ms: float | None
    tokens_per_second: float | None = Field(description="Output tokens per second of total latency.")
    cost_per_token: float | None
    tokens: Tokens
    cost: Cost
    timeline: list[TimelineEvent]
    comparison: Comparison


class RawData(BaseModel):
    span_attributes: dict[str, str]
    resource_attributes: dict[str, str]
    tags: dict[str, str]
    labels: list[str]
    pii_found: dict[str, int]
    sentiment: dict[str, Any]


class Score(BaseModel):
    """One evaluation result about the call (OTel `gen_ai.evaluation.result`, OpenInference
    annotations and evaluations)."""

    name: str
    value: float | None = Field(
        description="The numeric score; null when the result has none (or it was unreadable)."
    )
    label: str = Field(description="The categorical result (an unreadable score's text lands here).")
    explanation: str
    scope: Literal["span", "trace", "session"] = Field(
        description="What it judges: this call (its span or response id), its whole trace, or its session."
    )
    evaluator: str = Field(description="Kind of judge where given (`HUMAN`, `LLM`, `CODE`).")
    identifier: str
    metadata: str = Field(description="JSON object, as sent.")
    source: str = Field(description="Convention it came in: `otel_genai` or `openinference`.")
    timestamp: str = Field(description="When the result was recorded, ISO 8601 UTC.")


class InferenceDetail(BaseModel):
    overview: Overview
    messages: list[Message]
    performance: Performance
    raw: RawData
    scores: list[Score] = Field(default_factory=list, description="Evaluation results about this call.")
