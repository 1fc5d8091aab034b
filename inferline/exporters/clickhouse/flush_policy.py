"""How long a writer lets a batch fill before it flushes.

Every insert costs ClickHouse a fixed amount besides its rows: a part for each table and for each
rollup view it feeds (measured ~60–100 ms of CPU per flush of our tables on a 2-vCPU machine,
against ~20 µs per span of row work). Flushing on a fixed short delay spends that cost several
times a second whatever the load; a long one keeps data out of queries for longer (senders do not
wait for it: they are answered once the local log or Kafka has their data). So the delay follows
the inserts: a batch waits `1 / fixed_share - 1` times as long as recent inserts took (4× by
default), within [min_s, max_s]. Where inserts are cheap, data is queryable quickly; where they
are dear, the inserts' fixed cost stays about a fifth of the time.
"""

from __future__ import annotations


class FlushDelay:
    def __init__(self, min_s: float, max_s: float, fixed_share: float = 0.2) -> None:
        self._min_s = min(min_s, max_s)
        self._max_s = max_s
        self._ratio = (1 - fixed_share) / fixed_share
        self._insert_s = 0.0  # a moving average of recent inserts' durations

    def observe(self, insert_s: float) -> None:
        """One flush took `insert_s` seconds."""
        self._insert_s = insert_s if not self._insert_s else 0.7 * self._insert_s + 0.3 * insert_s

    @property
    def seconds(self) -> float:
        return min(max(self._insert_s * self._ratio, self._min_s), self._max_s)
