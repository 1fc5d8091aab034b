"""What an alert rule is: the metric, which calls it looks at, over which window, against which
threshold, and for how long the condition must hold before the rule fires."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Metric = Literal[
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "ttft_p50",
    "ttft_p95",
    "ttft_p99",
    "error_rate",
    "slow_share",
    "cost_per_hour",
    "cost_per_day",
    "cost_vs_previous_day",
    "tokens_per_minute",
    "avg_rating",
    "avg_score",
]
Comparison = Literal[">", ">=", "<", "<="]
# The window reaches at most a day back (and a day before that for cost_vs_previous_day): the
# evaluation reads minutes, and two days of them per project is a few thousand rollup rows.
MAX_WINDOW_MINUTES = 1440
MAX_FOR_MINUTES = 1440
MAX_TAGS = 5


class RuleFilter(BaseModel):
    """Which calls the metric is computed over; unset fields match every call."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, min_length=1, max_length=256, description="Response or requested model.")
    provider: str | None = Field(None, min_length=1, max_length=256)
    tenant: str | None = Field(None, min_length=1, max_length=256, description="The `tenant_id` column.")
    tags: dict[str, str] = Field(
        default_factory=dict, description=f"At most {MAX_TAGS} `{{key: value}}` pairs, all required."
    )

    @field_validator("tags")
    @classmethod
    def _few_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        if len(tags) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags")
        if any(not k or len(k) > 256 or len(v) > 1024 for k, v in tags.items()):
            raise ValueError("tag keys are 1-256 characters, values at most 1024")
        return tags

    @property
    def needs_raw(self) -> bool:
        """No rollup keeps tenants or tags by the minute: such a rule reads llm_inferences."""
        return self.tenant is not None or bool(self.tags)

    @property
    def empty(self) -> bool:
        return self.model is None and self.provider is None and not self.needs_raw


class RuleSpec(BaseModel):
    """An alert rule as the API takes it (and as it is stored)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    metric: Metric = Field(
        description="latency_p50/p95/p99 and ttft_p50/p95/p99 (ms), error_rate (0-1), slow_share "
        "(share of calls slower than `slow_ms`, 0-1), cost_per_hour / cost_per_day (USD over the "
        "window, scaled to an hour or a day), cost_vs_previous_day (cost over the window divided by "
        "the cost of the same window a day earlier), tokens_per_minute, avg_rating (feedback, 1-5), "
        "avg_score (the `value` of evaluation scores named `score_name`)."
    )
    slow_ms: float | None = Field(None, gt=0, description="For slow_share: what counts as slow, in ms.")
    score_name: str | None = Field(
        None, min_length=1, max_length=256, description="For avg_score: the scores' `name`."
    )
    filter: RuleFilter = Field(default_factory=RuleFilter)
    window_minutes: int = Field(5, ge=1, le=MAX_WINDOW_MINUTES, description="The whole minutes looked at.")
    comparison: Comparison = ">"
    threshold: float
    min_calls: int = Field(
        1, ge=0, description="Fewer calls (ratings for avg_rating) in the window: the rule counts as ok."
    )
    for_minutes: int = Field(
        0, ge=0, le=MAX_FOR_MINUTES, description="The condition must hold this long before the rule fires."
    )
    enabled: bool = True

    @field_validator("threshold", "slow_ms")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        # JSON cannot hold an infinity: stored, `slow_ms: 1e999` read back as null and failed
        # validation, which stopped every project's rules and every alert route of its own.
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RuleSpec:
        if (self.metric == "slow_share") != (self.slow_ms is not None):
            raise ValueError("slow_ms is required by slow_share and taken by no other metric")
        if (self.metric == "avg_score") != (self.score_name is not None):
            raise ValueError("score_name is required by avg_score and taken by no other metric")
        if self.metric in ("avg_rating", "avg_score") and not self.filter.empty:
            # Feedback and score rows carry no model, provider, tenant or tags.
            raise ValueError(f"{self.metric} takes no filter: its rows are per project")
        return self

    def breached(self, value: float) -> bool:
        return {
            ">": value > self.threshold,
            ">=": value >= self.threshold,
            "<": value < self.threshold,
            "<=": value <= self.threshold,
        }[self.comparison]
