"""The API port's protective headers on every answer, a failure's included (Starlette answers a
500 from outside the app's own middleware: the headers wrap the finished app)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inferline.api.app import API_RESPONSE_HEADERS, api_app, with_api_headers
from inferline.api.metrics_access import MetricsAccess
from inferline.api.sql import ReadOnlySql

pytestmark = pytest.mark.integration

KEY = "il_headers"


class Keys:
    def project_for(self, key: str | None) -> str | None:
        return "default" if key == KEY else None


class FailingSql(ReadOnlySql):
    def run(self, *args: object, **kwargs: object) -> tuple[bytes, str]:
        raise RuntimeError("the engine went away")


def test_a_failing_answer_carries_the_headers_too(tmp_path: Path) -> None:
    sql = FailingSql(f"chdb://{tmp_path / 'clickhouse'}", "default")
    try:
        with TestClient(
            with_api_headers(api_app(Keys(), sql, lambda: True, MetricsAccess.of())),
            raise_server_exceptions=False,
        ) as client:
            failed = client.post("/", content="SELECT 1", headers={"Authorization": f"Bearer {KEY}"})
            refused = client.post("/", content="SELECT 1")
            health = client.get("/healthz")
    finally:
        sql.close()
    assert (failed.status_code, refused.status_code, health.status_code) == (500, 401, 200)
    for answer in (failed, refused, health):
        for name, value in API_RESPONSE_HEADERS.items():
            assert answer.headers.get(name) == value, (answer.status_code, name)
