"""Rows the normaliser keeps for late log content (a span whose content came only as its own
flat-text events, as OpenLIT sends it, waits the join window for structured content in logs) are
held pickled: thousands per worker for the window, few ever read again."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import pytest

from inferline.core.records import LogRecord, Span
from inferline.processors.normalise import GenAINormaliser
from tests.genai_examples import example, make_log, make_span

pytestmark = pytest.mark.unit

KEPT = 2_000


def _openlit(i: int) -> Span:
    """An OpenLIT chat span with ~1.5 KB of content of its own (flat-text span events)."""
    ex = example("10.7")
    ex["traceId"], ex["spanId"] = f"{i + 1:032x}", f"{i + 1:016x}"
    question = f"Question {i}: " + "where is my refund for order 1234, it has been weeks? " * 14
    ex["events"][0]["attributes"]["gen_ai.prompt"] = "user: " + question
    ex["events"][1]["attributes"]["gen_ai.completion"] = f"Answer {i}: " + "refunds take 5-10 days. " * 28
    return make_span(ex)


def _log(i: int, event: str, body: dict[str, Any]) -> LogRecord:
    return make_log({"traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "eventName": event, "body": body})


def test_a_kept_row_costs_a_third_of_its_objects() -> None:
    """2,000 rows kept for late logs: each holds ~3 KB (pickled) beside the call's and the span's
    own links, not the ~10 KB its dicts and strings take."""
    n = GenAINormaliser(join_window_s=30.0)
    spans = [_openlit(i) for i in range(KEPT)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rows = n.normalise(spans, [])
        assert len(rows) == KEPT and n.pending_size == 0 and n.emitted_size == KEPT
        del rows
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held / KEPT < 6_000, f"{held / KEPT:,.0f} bytes per kept row"


def test_late_logs_complete_a_kept_row_and_its_own_content_stays_the_fallback() -> None:
    """A kept row completed by logs twice: the structured prompt from the first, the answer from the
    second, each a new version; the span's own flat text is used for what no log brought yet."""
    n = GenAINormaliser(join_window_s=30.0)
    (first,) = n.normalise([_openlit(0)], [])
    assert first["version"] == 1 and first["prompt_messages"][0]["content"].startswith("Question 0: ")
    own_answer = first["response_messages"]

    (second,) = n.normalise([], [_log(0, "gen_ai.user.message", {"content": "Where is my refund?"})])
    assert second["version"] == 2
    assert second["prompt_messages"] == [{"role": "user", "content": "Where is my refund?"}]
    assert second["response_messages"] == own_answer  # no answer in the logs yet: the span's own

    second["prompt_messages"][0]["content"] = "changed downstream"  # a later stage masking in place
    choice = {"index": 0, "finish_reason": "stop", "message": {"content": "In 5-10 days."}}
    (third,) = n.normalise([], [_log(0, "gen_ai.choice", choice)])
    assert third["version"] == 3
    assert third["prompt_messages"] == [{"role": "user", "content": "Where is my refund?"}]
    assert third["response_messages"][0]["content"] == "In 5-10 days."
    assert third["finish_reasons"] == ["stop"]
