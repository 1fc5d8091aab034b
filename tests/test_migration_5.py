"""Migration 5 (issue #15): a database made by migrations 1-4, with rows in it, gains the new
`llm_inferences` columns; old rows read their empty values, new rows keep what the normaliser and
pricing put there, and the table ends up as a fresh database makes it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from inferline.core.records import Batch
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.processors.normalise import GenAINormaliser
from inferline.processors.pricing import Pricer
from inferline.storage.clickhouse import connect
from inferline.storage.schema import LLM_INFERENCES, migrate, migrations
from tests.genai_examples import flat_span
from tests.migration_helpers import migrate_before

pytestmark = pytest.mark.integration

NEW_COLUMNS = ("usage_details", "provided_cost_usd", "request_parameters", "agent_id")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    c = connect(f"chdb://{tmp_path / 'clickhouse'}")
    yield c
    c.close()


def _columns(client: Client) -> list[str]:
    result = client.query(
        "SELECT name FROM system.columns WHERE database = 'default' AND table = 'llm_inferences' "
        "ORDER BY position"
    )
    return [r[0] for r in result.result_rows]


def _row(attributes: dict, seed: str) -> dict:
    now = time.time_ns()  # older rows would be past the tables' TTL
    [row] = GenAINormaliser().normalise([flat_span(attributes, seed=seed, start=now, end=now + 10**9)], [])
    batch = Batch(inferences=[row])
    Pricer().process(batch)
    return row


OPENLIT_CALL = {
    "telemetry.sdk.name": "openlit",
    "gen_ai.operation.name": "chat",
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 45,
    "gen_ai.usage.output_tokens": 30,
    "gen_ai.usage.cost": 0.01,
    "gen_ai.usage.audio.input_tokens": 5,
    "gen_ai.agent.id": "asst_1",
    "gen_ai.request.seed": 3,
}


def test_migration_5_on_a_database_of_migration_4(client: Client) -> None:
    migrate_before(client, 5)
    assert not set(NEW_COLUMNS) & set(_columns(client))
    # a row written before the upgrade, with the columns the table had then
    old = _row({**OPENLIT_CALL, "gen_ai.usage.cost": 0.02}, "old")
    v4_columns = [c for c in LLM_INFERENCES.insert_columns if c.name in _columns(client)]
    client.insert(
        "llm_inferences",
        [[old.get(c.name, c.empty) if c.name not in ("prompt_messages", "response_messages") else "[]"
          for c in v4_columns]],
        [c.name for c in v4_columns],
    )  # fmt: skip

    assert migrate(client) == [m.version for m in migrations("default", 180)[4:]]  # 5 and later
    assert _columns(client) == [c.name for c in LLM_INFERENCES.columns]

    new = _row(OPENLIT_CALL, "new")
    Inserter(client).insert(Batch(inferences=[new]), "t1")
    result = client.query(
        "SELECT span_id, usage_details, provided_cost_usd, total_cost_usd, price_status, request_parameters, "
        "agent_id FROM llm_inferences FINAL"
    )
    rows = {r[0]: r[1:] for r in result.result_rows}
    assert rows[old["span_id"]] == ({}, None, Decimal("0.00002475"), "priced", {}, "")
    usage, provided, total, status, params, agent_id = rows[new["span_id"]]
    assert usage == {"input.audio": 5}
    assert provided == Decimal("0.01") and total == Decimal("0.00002475") and status == "priced"
    assert params == {"seed": "3"} and agent_id == "asst_1"


def test_fresh_database_has_the_same_columns(client: Client) -> None:
    assert migrate(client) == [m.version for m in migrations("default", 180)]
    assert _columns(client) == [c.name for c in LLM_INFERENCES.columns]
    row = _row({**OPENLIT_CALL, "gen_ai.tool.definitions": json.dumps([{"name": "f"}])}, "fresh")
    Inserter(client).insert(Batch(inferences=[row]), "t2")
    result = client.query("SELECT request_parameters['tool_definitions'] FROM llm_inferences")
    assert json.loads(result.result_rows[0][0]) == [{"name": "f"}]
