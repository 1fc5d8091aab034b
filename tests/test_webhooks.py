"""Webhook deliveries in-process, on a real store, to a real HTTP endpoint on loopback: signed,
once per event, retried, kept across a restart of the component, bounded; and the URLs refused
(server-side request forgery)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from prometheus_client import REGISTRY

from inferline.alerts import signing, url_guard
from inferline.alerts.delivery import Deliverer, DeliveryPolicy
from inferline.alerts.outbox import Event, enqueue
from inferline.alerts.store import AlertStore, Webhook
from tests.alert_helpers import Receiver, opened_store, store_client

POLICY = DeliveryPolicy(allow_private=True, timeout_s=2, backoff_s=0.01, max_backoff_s=0.01, poll_s=0.05)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with opened_store(tmp_path) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def add_webhook(
    store: AlertStore, url: str, project: str = "default", events: tuple[str, ...] = ()
) -> Webhook:
    hook = Webhook(project, str(uuid.uuid4()), url, signing.new_secret(), events, "", datetime.now(UTC))
    store.put_webhook(hook)
    return hook


def event(project: str = "default", kind: str = "alert.firing") -> Event:
    return Event(project, str(uuid.uuid4()), kind, datetime.now(UTC), {"status": kind.split(".")[1]})


def _counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("inferline_webhook_deliveries_total", {"outcome": outcome}) or 0.0


def deliver(store: AlertStore, policy: DeliveryPolicy = POLICY) -> int:
    async def once() -> int:
        deliverer = Deliverer(store, policy)
        try:
            return await deliverer.deliver_due()
        finally:
            await deliverer.close()

    return asyncio.run(once())


@pytest.mark.integration
def test_one_signed_delivery_per_event_and_none_again(client: Client, receiver: Receiver) -> None:
    store = AlertStore(client)
    hook = add_webhook(store, receiver.url)
    e = event()
    assert enqueue(store, [e], max_pending=100) == 1
    assert enqueue(store, [e], max_pending=100) == 0  # the same event again: already queued
    assert deliver(store) == 1
    assert deliver(store) == 0
    [got] = receiver.requests
    assert signing.verify(hook.secret, got["headers"]["inferline-signature"], got["body"])
    assert not signing.verify("whsec_other", got["headers"]["inferline-signature"], got["body"])
    assert got["headers"]["inferline-event-id"] == e.event_id
    assert got["headers"]["inferline-event-type"] == "alert.firing"
    body = orjson.loads(got["body"])
    assert body["id"] == e.event_id and body["type"] == "alert.firing" and body["project_id"] == "default"
    [d] = store.deliveries("default", hook.webhook_id)
    assert (d.status, d.attempts, d.last_status) == ("delivered", 1, 200)


@pytest.mark.integration
def test_retried_while_down_then_delivered_once_after_a_restart(
    client: Client, receiver: Receiver, tmp_path: Path
) -> None:
    store = AlertStore(client)
    hook = add_webhook(store, receiver.url)
    enqueue(store, [event()], max_pending=100)
    receiver.status = 503
    retried = _counted("retried")
    for _ in range(3):
        deliver(store)
        asyncio.run(asyncio.sleep(0.05))
    assert len(receiver.requests) == 3  # retried, each with the same event id
    assert _counted("retried") == retried + 3
    assert len({r["headers"]["inferline-event-id"] for r in receiver.requests}) == 1
    [d] = store.deliveries("default", hook.webhook_id)
    assert (d.status, d.attempts, d.last_status, d.last_error) == ("pending", 3, 503, "HTTP 503")

    # The endpoint is gone entirely (connection refused), then the component restarts with a
    # store client of its own: the outbox is what the store holds.
    port = receiver.port
    receiver.close()
    deliver(store)
    [d] = store.deliveries("default", hook.webhook_id)
    assert d.status == "pending" and d.attempts == 4 and d.last_status == 0 and "Connect" in d.last_error
    store.close()
    asyncio.run(asyncio.sleep(0.05))
    back = Receiver(port)
    try:
        restarted = AlertStore(store_client(tmp_path))
        assert deliver(restarted) == 1
        for _ in range(3):
            asyncio.run(asyncio.sleep(0.05))
            assert deliver(restarted) == 0
        assert len(back.requests) == 1
        assert signing.verify(
            hook.secret, back.requests[0]["headers"]["inferline-signature"], back.requests[0]["body"]
        )
        [d] = restarted.deliveries("default", hook.webhook_id)
        assert (d.status, d.attempts, d.last_status) == ("delivered", 5, 200)
        restarted.close()
    finally:
        back.close()


@pytest.mark.integration
def test_gives_up_after_the_retry_period(client: Client, receiver: Receiver) -> None:
    store = AlertStore(client)
    hook = add_webhook(store, receiver.url)
    enqueue(store, [event()], max_pending=100)
    receiver.status = 500
    deliver(store, DeliveryPolicy(allow_private=True, backoff_s=5, retry_for_s=1))
    [d] = store.deliveries("default", hook.webhook_id)
    assert (d.status, d.attempts) == ("failed", 1)
    assert deliver(store) == 0


@pytest.mark.integration
def test_outbox_is_bounded_per_project_and_subscriptions_apply(client: Client, receiver: Receiver) -> None:
    store = AlertStore(client)
    alerts_only = add_webhook(store, receiver.url, events=("alert.firing",))
    add_webhook(store, receiver.url, project="other")
    assert enqueue(store, [event("default", "feedback.created")], max_pending=2) == 0
    dropped = _counted("dropped")
    enqueue(store, [event(), event(), event()], max_pending=2)
    assert _counted("dropped") == dropped + 1
    statuses = sorted(d.status for d in store.deliveries("default", alerts_only.webhook_id))
    assert statuses == ["dropped", "pending", "pending"]
    assert store.pending_count("other") == 0  # the other project's webhook got none of them


@pytest.mark.integration
def test_a_delivery_is_refused_when_the_name_turns_private(client: Client, receiver: Receiver) -> None:
    """Checked at delivery time too: a loopback target without the operator's permission."""
    store = AlertStore(client)
    hook = add_webhook(store, receiver.url)
    enqueue(store, [event()], max_pending=100)
    deliver(store, DeliveryPolicy(allow_private=False, backoff_s=0.01))
    assert receiver.requests == []
    [d] = store.deliveries("default", hook.webhook_id)
    assert d.status == "pending" and "loopback" in d.last_error


