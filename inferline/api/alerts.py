"""Alert rules of the key's project: create, list, read, replace, delete, and the history of
their transitions. Evaluation and delivery: inferline.alerts; docs/alerts.md."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import BaseModel, Field

from inferline.alerts.component import Alerting
from inferline.alerts.rules import RuleSpec
from inferline.alerts.states import RuleState, Status
from inferline.alerts.store import StoredRule, utcnow
from inferline.api.deps import ApiContext, Caller, CallerDep, ContextDep, audit
from inferline.api.errors import documented

router = APIRouter(tags=["alerts"], responses=documented(401, 503))
RuleId = Annotated[uuid.UUID, Path(description="The rule's id.")]
_NOT_FOUND = documented(404)


def alerting(ctx: ApiContext) -> Alerting:
    if not isinstance(ctx.alerts, Alerting):
        raise HTTPException(503, "this process does not manage alerts (it owns no store)")
    return ctx.alerts


class RuleStateOut(BaseModel):
    status: Status = Field(
        description="ok, pending (condition holding, not yet for `for_minutes`), firing, resolved."
    )
    since: datetime | None = Field(description="When the condition started to hold (pending, firing).")
    value: float | None = Field(description="The metric at the last evaluation (null: nothing to measure).")
    calls: int = Field(description="Calls (ratings for avg_rating) in the window at the last evaluation.")
    evaluated_at: datetime | None = Field(description="The end of the last window evaluated.")


class Rule(RuleSpec):
    rule_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    state: RuleStateOut


class RuleList(BaseModel):
    rules: list[Rule]


class AlertEvent(BaseModel):
    event_id: str
    rule_id: str
    status: str = Field(description="firing or resolved")
    at: datetime
    value: float | None
    calls: int


class AlertEventList(BaseModel):
    events: list[AlertEvent] = Field(description="Newest first.")


def _out(rule: StoredRule, state: RuleState | None) -> Rule:
    s = state or RuleState()
    return Rule(
        **rule.spec.model_dump(),
        rule_id=uuid.UUID(rule.rule_id),
        created_at=rule.created_at,
        updated_at=rule.updated_at,
        state=RuleStateOut(
            status=s.status, since=s.since, value=s.value, calls=s.calls, evaluated_at=s.evaluated_at
        ),
    )


def _one(a: Alerting, who: Caller, rule_id: uuid.UUID) -> Rule:
    found = a.store.rules(who.project_id, str(rule_id))
    if not found:
        raise HTTPException(404, f"rule {rule_id} not found")
    return _out(found[0], a.store.states(who.project_id).get(found[0].rule_id))


# The count and the insert of a new rule under one lock: 120 creates at once made 101 rules.
_CREATING = threading.Lock()


def add_rule(ctx: ApiContext, who: Caller, body: RuleSpec) -> Rule:
    """Creates a rule (blocking; the API and the dashboard both call it)."""
    a = alerting(ctx)
    now = utcnow()
    stored = StoredRule(who.project_id, str(uuid.uuid4()), body, now, now)
    with _CREATING:
        if len(a.store.rules(who.project_id)) >= a.alerts.max_rules_per_project:
            raise HTTPException(409, f"a project has at most {a.alerts.max_rules_per_project} rules")
        a.store.put_rule(stored)
    audit(who, "alerts.rules.create", rows=1, rule_id=stored.rule_id)
    return _out(stored, None)


def rules_of(ctx: ApiContext, who: Caller) -> RuleList:
    a = alerting(ctx)
    states = a.store.states(who.project_id)
    rules = RuleList(rules=[_out(r, states.get(r.rule_id)) for r in a.store.rules(who.project_id)])
    audit(who, "alerts.rules.list", rows=len(rules.rules))
    return rules


def remove_rule(ctx: ApiContext, who: Caller, rule_id: uuid.UUID) -> None:
    a = alerting(ctx)
    if not a.store.delete_rule(who.project_id, str(rule_id)):
        raise HTTPException(404, f"rule {rule_id} not found")
    audit(who, "alerts.rules.delete", rows=1, rule_id=str(rule_id))


@router.post("/api/v1/alerts/rules", status_code=201, response_model=Rule, responses=documented(409))
async def create_rule(body: RuleSpec, who: CallerDep, ctx: ContextDep) -> Rule:
    return await asyncio.to_thread(add_rule, ctx, who, body)


@router.get("/api/v1/alerts/rules", response_model=RuleList)
async def list_rules(who: CallerDep, ctx: ContextDep) -> RuleList:
    return await asyncio.to_thread(rules_of, ctx, who)


@router.get(
    "/api/v1/alerts/rules/{rule_id}",
    response_model=Rule,
    responses=_NOT_FOUND,
)
async def get_rule(rule_id: RuleId, who: CallerDep, ctx: ContextDep) -> Rule:
    rule = await asyncio.to_thread(_one, alerting(ctx), who, rule_id)
    audit(who, "alerts.rules.get", rows=1, rule_id=str(rule_id))
    return rule


@router.put(
    "/api/v1/alerts/rules/{rule_id}",
    response_model=Rule,
    responses=_NOT_FOUND,
)
async def replace_rule(rule_id: RuleId, body: RuleSpec, who: CallerDep, ctx: ContextDep) -> Rule:
    """Replaces the definition; the rule keeps its state (the next evaluation applies the new one)."""
    a = alerting(ctx)

    def replace() -> Rule:
        old = _one(a, who, rule_id)
        rule = StoredRule(who.project_id, str(rule_id), body, old.created_at, utcnow())
        a.store.put_rule(rule)
        return _out(rule, a.store.states(who.project_id).get(str(rule_id)))

    rule = await asyncio.to_thread(replace)
    audit(who, "alerts.rules.replace", rows=1, rule_id=str(rule_id))
    return rule


@router.delete(
    "/api/v1/alerts/rules/{rule_id}",
    status_code=204,
    responses=_NOT_FOUND,
)
async def delete_rule(rule_id: RuleId, who: CallerDep, ctx: ContextDep) -> Response:
    """Deletes the rule (a firing rule sends no `resolved`); its history stays."""
    await asyncio.to_thread(remove_rule, ctx, who, rule_id)
    return Response(status_code=204)


def _events(a: Alerting, who: Caller, rule_id: str | None, limit: int) -> AlertEventList:
    rows: list[dict[str, Any]] = a.store.events(who.project_id, rule_id, limit)
    return AlertEventList(events=[AlertEvent(**r) for r in rows])


@router.get("/api/v1/alerts/events", response_model=AlertEventList)
async def list_events(
    who: CallerDep, ctx: ContextDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> AlertEventList:
    """The project's alert history: every transition to firing or resolved, newest first."""
    events = await asyncio.to_thread(_events, alerting(ctx), who, None, limit)
    audit(who, "alerts.events.list", rows=len(events.events))
    return events


@router.get(
    "/api/v1/alerts/rules/{rule_id}/events",
    response_model=AlertEventList,
    responses=_NOT_FOUND,
)
async def rule_events(
    rule_id: RuleId, who: CallerDep, ctx: ContextDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> AlertEventList:
    a = alerting(ctx)

    def read() -> AlertEventList:
        # A deleted rule's history is still its own: 404 only when the project never had it.
        events = _events(a, who, str(rule_id), limit)
        if not events.events and not a.store.rules(who.project_id, str(rule_id)):
            raise HTTPException(404, f"rule {rule_id} not found")
        return events

    events = await asyncio.to_thread(read)
    audit(who, "alerts.events.list", rows=len(events.events), rule_id=str(rule_id))
    return events
