"""A budget of request bytes in flight, shared by the HTTP and gRPC receivers.

A request holds its share from before its body is read until it is answered, so everything it
costs on the way (the body, its decompressed form, the decoded records, its rows waiting for
storage) is bounded by the budget. Past it, requests are refused at once with a retryable
status instead of piling up in memory.
"""

from __future__ import annotations

from pipeline import metrics
from pipeline.errors import Overloaded


class Admission:
    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._used = 0

    @property
    def used(self) -> int:
        return self._used

    def acquire(self, n: int) -> None:
        """Take `n` bytes of the budget, or raise Overloaded. A single request larger than the
        whole budget is still admitted when nothing else is in flight, so it can never starve."""
        if self._used and self._used + n > self._max:
            metrics.REFUSED.labels("inflight_bytes").inc()
            raise Overloaded(f"{self._used} bytes of requests in flight")
        self._used += n

    def release(self, n: int) -> None:
        self._used -= n
