"""The processor's poll size: about `max_poll_bytes` of messages per poll whatever their size, so
the batch its workers hold is bounded by bytes, not only by a count of messages that may each be
a trace of a few KB or a partition's share of a request of a few hundred KB."""

from __future__ import annotations

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition

from inferline.kafka.clients import PollSize

pytestmark = pytest.mark.unit

TP = TopicPartition("otlp_spans", 0)


def _polled(count: int, size: int) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    records = [
        ConsumerRecord("otlp_spans", 0, i, 0, 0, None, b"x" * size, None, size, 0, []) for i in range(count)
    ]
    return {TP: records}


def test_large_messages_are_polled_fewer_at_a_time() -> None:
    size = PollSize(max_records=500, max_bytes=4_000_000)
    assert size.records() == 16  # nothing seen yet: as if each were a quarter megabyte
    for _ in range(10):
        size.observe(_polled(size.records(), 100_000))
    assert size.records() * 100_000 <= 4_000_000 < (size.records() + 2) * 100_000
    for _ in range(20):
        size.observe(_polled(size.records(), 2_000))
    assert size.records() == 500  # small messages: the count is the bound again


def test_a_message_larger_than_the_budget_is_still_polled_alone() -> None:
    size = PollSize(max_records=500, max_bytes=1_000)
    size.observe(_polled(3, 50_000))
    assert size.records() == 1


def test_an_empty_poll_changes_nothing() -> None:
    size = PollSize(max_records=500, max_bytes=4_000_000)
    size.observe(_polled(16, 10_000))
    before = size.records()
    size.observe({})
    assert size.records() == before
