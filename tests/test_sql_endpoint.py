"""The read-only SQL endpoint: a ClickHouse client against the running embedded store."""

from __future__ import annotations

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.conftest import Service
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, traces_json

pytestmark = pytest.mark.e2e


def send(service: Service, key: str, span: dict) -> None:
    r = httpx.post(
        f"{service.http_url}/v1/traces",
        content=traces_json([span]),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    service.settle()  # acknowledged once in the local log; queryable a flush later


def test_clickhouse_connect_client_works(service: Service) -> None:
    client = clickhouse_connect.get_client(host="127.0.0.1", port=service.api_port, password=service.key)
    assert client.query("SELECT 1 + 1").result_rows == [(2,)]
    assert client.command("SELECT version()")
    send(service, service.key, json_span(GENAI_ATTRIBUTES, name="sql-client"))
    result = client.query(
        "SELECT model, count() AS n, quantile(0.95)(latency_ms) AS p95, sum(total_cost_usd) AS cost "
        "FROM llm_inferences GROUP BY model"
    )
    assert result.column_names == ("model", "n", "p95", "cost")
    assert result.result_rows[0][0] == "gpt-4o-mini-2024-07-18"


def test_curl_style_get(service: Service) -> None:
    r = httpx.get(f"{service.api_url}/?query=SELECT+1", headers={"Authorization": f"Bearer {service.key}"})
    assert r.status_code == 200 and r.text == "1\n"
    r = httpx.get(
        f"{service.api_url}/",
        params={"query": "SELECT 1 AS x FORMAT JSONEachRow"},
        auth=("default", service.key),
    )
    assert r.json() == {"x": 1}


def test_sql_needs_a_key(service: Service) -> None:
    r = httpx.get(f"{service.api_url}/?query=SELECT+1")
    assert r.status_code == 401
    r = httpx.get(f"{service.api_url}/?query=SELECT+1", headers={"Authorization": "Bearer il_wrong"})
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("INSERT INTO llm_inferences (project_id) VALUES ('x')", "read-only"),
        ("CREATE TABLE t (x Int8) ENGINE = Memory", "read-only"),
        ("DROP TABLE llm_inferences", "read-only"),
        ("ALTER TABLE llm_inferences DELETE WHERE 1", "read-only"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "not allowed"),
        ("SELECT * FROM merge('default', 'llm_inferences')", "not allowed"),
        ("SELECT * FROM api_keys", "not readable"),
        ("SELECT * FROM system.parts", "not readable"),
        ("SELECT 1 SETTINGS readonly = 0", "read-only"),
        ("SELECT 1 SETTINGS max_threads = 1", "read-only"),
        ("SELECT 1; SELECT * FROM api_keys", "one statement"),
        ("SELECT 1; SELECT project_id FROM merge('default', '^llm_inferences$')", "one statement"),
        ("SELECT file('default_api_key')", "file() is not allowed"),
        ("SELECT 'x' INTO OUTFILE '/tmp/inferline-pwn' APPEND", "INTO OUTFILE"),
        # DESCRIBE writes files too; a column alias would choose the content
        (
            "DESCRIBE (SELECT 1 AS `import os`) INTO OUTFILE '/tmp/inferline-pwn.pth' FORMAT TSVRaw",
            "INTO OUTFILE",
        ),
        ("DESCRIBE (SELECT 1 AS x) INTO OUTFILE '/tmp/inferline-pwn' TRUNCATE", "INTO OUTFILE"),
        ("DESCRIBE system.one SETTINGS max_threads = 1", "read-only"),
        ("SELECT 1 WHERE 'x' IN INFORMATION_SCHEMA.SCHEMATA", "not readable"),
        ("SELECT hasColumnInTable('default', 'api_keys', 'key_sha256')", "not allowed"),
        ("SELECT getServerSetting('path')", "not allowed"),
        ("SHOW PROCESSLIST", "only SELECT"),
        ("SHOW TABLES", "only SELECT"),
        ("SHOW CREATE TABLE api_keys", "only SELECT"),
        ("SELECT 1 WHERE 'x' IN api_keys", "not readable"),
        ("SELECT 1 WHERE 'x' IN default.schema_migrations", "not readable"),
        ("SELECT dictGet('d', 'a', 1)", "not allowed"),
        ("SELECT * FROM system.processes", "not readable"),
        ("EXPLAIN SELECT 1", "only SELECT"),
        ("SELECT count() FROM numbers(100000000000)", "TIMEOUT_EXCEEDED"),
    ],
)
def test_only_reads_of_the_data_tables_run(service: Service, query: str, says: str) -> None:
    r = httpx.post(
        f"{service.api_url}/", content=query, headers={"Authorization": f"Bearer {service.key}"}, timeout=60
    )
    assert r.status_code in (400, 403), r.text
    assert says in r.text


def test_resource_limits_stop_runaway_queries_not_the_service(service: Service) -> None:
    r = httpx.post(
        f"{service.api_url}/",
        content="SELECT length(groupArray(repeat('x', 100000))) FROM numbers(100000)",  # ~6 GiB
        headers={"Authorization": f"Bearer {service.key}"},
        timeout=120,
    )
    assert r.status_code == 400 and "MEMORY_LIMIT_EXCEEDED" in r.text, r.text
    assert httpx.get(f"{service.api_url}/healthz").status_code == 200
    assert service.sql("SELECT 1") == "1\n"


def test_common_table_expressions_and_aliases_named_like_tables_run(service: Service) -> None:
    assert service.sql("WITH t AS (SELECT model FROM llm_inferences) SELECT count() >= 0 FROM t") == "1\n"
    assert service.sql("SELECT count() AS projects FROM llm_inferences ORDER BY projects") != ""


def test_describe_of_a_data_table_works(service: Service) -> None:
    assert "total_cost_usd\tNullable(Decimal(18, 12))" in service.sql("DESCRIBE TABLE llm_inferences")


def test_a_key_reads_only_its_projects_rows(service: Service) -> None:
    other_key = service.extra_keys["other"]
    mine, theirs = json_span(GENAI_ATTRIBUTES, name="mine"), json_span(GENAI_ATTRIBUTES, name="theirs")
    send(service, service.key, mine)
    send(service, other_key, theirs)
    query = (
        f"SELECT trace_id, project_id FROM llm_inferences WHERE trace_id IN "
        f"('{mine['traceId']}', '{theirs['traceId']}')"
    )
    assert service.sql(query) == f"{mine['traceId']}\tdefault\n"
    assert service.sql(query, key=other_key) == f"{theirs['traceId']}\tother\n"
    # Qualified names, subqueries and the other tables are filtered the same way.
    assert (
        service.sql(
            f"SELECT count() FROM (SELECT * FROM default.otel_traces WHERE TraceId = '{theirs['traceId']}')"
        )
        == "0\n"
    )
    other = clickhouse_connect.get_client(host="127.0.0.1", port=service.api_port, password=other_key)
    assert other.query("SELECT DISTINCT ProjectId FROM otel_traces").result_rows == [("other",)]
    with pytest.raises(DatabaseError):
        other.query("SELECT * FROM api_keys")
