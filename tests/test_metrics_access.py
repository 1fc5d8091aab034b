"""/metrics names every project and key id and counts each project's traffic: only the metrics
token (what Prometheus is given) or the admin key reads it; health probes stay open."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import httpx
import pytest

from inferline.api.app import health_app
from inferline.api.metrics_access import METRICS_TOKEN_FILE, MetricsAccess, ensure_metrics_token

pytestmark = pytest.mark.unit


def _get(access: MetricsAccess, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=health_app(lambda: True, access))
        async with httpx.AsyncClient(transport=transport, base_url="http://role") as client:
            return await client.get(path, headers=headers or {})

    return asyncio.run(get())


def test_only_the_configured_tokens_read_metrics() -> None:
    access = MetricsAccess.of("scrape-token", "admin-key")
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic c2NyYXBlLXRva2Vu"}):
        r = _get(access, "/metrics", headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == 'Bearer realm="metrics"'
        assert "INFERLINE_METRICS_TOKEN" in r.json()["detail"] and "inferline_" not in r.text
    for token in ("scrape-token", "admin-key"):
        r = _get(access, "/metrics", {"authorization": f"Bearer {token}"})
        assert r.status_code == 200 and "python_info" in r.text
    assert _get(access, "/metrics", {"x-api-key": "scrape-token"}).status_code == 200


def test_a_token_read_from_a_secret_file_with_its_newline_still_matches() -> None:
    access = MetricsAccess.of("scrape-token\n")
    assert _get(access, "/metrics", {"authorization": "Bearer scrape-token"}).status_code == 200


def test_a_role_without_a_token_keeps_metrics_closed_and_says_how_to_open_them() -> None:
    closed = MetricsAccess.of("", "")  # neither INFERLINE_METRICS_TOKEN nor INFERLINE_ADMIN_KEY
    r = _get(closed, "/metrics", {"authorization": "Bearer "})
    assert r.status_code == 401 and "closed" in r.json()["detail"]
    assert _get(closed, "/metrics", {"authorization": "Bearer anything"}).status_code == 401


def test_health_probes_need_no_token() -> None:
    closed = MetricsAccess.of()
    assert _get(closed, "/healthz").text == "ok"
    assert _get(closed, "/readyz").text == "ready"


def test_the_embedded_token_is_made_once_and_kept_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    token = ensure_metrics_token(data_dir)
    path = data_dir / METRICS_TOKEN_FILE
    assert token.startswith("ilm_") and len(token) > 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_metrics_token(data_dir) == token  # a restart keeps it: Prometheus's file stays right
    assert ensure_metrics_token(tmp_path / "other") != token


def test_an_empty_token_file_left_readable_by_others_is_refilled_owner_only(tmp_path: Path) -> None:
    path = tmp_path / METRICS_TOKEN_FILE
    path.write_text("")
    path.chmod(0o644)
    token = ensure_metrics_token(tmp_path)
    assert path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
