"""Stopping every role the same way on SIGTERM/SIGINT: stop accepting, finish the requests in
flight, flush and commit, exit, all within `shutdown_timeout_s`.

The graceful path bounds each step; the deadline is the backstop for what cannot be bounded from
here (a ClickHouse insert that hangs, a long SQL query holding a thread). When it passes, the
process exits at once with `EXIT_DEADLINE`: what was acknowledged is already durable (ClickHouse,
or Kafka with acks=all), and what was not acknowledged will be sent again by its sender, or read
again from the last committed Kafka offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time

import psutil
import structlog

log = structlog.get_logger()

EXIT_DEADLINE = 3
EXIT_SECOND_SIGNAL = 130


def stop_on_signals(stop: asyncio.Event) -> None:
    """The first SIGTERM/SIGINT sets `stop`; a second one exits at once (an impatient Ctrl-C)."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("stop signal received", signal=sig.name)
            stop.set()
            return
        log.warning("second stop signal: exiting without finishing", signal=sig.name)
        _exit(EXIT_SECOND_SIGNAL)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)


class Deadline:
    """Started when stopping begins: exits the process if it is still running `timeout_s` later."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._ends_at = time.monotonic() + timeout_s
        self._timer = threading.Timer(timeout_s, self._expired)
        self._timer.daemon = True
        self._timer.start()

    def fraction(self, share: float, minimum: float = 1.0) -> float:
        """`share` of the whole deadline, but no more than what is left of it."""
        return max(min(self.timeout_s * share, self.remaining()), min(minimum, self.remaining()))

    def remaining(self) -> float:
        return max(0.0, self._ends_at - time.monotonic())

    def cancel(self) -> None:
        self._timer.cancel()

    def _expired(self) -> None:
        log.error("shutdown deadline passed; exiting with work unfinished", timeout_s=self.timeout_s)
        _exit(EXIT_DEADLINE)


def _exit(code: int) -> None:
    # os._exit: no interpreter teardown, which is exactly what may be stuck (threads, the engine).
    # Child processes (processing workers) would outlive it as orphans: they go first.
    with contextlib.suppress(Exception):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
        sys.stdout.flush()
    os._exit(code)
