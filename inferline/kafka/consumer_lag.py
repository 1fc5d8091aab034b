"""`inferline_kafka_consumer_lag` for one consumer: per topic, the sum over the partitions this
consumer holds of high watermark minus position. Each member of a group reports its own share, so
`sum by (group, topic)` over all instances is the group's lag."""

from __future__ import annotations

import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer

from inferline.core import metrics


class ConsumerLag:
    def __init__(self, group: str, topics: Iterable[str], every_s: float = 1.0) -> None:
        self._group = group
        self._topics = list(topics)
        self._every_s = every_s
        self._at = float("-inf")

    async def update(self, consumer: AIOKafkaConsumer) -> None:
        """Refresh the gauge, at most every `every_s` (called after each poll). Highwater marks
        come with fetch responses, so this costs no request to the broker."""
        now = time.monotonic()
        if now - self._at < self._every_s:
            return
        self._at = now
        lag = dict.fromkeys(self._topics, 0)
        for tp in consumer.assignment():
            try:
                high = consumer.highwater(tp)
                if high is None:
                    continue
                position = await consumer.position(tp)
            except Exception:  # revoked meanwhile, or no position yet: counted at the next update
                continue
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - position)
        for topic, n in lag.items():
            metrics.KAFKA_CONSUMER_LAG.labels(self._group, topic).set(n)

    def clear(self) -> None:
        """This consumer holds no partitions any more (stopping)."""
        for topic in self._topics:
            metrics.KAFKA_CONSUMER_LAG.labels(self._group, topic).set(0)
