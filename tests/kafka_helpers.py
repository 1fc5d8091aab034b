"""Kafka test plumbing: a real Kafka-protocol broker (librdkafka's mock cluster, or Apache Kafka and
a ClickHouse server through testcontainers when Docker works) and role processes.

`python -m tests.kafka_helpers` runs a mock cluster in its own process (prints its address, lives
until killed), so a test can take the broker away from under a running receiver.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import confluent_kafka
import httpx
import orjson
import pytest

from inferline.core.config import KafkaSettings
from tests.conftest import ROOT, free_port
from tests.prom_helpers import METRICS_TOKEN

APACHE_KAFKA_IMAGE = "apache/kafka:3.9.1"


def docker_available() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _mock_topics() -> dict[str, int]:
    """Our topics with the partition counts the roles would create on a real cluster."""
    ks = KafkaSettings()
    topics = {ks.raw_spans_topic: ks.raw_partitions, ks.raw_logs_topic: ks.raw_partitions, ks.dlq_topic: 1}
    topics[ks.ledger_topic] = 1
    enriched = (ks.inferences_topic, ks.spans_topic, ks.logs_topic, ks.scores_topic)
    topics |= {t: ks.enriched_partitions for t in enriched}
    return topics


def mock_cluster(topics: dict[str, int] | None = None) -> tuple[Any, str]:
    """librdkafka's mock cluster in this process, with our topics created up front; the returned
    handle owns the cluster: keep it referenced for as long as the broker is needed.

    Created through librdkafka's mock API (`rdkafka_mock.h`, called with ctypes on the library
    confluent-kafka ships) because the mock broker answers no CreateTopics request, so the roles'
    own topic creation fails against it and topics would be auto-created with 4 partitions. That
    matters: the mock keeps at most 5 MiB per partition and deletes the oldest records past it
    (like a real broker's retention), so a lagging consumer group loses data on a topic with too
    few partitions (counted in `inferline_kafka_records_expired`)."""
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    lib = ctypes.CDLL(str(next(libs.glob("librdkafka*.so*"))))
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_handle_mock_cluster.restype = ctypes.c_void_p
    lib.rd_kafka_handle_mock_cluster.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_topic_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    error = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    for key, value in ((b"test.mock.num.brokers", b"1"), (b"log_level", b"3")):
        assert lib.rd_kafka_conf_set(conf, key, value, error, len(error)) == 0, error.value
    handle = lib.rd_kafka_new(0, conf, error, len(error))  # a producer: it owns the mock cluster
    assert handle, error.value
    cluster = lib.rd_kafka_handle_mock_cluster(handle)
    for topic, partitions in (_mock_topics() if topics is None else topics).items():
        assert lib.rd_kafka_mock_topic_create(cluster, topic.encode(), partitions, 1) == 0, topic
    return (lib, handle), lib.rd_kafka_mock_cluster_bootstraps(cluster).decode()


class MockBrokerProcess:
    """A mock cluster in a child process, for tests that kill the broker."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.kafka_helpers"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        self.bootstrap = self.process.stdout.readline().strip()
        if not self.bootstrap:
            raise RuntimeError("mock broker process did not start")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class Backend:
    """Where Kafka and ClickHouse are for one test module."""

    name: str
    bootstrap: str
    clickhouse_url: str  # "" = the writer's own chDB store under its data dir
    keep: list[Any] = field(default_factory=list)  # objects that must stay alive (mock owner, containers)

    def close(self) -> None:
        for thing in reversed(self.keep):
            stop = getattr(thing, "stop", None)
            if callable(stop):
                stop()
        self.keep.clear()


def start_backend(name: str) -> Backend:
    if name == "mock":
        owner, bootstrap = mock_cluster()
        return Backend("mock", bootstrap, "", [owner])
    if not docker_available():
        pytest.skip("Docker is not available (`docker info` failed): real Kafka/ClickHouse variant skipped")
    from testcontainers.clickhouse import ClickHouseContainer

    kafka, bootstrap = apache_kafka()
    clickhouse = ClickHouseContainer("clickhouse/clickhouse-server:24.8", port=8123).start()
    host, port = clickhouse.get_container_host_ip(), clickhouse.get_exposed_port(8123)
    url = f"http://{clickhouse.username}:{clickhouse.password}@{host}:{port}"
    return Backend("docker", bootstrap, url, [kafka, clickhouse])


def apache_kafka() -> tuple[Any, str]:
    """A single-node KRaft Apache Kafka (the apache/kafka image). The advertised listener must be
    the address clients use, so the host port is chosen before the container starts."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = free_port()
    container = DockerContainer(APACHE_KAFKA_IMAGE).with_bind_ports(9092, port)
    for k, v in {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_NUM_PARTITIONS": "4",
    }.items():
        container.with_env(k, v)
    container.start()
    wait_for_logs(container, "Kafka Server started", timeout=120)
    return container, f"127.0.0.1:{port}"


def role_env(tmp: Path, bootstrap: str, clickhouse_url: str = "", **overrides: str) -> dict[str, str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("INFERLINE_", "OTEL_"))},
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "INFERLINE_DATA_DIR": str(tmp / "data"),
        "INFERLINE_HOST": "127.0.0.1",
        "INFERLINE_BATCH__MAX_DELAY_S": "0.2",
        "INFERLINE_KAFKA__LINGER_MS": "1",
        "INFERLINE_METRICS_TOKEN": METRICS_TOKEN,
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }
    env.pop("CLICKHOUSE_URL", None)
    if clickhouse_url:
        env["CLICKHOUSE_URL"] = clickhouse_url
    return env


@dataclass
class Role:
    """One `inferline run --role X` process."""

    role: str
    env: dict[str, str]
    log_dir: Path
    api_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.role}-{self.api_port}-{self.starts}.log"

    def start(
        self, wait_ready: bool = True, timeout: float = 60, extra_env: dict[str, str] | None = None
    ) -> Role:
        self.starts += 1
        env = {
            **self.env,
            "INFERLINE_API_PORT": str(self.api_port),
            "INFERLINE_GRPC_PORT": str(self.grpc_port),
            "INFERLINE_HTTP_PORT": str(self.http_port),
            **(extra_env or {}),
        }
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "inferline.service.cli", "run", "--role", self.role],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        path = "/readyz" if wait_ready else "/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.role} exited with {self.process.returncode}: {self.logs()[-3000:]}"
                )
            try:
                if httpx.get(self.api_url + path, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.role} did not become ready: {self.logs()[-3000:]}")

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        code = self.process.wait(timeout=timeout)
        self._log.close()
        return code

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGINT)
        try:
            return self.wait_exit(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.wait_exit(10)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def sql(self, query: str, key: str) -> str:
        """The writer role serves the read-only SQL API (it owns the chDB store in tests)."""
        r = httpx.post(
            self.api_url + "/", content=query, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        assert r.status_code == 200, r.text
        return r.text.strip()


@contextlib.contextmanager
def running_roles(tmp: Path, **env: str) -> Iterator[tuple[Role, Role, Role]]:
    """Processor, writer and receiver as processes on a mock cluster of their own, started and
    ready; yields (receiver, processor, writer) and stops them all at the end."""
    owner, bootstrap = mock_cluster()
    settings = role_env(tmp, bootstrap, **env)
    roles = [Role(name, settings, tmp) for name in ("processor", "writer", "receiver")]
    try:
        for r in roles:
            r.start()
        yield roles[2], roles[0], roles[1]
    finally:
        for r in reversed(roles):
            r.stop()
        del owner


if __name__ == "__main__":
    owner, address = mock_cluster()
    print(address, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:  # the mock cluster runs in librdkafka's own threads
        time.sleep(1.0)


def consume(
    bootstrap: str,
    topic: str,
    matches: Callable[[confluent_kafka.Message], bool],
    count: int = 1,
    timeout: float = 60,
) -> list[confluent_kafka.Message]:
    """A downstream consumer as a user would write it (confluent-kafka, its own group): the first
    `count` messages on `topic` that `matches`, or fewer if `timeout` runs out."""
    found: list[confluent_kafka.Message] = []
    for m in _downstream(bootstrap, topic, timeout, lambda: len(found) >= count):
        if matches(m):
            found.append(m)
    return found


def _downstream(
    bootstrap: str, topic: str, timeout: float, done: Callable[[], bool]
) -> Iterator[confluent_kafka.Message]:
    """The messages on `topic` from the earliest (a consumer group of its own), until `done()` or
    `timeout` runs out."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"downstream-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not done():
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                yield m
    finally:
        consumer.close()


def value_of(m: confluent_kafka.Message) -> bytes:
    """A consumed message's value (every message these tests read has one)."""
    value = m.value()
    assert value is not None, "a message without a value"
    return value


def headers_of(m: confluent_kafka.Message) -> dict[str, bytes]:
    """A consumed message's headers by name (the last of a repeated name, as `dict()` keeps)."""
    headers = m.headers()
    pairs = headers.items() if isinstance(headers, dict) else headers or []
    out: dict[str, bytes] = {}
    for name, value in pairs:
        assert isinstance(value, bytes), (name, value)
        out[name] = value
    return out


def holding_trace(trace_id: str) -> Callable[[confluent_kafka.Message], bool]:
    """Raw messages (serialized OTLP requests) holding a record of this trace, however many traces
    a message holds: its 16 bytes are in the value (by chance elsewhere: 2^-128)."""
    raw_id = bytes.fromhex(trace_id)
    return lambda m: raw_id in value_of(m)


@dataclass
class EnrichedRecord:
    """One record of an enriched topic, as a downstream consumer reads it: a whole message
    (schema version 1) or one line of one (version 2, NDJSON)."""

    row: dict[str, Any]
    value: bytes  # the record's JSON
    headers: dict[str, bytes]  # its message's
    key: bytes | None  # its message's
    partition: int | None


def records_of(m: confluent_kafka.Message) -> list[EnrichedRecord]:
    """The records of an enriched message, by its `schema-version` header (docs/kafka-topics.md)."""
    headers = headers_of(m)
    value = value_of(m)
    if headers.get("schema-version") == b"2":
        assert headers["content-type"] == b"application/x-ndjson"
        lines = [line for line in value.split(b"\n") if line.strip()]
    else:
        lines = [value]
    return [EnrichedRecord(orjson.loads(line), line, headers, m.key(), m.partition()) for line in lines]


def consume_records(
    bootstrap: str,
    topic: str,
    matches: Callable[[EnrichedRecord], bool],
    count: int = 1,
    timeout: float = 60,
) -> list[EnrichedRecord]:
    """The first `count` records on enriched `topic` that `matches`, or fewer if `timeout` runs
    out (a downstream consumer, as `consume`)."""
    found: list[EnrichedRecord] = []
    for m in _downstream(bootstrap, topic, timeout, lambda: len(found) >= count):
        found.extend(r for r in records_of(m) if matches(r))
    return found[:count]


def of_trace(trace_id: str) -> Callable[[EnrichedRecord], bool]:
    """Enriched records of this trace (whichever of the two id columns its table has)."""
    return lambda r: trace_id in (r.row.get("trace_id"), r.row.get("TraceId"))
