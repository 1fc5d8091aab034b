"""KeyLayout: the per-key-layout reading of a span gives what the per-span reading gives."""

from __future__ import annotations

from typing import Any

import pytest

from inferline.processors.conventions.field_sources import Chains
from inferline.processors.conventions.key_scan import KeyLayout, scan

CASES: list[dict[str, Any]] = [
    {},
    {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 3},
    {
        "llm.input_messages.1.message.content": "b",
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "a",
        "llm.input_messages.x.message.content": "not indexed",
        "llm.output_messages.0.message.content": None,
        "traceloop.association.properties.user_id": "u1",
        "gen_ai.prompt.00.content": "leading zero",
        "gen_ai.prompt.0.role": "user",
        "ai.telemetry.metadata.tags": ["a"],
        "langfuse.trace.metadata.k": '"v"',
    },
    {"llm.input_messages.\u00b2.message.content": "a non-ASCII digit"},
]


@pytest.mark.parametrize("a", CASES)
def test_layout_scan_is_scan(a: dict[str, Any]) -> None:
    layout = KeyLayout(tuple(a))
    try:
        expected = scan(a)
    except ValueError:
        with pytest.raises(ValueError):
            layout.scan(a)
        return
    assert layout.scan(a) == expected
    assert list(layout.scan(a)[0]) == list(expected[0])  # same order of families too


def test_layout_chains_keep_the_present_keys_in_order() -> None:
    full = Chains(None, ("tenant.id", "tenant_id"))
    layout = KeyLayout(("tenant_id", "gen_ai.usage.output_tokens", "llm.token_count.completion", "x"))
    cut = layout.chains(full)
    assert cut is layout.chains(full)
    assert cut.output == ("gen_ai.usage.output_tokens", "llm.token_count.completion")
    assert cut.tenant == ("tenant_id",)
    assert cut.model == ()
