"""One model call, one row: a sender's retry of a span, and two spans of one call (LangChain's
`ChatOpenAI` LLM span around the OpenAI instrumentor's LLM span, both with the call's usage), make
one inference row, whichever comes first; distinct calls keep theirs."""

from __future__ import annotations

from typing import Any

import pytest

from inferline.core.records import Span
from inferline.processors.normalise import GenAINormaliser
from tests.genai_examples import make_span

pytestmark = pytest.mark.unit

TRACE = "5" * 32
WRAPPER, CALL, OTHER = "a" * 16, "b" * 16, "c" * 16


def _llm(
    span_id: str, parent: str, name: str, prompt: int, completion: int, offset: int, **extra: Any
) -> Span:
    """An OpenInference LLM span, as the LangChain and OpenAI instrumentors make them."""
    span = make_span(
        {
            "traceId": TRACE,
            "spanId": span_id,
            "parentSpanId": parent,
            "name": name,
            "attributes": {
                "openinference.span.kind": "LLM",
                "llm.provider": "openai",
                "llm.model_name": "gpt-4o-mini",
                "llm.token_count.prompt": prompt,
                "llm.token_count.completion": completion,
                **extra,
            },
        }
    )
    span.origin = ("otlp_spans", 0, offset)
    return span


def _names(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(r["span_id"] for r in rows)


def test_the_inner_span_of_a_call_seen_first_keeps_its_row() -> None:
    n = GenAINormaliser()
    inner = _llm(CALL, WRAPPER, "ChatCompletion", 100, 20, 1)
    outer = _llm(WRAPPER, "", "ChatOpenAI", 100, 20, 1)
    assert _names(n.normalise([inner, outer], [])) == [CALL]  # children end, and are sent, first
    assert n.wrappers == 1


def test_the_outer_span_seen_first_in_an_earlier_batch_keeps_its_row() -> None:
    n = GenAINormaliser()
    assert _names(n.normalise([_llm(WRAPPER, "", "ChatOpenAI", 100, 20, 1)], [])) == [WRAPPER]
    assert n.normalise([_llm(CALL, WRAPPER, "ChatCompletion", 100, 20, 2)], []) == []


def test_nested_calls_with_other_usage_are_calls_of_their_own() -> None:
    """An agent's LLM span over two calls (its usage their sum), and a child of no usage."""
    n = GenAINormaliser()
    spans = [
        _llm(CALL, WRAPPER, "ChatCompletion", 100, 20, 1),
        _llm(OTHER, WRAPPER, "ChatCompletion", 50, 5, 1),
        _llm(WRAPPER, "", "agent", 150, 25, 1),
        _llm("d" * 16, CALL, "tool", 0, 0, 1),
    ]
    assert len(n.normalise(spans, [])) == 4 and n.wrappers == 0


def test_a_retried_request_makes_no_second_row_and_a_rerun_record_does() -> None:
    n = GenAINormaliser()
    first = _llm(CALL, "", "ChatCompletion", 100, 20, 7)
    assert len(n.normalise([first], [])) == 1
    assert n.normalise([_llm(CALL, "", "ChatCompletion", 100, 20, 9)], []) == [] and n.repeats == 1
    assert len(n.normalise([_llm(CALL, "", "ChatCompletion", 100, 20, 7)], [])) == 1  # the same record


def test_what_the_skipped_span_names_still_reaches_the_call() -> None:
    """The outer span carries the user (LangChain metadata): the inner call's row is attributed
    through it, though the outer span makes no row."""
    n = GenAINormaliser()
    inner = _llm(CALL, WRAPPER, "ChatCompletion", 100, 20, 1)
    outer = _llm(WRAPPER, "", "ChatOpenAI", 100, 20, 1, **{"user.id": "u_42"})
    rows = n.normalise([inner, outer], [])
    latest = max(rows, key=lambda r: r["version"])  # a new version once its ancestor is known
    assert {r["span_id"] for r in rows} == {CALL} and latest["user_id"] == "u_42"


def test_the_calls_of_a_failed_entry_are_forgotten_so_a_retry_of_them_is_stored() -> None:
    """The batch is rerun entry by entry after a failure: the entry that fails is dead-lettered,
    so the retry of its call in a later entry is the copy to store."""
    n = GenAINormaliser()
    failed = _llm(CALL, "", "ChatCompletion", 100, 20, 7)
    assert len(n.normalise([failed], [])) == 1
    n.forget_calls({failed.origin})
    assert len(n.normalise([_llm(CALL, "", "ChatCompletion", 100, 20, 9)], [])) == 1 and n.repeats == 0


def test_the_normaliser_vouches_only_for_calls_it_still_remembers() -> None:
    """`calls_remembered_since`: a call first seen now that started after it made no row before.
    A new normaliser remembers nothing older than itself; later, the join window back from when
    the latest records were received; and once its memory is full, only back to the oldest call
    it had to forget early (a retry of that call would not be recognised, so the exporter must
    look it up)."""
    wall = [1_000_000.0]
    n = GenAINormaliser(join_window_s=30.0, max_pending=1, wall_clock=lambda: wall[0])  # 10 calls
    assert n.calls_remembered_since() == 1_000_000.0

    for i in range(10):
        n.normalise([_llm(f"{i + 1:016x}", "", "ChatCompletion", 100 + i, 20, i)], [], 1_000_100.0)
    assert n.calls_remembered_since() == 1_000_070.0  # all still held

    n.normalise([_llm("f" * 16, "", "ChatCompletion", 999, 20, 99)], [], 1_000_105.0)  # one too many
    n.expire()
    # The first call (received at 1,000,100) is gone before its window ended.
    assert n.calls_remembered_since() == 1_000_100.0

    wall[0] = 1_000_200.0  # idle, then: what comes next is received after now
    n.expire()
    assert n.calls_remembered_since() == 1_000_170.0


def test_a_backlog_does_not_make_the_normaliser_forget_what_it_was_sent_lately() -> None:
    """Records processed long after they were received (a burst the local log absorbed, a Kafka
    consumer catching up): the call memory's window runs on when they were received. A retry
    received 5 s after its first copy is recognised though processed 100 s later, and calls of
    records received lately are vouched for, so the exporter does not look every row up while
    the service works through a backlog."""
    processing, wall = [0.0], [1_999_000.0]  # the normaliser starts well before
    n = GenAINormaliser(join_window_s=30.0, clock=lambda: processing[0], wall_clock=lambda: wall[0])
    wall[0] = 2_000_100.0
    assert len(n.normalise([_llm(CALL, "", "ChatCompletion", 100, 20, 7)], [], 2_000_010.0)) == 1
    processing[0] += 100
    wall[0] += 100
    assert n.normalise([_llm(CALL, "", "ChatCompletion", 100, 20, 9)], [], 2_000_015.0) == []
    assert n.repeats == 1
    assert n.calls_remembered_since() == 2_000_015.0 - 30


def test_a_normaliser_told_what_the_store_holds_vouches_from_its_first_record() -> None:
    """At its start the embedded service reads the newest stored call's start: a new normaliser
    then reaches back a join window at once (a call that started before the normaliser itself
    made no row if the store holds nothing as new), instead of vouching only for calls that
    started after it. Told after its first call, it ignores it: a call it forgot early may be
    stored."""
    wall = [1_000_000.0]
    told = GenAINormaliser(join_window_s=30.0, wall_clock=lambda: wall[0])
    told.assume_calls_remembered_since(990_000.0)  # the store's newest call is hours older
    assert told.calls_remembered_since() == 1_000_000.0 - 30

    untold = GenAINormaliser(join_window_s=30.0, wall_clock=lambda: wall[0])
    assert untold.calls_remembered_since() == 1_000_000.0

    newer = GenAINormaliser(join_window_s=30.0, wall_clock=lambda: wall[0])
    newer.assume_calls_remembered_since(1_000_050.0)  # a sender's clock ahead: never later than before
    assert newer.calls_remembered_since() == 1_000_000.0

    late = GenAINormaliser(join_window_s=30.0, wall_clock=lambda: wall[0])
    assert len(late.normalise([_llm(CALL, "", "ChatCompletion", 100, 20, 7)], [], 1_000_000.0)) == 1
    late.assume_calls_remembered_since(990_000.0)
    assert late.calls_remembered_since() == 1_000_000.0
