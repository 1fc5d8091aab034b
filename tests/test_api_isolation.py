"""Attacks on project isolation through the inference API: another project's id in the body,
injection in every string filter, another project's inference ids, missing or wrong keys; and
the audit log every data access leaves."""

from __future__ import annotations

from typing import Any

import pytest

from inferline.api.deps import key_id
from tests.api_helpers import CANARY, Sent, api, audit_lines, list_ids, list_page, seed
from tests.conftest import Service

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def data(service: Service) -> tuple[list[Sent], list[Sent], str]:
    return seed(service)


def test_each_key_lists_only_its_project(service: Service, data: tuple[list[Sent], list[Sent], str]) -> None:
    mine, theirs, from_date = data
    assert set(list_ids(service, service.key, {"from_date": from_date}) or []) == {
        s.inference_id for s in mine
    }
    other = service.extra_keys["other"]
    assert set(list_ids(service, other, {"from_date": from_date}) or []) == {s.inference_id for s in theirs}


@pytest.mark.parametrize("path", ["/api/v1/metrics/inferences/list", "/api/v1/metrics/inferences/export"])
def test_another_projects_id_in_the_body_is_refused(
    service: Service, data: tuple[list[Sent], list[Sent], str], path: str
) -> None:
    r = api(service, "POST", path, service.key, json={"from_date": data[2], "project_id": "other"})
    assert r.status_code == 403 and "project_id" in r.json()["detail"]
    r = api(
        service,
        "GET",
        "/api/v1/metrics/inferences/export",
        service.key,
        params={"from_date": data[2], "project_id": "other"},
    )
    assert r.status_code == 403


INJECTIONS = [
    "' OR 1=1 --",
    "x' OR project_id = 'other' OR 'a'='a",
    "\\' OR 1=1 --",
    "'); SELECT * FROM api_keys; --",
    "{project:String}",
    "other",
    "%' OR '%'='",
    "u_alice\t' OR 1=1",
    "u_alice\n OR 1=1",
    "\\N",
]
STRING_FILTERS = ["model", "provider", "user", "session", "tenant", "search"]


@pytest.mark.parametrize("payload", INJECTIONS)
@pytest.mark.parametrize("field", [*STRING_FILTERS, "tag key", "tag value"])
def test_injection_in_string_filters_matches_nothing(
    service: Service, data: tuple[list[Sent], list[Sent], str], field: str, payload: str
) -> None:
    """Values are parameters: an injection attempt is just text no row holds."""
    if field == "tag key":
        filters: dict[str, Any] = {"tags": {payload: "chat"}}
    elif field == "tag value":
        filters = {"tags": {"feature": payload}}
    else:
        filters = {field: payload}
    for key in (service.key, service.extra_keys["other"]):
        r = list_page(service, key, {"from_date": data[2], **filters})
        assert r.status_code == 200, r.text
        assert r.json() == {"items": [], "total_count": 0, "offset": 0, "limit": 50, "has_more": False}


def test_a_string_filter_finds_text_with_quotes_and_backslashes_exactly(
    service: Service, data: tuple[list[Sent], list[Sent], str]
) -> None:
    """The other side of the injection tests: the same characters match when a row holds them."""
    mine, _, from_date = data
    r = list_page(service, service.key, {"from_date": from_date, "search": '"quote" and a back\\slash'})
    assert [i["inference_id"] for i in r.json()["items"]] == [mine[5].inference_id]


def test_another_projects_inference_is_not_found(
    service: Service, data: tuple[list[Sent], list[Sent], str]
) -> None:
    mine, theirs, _ = data
    for key, foreign in ((service.key, theirs[0]), (service.extra_keys["other"], mine[0])):
        r = api(service, "GET", f"/api/v1/metrics/inferences/{foreign.inference_id}", key)
        assert r.status_code == 404, r.text
    r = api(
        service, "GET", f"/api/v1/metrics/inferences/{theirs[0].inference_id}", service.extra_keys["other"]
    )
    assert r.status_code == 200 and r.json()["overview"]["project_id"] == "other"


def test_export_never_carries_another_projects_rows(
    service: Service, data: tuple[list[Sent], list[Sent], str]
) -> None:
    mine, theirs, from_date = data
    for fmt in ("csv", "jsonl"):
        r = api(
            service,
            "GET",
            "/api/v1/metrics/inferences/export",
            service.key,
            params={"from_date": from_date, "format": fmt},
        )
        assert r.status_code == 200
        assert all(s.inference_id in r.text for s in mine)
        assert not any(s.inference_id in r.text for s in theirs)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/metrics/inferences/list", {"from_date": "2024-01-01T00:00:00Z"}),
        ("GET", "/api/v1/metrics/inferences/export?from_date=2024-01-01T00:00:00Z", None),
        ("GET", "/api/v1/metrics/inferences/00000000-0000-5000-8000-000000000000", None),
    ],
)
@pytest.mark.parametrize("key", [None, "il_not-a-key", "' OR '1'='1"])
def test_data_routes_need_a_project_key(
    service: Service, method: str, path: str, body: dict[str, Any] | None, key: str | None
) -> None:
    r = api(service, method, path, key, json=body)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_every_data_access_is_audited_without_keys_or_content(
    service: Service, data: tuple[list[Sent], list[Sent], str]
) -> None:
    mine, _, from_date = data
    before = len(audit_lines(service))
    list_page(service, service.key, {"from_date": from_date, "search": CANARY, "user": "u_carol", "limit": 3})
    api(service, "GET", f"/api/v1/metrics/inferences/{mine[10].inference_id}", service.key)
    api(
        service,
        "POST",
        "/api/v1/metrics/inferences/export",
        service.key,
        params={"format": "csv"},
        json={"from_date": from_date, "tags": {"feature": "chat"}},
    )
    lines = audit_lines(service)[before:]
    me = key_id(service.key)
    assert [(a["action"], a["rows"], a["key_id"], a["project_id"]) for a in lines] == [
        ("inferences.list", 1, me, "default"),
        ("inferences.get", 1, me, "default"),
        ("inferences.export", 6, me, "default"),
    ]
    assert lines[0]["filters"] == ["from_date", "user", "search"]
    assert lines[1]["inference_id"] == mine[10].inference_id
    assert lines[2]["filters"] == ["from_date", "tags"] and lines[2]["format"] == "csv"
    assert all(a["timestamp"] for a in lines)
    logs = service.logs()
    assert CANARY not in logs  # in a prompt, in a search and in the detail's messages
    assert service.key not in logs and service.extra_keys["other"] not in logs


def test_admin_api_is_off_without_an_admin_key(service: Service) -> None:
    r = api(service, "GET", "/api/v1/admin/projects", "anything")
    assert r.status_code == 403 and "INFERLINE_ADMIN_KEY" in r.json()["detail"]
