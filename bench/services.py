"""Starting what the benchmark measures: the embedded service, or the three distributed roles on
librdkafka's mock cluster, each on free loopback ports with a temporary data directory and the
service's own defaults (plus any INFERLINE_* variable set for the run)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import make_service
from tests.kafka_helpers import MockBrokerProcess, Role, role_env

# What the harness sets itself; the rest of INFERLINE_* passes through to the service.
RESERVED = {
    "INFERLINE_DATA_DIR",
    "INFERLINE_HOST",
    "INFERLINE_GRPC_PORT",
    "INFERLINE_HTTP_PORT",
    "INFERLINE_API_PORT",
    "INFERLINE_API_KEYS",
    "INFERLINE_METRICS_TOKEN",  # the harness reads /metrics with the tests' token
}
# Test-suite tweaks of the helpers that a benchmark must not inherit (the defaults are measured).
TEST_TWEAKS = ("INFERLINE_BATCH__MAX_DELAY_S", "INFERLINE_SQL__MAX_EXECUTION_S", "INFERLINE_KAFKA__LINGER_MS")


def service_env(extra: list[str]) -> dict[str, str]:
    """INFERLINE_* from the environment, then `--service-env KEY=VALUE` pairs."""
    env = {k: v for k, v in os.environ.items() if k.startswith("INFERLINE_") and k not in RESERVED}
    for pair in extra:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("INFERLINE_"):
            raise SystemExit(f"--service-env takes INFERLINE_NAME=VALUE, got {pair!r}")
        env[key] = value
    return env


@dataclass
class Target:
    """Where the generator sends and where the harness reads."""

    grpc: str
    http: str
    api: str
    key: str
    roots: list[int]  # the service's processes (their children are found by psutil)
    others: dict[str, int] = field(default_factory=dict)  # e.g. the mock broker, reported apart


def _with_overrides(env: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    for k in TEST_TWEAKS:
        env.pop(k, None)
    env.update(overrides)
    return env


@contextlib.contextmanager
def embedded(tmp: Path, overrides: dict[str, str]) -> Iterator[Target]:
    """A fresh embedded service with its store in `tmp`."""
    tmp.mkdir(parents=True, exist_ok=True)
    with embedded_on(tmp / "data", overrides) as target:
        yield target


@contextlib.contextmanager
def embedded_on(data_dir: Path, overrides: dict[str, str]) -> Iterator[Target]:
    """The embedded service on an existing data directory (the query benchmark's store)."""
    svc = make_service(data_dir.parent)  # its data directory is <parent>/data
    if svc.data_dir != data_dir:
        raise ValueError(f"the store must be in a directory named data, got {data_dir}")
    svc.env = _with_overrides(svc.env, overrides)
    svc.start(timeout=180)
    try:
        assert svc.process is not None
        yield Target(svc.grpc_target, svc.http_url, svc.api_url, svc.key, [svc.process.pid])
    finally:
        if svc.process is not None and svc.process.poll() is None:
            svc.stop()


@contextlib.contextmanager
def kafka(tmp: Path, overrides: dict[str, str]) -> Iterator[Target]:
    """Receiver, processor and writer processes on a mock cluster in a process of its own."""
    tmp.mkdir(parents=True, exist_ok=True)
    broker = MockBrokerProcess()
    key = f"bench-{uuid.uuid4().hex}"
    env = _with_overrides(role_env(tmp, broker.bootstrap), overrides)
    env["INFERLINE_API_KEYS"] = f"{key}=default"
    roles = [Role(name, env, tmp) for name in ("writer", "processor", "receiver")]
    started: list[Role] = []
    try:
        for r in roles:
            started.append(r.start(timeout=120))
        writer, _, receiver = roles
        yield Target(
            receiver.grpc_target,
            receiver.http_url,
            writer.api_url,
            key,
            [r.process.pid for r in roles if r.process is not None],
            {"mock_broker": broker.process.pid},
        )
    finally:
        for r in reversed(started):  # receiver first: what it accepted is handed on before the rest stop
            r.stop(timeout=60)
        broker.kill()
