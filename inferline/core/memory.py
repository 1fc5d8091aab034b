"""Handing freed heap back to the operating system.

A Python process's RSS does not shrink when objects are freed: glibc keeps the pages for later
allocations. Building the processor chain is the big case: compiling the names gazetteer into a
Hyperscan database peaks at ~190 MB that is free again once the ~10 MB database exists, and
every process that builds a chain (the service, each worker) would otherwise keep that peak
resident for its whole life. `malloc_trim(0)` returns it.

The same moment is when a process's long-lived objects (modules, the chain's lexicons and
gazetteers, the web apps' routes and models: ~60k objects in a JSON decoder, ~180k in the
embedded service) are moved out of the cyclic collector's reach. Otherwise every full
collection walks them all while holding the GIL: 85-160 ms stalls of the service's event loop
every 13-20 s under load, and a quarter of a JSON decoder's requests taking 25-40 ms longer
(measured, docs/performance.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from inferline.core import metrics


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


_FULL_COLLECTION_EVERY_S = 60.0
_last_full_collection = float("-inf")  # monotonic time of the last collection of everything


def settle_after_start() -> None:
    """Once a process has started: free what starting took, and freeze what survives (it lives as
    long as the process) so full collections only walk objects made afterwards. Frozen objects are
    still freed when their last reference goes; only a cycle among them would stay."""
    global _last_full_collection
    release_free_heap()  # a collection of everything: `freeze_survivors` need not repeat it soon
    _last_full_collection = time.monotonic()
    gc.freeze()


def freeze_survivors(full_every_s: float = _FULL_COLLECTION_EVERY_S) -> None:
    """After a unit of work in a process that keeps many objects across units (a worker's join
    window: ~200-260k objects under load), what survived it leaves the collector's walks, as at
    start. Without this, a full collection walked the whole window every few batches: 25-30% of a
    worker's time under load (measured, docs/performance.md). Freezing is O(1), and a frozen
    object is still freed when its last reference goes; a cycle among frozen objects is found by
    the full collection made once every `full_every_s`."""
    global _last_full_collection
    now = time.monotonic()
    if now - _last_full_collection >= full_every_s:
        _last_full_collection = now
        gc.unfreeze()
        gc.collect()
    gc.freeze()


@contextlib.contextmanager
def collections_paused() -> Iterator[None]:
    """Work that makes many short-lived objects and no cycles (encoding a table's rows) runs
    without automatic collections; unlike `collector_deferred`, nothing is frozen or collected
    after it. For a serving process: the periodic collection of everything that
    `freeze_survivors` makes walks its whole heap with the GIL held, 100-330 ms that every
    request in flight waits (docs/performance.md, "2026-12-07, night")."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.contextmanager
def collector_deferred(
    full_every_s: float = _FULL_COLLECTION_EVERY_S, collect_young: bool = True
) -> Iterator[None]:
    """A unit of work (a worker's batch) with the cyclic collector's automatic collections off,
    then one young collection and `freeze_survivors`. A batch makes ~100 tracked objects per span
    and nearly all of them are freed by reference counting as it ends; the automatic young
    collections walked the live ones ~14 times per request: 6-7% of a worker's CPU
    (docs/performance.md, "2026-12-06, late"). The collection at the end still frees any cycle the
    batch left before what survives is frozen (the suite checks that a batch leaves none).
    `collect_young=False` leaves that collection out, for work that makes no cycles (rows decoded
    from JSON): many small units would pay a collection each for nothing; a cycle made after all
    is found by the next full collection."""
    with collections_paused():
        try:
            yield
        finally:
            if collect_young:
                gc.collect(0)
            freeze_survivors(full_every_s)


def observe_collector_pauses() -> None:
    """Times every collection into `inferline_gc_pause_seconds{generation}` (docs/operations.md):
    a pause stops every request of the process, so it shows in senders' latency percentiles."""
    pauses = [metrics.GC_PAUSE.labels(str(g)) for g in range(3)]
    started = 0.0

    def on_collection(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            pauses[info["generation"]].observe(time.perf_counter() - started)

    gc.callbacks.append(on_collection)


def anonymous_rss_bytes(process: psutil.Process) -> int:
    """The process's resident memory the kernel cannot take back without swap: its heaps
    (`RssAnon`) and shared memory (`RssShmem`), not the pages of mapped files (`RssFile`: the
    libraries, ~250 MB of them for ClickHouse's), which it drops and reads again under pressure
    and which the RSS of every process mapping them counts again. Where /proc says nothing of
    it (not Linux), the RSS. Raises psutil.NoSuchProcess for a process that has ended (or whose
    status cannot be read); an ended one not yet reaped (a zombie) holds nothing: 0."""
    try:
        status = Path(f"/proc/{process.pid}/status").read_bytes()
    except FileNotFoundError:
        if not psutil.pid_exists(process.pid):
            raise psutil.NoSuchProcess(process.pid) from None
        return int(process.memory_info().rss)
    except OSError as e:
        raise psutil.NoSuchProcess(process.pid) from e
    kb = 0
    found = 0
    for line in status.splitlines():
        if line.startswith((b"RssAnon:", b"RssShmem:")):
            kb += int(line.split()[1])
            found += 1
    return kb * 1024 if found == 2 else int(process.memory_info().rss)


# cgroup v1 writes ~2**63 for "no limit", v2 writes "max".
_NO_LIMIT = 1 << 60


def memory_limit_bytes(
    cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int:
    """The memory this process may use: the smallest limit of its cgroup and the cgroups above it
    (v2 `memory.max`, v1 `memory.limit_in_bytes`: a container's limit, what its OOM killer acts
    on), or the machine's memory when none is set or none can be read."""
    total: int = psutil.virtual_memory().total
    limits = [n for n in _cgroup_limits(cgroup_root, proc_cgroup) if 0 < n < _NO_LIMIT]
    return min([total, *limits])


def _cgroup_limits(root: Path, proc_cgroup: Path) -> Iterator[int]:
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:  # v2: "0::/path"
            base, name = root, "memory.max"
        elif "memory" in controllers.split(","):  # v1: "4:memory:/path"
            base, name = root / "memory", "memory.limit_in_bytes"
        else:
            continue
        # The cgroup's own directory and each one above it (a limit may sit on a parent; in a
        # container with its own cgroup namespace the path is "/" and the limit at the root).
        directory = base / path.strip("/")
        for d in (directory, *directory.parents):
            try:
                value = (d / name).read_text().strip()
            except OSError:
                value = ""
            if value.isdigit():
                yield int(value)
            if d == base:
                break
