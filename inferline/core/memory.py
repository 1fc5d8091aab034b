"""Handing freed heap back to the operating system.

A Python process's RSS does not shrink when objects are freed: glibc keeps the pages for later
allocations. Building the processor chain is the big case: compiling the names gazetteer into a
Hyperscan database peaks at ~190 MB that is free again once the ~10 MB database exists, and
every process that builds a chain (the service, each worker) would otherwise keep that peak
resident for its whole life. `malloc_trim(0)` returns it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable


def _malloc_trim() -> Callable[[], object]:
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim
        trim = None
    return (lambda: trim(0)) if trim is not None else (lambda: None)


_TRIM = _malloc_trim()


def release_free_heap() -> None:
    """Collect garbage, then give the heap's free pages back to the OS (a no-op without glibc)."""
    gc.collect()
    _TRIM()
