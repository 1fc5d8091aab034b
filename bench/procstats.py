"""CPU time and memory of the service's process tree (the service and every child it starts, such
as worker processes), sampled with psutil from outside the service."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psutil

from inferline.core.memory import anonymous_rss_bytes


def _pss_bytes(pid: int) -> int | None:
    """Proportional set size: shared pages split between the processes sharing them (Linux only)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class TreeSample:
    cpu_s: float  # user + system seconds of every process seen so far, exited ones included
    rss: int  # sum of resident set sizes (pages shared between processes count once per process)
    pss: int | None
    anon: int  # anonymous resident memory (heaps): what the service's memory ceiling counts
    processes: int


@dataclass
class ProcessTree:
    """Roots (the service, or each role) and their descendants. CPU time of a process that has
    exited is kept at its last sample, so a phase's CPU figure does not drop when a worker ends.

    PSS is read on every `pss_every`-th sample only: the kernel walks a process's page tables to
    give it (`smaps_rollup`), which at four samples a second was ~40% of the harness's CPU, taken
    from the cores the service is measured on."""

    roots: list[int]
    pss_every: int = 4
    _cpu: dict[int, float] = field(default_factory=dict)
    _pss: dict[int, int | None] = field(default_factory=dict)
    _samples: int = 0

    def processes(self) -> list[psutil.Process]:
        out: list[psutil.Process] = []
        for pid in self.roots:
            try:
                root = psutil.Process(pid)
                out.append(root)
                out.extend(root.children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        return out

    def sample(self) -> TreeSample:
        rss, pss, anon, count = 0, 0, 0, 0
        pss_known = True
        read_pss = self._samples % self.pss_every == 0
        self._samples += 1
        for p in self.processes():
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    one_rss = p.memory_info().rss
                one_anon = anonymous_rss_bytes(p)  # both read before either is counted
                self._cpu[p.pid] = t.user + t.system
                rss += one_rss
                anon += one_anon
                count += 1
            except psutil.NoSuchProcess:
                continue
            if read_pss or p.pid not in self._pss:
                self._pss[p.pid] = _pss_bytes(p.pid)
            one = self._pss[p.pid]
            if one is None:
                pss_known = False
            else:
                pss += one
        return TreeSample(sum(self._cpu.values()), rss, pss if pss_known else None, anon, count)


def machine() -> dict[str, object]:
    """What the figures were taken on."""
    import os
    import platform

    model, mhz = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("cpu MHz") and not mhz:
                mhz = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "cpu_mhz": mhz,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
