"""Sending the outbox: every `poll_s`, the deliveries that are due are posted (signed, with the
event id), and each outcome is written back: delivered, or tried again after an exponential
backoff until `retry_for_s` after the event, then failed.

Per webhook, one run at a time: a webhook's due deliveries go one after another, oldest first,
stop at its first failure, and each outcome is written as soon as it is known; the outbox is not
read for that webhook again until its run ended, so a delivery in flight is never sent a second
time, while the other webhooks' deliveries go on (a slow endpoint holds up only its own). A
process that dies after an endpoint answered but before the outcome was written sends it once
more after the restart, with the same event id, which the receiver uses to drop the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

import httpx
import structlog

from inferline.alerts import signing, url_guard
from inferline.alerts.store import DELIVERED, FAILED, AlertStore, Delivery, Webhook, utcnow
from inferline.core.logging import error_summary
from inferline.core.metrics import WEBHOOK_DELIVERIES

log = structlog.get_logger()

USER_AGENT = "inferline-webhooks/1"
_WRITE_EVERY_S = 0.5  # outcomes of a webhook's run written at least this often


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    allow_private: bool = False
    timeout_s: float = 10.0
    backoff_s: float = 10.0  # the first retry's wait; doubled each time up to max_backoff_s
    max_backoff_s: float = 3600.0
    retry_for_s: float = 86400.0
    poll_s: float = 2.0
    batch: int = 100
    concurrency: int = 8


def backoff(policy: DeliveryPolicy, attempts: int) -> float:
    """The wait after the `attempts`-th failure, with ±20% jitter so endpoints coming back are not
    hit by every queued delivery at once."""
    base = min(policy.backoff_s * 2 ** max(attempts - 1, 0), policy.max_backoff_s)
    return base * random.uniform(0.8, 1.2)


class Deliverer:
    def __init__(
        self, store: AlertStore, policy: DeliveryPolicy, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self._busy: dict[tuple[str, str], asyncio.Task[None]] = {}  # (project, webhook) -> its task
        self._stopping = False
        self._turns = asyncio.Semaphore(policy.concurrency)
        self._client = httpx.AsyncClient(
            timeout=policy.timeout_s,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def deliver_due(self) -> int:
        """One round, waited for; returns how many deliveries were attempted."""
        started, tasks = await self._start_due()
        await asyncio.gather(*tasks)
        return started

    async def _start_due(self) -> tuple[int, list[asyncio.Task[None]]]:
        """Starts, per webhook, the delivery of what is due (of the webhooks not being delivered
        to already, whose deliveries are theirs until they finish): how many, and the tasks."""
        busy = list(self._busy)
        due = await asyncio.to_thread(self.store.due_deliveries, self.clock(), self.policy.batch, busy)
        by_hook: dict[tuple[str, str], list[Delivery]] = {}
        for d in due:
            by_hook.setdefault((d.project_id, d.webhook_id), []).append(d)
        tasks = []
        for key, deliveries in by_hook.items():
            task = asyncio.create_task(self._one_hook(key, deliveries))
            self._busy[key] = task
            task.add_done_callback(partial(self._done, key))
            tasks.append(task)
        return len(due), tasks

    def _done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        self._busy.pop(key, None)
        if not task.cancelled() and (e := task.exception()) is not None:
            # The store failed: what was not written is due again at the next poll.
            log.error(
                "webhook deliveries failed", project_id=key[0], webhook_id=key[1], error=error_summary(e)
            )

    async def _one_hook(self, key: tuple[str, str], deliveries: list[Delivery]) -> None:
        """A webhook's due deliveries, oldest first, until the first failure. Outcomes are written
        in small groups (at most `_WRITE_EVERY_S` apart), after a failure, at the end, and
        before a cancellation ends the task: an answered delivery is not sent again, and a
        hundred answers are not a hundred inserts."""
        found = await asyncio.to_thread(self.store.webhooks, *key)
        hook = found[0] if found else None
        written: list[Delivery] = []
        last_write = time.monotonic()
        try:
            for i, d in enumerate(deliveries):
                if self._stopping:
                    break  # the rest stays due for the next start
                async with self._turns:  # per request: a slow endpoint holds one turn at a time
                    outcome = await self._attempt(d, hook)
                written.append(outcome)
                if hook is not None and outcome.status != DELIVERED:
                    # The endpoint is failing: its other deliveries wait for the same retry time
                    # without a request each (and without a timeout each).
                    later = outcome.next_attempt_at
                    written += [replace(x, next_attempt_at=later) for x in deliveries[i + 1 :]]
                    break
                if time.monotonic() - last_write >= _WRITE_EVERY_S:
                    await asyncio.to_thread(self.store.put_deliveries, written)
                    written, last_write = [], time.monotonic()
        finally:
            if written:
                await asyncio.to_thread(self.store.put_deliveries, written)

    async def _attempt(self, d: Delivery, hook: Webhook | None) -> Delivery:
        if hook is None:
            WEBHOOK_DELIVERIES.labels("failed").inc()
            return replace(d, status=FAILED, last_error="webhook deleted")
        status, error = 0, ""
        try:
            status = await self._post(hook, d)
            if 200 <= status < 300:
                WEBHOOK_DELIVERIES.labels("delivered").inc()
                return replace(
                    d,
                    status=DELIVERED,
                    attempts=d.attempts + 1,
                    last_status=status,
                    last_error="",
                    delivered_at=self.clock(),
                )
            error = f"HTTP {status}"
        except url_guard.UnsafeUrl as e:
            error = str(e)
        except Exception as e:  # httpx's errors, and any other: this delivery's outcome, no one else's
            error = f"{type(e).__name__}: {e}"[:300] or type(e).__name__
        attempts = d.attempts + 1
        now = self.clock()
        retry_at = now + timedelta(seconds=backoff(self.policy, attempts))
        gave_up = retry_at - d.created_at > timedelta(seconds=self.policy.retry_for_s)
        WEBHOOK_DELIVERIES.labels("failed" if gave_up else "retried").inc()
        log.warning(
            "webhook delivery failed",
            project_id=d.project_id,
            webhook_id=d.webhook_id,
            event_id=d.event_id,
            attempts=attempts,
            error=error,
            gave_up=gave_up,
        )
        return replace(
            d,
            status=FAILED if gave_up else d.status,
            attempts=attempts,
            next_attempt_at=retry_at,
            last_status=status,
            last_error=error,
        )

    async def _post(self, hook: Webhook, d: Delivery) -> int:
        scheme, host, port = url_guard.parse(hook.url)
        addresses = await asyncio.to_thread(url_guard.resolve, host, port, self.policy.allow_private)
        default_port = 443 if scheme == "https" else 80
        named = f"[{host}]" if ":" in host else host  # an IPv6 literal
        body = d.body.encode()
        headers = {
            "Host": named if port == default_port else f"{named}:{port}",
            "Content-Type": "application/json",
            signing.SIGNATURE_HEADER: signing.sign(hook.secret, body),
            signing.EVENT_ID_HEADER: d.event_id,
            signing.EVENT_TYPE_HEADER: d.event_type,
        }
        extensions = {"sni_hostname": host} if scheme == "https" else {}
        refused: httpx.ConnectError | None = None
        for ip in addresses:
            # To an address just checked, not to whatever the name resolves to a moment later;
            # the Host header and TLS (SNI, certificate) still name the host. The next address
            # when one cannot be reached (an IPv6 address without an IPv6 route).
            url = httpx.URL(hook.url).copy_with(host=str(ip))
            try:
                r = await self._client.post(url, content=body, headers=headers, extensions=extensions)
            except httpx.ConnectError as e:
                refused = e
                continue
            return r.status_code
        assert refused is not None
        raise refused

    async def run(self, stop: asyncio.Event) -> None:
        """Every `poll_s`, starts what is due, without waiting for the webhooks already being
        delivered to (a slow endpoint held up every project's deliveries until it answered);
        at `stop`, lets those finish (the caller bounds the wait, then cancels)."""
        try:
            while not stop.is_set():
                try:
                    started, _ = await self._start_due()
                    if started >= self.policy.batch:
                        continue  # more are due: no pause
                except Exception as e:  # the store is down: try again at the next poll
                    log.error("webhook delivery round failed", error=error_summary(e))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.policy.poll_s)
            self._stopping = True  # runs finish the request in flight, start no other
            await asyncio.gather(*self._busy.values(), return_exceptions=True)
        finally:
            for task in list(self._busy.values()):
                task.cancel()
            await asyncio.gather(*self._busy.values(), return_exceptions=True)
