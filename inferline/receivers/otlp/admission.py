"""Admission control shared by the HTTP and gRPC receivers of a process: a budget of request
bytes in flight, the process's memory ceiling and the per-project rate limits.

A request holds its share as its body arrives (the bytes it sent, not the length it announced)
until it is answered, so everything it costs on the way (the body, its decompressed form, the
decoded records, its rows waiting for storage) is bounded by the budget. Past it, or past the
process's memory ceiling, requests are refused at once with a retryable status instead of piling
up in memory. A project over its rate is refused before its body is read, and again once its
records are counted.
"""

from __future__ import annotations

from collections.abc import Sequence

from inferline.core import metrics
from inferline.core.config import Settings
from inferline.core.errors import Overloaded
from inferline.receivers.otlp.memory import MemoryCeiling, Reclaimer
from inferline.receivers.otlp.rate_limit import RateLimiter

_INFLIGHT = metrics.QUEUE_DEPTH.labels("inflight_bytes")


class Admission:
    def __init__(
        self, max_bytes: int, memory: MemoryCeiling | None = None, rates: RateLimiter | None = None
    ) -> None:
        self._max = max_bytes
        self._used = 0
        self.memory = memory
        self._rates = rates

    @property
    def used(self) -> int:
        return self._used

    def acquire(self, n: int, held_by_caller: int = 0) -> None:
        """Take `n` bytes of the budget, or raise Overloaded (MemoryPressure over the memory
        ceiling). A single request larger than the whole budget is still admitted when nothing
        else is in flight (`held_by_caller`: what the request itself holds already), so it can
        never starve."""
        if self._used > held_by_caller and self._used + n > self._max:
            raise Overloaded(f"{self._used} bytes of requests in flight", reason="inflight_bytes")
        if self.memory is not None:
            self.memory.check()
        self._used += n
        _INFLIGHT.set(self._used)

    def release(self, n: int) -> None:
        self._used -= n
        _INFLIGHT.set(self._used)

    def check_rate(self, project_id: str, signal: str) -> None:
        """Raise RateLimited while the project's bucket for `signal` is empty."""
        if self._rates is not None:
            self._rates.check(project_id, signal)

    def take_rate(self, project_id: str, signal: str, records: int) -> None:
        """Count `records` against the project's rate, or raise RateLimited."""
        if self._rates is not None:
            self._rates.take(project_id, signal, records)


def receiver_admission(settings: Settings, reclaimers: Sequence[Reclaimer] = ()) -> Admission:
    """The admission control of one receiver process, from the settings; `reclaimers` hand back
    memory the process's other parts hold (`MemoryCeiling.add_reclaimer`)."""
    memory = MemoryCeiling(settings.resolved_max_rss_bytes)
    for reclaim in reclaimers:
        memory.add_reclaimer(reclaim)
    return Admission(settings.max_inflight_bytes, memory, RateLimiter(settings.rate_limit))
