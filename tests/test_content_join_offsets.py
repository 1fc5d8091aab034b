"""The Kafka offsets the normaliser's content join holds: what the processor may not commit past."""

from __future__ import annotations

from typing import Any

import pytest

from inferline.core.records import LogRecord, Span
from inferline.processors.conventions.content_join import OffsetHolds
from inferline.processors.normalise import GenAINormaliser
from tests.genai_examples import make_log, make_span

pytestmark = pytest.mark.unit

SPANS, LOGS = "otlp_spans", "otlp_logs"


def _span(i: int, offset: int | None = None, partition: int = 0) -> Span:
    """A chat span without content: its row is remembered for late logs."""
    s = make_span(
        {
            "traceId": f"{i:032x}",
            "spanId": f"{i:016x}",
            "attributes": {
                "gen_ai.operation.name": "chat",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "m",
            },
        }
    )
    if offset is not None:
        s.origin = (SPANS, partition, offset)
    return s


def _log(i: int, offset: int | None, partition: int = 0, event: str = "gen_ai.user.message") -> LogRecord:
    body: dict[str, Any] = {"content": f"question {i}"}
    if event == "gen_ai.choice":
        body = {"index": 0, "finish_reason": "stop", "message": {"content": f"answer {i}"}}
    r = make_log({"traceId": f"{i:032x}", "spanId": f"{i:016x}", "eventName": event, "body": body})
    if offset is not None:
        r.origin = (LOGS, partition, offset)
    return r


def _plain_log(offset: int) -> LogRecord:
    r = make_log({"traceId": f"{1:032x}", "spanId": f"{1:016x}", "body": "not content"})
    r.origin = (LOGS, 0, offset)
    return r


def _clocked(**kw: Any) -> tuple[GenAINormaliser, list[float]]:
    now = [100.0]
    return GenAINormaliser(clock=lambda: now[0], **kw), now


def test_no_origin_holds_nothing() -> None:
    n = GenAINormaliser()
    n.normalise([_span(1)], [_log(2, None)])
    assert n.emitted_size == 1 and n.pending_size == 1
    assert n.held_offsets() == {}


def test_pending_logs_are_held_at_their_lowest_offset_per_partition() -> None:
    n = GenAINormaliser()
    n.normalise([], [_log(1, 7), _log(2, 3), _log(3, 5, partition=1), _plain_log(1)])
    assert n.pending_size == 3
    # The plain log (offset 1) is not content: nothing waits on it.
    assert n.held_offsets() == {(LOGS, 0): 3, (LOGS, 1): 5}
    # A second log for span 1 at a lower offset (a replay) lowers that entry's hold.
    n.normalise([], [_log(1, 2, event="gen_ai.choice")])
    assert n.pending_size == 3
    assert n.held_offsets() == {(LOGS, 0): 2, (LOGS, 1): 5}


def test_joined_pending_logs_are_released() -> None:
    n = GenAINormaliser()
    n.normalise([], [_log(1, 3), _log(1, 4, event="gen_ai.choice"), _log(2, 9)])
    assert n.held_offsets() == {(LOGS, 0): 3}
    [row] = n.normalise([_span(1, offset=40)], [])
    assert row["prompt_messages"] and row["response_messages"]
    # Row complete (prompt and response): nothing remembered, span 1's logs released.
    assert n.emitted_size == 0
    assert n.held_offsets() == {(LOGS, 0): 9}
    [row] = n.normalise([_span(2, offset=41)], [_log(2, 10, event="gen_ai.choice")])
    assert row["prompt_messages"] and row["response_messages"]
    assert n.held_offsets() == {}


def test_remembered_row_holds_its_span_then_the_late_logs() -> None:
    n, now = _clocked(join_window_s=30.0)
    [row] = n.normalise([_span(1, offset=10, partition=2)], [])
    assert row["version"] == 1 and row["prompt_messages"] == []
    assert n.emitted_size == 1
    assert n.held_offsets() == {(SPANS, 2): 10}
    # A late log completes the row (version 2); the log is held too, until the row is forgotten.
    [upd] = n.normalise([], [_log(1, 4, partition=2)])
    assert upd["version"] == 2 and upd["prompt_messages"]
    assert n.held_offsets() == {(SPANS, 2): 10, (LOGS, 2): 4}
    now[0] += 31.0
    n.expire()
    assert n.emitted_size == 0
    assert n.held_offsets() == {}


