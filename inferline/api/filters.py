"""The filters every inference query shares (list, export, analytics), and the WHERE conditions
they make.

Values never enter the SQL text: each becomes a ClickHouse query parameter (`{f_model:String}`),
and the text only names columns and parameters. The project condition is always first, on top of
the server-side `additional_table_filters` of the project's read-only session (defence in depth).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

# Ids and names are the sender's text, stored whole, and a breakdown returns them whole: a filter
# takes any of them back (the request body's own limit, 1 MiB, bounds it first).
MAX_FILTER_TEXT = 1 << 20
_Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_FILTER_TEXT)]
# An id or a name a call may lack: "" asks for the calls without one (a breakdown's "" group).
_Id = Annotated[str, StringConstraints(max_length=MAX_FILTER_TEXT)]
_Count = Annotated[int, Field(ge=0, le=(1 << 63) - 1)]
# DateTime64 holds 1900-01-01 … 2262-04-11; dates outside are clamped to it (a from_date of
# 0001-01-01 means "from the beginning").
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(2262, 4, 11, tzinfo=UTC)
MAX_TAG_FILTERS = 20
MAX_SCORE_FILTERS = 10
_N = TypeVar("_N", int | None, float | None)


STORABLE_FROM = datetime(1970, 1, 1, tzinfo=UTC)
STORABLE_TO = datetime(2262, 4, 11, tzinfo=UTC)


def not_below(value: _N, info: ValidationInfo, low_field: str, field: str) -> _N:
    """An upper bound, refused when below the lower bound given with it."""
    low = info.data.get(low_field)
    if value is not None and low is not None and value < low:
        raise ValueError(f"{field} must not be below {low_field}")
    return value


class ScoreFilter(BaseModel):
    """An evaluation result the inference must have: a value in [min, max] and/or a label."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = Field(None, allow_inf_nan=False, description="Lowest value (inclusive).")
    max: float | None = Field(None, allow_inf_nan=False, description="Highest value (inclusive).")
    label: _Text | None = Field(None, description="The result's label, exactly.")

    @field_validator("max")
    @classmethod
    def _not_below_min(cls, value: float | None, info: ValidationInfo) -> float | None:
        return not_below(value, info, "min", "max")


