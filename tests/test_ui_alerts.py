"""The dashboard's Alerts page in-process: a signed-in project lists its rules with their state,
creates one through the form (CSRF-checked, names escaped) and deletes one; another project's
session sees none of them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inferline.alerts.component import Alerting
from inferline.alerts.store import AlertStore
from inferline.api.app import api_app
from inferline.api.deps import ApiContext
from inferline.api.metrics_access import MetricsAccess
from inferline.api.sql import ReadOnlySql
from inferline.core.config import AlertSettings, WebhookSettings
from inferline.ui.app import add_dashboard
from tests.alert_helpers import store_client

pytestmark = pytest.mark.integration

KEYS = {"il_mine": "default", "il_theirs": "other"}


class Keys:
    def project_for(self, key: str | None) -> str | None:
        return KEYS.get(key or "")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[TestClient]:
    alerting = Alerting(AlertStore(store_client(tmp_path)), AlertSettings(), WebhookSettings())
    sql = ReadOnlySql(f"chdb://{tmp_path / 'clickhouse'}", "default")
    context = ApiContext(keys=Keys(), sql=sql, alerts=alerting)
    yield TestClient(
        add_dashboard(api_app(Keys(), sql, lambda: True, MetricsAccess.of(), context)), follow_redirects=False
    )
    sql.close()
    alerting.close()


def signed_in(app: TestClient, key: str) -> str:
    """Signs `app`'s cookie jar in with `key`; returns the page's CSRF token."""
    app.cookies.clear()
    form = app.get("/ui/signin").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    r = app.post("/ui/signin", data={"csrf": csrf.group(1), "key": key})
    assert r.status_code == 303, r.text
    page = app.get("/ui/alerts")
    assert page.status_code == 200
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    return token.group(1)


def test_create_list_and_delete_a_rule_from_the_page(app: TestClient) -> None:
    csrf = signed_in(app, "il_mine")
    assert "No alert rules yet." in app.get("/ui/alerts").text
    name = "<script>alert(1)</script> slow"
    r = app.post(
        "/ui/alerts/rules",
        data={
            "csrf": csrf,
            "name": name,
            "metric": "slow_share",
            "slow_ms": "5000",
            "comparison": ">",
            "threshold": "0.15",
            "window_minutes": "60",
            "for_minutes": "2",
            "min_calls": "10",
            "model": "gpt-4o",
            "provider": "",
            "tenant": "",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/alerts"
    page = app.get("/ui/alerts").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; slow" in page
    assert "slow_share &gt; 5000.0 ms &gt; 0.15 over 60 min, for 2 min" in page
    assert 'data-testid="state">ok<' in page and "model=gpt-4o" in page
    rule_id = re.search(r'data-rule-id="([0-9a-f-]+)"', page)
    assert rule_id

    # Another project's session sees nothing and cannot delete it.
    theirs = signed_in(app, "il_theirs")
    assert "No alert rules yet." in app.get("/ui/alerts").text
    assert app.post(f"/ui/alerts/rules/{rule_id.group(1)}/delete", data={"csrf": theirs}).status_code == 404

    csrf = signed_in(app, "il_mine")
    assert app.post(f"/ui/alerts/rules/{rule_id.group(1)}/delete", data={"csrf": "forged"}).status_code == 403
    assert rule_id.group(1) in app.get("/ui/alerts").text
    assert app.post(f"/ui/alerts/rules/{rule_id.group(1)}/delete", data={"csrf": csrf}).status_code == 303
    assert "No alert rules yet." in app.get("/ui/alerts").text


def test_an_invalid_rule_is_explained_and_the_form_kept(app: TestClient) -> None:
    csrf = signed_in(app, "il_mine")
    r = app.post(
        "/ui/alerts/rules",
        data={
            "csrf": csrf,
            "name": "needs slow_ms",
            "metric": "slow_share",
            "comparison": ">",
            "threshold": "0.2",
        },
    )
    assert r.status_code == 422 and "slow_ms is required" in r.text and 'value="needs slow_ms"' in r.text
    assert (
        app.post("/ui/alerts/rules", data={"name": "x", "metric": "error_rate", "threshold": "1"}).status_code
        == 403
    )