def test_pending_logs_move_to_the_remembered_row_while_it_still_waits() -> None:
    n = GenAINormaliser()
    n.normalise([], [_log(1, 5)])  # the prompt only: the row still misses its response
    [row] = n.normalise([_span(1, offset=20)], [_log(1, 6)])
    assert row["prompt_messages"] and row["response_messages"] == []
    assert n.pending_size == 0 and n.emitted_size == 1
    assert n.held_offsets() == {(LOGS, 0): 5, (SPANS, 0): 20}


def test_expired_pending_logs_are_released() -> None:
    n, now = _clocked(join_window_s=30.0)
    n.normalise([], [_log(1, 3)])
    now[0] += 10.0
    n.normalise([], [_log(2, 8)])
    assert n.held_offsets() == {(LOGS, 0): 3}
    now[0] += 25.0  # the first expired, the second not yet
    n.normalise([], [])
    assert n.held_offsets() == {(LOGS, 0): 8}
    now[0] += 10.0
    n.expire()
    assert n.pending_size == 0 and n.held_offsets() == {}


def test_evicted_entries_are_released() -> None:
    n = GenAINormaliser(max_pending=2)
    n.normalise([], [_log(1, 1), _log(2, 2), _log(3, 3)])
    assert n.pending_size == 2
    assert n.held_offsets() == {(LOGS, 0): 2}
    n.normalise([_span(10, offset=100), _span(11, offset=101), _span(12, offset=102)], [])
    assert n.emitted_size == 2
    assert n.held_offsets() == {(LOGS, 0): 2, (SPANS, 0): 101}


def test_a_span_repeated_in_a_later_record_is_a_retry_and_makes_no_second_row() -> None:
    """A sender's retry (the same span in another request) within the window: no second
    version-1 row for the rollups to count; the first record keeps its hold (a replay from it
    rebuilds the row). The same record read again (a replay) makes its row again."""
    n = GenAINormaliser()
    assert len(n.normalise([_span(1, offset=10)], [])) == 1
    assert n.normalise([_span(1, offset=12)], []) == [] and n.repeats == 1
    assert n.emitted_size == 1
    assert n.held_offsets() == {(SPANS, 0): 10}
    assert len(n.normalise([_span(1, offset=10)], [])) == 1  # the same record again


def test_content_that_comes_with_a_retry_completes_the_row_made_already() -> None:
    n = GenAINormaliser()
    (first,) = n.normalise([_span(1, offset=5)], [])
    rows = n.normalise([_span(1, offset=9)], [_log(1, 10)])  # the retry, and the content at last
    assert [(r["version"], "question 1" in str(r["prompt_messages"])) for r in rows] == [
        (first["version"] + 1, True)
    ]


def test_forget_drops_the_entries_of_revoked_partitions() -> None:
    n = GenAINormaliser()
    n.normalise([_span(1, offset=10, partition=0), _span(2, offset=11, partition=1)], [])
    n.normalise([], [_log(3, 4, partition=0), _log(4, 5, partition=1)])
    assert n.held_offsets() == {(SPANS, 0): 10, (SPANS, 1): 11, (LOGS, 0): 4, (LOGS, 1): 5}
    assert n.forget([(SPANS, 1), (LOGS, 1)]) == 2
    assert n.held_offsets() == {(SPANS, 0): 10, (LOGS, 0): 4}
    assert n.emitted_size == 1 and n.pending_size == 1


def test_offset_holds_count_references_and_prune_lazily() -> None:
    h = OffsetHolds()
    tp = ("t", 0)
    h.hold({tp: 5})
    h.hold({tp: 5})
    h.hold({tp: 9, ("t", 1): 1})
    assert h.minimum() == {tp: 5, ("t", 1): 1}
    h.release({tp: 5})
    assert h.minimum() == {tp: 5, ("t", 1): 1}  # still one reference
    h.release({tp: 5})
    h.release({("t", 1): 1})
    assert h.minimum() == {tp: 9}
    # Many holds released without a minimum taken in between: the heap stays bounded.
    for i in range(10, 10_000):
        h.hold({tp: i})
        h.release({tp: i})
    assert len(h._heaps[tp]) < 200
    assert h.minimum() == {tp: 9}
    h.release({tp: 9})
    assert h.minimum() == {}
