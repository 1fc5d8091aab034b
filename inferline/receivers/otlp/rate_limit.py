"""Per-project ingest rate limits: a token bucket per (project, signal), shared by the HTTP and
gRPC receivers of one process.

A request is let in when its project's bucket holds as many tokens as it has records (or is full,
so that a request larger than the bucket is not refused forever); it then takes all its records,
which may leave the bucket in debt. A refused request is told when it fits again (Retry-After,
gRPC RetryInfo). Buckets exist only for authenticated projects, so their number is bounded by
the API keys.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from inferline.core.config import RateLimitSettings
from inferline.core.errors import RateLimited

SIGNALS = ("traces", "logs")


@dataclass(slots=True)
class _Bucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_s(self, needed: float) -> int:
        """Whole seconds until `needed` tokens are there, at least 1 (Retry-After is in seconds)."""
        return max(1, math.ceil((needed - self.tokens) / self.rate))


class RateLimiter:
    def __init__(self, settings: RateLimitSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket | None] = {}

    def _rate(self, project: str, signal: str) -> float:
        own = self._settings.projects.get(project)
        if signal == "traces":
            rate = own.spans_per_s if own is not None else None
            return self._settings.spans_per_s if rate is None else rate
        rate = own.logs_per_s if own is not None else None
        return self._settings.logs_per_s if rate is None else rate

    def _bucket(self, project: str, signal: str, now: float) -> _Bucket | None:
        key = (project, signal)
        if key not in self._buckets:
            rate = self._rate(project, signal)
            if rate <= 0:
                self._buckets[key] = None  # unlimited
            else:
                capacity = max(1.0, rate * self._settings.burst_s)
                self._buckets[key] = _Bucket(rate, capacity, capacity, now)
        bucket = self._buckets[key]
        if bucket is not None:
            bucket.refill(now)
        return bucket

    def check(self, project: str, signal: str) -> None:
        """Before reading a request: refuse at once while the project's bucket is in debt or empty,
        so a sender over its rate does not even cost a body read."""
        bucket = self._bucket(project, signal, self._clock())
        if bucket is not None and bucket.tokens < 1:
            raise self._refusal(project, signal, bucket, 1)

    def take(self, project: str, signal: str, records: int) -> None:
        """Take `records` tokens, or raise RateLimited with the wait until the request fits."""
        bucket = self._bucket(project, signal, self._clock())
        if bucket is None or records <= 0:
            return
        needed = min(float(records), bucket.capacity)
        if bucket.tokens < needed:
            raise self._refusal(project, signal, bucket, needed)
        bucket.tokens -= records

    @staticmethod
    def _refusal(project: str, signal: str, bucket: _Bucket, needed: float) -> RateLimited:
        what = "spans" if signal == "traces" else "log records"
        return RateLimited(
            f"project {project!r} is over its rate limit of {bucket.rate:g} {what} per second",
            retry_after_s=bucket.wait_s(needed),
        )
