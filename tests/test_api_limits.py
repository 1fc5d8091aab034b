"""The API port's own limits: bodies are capped before anything parses them, dates that overflow
UTC are a 422, and SQL reads are audited without their text."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Service

pytestmark = pytest.mark.e2e

LIST = "/api/v1/metrics/inferences/list"


def test_an_oversized_body_is_refused_before_it_is_parsed(service: Service) -> None:
    body = b'{"from_date": "2026-01-01T00:00:00Z", "search": "' + b"x" * (2 << 20) + b'"}'
    r = httpx.post(f"{service.api_url}{LIST}", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "request body over" in r.json()["detail"]


@pytest.mark.parametrize(
    ("path", "head", "tail"),
    [
        ("/", b"SELECT '", b"'"),  # the SQL endpoint reads its body itself
        (
            LIST,
            b'{"from_date": "2026-01-01T00:00:00Z", "search": "',
            b'"}',
        ),  # FastAPI parses it: a 400 before
    ],
)
def test_an_oversized_streamed_body_is_a_413(service: Service, path: str, head: bytes, tail: bytes) -> None:
    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(40):
            yield b"x" * 65536
        yield tail

    r = httpx.post(
        f"{service.api_url}{path}",
        content=chunks(),
        headers={"Authorization": f"Bearer {service.key}", "content-type": "application/json"},
    )
    assert r.status_code == 413 and "request body over" in r.json()["detail"], r.text
    assert service.sql("SELECT 1") == "1\n"  # and the API goes on serving


def test_a_date_that_overflows_utc_is_a_422(service: Service) -> None:
    r = httpx.post(
        f"{service.api_url}{LIST}",
        json={"from_date": "0001-01-01T00:00:00+14:00"},
        headers={"Authorization": f"Bearer {service.key}"},
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == "from_date"


def test_sql_reads_are_audited_without_the_query(service: Service) -> None:
    marker = "audit-canary-7f3a"
    service.sql(f"SELECT '{marker}'")
    logs = service.logs()
    assert '"action": "sql"' in logs
    assert marker not in logs


def test_dates_before_1970_select_nothing_instead_of_failing(service: Service) -> None:
    """Found by the schemathesis run: a range wholly before 1970 was a 500."""
    dates = {"from_date": "0124-09-15T20:12:07Z", "to_date": "0557-11-16T22:35:38Z"}
    for path, extra in (
        ("/api/v1/metrics/analytics/timeseries", {"interval": "day"}),
        ("/api/v1/metrics/analytics/overview", {}),
        (LIST, {}),
    ):
        r = httpx.post(
            f"{service.api_url}{path}",
            json={**dates, **extra},
            headers={"Authorization": f"Bearer {service.key}"},
        )
        assert r.status_code == 200, (path, r.text)


def test_every_api_answer_forbids_sniffing_framing_and_caching(service: Service) -> None:
    """The API's answers quote stored prompts: no browser may read one as HTML, frame it or keep
    it, whatever the status; the dashboard's own policy and its cacheable static files stay."""
    auth = {"Authorization": f"Bearer {service.key}"}
    answers = {
        "list": httpx.post(
            f"{service.api_url}{LIST}", json={"from_date": "2026-01-01T00:00:00Z"}, headers=auth
        ),
        "sql": httpx.post(f"{service.api_url}/", content="SELECT '<script>alert(1)</script>'", headers=auth),
        "no key": httpx.post(f"{service.api_url}{LIST}", json={}),
        "bad SQL": httpx.post(f"{service.api_url}/", content="DROP TABLE llm_inferences", headers=auth),
        "too large": httpx.post(f"{service.api_url}/", content=b"x" * (3 << 20), headers=auth),
    }
    assert [r.status_code for r in answers.values()] == [200, 200, 401, 403, 413]
    for name, r in answers.items():
        assert r.headers.get("x-content-type-options") == "nosniff", name
        assert r.headers.get("cache-control") == "no-store", name
        assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", ""), name
    docs = httpx.get(f"{service.api_url}/docs")
    assert "script-src 'self'" in docs.headers["content-security-policy"]  # its own, not replaced
    static = httpx.get(f"{service.api_url}/ui/static/favicon.svg")
    assert static.status_code == 200 and static.headers.get("cache-control") != "no-store"