@pytest.mark.unit
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://localhost:8080/",
        "http://[::1]/",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fe80::1]/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "ftp://93.184.216.34/",
        "file:///etc/passwd",
        "http://user:pass@93.184.216.34/",
        "http:///nohost",
        # IPv6 forms that carry a private IPv4 address (compatible, SIIT, NAT64, 6to4), site-local
        "http://[::127.0.0.1]/",
        "http://[::ffff:0:127.0.0.1]/",
        "http://[64:ff9b::169.254.169.254]/",
        "http://[64:ff9b:1::1]/",
        "http://[2002:7f00:1::]/",
        "http://[fec0::1]/",
        # what the HTTP client itself refuses: it escaped the delivery round, which then sent
        # every project's deliveries again and again
        "http://93.184.216.34/hook\x01",
        "http://ｌｏｃａｌｈｏｓｔ/",
    ],
)
def test_unsafe_urls_are_refused(url: str) -> None:
    with pytest.raises(url_guard.UnsafeUrl):
        url_guard.check(url, allow_private=False)


@pytest.mark.unit
def test_private_targets_need_the_operators_permission() -> None:
    assert url_guard.check("http://127.0.0.1:9/x", allow_private=True)
    assert url_guard.check("https://93.184.216.34/hook", allow_private=False)
    with pytest.raises(url_guard.UnsafeUrl):  # never the unspecified address
        url_guard.check("http://0.0.0.0/", allow_private=True)


@pytest.mark.unit
def test_signature_binds_body_and_time() -> None:
    secret = signing.new_secret()
    body = b'{"id": "1"}'
    header = signing.sign(secret, body, timestamp=1_700_000_000)
    assert signing.verify(secret, header, body, now=1_700_000_100)
    assert not signing.verify(secret, header, body + b" ", now=1_700_000_100)
    assert not signing.verify(secret, header, body, now=1_700_001_000)  # replayed too late
    assert not signing.verify(secret, "v1=abc", body)


@pytest.mark.integration
def test_a_failing_endpoint_costs_one_request_per_round(client: Client, receiver: Receiver) -> None:
    store = AlertStore(client)
    hook = add_webhook(store, receiver.url)
    events = []
    for _ in range(3):
        events.append(event())
        enqueue(store, [events[-1]], max_pending=100)
        asyncio.run(asyncio.sleep(0.002))  # one event per millisecond at least: their order is known
    receiver.status = 500
    assert deliver(store) == 3
    assert len(receiver.requests) == 1  # the other two wait for the same retry time
    attempts = sorted(d.attempts for d in store.deliveries("default", hook.webhook_id))
    assert attempts == [0, 0, 1]
    receiver.status = 200
    asyncio.run(asyncio.sleep(0.05))
    deliver(store)
    assert {d.status for d in store.deliveries("default", hook.webhook_id)} == {"delivered"}
    assert len(receiver.requests) == 4
    assert [r["headers"]["inferline-event-id"] for r in receiver.requests[1:]] == [e.event_id for e in events]


@pytest.mark.integration
def test_one_webhooks_broken_url_costs_no_other_delivery_a_repeat(client: Client, receiver: Receiver) -> None:
    """A webhook URL the HTTP client refuses (stored before the guard checked for it) raised out
    of the round: no outcome was written, and every project's due deliveries were sent again at
    every poll. Now it is that delivery's failure; the others are delivered once."""
    store = AlertStore(client)
    good = add_webhook(store, receiver.url, project="a")
    add_webhook(store, "http://93.184.216.34/hook\x01", project="b")
    enqueue(store, [event("a"), event("b")], max_pending=100)
    deliver(store)
    deliver(store)
    assert len(receiver.requests) == 1
    assert [d.status for d in store.deliveries("a", good.webhook_id)] == ["delivered"]


