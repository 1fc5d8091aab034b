"""Webhooks of the key's project: create (the signing secret is shown only then), list with
their delivery status, read, delete, and recent deliveries. Sending: inferline.alerts.delivery;
docs/alerts.md."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from inferline.alerts import url_guard
from inferline.alerts.component import Alerting
from inferline.alerts.outbox import EVENT_TYPES, EventType
from inferline.alerts.signing import new_secret
from inferline.alerts.store import Webhook, utcnow
from inferline.api.alerts import alerting
from inferline.api.deps import Caller, CallerDep, ContextDep, audit
from inferline.api.errors import documented

router = APIRouter(tags=["webhooks"], responses=documented(401, 503))
WebhookId = Annotated[uuid.UUID, Path(description="The webhook's id.")]
_NOT_FOUND = documented(404)


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048, description="http(s) URL the events are POSTed to.")
    events: list[EventType] = Field(
        default_factory=list, max_length=len(EVENT_TYPES), description="Event types to send; empty: all."
    )
    description: str = Field("", max_length=500)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        try:  # scheme, host, no credentials; the addresses are checked by the route
            url_guard.parse(url)
        except url_guard.UnsafeUrl as e:
            raise ValueError(f"url refused: {e}") from None
        return url


class DeliveryStatus(BaseModel):
    pending: int = 0
    delivered: int = 0
    failed: int = Field(0, description="Deliveries given up after the retry period.")
    dropped: int = Field(0, description="Deliveries not queued: the project's outbox was full.")
    failed_attempts: int = Field(0, description="Attempts that got no 2xx answer.")
    last_status: int | None = Field(None, description="HTTP status of the last attempt (0: no answer).")
    last_error: str | None = None
    last_attempt_at: datetime | None = None


class WebhookOut(BaseModel):
    webhook_id: uuid.UUID
    url: str
    events: list[str]
    description: str
    created_at: datetime
    deliveries: DeliveryStatus


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Signs every delivery (docs/alerts.md). Shown only here: keep it.")


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    delivery_id: str
    event_id: str = Field(description="Also in the Inferline-Event-Id header: the same for every attempt.")
    event_type: str
    status: str = Field(description="pending, delivered, failed or dropped")
    attempts: int
    last_status: int
    last_error: str
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="When a pending delivery is tried next.")
    delivered_at: datetime | None


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut] = Field(description="Newest first.")


def _status(summary: dict[str, Any] | None) -> DeliveryStatus:
    if summary is None:
        return DeliveryStatus()
    attempted = bool(summary["last_version"])
    return DeliveryStatus(
        pending=summary["pending"],
        delivered=summary["delivered"],
        failed=summary["failed"],
        dropped=summary["dropped"],
        failed_attempts=max(int(summary["failed_attempts"]), 0),
        last_status=summary["last_status"] if attempted else None,
        last_error=(summary["last_error"] or None) if attempted else None,
        last_attempt_at=datetime.fromtimestamp(summary["last_version"] / 1e9, UTC) if attempted else None,
    )


def _out(hook: Webhook, summary: dict[str, Any] | None) -> WebhookOut:
    return WebhookOut(
        webhook_id=uuid.UUID(hook.webhook_id),
        url=hook.url,
        events=list(hook.events),
        description=hook.description,
        created_at=hook.created_at,
        deliveries=_status(summary),
    )


_CREATING = threading.Lock()


def _one(a: Alerting, who: Caller, webhook_id: uuid.UUID) -> Webhook:
    found = a.store.webhooks(who.project_id, str(webhook_id))
    if not found:
        raise HTTPException(404, f"webhook {webhook_id} not found")
    return found[0]


@router.post("/api/v1/webhooks", status_code=201, response_model=WebhookCreated, responses=documented(409))
async def create_webhook(body: WebhookIn, who: CallerDep, ctx: ContextDep) -> WebhookCreated:
    a = alerting(ctx)
    try:  # checked again at every delivery: a name can point elsewhere later
        await asyncio.to_thread(url_guard.check, body.url, a.webhooks.allow_private_addresses)
    except url_guard.UnsafeUrl as e:
        # The same 422 as any invalid field, naming this one.
        raise RequestValidationError(
            [{"loc": ("body", "url"), "msg": f"url refused: {e}", "type": "value_error", "input": body.url}]
        ) from None

    def create() -> WebhookCreated:
        hook = Webhook(
            who.project_id,
            str(uuid.uuid4()),
            body.url,
            new_secret(),
            tuple(body.events),
            body.description,
            utcnow(),
        )
        with _CREATING:  # the count and the insert together: 20 creates at once made 15 webhooks
            if len(a.store.webhooks(who.project_id)) >= a.webhooks.max_per_project:
                raise HTTPException(409, f"a project has at most {a.webhooks.max_per_project} webhooks")
            a.store.put_webhook(hook)
        return WebhookCreated(**_out(hook, None).model_dump(), secret=hook.secret)

    created = await asyncio.to_thread(create)
    audit(who, "webhooks.create", rows=1, webhook_id=str(created.webhook_id))  # never the secret
    return created


@router.get("/api/v1/webhooks", response_model=WebhookList)
async def list_webhooks(who: CallerDep, ctx: ContextDep) -> WebhookList:
    a = alerting(ctx)

    def read() -> WebhookList:
        summary = a.store.delivery_summary(who.project_id)
        return WebhookList(
            webhooks=[_out(h, summary.get(h.webhook_id)) for h in a.store.webhooks(who.project_id)]
        )

    hooks = await asyncio.to_thread(read)
    audit(who, "webhooks.list", rows=len(hooks.webhooks))
    return hooks


@router.get("/api/v1/webhooks/{webhook_id}", response_model=WebhookOut, responses=_NOT_FOUND)
async def get_webhook(webhook_id: WebhookId, who: CallerDep, ctx: ContextDep) -> WebhookOut:
    a = alerting(ctx)

    def read() -> WebhookOut:
        hook = _one(a, who, webhook_id)
        return _out(hook, a.store.delivery_summary(who.project_id).get(hook.webhook_id))

    hook = await asyncio.to_thread(read)
    audit(who, "webhooks.get", rows=1, webhook_id=str(webhook_id))
    return hook


@router.delete("/api/v1/webhooks/{webhook_id}", status_code=204, responses=_NOT_FOUND)
async def delete_webhook(webhook_id: WebhookId, who: CallerDep, ctx: ContextDep) -> Response:
    """Deletes the webhook; its waiting deliveries are not sent."""
    a = alerting(ctx)

    def delete() -> None:
        a.store.put_webhook(_one(a, who, webhook_id), deleted=True)

    await asyncio.to_thread(delete)
    audit(who, "webhooks.delete", rows=1, webhook_id=str(webhook_id))
    return Response(status_code=204)


@router.get("/api/v1/webhooks/{webhook_id}/deliveries", response_model=DeliveryList, responses=_NOT_FOUND)
async def list_deliveries(
    webhook_id: WebhookId, who: CallerDep, ctx: ContextDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> DeliveryList:
    a = alerting(ctx)

    def read() -> DeliveryList:
        _one(a, who, webhook_id)
        rows = a.store.deliveries(who.project_id, str(webhook_id), limit)
        return DeliveryList(deliveries=[DeliveryOut.model_validate(d) for d in rows])

    deliveries = await asyncio.to_thread(read)
    audit(who, "webhooks.deliveries.list", rows=len(deliveries.deliveries), webhook_id=str(webhook_id))
    return deliveries