class InferenceFilters(BaseModel):
    """Which inferences of the caller's project a query covers. Every condition given must hold."""

    model_config = ConfigDict(extra="forbid")

    from_date: datetime = Field(
        description="Start of the range, ISO 8601 (`2024-01-01T00:00:00Z`); inclusive. No zone: UTC.",
        examples=["2024-01-01T00:00:00Z"],
    )
    to_date: datetime | None = Field(
        None,
        description="End of the range, ISO 8601; inclusive. Default: no end.",
        examples=["2024-12-31T23:59:59Z"],
    )
    project_id: str | None = Field(
        None,
        max_length=64,
        description="Optional; must be the API key's own project (403 otherwise): the key decides it.",
    )
    is_success: bool | None = Field(None, description="Only successful (true) or failed (false) calls.")
    min_tokens: _Count | None = Field(None, description="Minimum total token count (inclusive).")
    max_tokens: _Count | None = Field(None, description="Maximum total token count (inclusive).")
    max_latency_ms: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Maximum latency in milliseconds (inclusive)."
    )
    model: _Id | None = Field(
        None,
        description='Model: the response model or the requested model, exactly; "" for calls that name none.',
    )
    provider: _Id | None = Field(
        None, description='Provider, exactly (`openai`, `anthropic`, …); "" for calls without one.'
    )
    user: _Id | None = Field(None, description='End user id, exactly; "" for calls without one.')
    session: _Id | None = Field(
        None, description='Session / conversation id, exactly; "" for calls without one.'
    )
    tenant: _Id | None = Field(None, description='Tenant id, exactly; "" for calls without one.')
    tags: dict[_Text, Annotated[str, StringConstraints(max_length=MAX_FILTER_TEXT)]] | None = Field(
        None,
        max_length=MAX_TAG_FILTERS,
        description="Tag key → value; every pair must be present with exactly that value.",
        examples=[{"feature": "chat"}],
    )
    search: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = Field(
        None, description="Text that the prompt or the response contains (case-insensitive)."
    )
    scores: dict[_Text, ScoreFilter] | None = Field(
        None,
        max_length=MAX_SCORE_FILTERS,
        description="Evaluation name → the value range and/or label a result of that name must have "
        "(the call's own results: judged by its span, or by its response id).",
        examples=[{"relevance": {"min": 0.8}, "hallucination": {"label": "factual"}}],
    )

    @field_validator("from_date", "to_date")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:  # e.g. year 1 at +14:00 is before year 1 in UTC
            raise ValueError("date out of range once converted to UTC") from None
        # Stored times lie within DateTime64(9)'s range; a bound outside it selects the same rows
        # and would not parse as a query parameter.
        return min(max(value, STORABLE_FROM), STORABLE_TO)

    @field_validator("to_date")
    @classmethod
    def _after_from(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("from_date")
        if value is not None and start is not None and value < start:
            raise ValueError("to_date must not be before from_date")
        return value

    @field_validator("max_tokens")
    @classmethod
    def _not_below_min(cls, value: int | None, info: ValidationInfo) -> int | None:
        return not_below(value, info, "min_tokens", "max_tokens")

    def names(self) -> list[str]:
        """Names of the filters in use, for the audit log (never their values)."""
        return [name for name in InferenceFilters.model_fields if getattr(self, name) is not None]


def check_project(filters: InferenceFilters, project_id: str) -> None:
    """A `project_id` in the request must be the key's own: it never chooses data, and a
    mismatch is refused rather than silently answered with the key's project."""
    if filters.project_id is not None and filters.project_id != project_id:
        raise HTTPException(403, "project_id: this API key belongs to another project")


def model_condition(model: str) -> str:
    """A call's model is the one served, else the one requested (the `model` column holds that):
    a name matches either; "" matches the calls that name none."""
    if not model:
        return "model = {f_model:String}"
    return "(model = {f_model:String} OR request_model = {f_model:String})"


def where_clause(
    filters: InferenceFilters, project_id: str, *, time_column: str = "start_time"
) -> tuple[str, dict[str, Any]]:
    """(conditions joined by AND, without the WHERE keyword; their query parameters) over
    `llm_inferences` columns. `time_column` names the column the date range applies to."""
    conditions = ["project_id = {project:String}", f"{time_column} >= {{f_from:DateTime64(6, 'UTC')}}"]
    params: dict[str, Any] = {"project": project_id, "f_from": _ch_time(filters.from_date)}
    if filters.to_date is not None:
        # Inclusive to the microsecond, the API's precision: the timestamp an item shows as to_date
        # includes that item, although the stored time has nanoseconds.
        conditions.append(f"{time_column} < addMicroseconds({{f_to:DateTime64(6, 'UTC')}}, 1)")
        params["f_to"] = _ch_time(filters.to_date)
    if filters.is_success is not None:
        conditions.append("success = {f_success:Bool}")
        params["f_success"] = filters.is_success
    if filters.min_tokens is not None:
        conditions.append("total_tokens >= {f_min_tokens:UInt64}")
        params["f_min_tokens"] = filters.min_tokens
    if filters.max_tokens is not None:
        conditions.append("total_tokens <= {f_max_tokens:UInt64}")
        params["f_max_tokens"] = filters.max_tokens
    if filters.max_latency_ms is not None:
        conditions.append("latency_ms <= {f_max_latency_ms:Float64}")
        params["f_max_latency_ms"] = repr(filters.max_latency_ms)
    if filters.model is not None:
        conditions.append(model_condition(filters.model))
        params["f_model"] = filters.model
    for name, column in (("provider", "provider"), ("user", "user_id"), ("session", "session_id")):
        value = getattr(filters, name)
        if value is not None:
            conditions.append(f"{column} = {{f_{name}:String}}")
            params[f"f_{name}"] = value
    if filters.tenant is not None:
        conditions.append("tenant_id = {f_tenant:String}")
        params["f_tenant"] = filters.tenant
    for i, (key, value) in enumerate((filters.tags or {}).items()):
        key_param, value_param = f"{{f_tag_key_{i}:String}}", f"{{f_tag_value_{i}:String}}"
        # A missing tag reads as "": a value of "" asks for the calls without the tag, as a
        # breakdown by it groups them.
        conditions.append(f"tags[{key_param}] = {value_param}")
        params[f"f_tag_key_{i}"] = key
        params[f"f_tag_value_{i}"] = value
    if filters.search is not None:
        # Messages are stored as JSON text: search for the text as JSON writes it (quotes,
        # backslashes and control characters escaped), so any text finds itself.
        conditions.append(
            "(positionCaseInsensitiveUTF8(prompt_messages, {f_search:String}) > 0"
            " OR positionCaseInsensitiveUTF8(response_messages, {f_search:String}) > 0)"
        )
        params["f_search"] = orjson.dumps(filters.search).decode()[1:-1]
    for i, (name, wanted) in enumerate((filters.scores or {}).items()):
        conditions.append(_score_condition(i, name, wanted, params))
    return " AND ".join(conditions), params


def _score_condition(i: int, name: str, wanted: ScoreFilter, params: dict[str, Any]) -> str:
    """The inference has a result named `name` matching `wanted`: one judging its span, or one
    naming its response id (an evaluation sent without a span context)."""
    checks = [f"name = {{f_score_{i}:String}}"]
    params[f"f_score_{i}"] = name
    if wanted.min is not None:
        checks.append(f"value >= {{f_score_min_{i}:Float64}}")
        params[f"f_score_min_{i}"] = repr(wanted.min)
    if wanted.max is not None:
        checks.append(f"value <= {{f_score_max_{i}:Float64}}")
        params[f"f_score_max_{i}"] = repr(wanted.max)
    if wanted.label is not None:
        checks.append(f"label = {{f_score_label_{i}:String}}")
        params[f"f_score_label_{i}"] = wanted.label
    matching = "FROM scores FINAL WHERE project_id = {project:String} AND scope = 'span' AND " + " AND ".join(
        checks
    )
    return (
        f"(inference_id IN (SELECT inference_id {matching} AND span_id != '')"
        f" OR (response_id != '' AND response_id IN (SELECT response_id {matching} AND response_id != '')))"
    )


def _ch_time(value: datetime) -> str:
    """A DateTime64(6, 'UTC') parameter's text, clamped to the type's range."""
    value = min(max(value, _EARLIEST), _LATEST)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")
