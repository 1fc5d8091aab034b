"""A ceiling on the process's resident memory, past which receivers refuse new requests with a
retryable status instead of growing until the kernel's OOM killer ends the process (and with it
everything accepted but not yet committed).

RSS is sampled at most every `interval_s`, not per request: a request costs one clock read. Over
the ceiling, the garbage collector runs and freed heap is handed back to the OS (glibc
`malloc_trim`) at most every few seconds, since a Python process's RSS does not shrink on its own.
"""

from __future__ import annotations

import os
import threading
import time

import psutil
import structlog

from inferline.core.errors import MemoryPressure
from inferline.core.memory import release_free_heap

log = structlog.get_logger()

_RECLAIM_EVERY_S = 5.0


class MemoryCeiling:
    def __init__(self, max_rss_bytes: int, interval_s: float = 0.25) -> None:
        self.max_rss_bytes = max_rss_bytes
        self._interval_s = interval_s
        self._process = psutil.Process(os.getpid())
        self._rss = 0
        self._sampled_at = float("-inf")
        self._reclaimed_at = float("-inf")
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_rss_bytes > 0

    def rss(self) -> int:
        """The last sampled RSS, sampling again when the last sample is older than the interval."""
        now = time.monotonic()
        if now - self._sampled_at >= self._interval_s and self._lock.acquire(blocking=False):
            try:
                self._rss = self._process.memory_info().rss
                self._sampled_at = now
                if self._rss > self.max_rss_bytes and now - self._reclaimed_at >= _RECLAIM_EVERY_S:
                    self._reclaimed_at = now
                    self._reclaim()
            finally:
                self._lock.release()
        return self._rss

    def _reclaim(self) -> None:
        before = self._rss
        release_free_heap()
        self._rss = self._process.memory_info().rss
        log.warning(
            "memory ceiling reached; refusing new requests",
            rss_bytes=before,
            rss_after_reclaim=self._rss,
            max_rss_bytes=self.max_rss_bytes,
        )

    def check(self) -> None:
        """Raise MemoryPressure while the process is over its ceiling."""
        if self.enabled and self.rss() > self.max_rss_bytes:
            raise MemoryPressure(f"the receiver is over its memory ceiling ({self.max_rss_bytes} bytes RSS)")
