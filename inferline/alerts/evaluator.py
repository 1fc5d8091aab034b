"""Evaluating every project's rules once a minute: one query per project (inferline.alerts.query),
the state machine per rule (inferline.alerts.states), and the transitions written to the history
and the outbox before the new states, so a crash in between repeats the same events (same ids)
rather than losing them.

`evaluate(now)` is the whole evaluation at one time, for tests and for the loop; `run` calls it
at every minute (or `every_s`) until stopped.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import orjson
import structlog

from inferline.alerts import query
from inferline.alerts.outbox import Event, enqueue
from inferline.alerts.query import Measurement
from inferline.alerts.states import RuleState, step
from inferline.alerts.store import AlertStore, StoredRule, utcnow
from inferline.core.logging import error_summary
from inferline.core.metrics import ALERT_EVALUATIONS, ALERT_TRANSITIONS

log = structlog.get_logger()

_EVENT_NAMESPACE = uuid.UUID("5d0b8a1e-27c4-5f39-a6e1-93b4d2c07e18")
# Rows of a minute reach the rollups a flush after they were acknowledged: the minute just ended
# is measured this long after it ended.
SETTLE = timedelta(seconds=5)


def whole_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")


class Evaluator:
    def __init__(self, store: AlertStore, max_pending: int, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.max_pending = max_pending
        self.clock = clock

    def evaluate(self, now: datetime | None = None) -> list[Event]:
        """Measures every enabled rule at the whole minute before `now - SETTLE`; returns the
        transitions made. A disabled rule that was firing is resolved (it showed `firing` for
        good, and its receivers never heard the end of it); one pending goes back to ok. A
        project whose query fails is skipped this time (and logged)."""
        end = whole_minute((now or self.clock()) - SETTLE)
        by_project: dict[str, list[StoredRule]] = {}
        for rule in self.store.rules():
            by_project.setdefault(rule.project_id, []).append(rule)
        events: list[Event] = []
        states: dict[tuple[str, str], RuleState] = {}
        for project_id, rules in by_project.items():
            try:
                project_events, project_states = self._evaluate_project(project_id, rules, end)
            except Exception as e:
                ALERT_EVALUATIONS.labels("error").inc()
                log.error("alert evaluation failed", project_id=project_id, error=error_summary(e))
                continue
            ALERT_EVALUATIONS.labels("ok").inc()
            events += project_events
            states |= {(project_id, rule_id): state for rule_id, state in project_states.items()}
        # After every project's events: a crash before this line repeats them (same ids), once.
        self.store.put_states(states)
        return events

    def _evaluate_project(
        self, project_id: str, rules: list[StoredRule], end: datetime
    ) -> tuple[list[Event], dict[str, RuleState]]:
        """Measures one project's rules and writes their transitions; returns them with the new
        states (written for every project at once, by `evaluate`)."""
        enabled = [r for r in rules if r.spec.enabled]
        measured: dict[str, Measurement] = {}
        if enabled:
            q = query.build(project_id, [(r.rule_id, r.spec) for r in enabled], end)
            [row] = self.store.query(q.sql, q.params)
            measured = q.measurements(row)
        before = self.store.states(project_id)
        after: dict[str, RuleState] = {}
        events = []
        for rule in rules:
            spec, was = rule.spec, before.get(rule.rule_id, RuleState())
            if spec.enabled:
                m = measured[rule.rule_id]
                breached = m.value is not None and m.calls >= spec.min_calls and spec.breached(m.value)
            elif was.status in ("firing", "pending"):
                m, breached = Measurement(None, 0), False  # disabled: the condition no longer holds
            else:
                continue  # disabled and at rest: nothing to measure or write
            state, transition = step(was, breached, end, spec.for_minutes, m.value, m.calls)
            after[rule.rule_id] = state
            if transition is not None:
                data = {
                    "rule": {"rule_id": rule.rule_id, **orjson.loads(spec.model_dump_json())},
                    "status": transition,
                    "value": m.value,
                    "calls": m.calls,
                    "since": _iso(state.since),
                    "at": _iso(end),
                }
                event_id = str(
                    uuid.uuid5(_EVENT_NAMESPACE, f"{project_id}\n{rule.rule_id}\n{transition}\n{end}")
                )
                events.append(Event(project_id, event_id, f"alert.{transition}", end, data))
        if events:
            self.store.add_events(
                [
                    {
                        "project_id": project_id,
                        "rule_id": e.data["rule"]["rule_id"],
                        "event_id": e.event_id,
                        "at": e.at,
                        "status": e.data["status"],
                        "value": e.data["value"],
                        "calls": e.data["calls"],
                        "body": e.body(),
                    }
                    for e in events
                ]
            )
            enqueue(self.store, events, self.max_pending)
            for e in events:
                ALERT_TRANSITIONS.labels(e.data["status"]).inc()
                log.info(
                    "alert", project_id=project_id, rule_id=e.data["rule"]["rule_id"], status=e.data["status"]
                )
        return events, after

    async def run(self, stop: asyncio.Event, every_s: float) -> None:
        """Evaluates at every `every_s` (60: SETTLE after each whole minute) until `stop` is set."""
        while not stop.is_set():
            now = self.clock()
            if every_s >= 60:
                wake = whole_minute(now) + SETTLE
                wait = (
                    (wake - now).total_seconds()
                    if wake > now
                    else (wake + timedelta(minutes=1) - now).total_seconds()
                )
            else:
                wait = every_s
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
                return
            except TimeoutError:
                pass
            try:
                await asyncio.to_thread(self.evaluate)
            except Exception as e:  # the store is down: try again at the next minute
                log.error("alert evaluation failed", error=error_summary(e))
