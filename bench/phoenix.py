"""Arize Phoenix as the peer of the side-by-side benchmark (`python -m bench --peer phoenix`).

Installed with pip into a virtualenv of its own (bench/.peers/phoenix, git-ignored; reused while
the pinned range is unchanged), so none of its dependencies reach inferline's environment.
Started with `phoenix serve` on free loopback ports and a fresh working directory; what it has
stored is counted in its SQLite database there, read-only, which costs Phoenix nothing (its REST
API would page through every span in the process being measured).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import ROOT, free_port

# A current release line; the upper bound keeps a new major version from changing what is measured
# without anyone noticing.
SPEC = "arize-phoenix>=20.20,<21"
VENV = ROOT / "bench" / ".peers" / "phoenix"
START_TIMEOUT_S = 180.0  # the first start creates the database and runs its migrations


class PeerError(RuntimeError):
    """Phoenix could not be installed or started; the message says why."""


def _tail(text: str, lines: int = 25, width: int = 300) -> str:
    """The end of a log, each line cut short (pip can print every version it knows on one line)."""
    return "\n".join(line[:width] for line in text.strip().splitlines()[-lines:])


def installed_version(venv: Path) -> str:
    """The arize-phoenix version in `venv`, or "" if it is not installed there."""
    python = venv / "bin" / "python"
    if not python.exists():
        return ""
    r = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('arize-phoenix'))"],
        capture_output=True,
        text=True,
    )
    return r.stdout.strip() if r.returncode == 0 else ""


def install(venv: Path = VENV, spec: str = SPEC) -> str:
    """Create the virtualenv and pip-install `spec` unless it already holds that spec; returns
    the installed version."""
    marker = venv / ".spec"
    version = installed_version(venv)
    if version and marker.exists() and marker.read_text() == spec:
        return version
    # The base interpreter, not inferline's virtualenv: the two environments share nothing.
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [base, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", spec],
    ]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise PeerError(f"{' '.join(cmd)} failed ({r.returncode}):\n{_tail(r.stdout + r.stderr)}")
    version = installed_version(venv)
    if not version:
        raise PeerError(f"pip installed {spec} into {venv} but arize-phoenix cannot be imported there")
    marker.write_text(spec)
    return version


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    grpc: str  # host:port of the OTLP gRPC collector
    http: str  # base URL of the UI, REST API and OTLP/HTTP /v1/traces
    database: Path
    log: Path


def phoenix_env(working_dir: Path, http_port: int, grpc_port: int) -> dict[str, str]:
    """The environment of `phoenix serve`: ours without any PHOENIX_* a user may have set, so it
    cannot reach a shared database or another working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "VIRTUAL_ENV"))}
    env.update(
        {
            "PHOENIX_WORKING_DIR": str(working_dir),
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(http_port),
            "PHOENIX_GRPC_PORT": str(grpc_port),
            "PHOENIX_TELEMETRY_ENABLED": "false",  # a benchmark phones no one
        }
    )
    return env


@contextlib.contextmanager
def serve(working_dir: Path, venv: Path = VENV) -> Iterator[Server]:
    """`phoenix serve` with its data in `working_dir`, until the block ends."""
    working_dir.mkdir(parents=True, exist_ok=True)
    http_port, grpc_port = free_port(), free_port()
    log = working_dir / "phoenix.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(venv / "bin" / "phoenix"), "serve"],
            env=phoenix_env(working_dir, http_port, grpc_port),
            cwd=working_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one below
        )
    server = Server(
        process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", working_dir / "phoenix.db", log
    )
    try:
        _wait_up(server)
        yield server
    finally:
        _stop(process)


def _wait_up(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise PeerError(
                f"phoenix serve exited with {server.process.returncode}:\n"
                f"{_tail(server.log.read_text(errors='replace'))}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.http + "/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise PeerError(
        f"phoenix serve did not answer on {server.http}/healthz within {START_TIMEOUT_S:.0f} s:\n"
        f"{_tail(server.log.read_text(errors='replace'))}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def stored_spans(database: Path) -> int:
    """Spans Phoenix has committed to its database (0 before it created the table)."""
    if not database.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as db:
        try:
            return int(db.execute("SELECT count(*) FROM spans").fetchone()[0])
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return 0
            raise
