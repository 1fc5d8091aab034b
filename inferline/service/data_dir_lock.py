"""One inferline process per data directory. The in-process ClickHouse engine (chDB) and the
local log are files only one process may open; a second one failed deep inside the engine with
`Error initializing EmbeddedServer: (BAD_ARGUMENTS)`, which does not say why. An exclusive lock on
`<data dir>/inferline.lock`, held for the life of the process (the kernel releases it however the
process ends, kill -9 included), turns that into a message naming the process that holds it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_FILE = "inferline.lock"


class DataDirInUse(RuntimeError):
    pass


def hold_data_dir(data_dir: Path) -> IO[str]:
    """Locks `data_dir` for this process; keep the returned file open for as long as it is used.
    Raises DataDirInUse when another process holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise DataDirInUse(
            f"{data_dir} is in use by another inferline process (pid {holder}): stop it, or give this "
            "one another INFERLINE_DATA_DIR (the running service answers SQL and the admin API meanwhile)"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock
