"""Alerts in distributed mode: spans sent to the receiver role pass through Kafka and the processor
to the writer role, which evaluates the rules (it serves the API and owns the store) and delivers
a signed webhook for the transition, exactly as the embedded service does."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from inferline.alerts import signing
from tests.alert_helpers import Receiver
from tests.conftest import wait_for
from tests.kafka_helpers import running_roles
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, traces_json

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

FAST = {
    "INFERLINE_ALERTS__EVALUATE_EVERY_S": "0.5",
    "INFERLINE_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES": "true",
    "INFERLINE_WEBHOOKS__POLL_S": "0.2",
    "INFERLINE_WORKERS": "0",
}


def test_slow_calls_through_the_kafka_roles_fire_a_rule_and_its_webhook(tmp_path: Path) -> None:
    key = f"alerts-{uuid.uuid4().hex}"
    receiver = Receiver()
    try:
        with running_roles(tmp_path, INFERLINE_API_KEYS=f"{key}=default", **FAST) as (front, _, writer):
            auth = {"Authorization": f"Bearer {key}"}

            def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
                return httpx.request(method, writer.api_url + path, headers=auth, timeout=30, **kwargs)

            hook = call("POST", "/api/v1/webhooks", json={"url": receiver.url}).json()
            rule = call(
                "POST",
                "/api/v1/alerts/rules",
                json={"name": "slow", "metric": "latency_p95", "threshold": 1000, "window_minutes": 3,
                      "min_calls": 3},
            ).json()  # fmt: skip
            start_ns = time.time_ns() - 70 * 10**9  # inside the rule's window
            spans = [
                json_span(GENAI_ATTRIBUTES, start_ns=start_ns + i, end_ns=start_ns + i + 3 * 10**9)
                for i in range(5)
            ]
            r = httpx.post(
                front.http_url + "/v1/traces",
                content=traces_json(spans),
                headers={**auth, "content-type": "application/json"},
                timeout=30,
            )
            assert r.status_code == 200, r.text

            fired = wait_for(lambda: receiver.of_type("alert.firing"), timeout=60)
            assert fired, writer.logs()[-3000:]
            [event] = fired
            assert signing.verify(hook["secret"], event["headers"]["inferline-signature"], event["body"])
            data = orjson.loads(event["body"])["data"]
            assert data["rule"]["rule_id"] == rule["rule_id"] and data["value"] > 1000 and data["calls"] == 5
            state = call("GET", f"/api/v1/alerts/rules/{rule['rule_id']}").json()["state"]
            assert state["status"] == "firing"
    finally:
        receiver.close()
