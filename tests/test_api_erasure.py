"""Right to erasure and portability (issue #16 item 3) on a real service: an end user's and a
session's rows are exported, then removed from every table that holds them, and nothing else is."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

from inferline.api.erasure import subject_digest
from tests.api_helpers import api, audit_lines, dataset, send
from tests.conftest import ROOT, Service, make_service, running_with_other_project
from tests.otlp_helpers import json_span, logs_json, new_span_id, new_trace_id, traces_json

pytestmark = pytest.mark.e2e

ADMIN_KEY = "adm_" + "g" * 40
ALICE, BOB = "u_alice", "u_bob"
TABLES = ("feedback", "scores", "otel_logs", "otel_traces", "inference_usage_by_day", "llm_inferences")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from running_with_other_project(
        make_service(tmp_path_factory.mktemp("gdpr"), INFERLINE_ADMIN_KEY=ADMIN_KEY)
    )


def admin(svc: Service, method: str, path: str, key: str | None = ADMIN_KEY) -> httpx.Response:
    return api(svc, method, f"/api/v1/admin/projects{path}", key)


def post_json(svc: Service, path: str, body: bytes, key: str) -> None:
    r = httpx.post(
        f"{svc.http_url}{path}",
        content=body,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def held(svc: Service, user: str, key: str | None = None) -> dict[str, int]:
    """Rows each table holds about a user, counted through the SQL endpoint (not the code under test)."""
    traces = f"SELECT trace_id FROM llm_inferences WHERE user_id = '{user}'"
    ids = f"SELECT inference_id FROM llm_inferences WHERE user_id = '{user}'"
    spans = f"(TraceId IN ({traces}) OR SpanAttributes['user.id'] = '{user}')"
    query = (
        f"SELECT (SELECT count() FROM feedback FINAL WHERE inference_id IN ({ids})),"
        f" (SELECT count() FROM scores FINAL WHERE trace_id IN ({traces})),"
        f" (SELECT count() FROM otel_logs FINAL WHERE TraceId IN ({traces})),"
        f" (SELECT count() FROM otel_traces FINAL WHERE {spans}),"
        f" (SELECT count() FROM inference_usage_by_day FINAL WHERE user_id = '{user}'),"
        f" (SELECT count() FROM llm_inferences FINAL WHERE user_id = '{user}')"
    )
    values = svc.sql(query, key).split()
    return dict(zip(TABLES, map(int, values), strict=True))


def feedback(svc: Service, inference_id: str) -> None:
    r = httpx.post(
        f"{svc.api_url}/api/v1/metrics/inferences/{inference_id}/feedback",
        json={"thumbs_up": True, "comment": "fine"},
        headers={"authorization": f"Bearer {svc.key}"},
        timeout=30,
    )
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def seeded(svc: Service) -> dict[str, Any]:
    """Twelve inferences (alice: 3, bob: 3), a child span, a log record and an evaluation result
    in one of alice's traces, a span elsewhere naming alice in its attributes, feedback on alice's
    and bob's first calls, and three inferences in the other project (one of alice's)."""
    base = time.time_ns() - 3 * 3600 * 1_000_000_000
    mine = send(svc, svc.key, dataset("default", base))
    send(svc, svc.extra_keys["other"], dataset("other", base, 3))
    alice_trace, alice_span = svc.sql(
        f"SELECT trace_id, span_id FROM llm_inferences WHERE user_id = '{ALICE}' ORDER BY start_time LIMIT 1"
    ).split()
    child = json_span({"http.method": "GET"}, trace_id=alice_trace, name="GET /orders", start_ns=base)
    login = json_span({"user.id": ALICE, "event": "login"}, trace_id=new_trace_id(), name="login")
    post_json(svc, "/v1/traces", traces_json([child, login]), svc.key)
    record = {"traceId": alice_trace, "spanId": new_span_id(), "body": "order lookup for the user"}
    judged = {
        "traceId": alice_trace,
        "spanId": alice_span,
        "eventName": "gen_ai.evaluation.result",
        "attributes": {"gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 0.9},
        "body": "",
    }
    post_json(svc, "/v1/logs", logs_json([record, judged]), svc.key)
    feedback(svc, mine[0].inference_id)  # alice's
    feedback(svc, mine[1].inference_id)  # bob's
    before = {"alice": held(svc, ALICE), "bob": held(svc, BOB)}
    before["other_alice"] = held(svc, ALICE, svc.extra_keys["other"])
    return before


def test_the_seed_is_what_the_tests_expect(seeded: dict[str, Any]) -> None:
    alice = seeded["alice"]
    assert alice["llm_inferences"] == 3 and alice["feedback"] == 1 and alice["otel_logs"] == 2
    assert alice["scores"] == 1
    assert alice["otel_traces"] == 5  # 3 inference spans, the child span, the login span
    assert alice["inference_usage_by_day"] >= 3  # one per (day, tenant, model, …) group
    assert seeded["other_alice"]["llm_inferences"] == 1


def test_export_lists_everything_held_before_deletion(svc: Service, seeded: dict[str, Any]) -> None:
    r = admin(svc, "GET", f"/default/users/{ALICE}/export")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    rows = [orjson.loads(line) for line in r.text.splitlines()]
    per_table = {t: sum(1 for row in rows if row["table"] == t) for t in TABLES}
    assert per_table == seeded["alice"]
    inferences = [row for row in rows if row["table"] == "llm_inferences"]
    assert {row["user_id"] for row in inferences} == {ALICE}
    assert {row["project_id"] for row in inferences} == {"default"}  # not the other project's alice
    assert any("order lookup" in row["Body"] for row in rows if row["table"] == "otel_logs")
    line = audit_lines(svc)[-1]
    assert line["action"] == "admin.users.export" and line["rows"] == len(rows)
    assert line["subject_digest"] == subject_digest(ALICE) and ALICE not in orjson.dumps(line).decode()


def test_a_project_key_cannot_erase_or_export(svc: Service, seeded: dict[str, Any]) -> None:
    for method, path in (("DELETE", f"/default/users/{ALICE}"), ("GET", f"/default/users/{ALICE}/export")):
        assert admin(svc, method, path, svc.key).status_code == 403
        assert admin(svc, method, path, None).status_code == 401
    assert admin(svc, "DELETE", f"/nope/users/{ALICE}").status_code == 404
    assert held(svc, ALICE) == seeded["alice"]


def test_an_id_is_a_value_never_sql(svc: Service, seeded: dict[str, Any]) -> None:
    for odd in ("x' OR 1=1 --", "u_alice' OR user_id != '", 'Grüße \\ "q"', "%"):
        r = admin(svc, "DELETE", "/default/users/" + quote(odd, safe=""))
        assert r.status_code == 200 and r.json()["rows_removed"] == 0, (odd, r.text)
    assert held(svc, ALICE) == seeded["alice"]


def test_an_id_with_a_slash_is_exported_and_erased(svc: Service, seeded: dict[str, Any]) -> None:
    carol = "org/carol"
    post_json(svc, "/v1/traces", traces_json([json_span({"user.id": carol}, name="login")]), svc.key)
    path = "/default/users/" + quote(carol, safe="")
    exported = admin(svc, "GET", path + "/export")
    assert exported.status_code == 200, exported.text
    rows = [orjson.loads(line) for line in exported.text.splitlines()]
    assert [r["SpanAttributes"]["user.id"] for r in rows if r["table"] == "otel_traces"] == [carol]
    erased = admin(svc, "DELETE", path)
    assert erased.status_code == 200 and erased.json()["rows_removed"] >= 1, erased.text
    assert admin(svc, "GET", path + "/export").text == ""


def test_erasing_a_user_removes_their_rows_everywhere_and_nothing_else(
    svc: Service, seeded: dict[str, Any]
) -> None:
    r = admin(svc, "DELETE", f"/default/users/{ALICE}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["removed"] == seeded["alice"] and body["rows_removed"] == sum(seeded["alice"].values())
    # Applied when the call returns: gone from every table, the usage rollup's user rows too.
    assert held(svc, ALICE) == dict.fromkeys(TABLES, 0)
    assert (
        svc.sql("SELECT count() FROM otel_traces WHERE SpanName IN ('GET /orders', 'login')").strip() == "0"
    )
    assert admin(svc, "GET", f"/default/users/{ALICE}/export").text == ""
    # Another user's rows, and the other project's rows of the same user id, stay.
    assert held(svc, BOB) == seeded["bob"]
    assert held(svc, ALICE, svc.extra_keys["other"]) == seeded["other_alice"]
    # The anonymous rollups keep their counts (they hold no user).
    assert svc.sql("SELECT sum(requests) FROM inference_stats_by_hour").strip() == "12"

    again = admin(svc, "DELETE", f"/default/users/{ALICE}")
    assert again.status_code == 200 and again.json()["rows_removed"] == 0
    assert set(again.json()["removed"].values()) == {0}

    lines = [a for a in audit_lines(svc) if a["action"] == "admin.users.erase"]
    erased = [a for a in lines if a["subject_digest"] == subject_digest(ALICE)]
    assert [a["rows"] for a in erased] == [body["rows_removed"], 0]
    assert erased[0]["target_project"] == "default" and erased[0]["removed"] == body["removed"]
    assert all(ALICE not in orjson.dumps(a).decode() for a in erased)


def test_erasing_a_session(svc: Service, seeded: dict[str, Any]) -> None:
    session = "sess_3"  # calls 9, 10, 11
    count = f"SELECT count() FROM llm_inferences FINAL WHERE session_id = '{session}'"
    assert svc.sql(count).strip() == "3"
    listed = admin(svc, "GET", f"/default/sessions/{session}/export").text.splitlines()
    tables = [orjson.loads(line)["table"] for line in listed]
    assert tables.count("llm_inferences") == 3 and tables.count("otel_traces") == 3
    assert "inference_usage_by_day" not in tables  # the rollups hold no session
    r = admin(svc, "DELETE", f"/default/sessions/{session}")
    assert r.status_code == 200, r.text
    assert r.json()["removed"]["llm_inferences"] == 3 and r.json()["removed"]["otel_traces"] == 3
    assert svc.sql(count).strip() == "0"
    # sess_2 (calls 6, 7, 8) lost only alice's call 8
    assert svc.sql("SELECT count() FROM llm_inferences FINAL WHERE session_id = 'sess_2'").strip() == "2"
    assert admin(svc, "DELETE", f"/default/sessions/{session}").json()["rows_removed"] == 0


def cli(svc: Service, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inferline.service.cli", *args],
        cwd=ROOT,
        env=svc.env,
        capture_output=True,
        text=True,
    )


def test_cli_exports_and_erases_while_the_service_is_stopped(svc: Service, seeded: dict[str, Any]) -> None:
    assert svc.stop() == 0
    try:
        exported = cli(svc, "users", "export", "--project", "default", "--user", BOB)
        assert exported.returncode == 0, exported.stderr
        tables = [orjson.loads(line)["table"] for line in exported.stdout.splitlines()]
        # bob lost nothing so far, except his call in the erased session sess_3 (call 9).
        assert tables.count("llm_inferences") == seeded["bob"]["llm_inferences"] - 1
        assert tables.count("feedback") == 1
        erased = cli(svc, "users", "erase", "--project", "default", "--user", BOB)
        assert erased.returncode == 0, erased.stderr
        assert orjson.loads(erased.stdout)["rows_removed"] == len(tables)
        again = cli(svc, "users", "erase", "--project", "default", "--user", BOB)
        assert orjson.loads(again.stdout)["rows_removed"] == 0
        assert cli(svc, "sessions", "export", "--project", "default", "--session", "sess_0").returncode == 0
    finally:
        svc.start()
    assert held(svc, BOB) == dict.fromkeys(TABLES, 0)
