"""The SQL endpoint's result limit, against a real chDB store: counted on the output itself, so a
constant column (one value in the engine's memory, however many rows) cannot build gigabytes of
result in the service, and the session answers the next query."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from inferline.api.sql import ReadOnlySql
from inferline.api.sql_guard import SqlError

pytestmark = pytest.mark.integration


def test_a_result_over_the_limit_is_refused_and_the_session_goes_on(store: Client, tmp_path: Path) -> None:
    sql = ReadOnlySql(f"chdb://{tmp_path / 'clickhouse'}", "default", max_result_bytes=1_000_000)
    try:
        # A constant: the engine's own limit let it by (10 MB of output).
        with pytest.raises(SqlError) as refused:
            sql.run("default", "SELECT repeat('x', 100) FROM numbers(100000)", None, {})
        assert refused.value.status == 400
        assert "over 1,000,000 bytes (INFERLINE_SQL__MAX_RESULT_BYTES)" in str(refused.value)
        # Ordinary columns: refused too (by whichever count passes the limit first).
        with pytest.raises(SqlError) as refused:
            sql.run("default", "SELECT toString(number) AS s FROM numbers(1000000)", None, {})
        message = str(refused.value)
        assert refused.value.status == 400 and (
            "Limit for result exceeded" in message or "over 1,000,000" in message
        )
        body, _ = sql.run("default", "SELECT repeat('x', 100) FROM numbers(9000)", None, {})
        assert len(body) == 9000 * 101  # under the limit: the whole result
        assert sql.run("default", "SELECT count() FROM llm_inferences", None, {})[0] == b"0\n"
        assert b"total_cost_usd" in sql.run("default", "DESCRIBE TABLE llm_inferences", None, {})[0]
    finally:
        sql.close()


def test_results_in_formats_with_a_header_are_whole_documents(store: Client, tmp_path: Path) -> None:
    """Read in chunks to count it, a result of several chunks is still one JSON document, one CSV
    header."""
    sql = ReadOnlySql(f"chdb://{tmp_path / 'clickhouse'}", "default", max_result_bytes=50_000_000)
    try:
        body, fmt = sql.run("default", "SELECT number FROM numbers(300000) FORMAT JSON", None, {})
        document = orjson.loads(body)
        assert fmt == "JSON" and document["rows"] == 300000 and document["data"][-1] == {"number": 299999}
        body, _ = sql.run("default", "SELECT number AS n FROM numbers(300000) FORMAT CSVWithNames", None, {})
        lines = body.splitlines()
        assert lines[0] == b'"n"' and len(lines) == 300001 and lines.count(b'"n"') == 1
        # No rows: still the document (a stream of no chunks is no document at all).
        body, _ = sql.run(
            "default", "SELECT count() AS n FROM llm_inferences GROUP BY model FORMAT JSON", None, {}
        )
        assert orjson.loads(body)["data"] == []
        body, _ = sql.run("default", "SELECT model FROM llm_inferences FORMAT CSVWithNames", None, {})
        assert body == b'"model"\n'
    finally:
        sql.close()
