"""The alerting component of a service that owns the store (embedded, writer role): the rule
evaluator and the webhook deliverer as two background tasks, started and stopped with the
service, and what the API routes use (the store, the limits)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from inferline.alerts.delivery import Deliverer, DeliveryPolicy
from inferline.alerts.evaluator import Evaluator
from inferline.alerts.outbox import Event, enqueue
from inferline.alerts.store import AlertStore, utcnow
from inferline.core.config import AlertSettings, WebhookSettings
from inferline.core.logging import error_summary

log = structlog.get_logger()


def delivery_policy(settings: WebhookSettings) -> DeliveryPolicy:
    return DeliveryPolicy(
        allow_private=settings.allow_private_addresses,
        timeout_s=settings.timeout_s,
        backoff_s=settings.backoff_s,
        max_backoff_s=settings.max_backoff_s,
        retry_for_s=settings.retry_for_s,
        poll_s=settings.poll_s,
    )


class Alerting:
    def __init__(
        self,
        store: AlertStore,
        alerts: AlertSettings,
        webhooks: WebhookSettings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.alerts = alerts
        self.webhooks = webhooks
        self.evaluator = Evaluator(store, webhooks.max_pending, clock)
        self.deliverer = Deliverer(store, delivery_policy(webhooks), clock)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self.alerts.enabled:
            return
        self._tasks = [
            asyncio.create_task(self.evaluator.run(self._stop, self.alerts.evaluate_every_s), name="alerts"),
            asyncio.create_task(self.deliverer.run(self._stop), name="webhooks"),
        ]

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Lets a round in progress finish within `timeout_s` (its outcomes are written), then
        cancels it: what was not written is sent again after the restart, same event id."""
        self._stop.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.deliverer.close()

    def close(self) -> None:
        """After `stop`, once the API no longer takes requests (its routes use the store)."""
        self.store.close()

    async def feedback_stored(self, rows: list[dict[str, Any]]) -> None:
        """New feedback (masked and scored, as stored) into the outbox. The feedback is stored
        already: a failure here is logged, not passed to the caller."""
        events = [
            Event(
                r["project_id"],
                str(r["feedback_id"]),
                "feedback.created",
                datetime.fromtimestamp(int(r["created_at"]) / 1e9, UTC),
                {
                    "feedback_id": str(r["feedback_id"]),
                    "inference_id": str(r["inference_id"]),
                    "thumbs_up": r.get("thumbs_up"),
                    "rating": r.get("rating"),
                    "comment": r.get("comment") or None,
                    "comment_sentiment": r.get("comment_sentiment"),
                    "comment_sentiment_label": r.get("comment_sentiment_label") or None,
                },
            )
            for r in rows
        ]
        try:
            await asyncio.to_thread(enqueue, self.store, events, self.webhooks.max_pending)
        except Exception as e:
            log.error("feedback webhook events not queued", rows=len(rows), error=error_summary(e))
