"""The memory ceiling counts the whole service (its worker processes too), asks its parts to hand
back freed memory when over it, and defaults to a share of the container's memory limit."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from inferline.core.config import Settings
from inferline.core.errors import MemoryPressure
from inferline.core.memory import anonymous_rss_bytes, memory_limit_bytes, release_free_heap
from inferline.receivers.otlp.memory import MemoryCeiling
from inferline.storage.clickhouse import connect, release_engine_memory

MB = 1 << 20
GIB = 1 << 30

# A child process that holds `mb` megabytes of touched heap until its stdin closes.
_BALLAST = (
    "import sys; b = bytearray({mb} << 20); b[::4096] = b'x' * len(b[::4096]); "
    "print('ok', flush=True); sys.stdin.read()"
)


@pytest.fixture
def worker_holding_256_mb() -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        [sys.executable, "-c", _BALLAST.format(mb=256)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ok"
    yield child
    child.kill()
    child.wait()


def _trimmed_rss() -> int:
    """This process's anonymous RSS (what the ceiling counts) once its free heap is handed back:
    over a ceiling, the reclaim does that too, and in a long test run it alone can take hundreds
    of MB off."""
    release_free_heap()
    return anonymous_rss_bytes(psutil.Process())


def _over(ceiling: MemoryCeiling) -> bool:
    try:
        ceiling.check()
    except MemoryPressure:
        return True
    return False


@pytest.mark.unit
def test_the_ceiling_counts_the_worker_processes(worker_holding_256_mb: subprocess.Popen[str]) -> None:
    """A worker's memory is the container's memory: 256 MB held by a child process puts the
    service over a ceiling its main process alone is far below."""
    own = _trimmed_rss()
    tree = MemoryCeiling(own + 128 * MB, interval_s=0)
    main_only = MemoryCeiling(own + 128 * MB, interval_s=0, descendants=False)
    assert _over(tree)
    assert not _over(main_only)
    with pytest.raises(MemoryPressure, match="service is over its memory ceiling"):
        tree.check()


@pytest.mark.unit
def test_over_the_ceiling_the_parts_are_asked_to_hand_memory_back(
    worker_holding_256_mb: subprocess.Popen[str],
) -> None:
    """Over the ceiling the reclaimers run (here: a worker that lets go of its memory), and once
    the service is under the ceiling again requests are admitted; nobody has to restart it."""
    ceiling = MemoryCeiling(_trimmed_rss() + 128 * MB, interval_s=0)
    asked: list[float] = []

    def worker_lets_go() -> None:
        asked.append(time.monotonic())
        worker_holding_256_mb.kill()
        worker_holding_256_mb.wait()

    ceiling.add_reclaimer(worker_lets_go)
    assert _over(ceiling)
    deadline = time.monotonic() + 10
    while _over(ceiling) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(asked) == 1
    assert not _over(ceiling)


@pytest.mark.unit
def test_a_reclaimer_that_fails_does_not_stop_the_others() -> None:
    ceiling = MemoryCeiling(1, interval_s=0)  # always over
    called: list[str] = []

    def broken() -> None:
        called.append("broken")
        raise RuntimeError("no")

    ceiling.add_reclaimer(broken)
    ceiling.add_reclaimer(lambda: called.append("next"))
    assert _over(ceiling)
    deadline = time.monotonic() + 10
    while len(called) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert called == ["broken", "next"]


def _cgroup(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "sys-fs-cgroup"
    for name, value in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(value + "\n")
    (tmp_path / "cgroup").write_text(proc)
    return root, tmp_path / "cgroup"


@pytest.mark.unit
def test_the_limit_is_the_containers_cgroup_v2(tmp_path: Path) -> None:
    # Kubernetes: the container's own cgroup says "max", its pod's limits it to 2 GiB.
    root, proc = _cgroup(
        tmp_path,
        "0::/kubepods/pod1/ctr\n",
        {
            "kubepods/pod1/ctr/memory.max": "max",
            "kubepods/pod1/memory.max": str(2 * GIB),
            "memory.max": "max",
        },
    )
    assert memory_limit_bytes(root, proc) == 2 * GIB


@pytest.mark.unit
def test_the_limit_is_the_containers_cgroup_v1(tmp_path: Path) -> None:
    root, proc = _cgroup(
        tmp_path,
        "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n",
        {
            "memory/docker/abc/memory.limit_in_bytes": str(GIB),
            "memory/memory.limit_in_bytes": "9223372036854771712",  # v1's "no limit"
        },
    )
    assert memory_limit_bytes(root, proc) == GIB


@pytest.mark.unit
def test_without_a_container_limit_it_is_the_machines_memory(tmp_path: Path) -> None:
    machine = psutil.virtual_memory().total
    root, proc = _cgroup(tmp_path, "0::/\n", {"memory.max": "max"})
    assert memory_limit_bytes(root, proc) == machine
    assert memory_limit_bytes(tmp_path / "nowhere", tmp_path / "no-such-file") == machine


@pytest.mark.unit
def test_the_ceiling_defaults_to_80_percent_of_the_limit_and_can_be_set_or_turned_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("INFERLINE_MAX_RSS_BYTES", raising=False)
    assert Settings().resolved_max_rss_bytes == int(memory_limit_bytes() * 0.8)
    monkeypatch.setenv("INFERLINE_MAX_RSS_BYTES", str(GIB))
    assert Settings().resolved_max_rss_bytes == GIB
    monkeypatch.setenv("INFERLINE_MAX_RSS_BYTES", "0")
    assert Settings().resolved_max_rss_bytes == 0
    assert not MemoryCeiling(0).enabled


@pytest.mark.integration
def test_the_engine_hands_its_freed_memory_back(tmp_path: Path) -> None:
    """chDB's allocator keeps freed pages for seconds; the purge returns them now."""
    client = connect(f"chdb://{tmp_path}/clickhouse")

    def purges() -> int:
        rows = client.query(
            "SELECT value FROM system.events WHERE event = 'MemoryAllocatorPurge'"
        ).result_rows
        return int(rows[0][0]) if rows else 0

    before = purges()
    release_engine_memory(client, f"chdb://{tmp_path}/clickhouse")
    assert purges() == before + 1
    # A ClickHouse server's memory is not the service's: nothing is sent there.
    release_engine_memory(None, "http://clickhouse:8123")  # type: ignore[arg-type]
    client.close()


