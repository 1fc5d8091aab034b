"""Feedback on one inference: written through the pipeline's writer (masked and scored like
prompts; the answer comes once the row is committed) and read back with a summary.

A client that may retry sends an `Idempotency-Key` header (or its own `feedback_id`): the retry
gets the same feedback id, finds the row already stored and is answered 200 with it; two retries
racing each other write the same key, which the `feedback` table (ReplacingMergeTree) collapses.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator, model_validator

from inferline.api.deps import ApiContext, Caller, CallerDep, ContextDep, audit
from inferline.core.errors import Retryable

router = APIRouter(tags=["feedback"])

# Namespace of feedback ids derived from an Idempotency-Key (any fixed UUID would do).
_IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c2b0e-4a57-5d8e-9b1a-2f0c7e3d9a41")
MAX_ITEMS = 1000
InferenceId = Annotated[uuid.UUID, Path(description="The inference's id (`inference_id`).")]


class FeedbackIn(BaseModel):
    """At least one of `thumbs_up`, `rating`, `comment`, `demonstration`."""

    model_config = ConfigDict(extra="forbid")

    feedback_id: uuid.UUID | None = Field(
        None, description="Your id for this feedback; a retry with the same id is stored once."
    )
    thumbs_up: StrictBool | None = Field(None, description="Thumbs up (true) or down (false).")
    rating: StrictInt | None = Field(None, ge=1, le=5, description="Rating from 1 to 5.")
    comment: str | None = Field(
        None, max_length=10_000, description="Free text; PII is masked and its sentiment scored."
    )
    demonstration: str | None = Field(
        None, max_length=100_000, description="What a better response would have been (PII masked)."
    )

    @field_validator("comment", "demonstration")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank (leave it out instead)")
        return value

    @model_validator(mode="after")
    def _something(self) -> FeedbackIn:
        if (
            self.thumbs_up is None
            and self.rating is None
            and self.comment is None
            and self.demonstration is None
        ):
            raise ValueError("give at least one of thumbs_up, rating, comment, demonstration")
        return self


class Feedback(BaseModel):
    feedback_id: uuid.UUID
    inference_id: uuid.UUID
    created_at: datetime
    thumbs_up: bool | None
    rating: int | None
    comment: str | None = Field(description="As stored: PII masked.")
    comment_sentiment: float | None = Field(description="Sentiment of the comment in [-1, 1].")
    comment_sentiment_label: str | None = Field(description="positive, neutral or negative.")
    demonstration: str | None


class FeedbackSummary(BaseModel):
    count: int
    ratings: int = Field(description="Entries with a rating.")
    average_rating: float | None
    thumbs_up: int
    thumbs_down: int
    comments: int
    average_sentiment: float | None = Field(description="Mean sentiment of the scored comments.")


class FeedbackList(BaseModel):
    inference_id: uuid.UUID
    summary: FeedbackSummary
    items: list[Feedback] = Field(description=f"Oldest first, at most {MAX_ITEMS}.")


# (UUIDs come out of the JSON format as text; an alias named like a column would shadow it in WHERE.)
_FIELDS = (
    "feedback_id, inference_id, toUnixTimestamp64Nano(created_at) AS created_ns, thumbs_up, rating, "
    "comment, comment_sentiment, comment_sentiment_label, demonstration"
)
_OF_INFERENCE = "project_id = {project:String} AND inference_id = {inference:UUID}"


@router.post(
    "/api/v1/metrics/inferences/{inference_id}/feedback",
    status_code=201,
    response_model=Feedback,
    responses={
        200: {"description": "A retry: this feedback id was already stored; the stored entry."},
        404: {"description": "No inference with this id in the key's project."},
        503: {"description": "Storage unavailable or this role takes no feedback; retry later."},
    },
)
async def create_feedback(
    inference_id: InferenceId,
    body: FeedbackIn,
    who: CallerDep,
    ctx: ContextDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=255, description="Makes a retried POST store one entry."),
    ] = None,
) -> Feedback:
    if ctx.write_feedback is None:
        raise HTTPException(503, "this process does not take feedback (it has no writer)")
    start_ns = await asyncio.to_thread(_inference_start_ns, ctx, who, inference_id)
    if start_ns is None:
        raise HTTPException(404, f"inference {inference_id} not found")
    feedback_id = body.feedback_id
    if feedback_id is None and idempotency_key is not None:
        feedback_id = uuid.uuid5(
            _IDEMPOTENCY_NAMESPACE, f"{who.project_id}\n{inference_id}\n{idempotency_key}"
        )
    if feedback_id is not None:
        stored = await asyncio.to_thread(_stored, ctx, who, inference_id, feedback_id)
        if stored is not None:
            audit(
                who, "feedback.replay", rows=1, inference_id=str(inference_id), feedback_id=str(feedback_id)
            )
            response.status_code = 200
            return stored
    row: dict[str, Any] = {
        "project_id": who.project_id,
        "inference_id": str(inference_id),
        "feedback_id": str(feedback_id or uuid.uuid4()),
        "inference_time": start_ns,
        "created_at": time.time_ns(),
        "thumbs_up": body.thumbs_up,
        "rating": body.rating,
        "comment": body.comment or "",
        "demonstration": body.demonstration or "",
        "key_id": who.key_id,
    }
    try:
        await ctx.write_feedback([row])  # masks and scores the row in place
    except Retryable as e:
        raise HTTPException(e.http_status, str(e), headers={"Retry-After": str(e.retry_after_s)}) from None
    audit(who, "feedback.create", rows=1, inference_id=str(inference_id), feedback_id=row["feedback_id"])
    return _feedback({**row, "created_ns": row["created_at"]})


@router.get(
    "/api/v1/metrics/inferences/{inference_id}/feedback",
    response_model=FeedbackList,
    responses={404: {"description": "No inference with this id in the key's project."}},
)
def list_feedback(inference_id: InferenceId, who: CallerDep, ctx: ContextDep) -> FeedbackList:
    params = {"project": who.project_id, "inference": str(inference_id)}
    rows = ctx.sql.rows(
        who.project_id,
        f"SELECT {_FIELDS} FROM feedback FINAL WHERE {_OF_INFERENCE} "
        f"ORDER BY created_at, feedback_id LIMIT {MAX_ITEMS}",
        params,
    )
    if not rows and _inference_start_ns(ctx, who, inference_id) is None:
        raise HTTPException(404, f"inference {inference_id} not found")
    summary = ctx.sql.rows(
        who.project_id, f"SELECT {SUMMARY_COLUMNS} FROM feedback FINAL WHERE {_OF_INFERENCE}", params
    )[0]
    audit(who, "feedback.read", rows=len(rows), inference_id=str(inference_id))
    return FeedbackList(
        inference_id=inference_id, summary=summary_of(summary), items=[_feedback(r) for r in rows]
    )


# A summary's aggregates over `feedback FINAL` rows: one inference's, or an analytics group's.
SUMMARY_COLUMNS = (
    "count() AS n, count(rating) AS rated, avg(rating) AS avg_rating, countIf(thumbs_up) AS up, "
    "countIf(NOT thumbs_up) AS down, countIf(comment != '') AS commented, "
    "avg(comment_sentiment) AS avg_sentiment"
)


def summary_of(row: dict[str, Any]) -> FeedbackSummary:
    """A row of SUMMARY_COLUMNS (an absent row: no feedback) as the API's summary."""
    sentiment = row.get("avg_sentiment")
    return FeedbackSummary(
        count=row.get("n", 0),
        ratings=row.get("rated", 0),
        average_rating=row.get("avg_rating"),
        thumbs_up=row.get("up", 0),
        thumbs_down=row.get("down", 0),
        comments=row.get("commented", 0),
        average_sentiment=None if sentiment is None else round(sentiment, 4),
    )


