"""Worker processes die with the process that started them.

A worker is of no use without its parent (nobody hands it work or reads its results), and a kill -9
of the service must not leave workers holding memory. On Linux the kernel signals the worker the
moment its parent thread exits (`prctl(PR_SET_PDEATHSIG)`); elsewhere, and as a second line, a
thread notices that the parent id changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def die_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Call in the child, first thing. Exits at once if the parent is already gone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except OSError:
            pass  # the watch thread below still applies
    if os.getppid() != parent_pid:  # died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def name_process(name: str) -> None:
    """Names the calling process as `ps`, `top` and psutil show it (Linux; at most 15 bytes):
    the service's children all have the same command line."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
        except OSError:
            pass  # a name is a convenience
