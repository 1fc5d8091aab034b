"""Projects and keys through the admin API of a running service (INFERLINE_ADMIN_KEY set), and
the CLI that does the same while the embedded service is stopped."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from inferline.api.deps import key_id
from tests.api_helpers import api, audit_lines, dataset, list_ids, send
from tests.conftest import ROOT, Service, make_service

pytestmark = pytest.mark.e2e

ADMIN_KEY = "adm_" + "k" * 40
LIST = "/api/v1/metrics/inferences/list"


@pytest.fixture(scope="module")
def admin_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = make_service(tmp_path_factory.mktemp("admin"), INFERLINE_ADMIN_KEY=ADMIN_KEY)
    svc.start()
    yield svc
    assert svc.stop() == 0, svc.logs()[-3000:]


def admin(svc: Service, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return api(svc, method, f"/api/v1/admin{path}", ADMIN_KEY, **kwargs)


def test_projects_are_created_and_listed(admin_service: Service) -> None:
    r = admin(admin_service, "POST", "/projects", json={"project_id": "acme", "name": "Acme Corp"})
    assert r.status_code == 201, r.text
    assert r.json()["project_id"] == "acme" and r.json()["name"] == "Acme Corp"
    assert admin(admin_service, "POST", "/projects", json={"project_id": "acme"}).status_code == 409
    bad = admin(admin_service, "POST", "/projects", json={"project_id": "no spaces; DROP"})
    assert bad.status_code == 422 and "project_id" in bad.json()["detail"][0]["loc"]
    listed = admin(admin_service, "GET", "/projects").json()["projects"]
    # "default" was made on the first start, with its key.
    assert [(p["project_id"], p["name"]) for p in listed] == [("acme", "Acme Corp"), ("default", "")]


def test_a_new_key_sends_and_reads_its_project_until_revoked(admin_service: Service) -> None:
    admin(admin_service, "POST", "/projects", json={"project_id": "beta"})
    r = admin(admin_service, "POST", "/projects/beta/keys", json={"name": "ci"})
    assert r.status_code == 201, r.text
    created = r.json()
    key = created["key"]
    assert key.startswith("il_") and created["key_id"] == key_id(key) and created["name"] == "ci"
    assert not created["revoked"] and created["revoked_at"] is None

    # Listed by id, never the key (nor its digest).
    listed = admin(admin_service, "GET", "/projects/beta/keys")
    assert [k["key_id"] for k in listed.json()["keys"]] == [created["key_id"]]
    assert key not in listed.text and "key_sha256" not in listed.text and '"key"' not in listed.text

    # Works at once for OTLP and for the API, scoped to its project.
    sent = send(admin_service, key, dataset("beta", created_ns(), 2))
    body = {"from_date": "2000-01-01T00:00:00Z"}
    assert set(list_ids(admin_service, key, body) or []) == {s.inference_id for s in sent}
    assert not set(list_ids(admin_service, admin_service.key, body) or []) & {s.inference_id for s in sent}

    r = admin(admin_service, "DELETE", f"/keys/{created['key_id']}")
    assert r.status_code == 200 and r.json()["revoked"] and r.json()["revoked_at"]
    # Revoked at once: the API and this process's receivers refuse it.
    assert api(admin_service, "POST", LIST, key, json=body).status_code == 401
    otlp = httpx.post(
        f"{admin_service.http_url}/v1/traces",
        content=b"{}",
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    assert otlp.status_code == 401
    keys = admin(admin_service, "GET", "/projects/beta/keys").json()["keys"]
    assert keys[0]["revoked"] and keys[0]["created_at"] == created["created_at"] and keys[0]["name"] == "ci"
    assert admin(admin_service, "DELETE", f"/keys/{created['key_id']}").status_code == 200  # idempotent


def created_ns() -> int:
    return time.time_ns() - 60_000_000_000


def test_admin_errors(admin_service: Service) -> None:
    assert admin(admin_service, "POST", "/projects/nope/keys", json={}).status_code == 404
    assert admin(admin_service, "GET", "/projects/nope/keys").status_code == 404
    assert admin(admin_service, "DELETE", "/keys/0123456789ab").status_code == 404
    bad_id = admin(admin_service, "DELETE", "/keys/not-an-id")
    assert bad_id.status_code == 422 and "key_id" in bad_id.json()["detail"][0]["loc"]
    r = admin(admin_service, "POST", "/projects/default/keys")  # no body: a key without a name
    assert r.status_code == 201 and r.json()["name"] == ""


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/admin/projects"),
        ("POST", "/api/v1/admin/projects"),
        ("POST", "/api/v1/admin/projects/default/keys"),
        ("GET", "/api/v1/admin/projects/default/keys"),
        ("DELETE", "/api/v1/admin/keys/0123456789ab"),
    ],
)
def test_a_project_key_cannot_use_admin_routes(admin_service: Service, method: str, path: str) -> None:
    r = api(admin_service, method, path, admin_service.key, json={"project_id": "x"})
    assert r.status_code == 403 and "not the admin key" in r.json()["detail"]
    assert api(admin_service, method, path, None, json={"project_id": "x"}).status_code == 401
    unknown = api(admin_service, method, path, "no-such-key", json={"project_id": "x"})
    assert unknown.status_code == 401 and "unknown or revoked" in unknown.json()["detail"]


def test_the_admin_key_reads_no_data(admin_service: Service) -> None:
    seed_key = admin_service.key
    send(admin_service, seed_key, dataset("default", created_ns(), 1))
    r = api(admin_service, "POST", LIST, ADMIN_KEY, json={"from_date": "2000-01-01T00:00:00Z"})
    assert r.status_code == 401
    r = httpx.get(
        f"{admin_service.api_url}/?query=SELECT+count()+FROM+llm_inferences", auth=("default", ADMIN_KEY)
    )
    assert r.status_code == 401


def test_the_admin_key_reads_metrics(admin_service: Service) -> None:
    """An operator holding the admin key can read what Prometheus reads; no project key can."""
    r = httpx.get(f"{admin_service.api_url}/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200 and "inferline_queue_depth" in r.text
    r = httpx.get(
        f"{admin_service.api_url}/metrics", headers={"authorization": f"Bearer {admin_service.key}"}
    )
    assert r.status_code == 401


def test_admin_actions_are_audited_without_keys(admin_service: Service) -> None:
    before = len(audit_lines(admin_service))
    admin(admin_service, "POST", "/projects", json={"project_id": "gamma"})
    key = admin(admin_service, "POST", "/projects/gamma/keys", json={"name": "bot"}).json()
    admin(admin_service, "DELETE", f"/keys/{key['key_id']}")
    lines = audit_lines(admin_service)[before:]
    assert [(a["action"], a.get("target_project"), a["key_id"]) for a in lines] == [
        ("admin.projects.create", "gamma", key_id(ADMIN_KEY)),
        ("admin.keys.create", "gamma", key_id(ADMIN_KEY)),
        ("admin.keys.revoke", "gamma", key_id(ADMIN_KEY)),
    ]
    assert lines[1]["target_key_id"] == key["key_id"]
    logs = admin_service.logs()
    assert key["key"] not in logs and ADMIN_KEY not in logs


def cli(svc: Service, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inferline.service.cli", *args],
        cwd=ROOT,
        env=svc.env,
        capture_output=True,
        text=True,
    )


def test_cli_manages_projects_and_keys_of_a_stopped_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    svc = make_service(tmp_path_factory.mktemp("cli"))
    assert cli(svc, "projects", "create", "shop", "--name", "Shop").returncode == 0
    again = cli(svc, "projects", "create", "shop")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert cli(svc, "projects", "list").stdout.split("\t")[0] == "shop"
    key = cli(svc, "keys", "create", "--project", "shop", "--name", "ci").stdout.strip()
    listed = cli(svc, "keys", "list", "--project", "shop").stdout
    assert (
        listed.startswith(key_id(key) + "\t")
        and listed.rstrip().endswith("\tactive\tci")
        and key not in listed
    )
    assert cli(svc, "keys", "revoke", key_id(key)).returncode == 0
    assert "\trevoked " in cli(svc, "keys", "list", "--project", "shop").stdout
    unknown = cli(svc, "keys", "revoke", "0123456789ab")
    assert unknown.returncode == 1 and "unknown key id" in unknown.stderr
