"""A ceiling on the service's resident memory, past which receivers refuse new requests with a
retryable status instead of growing until the kernel's OOM killer ends the process (and with it
everything accepted but not yet committed).

What is counted is anonymous memory (heaps, shared memory: `core.memory.anonymous_rss_bytes`),
the memory the kernel cannot reclaim and the OOM killer frees by killing. The pages of mapped
files (libraries: ClickHouse's alone is ~250 MB resident) are left out: the kernel drops them
under pressure and reads them again, and RSS counts them once in every process mapping them.

The ceiling counts the receiving process *and its descendants* (the worker and JSON-decoder
processes): that is what a container's memory limit counts, and what the OOM killer acts on. A
worker holds as much memory under load as a fifth of the whole tree (docs/performance.md), so a
ceiling on the receiving process alone let the tree grow past it unrefused.

RSS is sampled at most every `interval_s`, not per request: a request costs one clock read; the
list of descendants is looked up again every few seconds on a thread (a scan of every process:
milliseconds the event loop would stop for), so a worker replaced after its death counts from
the next lookup on.
Over the ceiling, memory that is free but still held is handed back, at most every few seconds
and on a thread of its own: the garbage collector runs and glibc's free heap goes back to the OS
(`malloc_trim`) here, and the service's `reclaimers` do the same where this process cannot reach
(the worker processes; ClickHouse's allocator, which keeps freed pages for seconds). A Python
process's RSS does not shrink on its own, and without this a tree holding only freed memory
would refuse every request for good.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import psutil
import structlog

from inferline.core.errors import MemoryPressure
from inferline.core.logging import error_summary
from inferline.core.memory import anonymous_rss_bytes, release_free_heap

log = structlog.get_logger()

_RECLAIM_EVERY_S = 5.0
_CHILDREN_EVERY_S = 5.0  # how often the list of descendant processes is looked up again

Reclaimer = Callable[[], object]


class MemoryCeiling:
    def __init__(self, max_rss_bytes: int, interval_s: float = 0.25, descendants: bool = True) -> None:
        self.max_rss_bytes = max_rss_bytes
        self._interval_s = interval_s
        self._process = psutil.Process(os.getpid())
        self._descendants = descendants
        self._children: list[psutil.Process] = []
        self._children_at = float("-inf")
        self._looked_up = False
        self._looking = False
        self._reclaimers: list[Reclaimer] = []
        self._rss = 0
        self._sampled_at = float("-inf")
        self._reclaimed_at = float("-inf")
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_rss_bytes > 0

    def add_reclaimer(self, reclaim: Reclaimer) -> None:
        """`reclaim()` (it may block) is called when the tree is over its ceiling, at most every
        few seconds, on the reclaiming thread: it hands back memory this process cannot."""
        self._reclaimers.append(reclaim)

    def rss(self) -> int:
        """The last sampled RSS of the tree, sampling again when the last sample is older than the
        interval."""
        now = time.monotonic()
        if now - self._sampled_at >= self._interval_s and self._lock.acquire(blocking=False):
            try:
                self._rss = self._sample(now)
                self._sampled_at = now
                if self._rss > self.max_rss_bytes and now - self._reclaimed_at >= _RECLAIM_EVERY_S:
                    self._reclaimed_at = float("inf")  # until this reclaim is done
                    threading.Thread(target=self._reclaim, name="memory-reclaim", daemon=True).start()
            finally:
                self._lock.release()
        return self._rss

    def _sample(self, now: float) -> int:
        rss = anonymous_rss_bytes(self._process)
        if not self._descendants:
            return rss
        if now - self._children_at >= _CHILDREN_EVERY_S:
            self._children_at = now
            if self._looking:
                pass  # the last lookup is still scanning
            elif self._looked_up:  # a scan of every process in /proc: off the event loop
                self._looking = True
                try:
                    threading.Thread(
                        target=self._look_up_children, name="memory-children", daemon=True
                    ).start()
                except RuntimeError:  # no thread to be had: the list stays, tried again later
                    self._looking = False
            else:  # the first sample counts the workers already
                self._look_up_children()
        for child in self._children:
            try:
                rss += anonymous_rss_bytes(child)
            except psutil.Error:  # ended since the lookup
                self._children_at = float("-inf")
        return rss

    def _look_up_children(self) -> None:
        """The descendants, published in one assignment once found: until then (and if every try
        fails, e.g. out of file descriptors) the last list found is counted."""
        try:
            for _ in range(3):  # a process that ends during the lookup fails it: look again
                try:
                    self._children = self._process.children(recursive=True)
                    break
                except (psutil.Error, OSError):
                    continue
        finally:
            self._looked_up = True
            self._looking = False

    def _reclaim(self) -> None:
        before = self._rss
        release_free_heap()
        for reclaim in self._reclaimers:
            try:
                reclaim()
            except Exception as e:
                log.error("reclaiming memory failed", error=error_summary(e))
        with self._lock:
            self._rss = after = self._sample(time.monotonic())
            self._reclaimed_at = time.monotonic()
        log.warning(
            "memory ceiling reached; refusing new requests while over it",
            rss_bytes=before,
            rss_after_reclaim=after,
            max_rss_bytes=self.max_rss_bytes,
        )

    def report_at_start(self) -> None:
        """Once started: logs the ceiling and what the service holds, and says so loudly when it
        already holds more (every request would be refused; a container too small)."""
        if not self.enabled:
            return
        held = self._sample(time.monotonic())
        if held > self.max_rss_bytes:
            log.error(
                "the memory ceiling is below what the service holds at rest: requests will be refused; "
                "give it more memory or raise INFERLINE_MAX_RSS_BYTES",
                rss_bytes=held,
                max_rss_bytes=self.max_rss_bytes,
            )
        else:
            log.info("memory ceiling", rss_bytes=held, max_rss_bytes=self.max_rss_bytes)

    def check(self) -> None:
        """Raise MemoryPressure while the tree is over its ceiling."""
        if self.enabled and self.rss() > self.max_rss_bytes:
            raise MemoryPressure(
                f"the service is over its memory ceiling ({self.max_rss_bytes} bytes of anonymous memory)"
            )
