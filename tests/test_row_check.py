"""`Table.problem`: the Kafka writer's check that ClickHouse would take a row read from an
enriched topic (a row it would refuse is dead-lettered alone instead of failing the batch)."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from inferline.storage.schema import LLM_INFERENCES, OTEL_TRACES

pytestmark = pytest.mark.unit


class _Text(str):
    """A str subclass (what a JSON library or an ORM may hand over)."""


def _inference(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "inference_id": "0c8e4c1e-8b5f-5d55-9a4b-0f1b2c3d4e5f",
        "project_id": "p",
        "start_time": 1_700_000_000_000_000_000,
        "latency_ms": 12.5,
        "input_tokens": 3,
        "total_cost_usd": Decimal("0.001"),
        "success": True,
        "prompt_messages": [{"role": "user", "content": "hi"}],
        "tags": {"team": "a"},
        "finish_reasons": ["stop"],
        "temperature": None,
    }
    row.update(changes)
    return row


def test_a_row_of_the_columns_types_passes() -> None:
    assert LLM_INFERENCES.problem(_inference()) is None
    assert LLM_INFERENCES.problem(_inference(latency_ms=12)) is None  # an int where a float goes
    assert LLM_INFERENCES.problem(_inference(project_id=_Text("p"))) is None  # a subclass of str
    assert OTEL_TRACES.problem({"SpanName": "chat", "Duration": 5, "SpanAttributes": {}}) is None


@pytest.mark.parametrize(
    ("changes", "column"),
    [
        ({"input_tokens": "3"}, "input_tokens"),  # a number as text
        ({"input_tokens": True}, "input_tokens"),  # a bool is an int to Python, not to ClickHouse
        ({"input_tokens": 1.5}, "input_tokens"),
        ({"total_cost_usd": 0.001}, "total_cost_usd"),  # a float where a Decimal goes
        ({"tags": ["team"]}, "tags"),
        ({"project_id": 7}, "project_id"),
        ({"success": 1}, "success"),
    ],
)
def test_a_value_clickhouse_would_refuse_is_named(changes: dict[str, Any], column: str) -> None:
    problem = LLM_INFERENCES.problem(_inference(**changes))
    assert problem is not None and problem.startswith(f"llm_inferences.{column}: ")
    assert "is not a valid value" in problem


def test_problems_names_the_rows_clickhouse_would_refuse_by_position() -> None:
    good = [_inference(), _inference(latency_ms=12), _inference(temperature=0.2)]
    assert LLM_INFERENCES.problems(good) == {}
    rows = [*good, _inference(input_tokens="3"), _inference(project_id=_Text("p")), _inference(success=1)]
    found = LLM_INFERENCES.problems(rows)
    assert sorted(found) == [3, 5]
    assert found[3].startswith("llm_inferences.input_tokens: ")
    assert found[5].startswith("llm_inferences.success: ")


@pytest.mark.parametrize("seed", range(5))
def test_problems_agrees_with_problem_row_by_row(seed: int) -> None:
    """The check per row shape finds exactly the rows the check row by row refuses."""
    rng = random.Random(seed)
    changes: list[dict[str, Any]] = [
        {},
        {"latency_ms": 12},
        {"project_id": _Text("p")},
        {"input_tokens": True},
        {"input_tokens": None},
        {"total_cost_usd": 0.001},
        {"tags": ["team"]},
        {"prompt_messages": "[]"},
    ]
    rows = [_inference(**rng.choice(changes)) for _ in range(40)]
    expected = {i: why for i, row in enumerate(rows) if (why := LLM_INFERENCES.problem(row))}
    assert LLM_INFERENCES.problems(rows) == expected
