"""One inferline per data directory: a second `inferline run` (or an admin command that opens the
in-process engine) against a directory a running service holds exits at once with a message that
names the holder, instead of the engine's `Error initializing EmbeddedServer: (BAD_ARGUMENTS)`;
the running service is not disturbed, and the directory is free again once it stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from inferline.service.data_dir_lock import DataDirInUse, hold_data_dir
from tests.conftest import ROOT, Service

pytestmark = pytest.mark.e2e


def test_a_held_directory_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    held = hold_data_dir(tmp_path)
    with pytest.raises(DataDirInUse, match=f"pid {os.getpid()}"):
        hold_data_dir(tmp_path)
    held.close()  # as when the holder exits, however it ends
    hold_data_dir(tmp_path).close()


@pytest.mark.parametrize("command", [["run"], ["migrate"], ["projects", "list"]])
def test_a_second_process_on_a_running_services_directory_says_who_holds_it(
    service: Service, command: list[str]
) -> None:
    assert service.process is not None
    second = subprocess.run(
        [sys.executable, "-m", "inferline.service.cli", *command],
        cwd=ROOT,
        env=service.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1, second.stderr[-2000:]
    assert f"in use by another inferline process (pid {service.process.pid})" in second.stderr
    assert "Traceback" not in second.stderr
    assert httpx.get(f"{service.api_url}/healthz", timeout=5).status_code == 200