def _inference_start_ns(ctx: ApiContext, who: Caller, inference_id: uuid.UUID) -> int | None:
    rows = ctx.sql.rows(
        who.project_id,
        "SELECT toUnixTimestamp64Nano(start_time) AS start_ns FROM llm_inferences "
        f"WHERE {_OF_INFERENCE} LIMIT 1",
        {"project": who.project_id, "inference": str(inference_id)},
    )
    return int(rows[0]["start_ns"]) if rows else None


def _stored(ctx: ApiContext, who: Caller, inference_id: uuid.UUID, feedback_id: uuid.UUID) -> Feedback | None:
    rows = ctx.sql.rows(
        who.project_id,
        f"SELECT {_FIELDS} FROM feedback FINAL WHERE {_OF_INFERENCE} AND feedback_id = {{feedback:UUID}}",
        {"project": who.project_id, "inference": str(inference_id), "feedback": str(feedback_id)},
    )
    return _feedback(rows[0]) if rows else None


def _feedback(row: dict[str, Any]) -> Feedback:
    sentiment = row.get("comment_sentiment")
    return Feedback(
        feedback_id=row["feedback_id"],
        inference_id=row["inference_id"],
        created_at=datetime.fromtimestamp(int(row["created_ns"]) / 1e9, UTC),
        thumbs_up=row.get("thumbs_up"),
        rating=row.get("rating"),
        comment=row.get("comment") or None,
        comment_sentiment=None if sentiment is None else round(float(sentiment), 4),
        comment_sentiment_label=row.get("comment_sentiment_label") or None,
        demonstration=row.get("demonstration") or None,
    )