@pytest.mark.unit
def test_the_workers_are_looked_up_again_off_the_requests_thread(
    worker_holding_256_mb: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding the descendants scans every process on the machine: after the first sample that
    happens on a thread of its own, never on the event loop that answers senders."""
    from inferline.receivers.otlp import memory

    looked_up_on: list[str] = []
    children = psutil.Process.children

    def watched(self: psutil.Process, recursive: bool = False) -> list[psutil.Process]:
        looked_up_on.append(threading.current_thread().name)
        return children(self, recursive=recursive)

    monkeypatch.setattr(psutil.Process, "children", watched)
    monkeypatch.setattr(memory, "_CHILDREN_EVERY_S", 0.0)
    ceiling = MemoryCeiling(_trimmed_rss() + 128 * MB, interval_s=0)
    assert _over(ceiling)  # the first sample counts the worker already
    deadline = time.monotonic() + 10
    while len(looked_up_on) < 3 and time.monotonic() < deadline:
        ceiling.rss()
        time.sleep(0.02)
    me = threading.current_thread().name
    assert looked_up_on[0] == me
    assert len(looked_up_on) >= 3 and all(name == "memory-children" for name in looked_up_on[1:])


# A child process that maps a file of `mb` megabytes and reads every page of it.
_MAPPED = (
    "import mmap, sys; f = open(sys.argv[1], 'rb'); m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ); "
    "sum(m[i] for i in range(0, len(m), 4096)); print('ok', flush=True); sys.stdin.read()"
)


@pytest.mark.unit
def test_mapped_files_are_not_held_memory(tmp_path: Path) -> None:
    """A library or data file the kernel can drop and read again is not what the OOM killer
    frees: a process with 256 MB of a file resident does not put the service over a ceiling
    that 256 MB of heap would."""
    data = tmp_path / "library.so"
    with data.open("wb") as f:
        f.truncate(256 * MB)
    child = subprocess.Popen(
        [sys.executable, "-c", _MAPPED, str(data)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ok"
        mapped = psutil.Process(child.pid)
        assert mapped.memory_info().rss > 250 * MB  # resident, and RSS counts it
        if mapped.memory_full_info().shared > 250 * MB and anonymous_rss_bytes(mapped) > 250 * MB:
            pytest.skip("the temporary directory is tmpfs: its pages are shared memory, counted rightly")
        ceiling = MemoryCeiling(_trimmed_rss() + 128 * MB, interval_s=0)
        assert not _over(ceiling)
    finally:
        child.kill()
        child.wait()


@pytest.mark.unit
def test_a_failing_lookup_keeps_counting_the_workers_it_knew(
    worker_holding_256_mb: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of file descriptors (EMFILE), the lookup of the descendants fails: the workers found
    before are still counted, and the next lookup is tried again later (none gets stuck)."""
    from inferline.receivers.otlp import memory

    calls: list[int] = []
    children = psutil.Process.children

    def failing_after_the_first(self: psutil.Process, recursive: bool = False) -> list[psutil.Process]:
        calls.append(1)
        if len(calls) > 1:
            raise OSError(24, "Too many open files")
        return children(self, recursive=recursive)

    monkeypatch.setattr(psutil.Process, "children", failing_after_the_first)
    monkeypatch.setattr(memory, "_CHILDREN_EVERY_S", 0.0)
    ceiling = MemoryCeiling(_trimmed_rss() + 128 * MB, interval_s=0)
    assert _over(ceiling)
    deadline = time.monotonic() + 10
    while len(calls) < 10 and time.monotonic() < deadline:
        assert _over(ceiling)  # the worker it knew is still counted
        time.sleep(0.01)
    assert len(calls) >= 10  # lookups went on being tried
