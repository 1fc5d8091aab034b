"""Alerts and webhooks on a running embedded service, as a user meets them: slow calls sent
through OTLP fire a rule, fast ones resolve it, and a webhook endpoint on loopback gets exactly
one signed delivery per transition, also when it was down across a restart of the service."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from inferline.alerts import signing
from tests.alert_helpers import Receiver
from tests.conftest import Service, make_service, wait_for
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, traces_json
from tests.prom_helpers import metrics_text

pytestmark = pytest.mark.e2e

# Evaluated every half second (not once a minute) and retried quickly; loopback allowed.
FAST = {
    "INFERLINE_ALERTS__EVALUATE_EVERY_S": "0.5",
    "INFERLINE_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES": "true",
    "INFERLINE_WEBHOOKS__BACKOFF_S": "0.3",
    "INFERLINE_WEBHOOKS__MAX_BACKOFF_S": "0.5",
    "INFERLINE_WEBHOOKS__POLL_S": "0.2",
    "INFERLINE_WORKERS": "0",
}


def call(svc: Service, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, f"{svc.api_url}{path}", headers={"Authorization": f"Bearer {svc.key}"}, timeout=30, **kwargs
    )


def send_calls(svc: Service, start_ns: int, latency_ms: float, count: int) -> None:
    spans = [
        json_span(
            GENAI_ATTRIBUTES, start_ns=start_ns + i * 1000, end_ns=start_ns + i * 1000 + int(latency_ms * 1e6)
        )
        for i in range(count)
    ]
    r = httpx.post(
        f"{svc.http_url}/v1/traces",
        content=traces_json(spans),
        headers={"authorization": f"Bearer {svc.key}", "content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def delivery(svc: Service, hook_id: str, event_type: str) -> dict[str, Any] | None:
    rows = call(svc, "GET", f"/api/v1/webhooks/{hook_id}/deliveries").json()["deliveries"]
    return next((d for d in rows if d["event_type"] == event_type), None)


def test_fires_resolves_and_delivers_each_transition_once_across_a_restart(tmp_path: Path) -> None:
    receiver = Receiver()
    svc = make_service(tmp_path, **FAST)
    svc.start()
    try:
        hook = call(svc, "POST", "/api/v1/webhooks", json={"url": receiver.url}).json()
        rule = call(
            svc,
            "POST",
            "/api/v1/alerts/rules",
            json={
                "name": "slow",
                "metric": "latency_p95",
                "threshold": 1000,
                "window_minutes": 3,
                "min_calls": 3,
            },
        ).json()
        # A minute ago: within the window of every evaluation of the next two minutes.
        start_ns = time.time_ns() - 70 * 10**9
        send_calls(svc, start_ns, 3000, 5)
        assert wait_for(lambda: receiver.of_type("alert.firing"), timeout=30), svc.logs()[-2000:]
        [fired] = receiver.of_type("alert.firing")
        assert signing.verify(hook["secret"], fired["headers"]["inferline-signature"], fired["body"])
        body = orjson.loads(fired["body"])
        assert body["data"]["rule"]["rule_id"] == rule["rule_id"] and body["data"]["value"] > 1000
        state = call(svc, "GET", f"/api/v1/alerts/rules/{rule['rule_id']}").json()["state"]
        assert state["status"] == "firing" and state["calls"] == 5

        # The endpoint goes down; fast calls resolve the rule meanwhile; its delivery fails.
        port = receiver.port
        receiver.close()
        send_calls(svc, start_ns + 10**9, 100, 200)
        failing = wait_for(
            lambda: (d := delivery(svc, hook["webhook_id"], "alert.resolved")) and d["attempts"] >= 1 and d,
            timeout=30,
        )
        assert failing and failing["status"] == "pending" and failing["last_status"] == 0
        assert svc.stop() == 0

        # Back up, then the service restarts: the resolved event is delivered, once.
        receiver = Receiver(port)
        svc.start()
        assert wait_for(lambda: receiver.of_type("alert.resolved"), timeout=30), svc.logs()[-2000:]
        time.sleep(3)  # further evaluations and delivery rounds send nothing more
        assert len(receiver.of_type("alert.resolved")) == 1
        assert receiver.of_type("alert.firing") == []
        [resolved] = receiver.of_type("alert.resolved")
        assert signing.verify(hook["secret"], resolved["headers"]["inferline-signature"], resolved["body"])
        assert resolved["headers"]["inferline-event-id"] == failing["event_id"]
        done = delivery(svc, hook["webhook_id"], "alert.resolved")
        assert done is not None and done["status"] == "delivered" and done["attempts"] >= 2
        events = call(svc, "GET", f"/api/v1/alerts/rules/{rule['rule_id']}/events").json()["events"]
        assert [e["status"] for e in events] == ["resolved", "firing"]
        assert all(e["at"].endswith(("Z", "+00:00")) for e in events), events  # in UTC, said so
        status = call(svc, "GET", f"/api/v1/webhooks/{hook['webhook_id']}").json()["deliveries"]
        assert status["delivered"] == 2 and status["pending"] == 0 and status["failed_attempts"] >= 1

        # New feedback reaches the webhook too.
        inference_id = svc.sql("SELECT inference_id FROM llm_inferences LIMIT 1").strip()
        r = call(svc, "POST", f"/api/v1/metrics/inferences/{inference_id}/feedback", json={"rating": 2})
        assert r.status_code == 201, r.text
        [fb] = wait_for(lambda: receiver.of_type("feedback.created"), timeout=30)
        data = orjson.loads(fb["body"])["data"]
        assert data["inference_id"] == inference_id and data["rating"] == 2
        assert signing.verify(hook["secret"], fb["headers"]["inferline-signature"], fb["body"])
        assert hook["secret"] not in svc.logs()
        # Since the restart: the resolved event and the feedback, delivered.
        metrics = wait_for(
            lambda: (
                'inferline_webhook_deliveries_total{outcome="delivered"} 2.0'
                in (t := metrics_text(svc.api_url))
                and t
            ),
        )
        assert metrics and 'inferline_alert_evaluations_total{outcome="ok"}' in metrics
    finally:
        receiver.close()
        assert svc.stop() == 0, svc.logs()[-3000:]
