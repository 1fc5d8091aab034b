"""The Kafka path carries the columns of migration 5: an enriched inference (normalised, priced,
encoded as the processor role sends it) decodes in the writer role to a row ClickHouse takes,
with the provided cost as an exact Decimal and the usage and parameter maps intact."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from inferline.core.records import Batch
from inferline.kafka.clients import encode_row
from inferline.processors.normalise import GenAINormaliser
from inferline.processors.pricing import Pricer
from inferline.service.writer_role import WriterRole
from inferline.storage.schema import LLM_INFERENCES
from tests.genai_examples import flat_span

pytestmark = pytest.mark.unit


def test_enriched_inference_with_new_columns_decodes_in_the_writer() -> None:
    span = flat_span(
        {
            "telemetry.sdk.name": "openlit",
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 45,
            "gen_ai.usage.output_tokens": 30,
            "gen_ai.usage.cost": 0.01,
            "gen_ai.usage.image.input_tokens": 20,
            "gen_ai.agent.id": "asst_1",
            "gen_ai.tool.definitions": json.dumps([{"name": "f"}]),
        }
    )
    [row] = GenAINormaliser().normalise([span], [])
    Pricer().process(Batch(inferences=[row]))
    message = SimpleNamespace(
        headers=[], value=encode_row(row), topic="inferline.inferences", offset=0, key=None
    )
    fake_writer: Any = SimpleNamespace()  # a valid row never touches the writer's producer
    [decoded] = asyncio.run(WriterRole._decode(fake_writer, message, LLM_INFERENCES))
    assert decoded["provided_cost_usd"] == Decimal("0.01")
    assert decoded["total_cost_usd"] == Decimal("0.00002475") and decoded["price_status"] == "priced"
    assert decoded["usage_details"] == {"input.image": 20}
    assert json.loads(decoded["request_parameters"]["tool_definitions"]) == [{"name": "f"}]
    assert decoded["agent_id"] == "asst_1"
    assert LLM_INFERENCES.problem(decoded) is None
