"""The alert-rule and webhook routes in-process (the API app on a real store): what a key can
create, read, change and delete, validation, and that a key never sees another project's rules
or webhooks. Server-side request forgery is refused with the default settings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inferline.alerts.component import Alerting
from inferline.alerts.outbox import Event, enqueue
from inferline.alerts.store import AlertStore
from inferline.api.app import api_app
from inferline.api.deps import ApiContext
from inferline.api.metrics_access import MetricsAccess
from inferline.api.sql import ReadOnlySql
from inferline.core.config import AlertSettings, WebhookSettings
from tests.alert_helpers import store_client

pytestmark = pytest.mark.integration

MINE, THEIRS = "il_mine", "il_theirs"
RULES, HOOKS = "/api/v1/alerts/rules", "/api/v1/webhooks"
PUBLIC_URL = "https://93.184.216.34/hooks/inferline"  # an address literal: no DNS in the test
SLOW = {"name": "slow gpt-4o", "metric": "latency_p95", "threshold": 5000, "filter": {"model": "gpt-4o"}}


class Keys:
    def project_for(self, key: str | None) -> str | None:
        return {MINE: "default", THEIRS: "other"}.get(key or "")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, Alerting]]:
    alerting = Alerting(AlertStore(store_client(tmp_path)), AlertSettings(), WebhookSettings())
    sql = ReadOnlySql(f"chdb://{tmp_path / 'clickhouse'}", "default")
    context = ApiContext(keys=Keys(), sql=sql, alerts=alerting)
    with TestClient(api_app(Keys(), sql, lambda: True, MetricsAccess.of(), context)) as client:
        yield client, alerting
    sql.close()
    alerting.close()


def as_(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_rule_lifecycle(app: tuple[TestClient, Alerting]) -> None:
    c, _ = app
    r = c.post(RULES, json=SLOW, headers=as_(MINE))
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["metric"] == "latency_p95" and rule["filter"]["model"] == "gpt-4o"
    assert rule["window_minutes"] == 5 and rule["for_minutes"] == 0 and rule["comparison"] == ">"
    assert rule["state"]["status"] == "ok" and rule["state"]["evaluated_at"] is None
    url = f"{RULES}/{rule['rule_id']}"

    assert [x["rule_id"] for x in c.get(RULES, headers=as_(MINE)).json()["rules"]] == [rule["rule_id"]]
    assert c.get(url, headers=as_(MINE)).json()["name"] == "slow gpt-4o"
    changed = c.put(url, json={**SLOW, "threshold": 8000, "for_minutes": 3}, headers=as_(MINE))
    assert changed.status_code == 200 and changed.json()["threshold"] == 8000
    assert changed.json()["created_at"] == rule["created_at"]
    assert c.get(url, headers=as_(MINE)).json()["for_minutes"] == 3
    assert c.get(f"{url}/events", headers=as_(MINE)).json() == {"events": []}
    assert c.delete(url, headers=as_(MINE)).status_code == 204
    assert c.get(url, headers=as_(MINE)).status_code == 404
    assert c.get(RULES, headers=as_(MINE)).json() == {"rules": []}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**SLOW, "metric": "latency_p42"}, "metric"),
        ({"name": "s", "metric": "slow_share", "threshold": 0.2}, "slow_ms"),
        ({**SLOW, "window_minutes": 0}, "window_minutes"),
        ({**SLOW, "for_minutes": 100000}, "for_minutes"),
        ({**SLOW, "comparison": "=="}, "comparison"),
        ({**SLOW, "surprise": 1}, "surprise"),
        ({**SLOW, "filter": {"team": "x"}}, "team"),
        (
            {"name": "r", "metric": "avg_rating", "threshold": 3, "filter": {"provider": "openai"}},
            "avg_rating",
        ),
    ],
)
def test_invalid_rules_are_422(app: tuple[TestClient, Alerting], body: dict[str, Any], message: str) -> None:
    r = app[0].post(RULES, json=body, headers=as_(MINE))
    assert r.status_code == 422 and message in r.text


def test_a_rule_that_cannot_be_read_stops_nothing_and_can_be_deleted(
    app: tuple[TestClient, Alerting],
) -> None:
    """Project "other" stored `slow_ms: 1e999` (infinity), read back as null: every alert route of
    that project answered 500, the rule could not be deleted, and no project's rules were
    evaluated any more. Such a value is now refused, and an unreadable rule (stored before) is
    skipped (logged) and deletable."""
    c, alerting = app
    infinite = b'{"name": "s", "metric": "slow_share", "threshold": 0.2, "slow_ms": 1e999}'
    r = c.post(RULES, content=infinite, headers={**as_(THEIRS), "content-type": "application/json"})
    assert r.status_code == 422 and "finite" in r.text
    mine = c.post(RULES, json=SLOW, headers=as_(MINE)).json()
    broken = "0b5e6a8e-0000-4000-8000-000000000001"
    spec = '{"name": "broken", "metric": "slow_share", "slow_ms": null, "threshold": 0.5}'
    now = datetime.now(UTC)
    alerting.store._insert(
        "alert_rules",
        ("project_id", "rule_id", "spec", "created_at", "updated_at", "deleted", "version"),
        [["other", broken, spec, now, now, False, 1]],
    )
    alerting.evaluator.evaluate()
    state = c.get(f"{RULES}/{mine['rule_id']}", headers=as_(MINE)).json()["state"]
    assert state["evaluated_at"] is not None  # the other project's rule was evaluated
    assert c.get(RULES, headers=as_(THEIRS)).json() == {"rules": []}
    assert c.delete(f"{RULES}/{broken}", headers=as_(THEIRS)).status_code == 204
    assert c.delete(f"{RULES}/{broken}", headers=as_(THEIRS)).status_code == 404


def test_the_limit_on_rules_holds_under_parallel_creates(tmp_path: Path) -> None:
    """The count and the insert were apart: 120 creates at once made 101 rules of 100."""
    from concurrent.futures import ThreadPoolExecutor

    settings = AlertSettings(max_rules_per_project=5)
    alerting = Alerting(AlertStore(store_client(tmp_path)), settings, WebhookSettings())
    sql = ReadOnlySql(f"chdb://{tmp_path / 'clickhouse'}", "default")
    context = ApiContext(keys=Keys(), sql=sql, alerts=alerting)
    try:
        with TestClient(api_app(Keys(), sql, lambda: True, MetricsAccess.of(), context)) as c:
            with ThreadPoolExecutor(8) as pool:
                answers = pool.map(lambda _: c.post(RULES, json=SLOW, headers=as_(MINE)), range(16))
                codes = [r.status_code for r in answers]
            assert sorted(codes) == [201] * 5 + [409] * 11
            assert len(c.get(RULES, headers=as_(MINE)).json()["rules"]) == 5
    finally:
        sql.close()
        alerting.close()


def test_every_route_needs_a_key(app: tuple[TestClient, Alerting]) -> None:
    c, _ = app
    for method, path in (
        ("GET", RULES),
        ("POST", RULES),
        ("GET", HOOKS),
        ("POST", HOOKS),
        ("GET", "/api/v1/alerts/events"),
    ):
        assert c.request(method, path, json={}).status_code == 401
        assert c.request(method, path, json={}, headers=as_("il_unknown")).status_code == 401


def test_webhook_secret_is_shown_once_and_status_is_visible(app: tuple[TestClient, Alerting]) -> None:
    c, alerting = app
    r = c.post(
        HOOKS, json={"url": PUBLIC_URL, "events": ["alert.firing", "alert.resolved"]}, headers=as_(MINE)
    )
    assert r.status_code == 201, r.text
    hook = r.json()
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
    url = f"{HOOKS}/{hook['webhook_id']}"
    listed = c.get(HOOKS, headers=as_(MINE)).json()["webhooks"]
    assert [h["webhook_id"] for h in listed] == [hook["webhook_id"]]
    assert hook["secret"] not in c.get(HOOKS, headers=as_(MINE)).text
    assert hook["secret"] not in c.get(url, headers=as_(MINE)).text
    assert listed[0]["deliveries"] == {
        "pending": 0,
        "delivered": 0,
        "failed": 0,
        "dropped": 0,
        "failed_attempts": 0,
        "last_status": None,
        "last_error": None,
        "last_attempt_at": None,
    }
    enqueue(alerting.store, [Event("default", "e1", "alert.firing", datetime.now(UTC), {})], 100)
    status = c.get(url, headers=as_(MINE)).json()["deliveries"]
    assert status["pending"] == 1 and status["last_status"] is None
    [d] = c.get(f"{url}/deliveries", headers=as_(MINE)).json()["deliveries"]
    assert d["event_id"] == "e1" and d["status"] == "pending" and d["attempts"] == 0
    assert (
        c.post(HOOKS, json={"url": PUBLIC_URL, "events": ["alert.flapping"]}, headers=as_(MINE)).status_code
        == 422
    )
    assert c.delete(url, headers=as_(MINE)).status_code == 204
    assert c.get(url, headers=as_(MINE)).status_code == 404


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:9000/",
        "http://localhost/",
        "http://169.254.169.254/latest/",
        "http://10.0.0.8/",
        "http://[::1]/",
        "gopher://93.184.216.34/",
        "http://user:pw@93.184.216.34/",
    ],
)
def test_server_side_request_forgery_is_refused(app: tuple[TestClient, Alerting], target: str) -> None:
    r = app[0].post(HOOKS, json={"url": target}, headers=as_(MINE))
    assert r.status_code == 422 and "url refused" in r.text
    assert r.json()["detail"][0]["loc"] == ["body", "url"]  # the same 422 as any invalid field
    assert app[0].get(HOOKS, headers=as_(MINE)).json() == {"webhooks": []}


def test_a_key_never_sees_another_projects_rules_or_webhooks(app: tuple[TestClient, Alerting]) -> None:
    c, _ = app
    rule = c.post(RULES, json=SLOW, headers=as_(MINE)).json()
    hook = c.post(HOOKS, json={"url": PUBLIC_URL}, headers=as_(MINE)).json()
    assert c.get(RULES, headers=as_(THEIRS)).json() == {"rules": []}
    assert c.get(HOOKS, headers=as_(THEIRS)).json() == {"webhooks": []}
    assert c.get("/api/v1/alerts/events", headers=as_(THEIRS)).json() == {"events": []}
    rule_url, hook_url = f"{RULES}/{rule['rule_id']}", f"{HOOKS}/{hook['webhook_id']}"
    for method, path, body in (
        ("GET", rule_url, None),
        ("PUT", rule_url, SLOW),
        ("DELETE", rule_url, None),
        ("GET", f"{rule_url}/events", None),
        ("GET", hook_url, None),
        ("DELETE", hook_url, None),
        ("GET", f"{hook_url}/deliveries", None),
    ):
        assert c.request(method, path, json=body, headers=as_(THEIRS)).status_code == 404, (method, path)
    # Still there, unchanged, for their owner.
    assert c.get(rule_url, headers=as_(MINE)).json()["threshold"] == 5000
    assert c.get(hook_url, headers=as_(MINE)).status_code == 200


@pytest.mark.parametrize(
    "table", ["webhooks", "webhook_deliveries", "alert_rules", "alert_state", "alert_events"]
)
def test_the_sql_endpoint_reads_none_of_these_tables(app: tuple[TestClient, Alerting], table: str) -> None:
    """Webhook secrets live in one of them; the routes above are the only way in."""
    r = app[0].post("/", content=f"SELECT * FROM {table}", headers=as_(MINE))
    assert r.status_code == 403 and "not readable" in r.text
    r = app[0].post("/", content=f"SELECT 1 WHERE 'x' IN (SELECT project_id FROM {table})", headers=as_(MINE))
    assert r.status_code == 403
