"""Events into the outbox: one delivery per (event, subscribed webhook), written before anything
is sent, so an event survives a restart. The delivery id is derived from the event id and the
webhook, so an event enqueued twice (an evaluation repeated after a crash) is delivered once.

The outbox is bounded per project: past `max_pending` waiting deliveries a new one is recorded as
`dropped` (visible in the API) instead of growing without end while an endpoint is down.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, get_args

import orjson
import structlog

from inferline.alerts.store import DROPPED, AlertStore, Delivery
from inferline.core.metrics import WEBHOOK_DELIVERIES

log = structlog.get_logger()

EventType = Literal["alert.firing", "alert.resolved", "feedback.created"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
_DELIVERY_NAMESPACE = uuid.UUID("0b6f3a52-9c1e-5d47-8e2a-4c7d1f905b63")


@dataclass(frozen=True, slots=True)
class Event:
    project_id: str
    event_id: str
    type: str
    at: datetime
    data: dict[str, Any]

    def body(self) -> str:
        return orjson.dumps(
            {
                "id": self.event_id,
                "type": self.type,
                "created_at": self.at.isoformat().replace("+00:00", "Z"),
                "project_id": self.project_id,
                "data": self.data,
            },
            option=orjson.OPT_NON_STR_KEYS,
        ).decode()


def delivery_id(event_id: str, webhook_id: str) -> str:
    return str(uuid.uuid5(_DELIVERY_NAMESPACE, f"{event_id}\n{webhook_id}"))


def enqueue(store: AlertStore, events: list[Event], max_pending: int) -> int:
    """Writes the deliveries of these events (all of one project or several); returns how many."""
    by_project: dict[str, list[Event]] = {}
    for e in events:
        by_project.setdefault(e.project_id, []).append(e)
    written = 0
    for project_id, project_events in by_project.items():
        hooks = store.webhooks(project_id)
        deliveries = [
            Delivery(
                project_id,
                h.webhook_id,
                delivery_id(e.event_id, h.webhook_id),
                e.event_id,
                e.type,
                e.body(),
                e.at,
            )
            for e in project_events
            for h in hooks
            if not h.events or e.type in h.events
        ]
        if not deliveries:
            continue
        known = store.known_deliveries(project_id, [d.delivery_id for d in deliveries])
        deliveries = [d for d in deliveries if d.delivery_id not in known]
        room = max_pending - store.pending_count(project_id)
        kept = []
        for d in deliveries:
            if room > 0:
                kept.append(d)
                room -= 1
            else:
                kept.append(replace(d, status=DROPPED, body="", last_error="outbox full"))
        dropped = sum(1 for d in kept if d.status == DROPPED)
        if dropped:
            WEBHOOK_DELIVERIES.labels("dropped").inc(dropped)
            log.warning(
                "webhook outbox full: deliveries dropped", project_id=project_id, max_pending=max_pending
            )
        store.put_deliveries(kept)
        written += len(kept)
    return written
