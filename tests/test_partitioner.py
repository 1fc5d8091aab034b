"""The receiver places traces where Kafka's default partitioner puts a message keyed by the trace
id: checked against aiokafka's own partitioner (the reference the producer used before), for
keys of every length up to 64 bytes and trace ids as the receiver spells them."""

from __future__ import annotations

import os
import random

import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2

from inferline.kafka.partitioner import murmur2 as our_murmur2
from inferline.kafka.partitioner import partition_of

pytestmark = pytest.mark.unit


def test_murmur2_is_the_kafka_clients_hash() -> None:
    rng = random.Random(7)
    for length in range(65):
        for _ in range(20):
            data = bytes(rng.randrange(256) for _ in range(length))
            assert our_murmur2(data) == murmur2(data) & 0xFFFFFFFF, data


@pytest.mark.parametrize("partitions", [1, 2, 3, 12, 48])
def test_a_trace_goes_where_a_message_keyed_by_it_would(partitions: int) -> None:
    ids = list(range(partitions))
    reference = DefaultPartitioner()
    for _ in range(500):
        key = os.urandom(16).hex().encode()
        assert ids[partition_of(key, partitions)] == reference(key, ids, ids)
