"""What a position commit of the local log costs: it deletes what was stored, while appends wait.

    python -m bench.local_log_commit [--secure-delete FAST|ON|OFF] [--rounds 30] [--entry-kb 600]

Appends `--rounds` times 20 group commits of 4 entries of `--entry-kb` KB (random bytes, as
incompressible as zstd-compressed requests), then commits all of them, and prints the commit's
median and longest time, the appends' median and the process's CPU. `--secure-delete` overrides
the log's `PRAGMA secure_delete` (ON: whether deleted pages are overwritten with zeros, the default
of Debian's SQLite build).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from inferline.bus import local_log
from inferline.bus.local_log import Append, LocalLog
from inferline.core.logging import configure_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secure-delete", choices=("FAST", "ON", "OFF"), default=None)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--entry-kb", type=int, default=600)
    args = parser.parse_args(argv)
    connect = local_log._connect
    if args.secure_delete:

        def _connect(path: Path, wal_bytes: int = local_log.CHECKPOINT_BYTES) -> sqlite3.Connection:
            conn = connect(path, wal_bytes)
            conn.execute(f"PRAGMA secure_delete={args.secure_delete}")
            return conn

        local_log._connect = _connect
    try:
        asyncio.run(_measure(args.rounds, args.entry_kb * 1000, args.secure_delete or "as the log sets it"))
    finally:
        # Run in-process (its test), the override must not outlive the run: every later LocalLog
        # of the process would get it, and a test of the log's own setting could not fail.
        local_log._connect = connect


async def _measure(rounds: int, entry_bytes: int, label: str) -> None:
    # On the project's disk (not /tmp, which may be memory), where the service's data would be:
    # under bench/results, which git ignores.
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=results) as tmp:
        log = LocalLog(Path(tmp) / "log.sqlite3", max_bytes=rounds * 80 * entry_bytes + (1 << 30))
        log.open()
        log.start()
        payload = os.urandom(entry_bytes)
        commits: list[float] = []
        appends: list[float] = []
        positions: dict[int, int] = {}
        cpu = time.process_time()
        for _ in range(rounds):
            for _ in range(20):
                t = time.perf_counter()
                await log.append([Append(p, 1, "bench", payload) for p in range(4)])
                appends.append(time.perf_counter() - t)
            stored = {
                p: rows[-1].offset + 1 for p in range(4) if (rows := log.read(p, positions.get(p, 0), 1000))
            }
            t = time.perf_counter()
            log.commit(stored)
            commits.append(time.perf_counter() - t)
            positions.update(stored)
        cpu = time.process_time() - cpu
        await log.close()
    print(
        f"secure_delete {label}: commit of {80 * entry_bytes / 1e6:.0f} MB median "
        f"{statistics.median(commits) * 1000:.1f} ms, longest {max(commits) * 1000:.1f} ms; "
        f"append median {statistics.median(appends) * 1000:.1f} ms; CPU {cpu:.2f} s "
        f"for {rounds * 80 * entry_bytes / 1e9:.2f} GB"
    )


if __name__ == "__main__":
    configure_logging("warning")
    main()