@pytest.mark.integration
def test_a_delivery_is_written_as_soon_as_its_endpoint_answers(client: Client, receiver: Receiver) -> None:
    """Outcomes were written when every webhook of the round had finished: a stop while a slow
    endpoint was still answering sent the answered deliveries again after the restart."""
    store = AlertStore(client)
    fast = add_webhook(store, receiver.url, project="a")
    slow = Receiver()
    slow.delay_s = 30.0
    try:
        add_webhook(store, slow.url, project="b")
        enqueue(store, [event("a"), event("b")], max_pending=100)

        async def stopped_midway() -> None:
            deliverer = Deliverer(store, POLICY)
            round_ = asyncio.create_task(deliverer.deliver_due())
            await asyncio.sleep(1.0)  # the fast one answered; the slow one has not
            round_.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await round_
            await deliverer.close()

        asyncio.run(stopped_midway())
    finally:
        slow.close()
    assert [d.status for d in store.deliveries("a", fast.webhook_id)] == ["delivered"]
    deliver(store)  # after the "restart": nothing again for the endpoint that answered
    assert len(receiver.requests) == 1


@pytest.mark.integration
def test_a_slow_endpoint_holds_up_only_its_own_deliveries(client: Client, receiver: Receiver) -> None:
    """Each round waited for every webhook: one project's endpoint answering in 8 s delayed
    another project's events by half a minute. The running deliverer now starts each webhook's
    deliveries as they are due, whatever another webhook is waiting for."""
    store = AlertStore(client)
    add_webhook(store, receiver.url, project="a")
    slow = Receiver()
    slow.delay_s = 30.0
    add_webhook(store, slow.url, project="b")
    enqueue(store, [event("b"), event("a")], max_pending=100)

    async def running() -> int:
        deliverer = Deliverer(store, POLICY)
        stop = asyncio.Event()
        runner = asyncio.create_task(deliverer.run(stop))
        await asyncio.sleep(0.5)
        enqueue(store, [event("a")], max_pending=100)  # while b's endpoint is still answering
        await asyncio.sleep(1.0)
        answered = len(receiver.requests)
        stop.set()
        slow.close()  # b's endpoint answers now; the deliverer lets it finish
        await runner
        await deliverer.close()
        return answered

    try:
        assert asyncio.run(running()) == 2
    finally:
        slow.close()
    assert len(slow.requests) == 1


@pytest.mark.integration
def test_new_events_wait_behind_one_waiting_for_its_retry(client: Client, receiver: Receiver) -> None:
    """A new delivery was due at once, ahead of an older one waiting for its retry: a resolved
    alert could arrive before its firing, and a failing endpoint got a request per new event."""
    store = AlertStore(client)
    hook = add_webhook(store, receiver.url)
    first = event(kind="alert.firing")
    receiver.status = 500
    enqueue(store, [first], max_pending=100)
    slow_retry = DeliveryPolicy(allow_private=True, timeout_s=2, backoff_s=0.5, max_backoff_s=0.5)
    deliver(store, slow_retry)
    receiver.status = 200
    second = event(kind="alert.resolved")  # later than the first
    enqueue(store, [second], max_pending=100)
    assert deliver(store, slow_retry) == 0  # the second waits with the first
    asyncio.run(asyncio.sleep(0.7))
    deliver(store, slow_retry)
    ids = [r["headers"]["inferline-event-id"] for r in receiver.requests]
    assert ids == [first.event_id, first.event_id, second.event_id]
    assert {d.status for d in store.deliveries("default", hook.webhook_id)} == {"delivered"}


@pytest.mark.integration
def test_a_name_is_called_at_its_checked_addresses_with_its_host_header(
    client: Client, receiver: Receiver
) -> None:
    """`localhost` may resolve to ::1 first, where nothing listens: the next address is tried."""
    store = AlertStore(client)
    add_webhook(store, f"http://localhost:{receiver.port}/hook")
    enqueue(store, [event()], max_pending=100)
    assert deliver(store) == 1
    [got] = receiver.requests
    assert got["headers"]["host"] == f"localhost:{receiver.port}"


@pytest.mark.integration
def test_an_international_name_is_resolved_and_sent_as_its_ascii_form(
    client: Client, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host like `bücher.example` passed the guard, then every attempt failed encoding its
    Host header (and the name checked could differ from the one the client used)."""
    asked: list[str] = []
    real = socket.getaddrinfo

    def names_resolve_to_loopback(host: str, *args: object, **kwargs: object) -> object:
        asked.append(host)
        return real("127.0.0.1", *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", names_resolve_to_loopback)
    store = AlertStore(client)
    add_webhook(store, f"http://bücher.example:{receiver.port}/hook")
    enqueue(store, [event()], max_pending=100)
    assert deliver(store) == 1
    [got] = receiver.requests
    assert got["headers"]["host"] == f"xn--bcher-kva.example:{receiver.port}"
    assert set(asked) == {"xn--bcher-kva.example"}
