"""Evaluation results summarised over the analytics filters: per evaluation name and model, how
many results, their mean, lowest and highest value, and how often each label was given."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from inferline.api.deps import CallerDep, ContextDep, audit
from inferline.api.filters import InferenceFilters, check_project, where_clause
from inferline.storage import queries

router = APIRouter(prefix="/api/v1/metrics/analytics", tags=["analytics"])


class ScoreGroup(BaseModel):
    name: str = Field(description="The evaluation's name (`relevance`, `hallucination`, …).")
    model: str
    results: int = Field(description="Results of this name about the model's calls.")
    scored: int = Field(description="Those with a numeric value (the rest carry only a label).")
    avg: float | None = Field(description="Mean value of the scored results.")
    min: float | None
    max: float | None
    labels: dict[str, int] = Field(description="How many results gave each label.")


class ScoreSummary(BaseModel):
    groups: list[ScoreGroup] = Field(description="By name, then model.")


@router.post("/scores", response_model=ScoreSummary, summary="Evaluation scores by name and model")
def scores(body: InferenceFilters, who: CallerDep, ctx: ContextDep) -> ScoreSummary:
    """The evaluation results about the inferences the filters select (span-scoped results: the
    ones judging one call), grouped by evaluation name and model."""
    check_project(body, who.project_id)
    where, params = where_clause(body, who.project_id)
    rows = ctx.sql.rows(who.project_id, queries.SCORES_BY_MODEL.format(where=where), params)
    groups = summarise(rows)
    audit(who, "analytics.scores", rows=len(groups), filters=body.names())
    return ScoreSummary(groups=groups)


def summarise(rows: list[dict[str, Any]]) -> list[ScoreGroup]:
    """Rows per (name, model, label) folded into one group per (name, model)."""
    folded: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        g = folded.setdefault(
            (r["name"], r["model"]),
            {"results": 0, "scored": 0, "sum": 0.0, "min": None, "max": None, "labels": {}},
        )
        g["results"] += int(r["results"])
        scored = int(r["scored"])
        if scored:
            g["scored"] += scored
            g["sum"] += float(r["value_sum"])
            low, high = float(r["value_min"]), float(r["value_max"])
            g["min"] = low if g["min"] is None else min(g["min"], low)
            g["max"] = high if g["max"] is None else max(g["max"], high)
        if r["label"]:
            g["labels"][r["label"]] = g["labels"].get(r["label"], 0) + int(r["results"])
    return [
        ScoreGroup(
            name=name,
            model=model,
            results=g["results"],
            scored=g["scored"],
            avg=g["sum"] / g["scored"] if g["scored"] else None,
            min=g["min"],
            max=g["max"],
            labels=g["labels"],
        )
        for (name, model), g in sorted(folded.items())
    ]
