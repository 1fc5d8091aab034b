"""Shared fixtures: a real service process on free ports, OTLP helpers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from tests.prom_helpers import METRICS_TOKEN, metrics_text
from tools.compile_hot_path import stale_modules

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def pytest_sessionstart(session: pytest.Session) -> None:
    # A compiled module older than its source would be imported instead of it: the tests would
    # run yesterday's code.
    stale = stale_modules()
    if stale:
        names = ", ".join(str(p.relative_to(ROOT)) for p in stale[:3])
        pytest.exit(
            f"compiled modules older than their sources ({names}): run `make compile` or `make pure`", 4
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    data_dir: Path
    grpc_port: int
    http_port: int
    api_port: int
    env: dict[str, str]
    process: subprocess.Popen | None = None
    stdout: str = ""
    key: str = ""
    extra_keys: dict[str, str] = field(default_factory=dict)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 60) -> None:
        log_path = self.data_dir.parent / f"service-{self.api_port}.log"
        self._out = open(log_path.with_suffix(".out"), "w+")  # noqa: SIM115 - lives as long as the process
        self._err = open(log_path, "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "inferline.service.cli", "run"],
            cwd=ROOT,
            env=self.env,
            stdout=self._out,
            stderr=self._err,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode}: {self.logs()[-3000:]}")
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"service did not become healthy: {self.logs()[-3000:]}")
        self._out.seek(0)
        self.stdout = self._out.read()
        key_file = self.data_dir / "default_api_key"
        self.key = key_file.read_text().strip()

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=60)
        self._out.close()
        self._err.close()
        return code

    def logs(self) -> str:
        return (self.data_dir.parent / f"service-{self.api_port}.log").read_text()

    def settle(self, timeout: float = 30.0) -> None:
        """Waits until everything acknowledged is queryable: senders are answered once the local
        log has their data, ClickHouse has it a flush later (`inferline_queue_depth`
        {queue="unstored_entries"} is 0 then)."""
        deadline = time.monotonic() + timeout
        while True:
            text = metrics_text(self.api_url)
            line = next((ln for ln in text.splitlines() if 'queue="unstored_entries"' in ln), None)
            if line is None or float(line.rsplit(" ", 1)[1]) == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"still not stored after {timeout} s: {line}")
            time.sleep(0.02)

    def sql(self, query: str, key: str | None = None) -> str:
        self.settle()
        r = httpx.post(
            f"{self.api_url}/",
            content=query,
            headers={"Authorization": f"Bearer {key or self.key}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return r.text

    def create_key(self, project: str) -> str:
        """Keys are made with the CLI while the embedded service is stopped (chDB has one owner)."""
        out = subprocess.run(
            [sys.executable, "-m", "inferline.service.cli", "keys", "create", "--project", project],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()


def make_service(tmp: Path, **env_overrides: str) -> Service:
    data_dir = tmp / "data"
    grpc_port, http_port, api_port = free_port(), free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("INFERLINE_", "OTEL_"))},
        "INFERLINE_DATA_DIR": str(data_dir),
        "INFERLINE_HOST": "127.0.0.1",
        "INFERLINE_GRPC_PORT": str(grpc_port),
        "INFERLINE_HTTP_PORT": str(http_port),
        "INFERLINE_API_PORT": str(api_port),
        "INFERLINE_BATCH__MAX_DELAY_S": "0.05",
        "INFERLINE_SQL__MAX_EXECUTION_S": "3",
        "INFERLINE_METRICS_TOKEN": METRICS_TOKEN,
        "PYTHONUNBUFFERED": "1",
        **env_overrides,
    }
    env.pop("CLICKHOUSE_URL", None)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return Service(data_dir, grpc_port, http_port, api_port, env)


def running_with_other_project(svc: Service) -> Iterator[Service]:
    """Starts `svc` with a second project's key in `extra_keys["other"]` (keys are made while the
    store is stopped), yields it, and checks it stops cleanly."""
    svc.start()
    assert svc.stop() == 0
    svc.extra_keys["other"] = svc.create_key("other")
    svc.start()
    yield svc
    assert svc.stop() == 0, svc.logs()[-3000:]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One running embedded service per test module, with a second project's key."""
    yield from running_with_other_project(make_service(tmp_path_factory.mktemp("svc")))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Client]:
    """A migrated chDB store of this test's own (the real ClickHouse engine, in process)."""
    from inferline.storage.clickhouse import connect
    from inferline.storage.schema import migrate

    c = connect(f"chdb://{tmp_path / 'clickhouse'}")
    migrate(c)
    yield c
    c.close()


def wait_for(fn: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Polls until fn() returns a truthy value (rows arrive after the ack only in Kafka mode)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
