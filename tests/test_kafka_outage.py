"""A receiver whose Kafka is unreachable answers with OTLP's retryable statuses (HTTP 503 with
Retry-After, gRPC UNAVAILABLE) within the configured delivery timeout, never a success."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.otlp.json_codec import decode_json
from tests.conftest import free_port, wait_for
from tests.kafka_helpers import MockBrokerProcess, Role, apache_kafka, docker_available, role_env
from tests.otlp_helpers import json_span, traces_json

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.timeout(180)]

KEY, PROJECT = "test-key-outage", "proj-outage"
HEADERS = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}


class _DockerKafka:
    def __init__(self) -> None:
        self.container, self.bootstrap = apache_kafka()

    def kill(self) -> None:
        if self.container is not None:
            self.container.stop()
            self.container = None


@pytest.fixture(params=["mock", pytest.param("docker", marks=pytest.mark.docker)])
def broker(request: pytest.FixtureRequest) -> Iterator[MockBrokerProcess | _DockerKafka]:
    if request.param == "docker" and not docker_available():
        pytest.skip("Docker is not available (`docker info` failed): real Kafka variant skipped")
    b = MockBrokerProcess() if request.param == "mock" else _DockerKafka()
    yield b
    b.kill()


def _receiver(tmp: Path, bootstrap: str) -> Role:
    env = role_env(
        tmp,
        bootstrap,
        INFERLINE_API_KEYS=f"{KEY}={PROJECT}",
        INFERLINE_KAFKA__DELIVERY_TIMEOUT_S="2",
        INFERLINE_KAFKA__CREATE_TOPICS="false",
    )
    return Role("receiver", env, tmp)


def _grpc_export(target: str) -> grpc.StatusCode:
    request = ExportTraceServiceRequest()
    request.CopyFrom(decode_json(traces_json([json_span({"k": "v"})]), ExportTraceServiceRequest))
    with grpc.insecure_channel(target) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        try:
            stub.Export(request, metadata=(("authorization", f"Bearer {KEY}"),), timeout=30)
        except grpc.RpcError as e:
            return e.code()
    return grpc.StatusCode.OK


def _http_export(receiver: Role) -> httpx.Response:
    return httpx.post(
        f"{receiver.http_url}/v1/traces",
        content=traces_json([json_span({"k": "v"})]),
        headers=HEADERS,
        timeout=30,
    )


def test_broker_outage_gives_retryable_errors(
    broker: MockBrokerProcess | _DockerKafka, tmp_path: Path
) -> None:
    receiver = _receiver(tmp_path, broker.bootstrap).start()
    try:
        assert _http_export(receiver).status_code == 200
        assert _grpc_export(receiver.grpc_target) == grpc.StatusCode.OK

        broker.kill()
        r = _http_export(receiver)
        assert r.status_code == 503, r.text
        assert int(r.headers["retry-after"]) > 0
        assert _grpc_export(receiver.grpc_target) == grpc.StatusCode.UNAVAILABLE
    finally:
        assert receiver.stop() == 0, receiver.logs()[-3000:]


def test_receiver_starts_without_kafka_and_refuses_retryably(tmp_path: Path) -> None:
    receiver = _receiver(tmp_path, f"127.0.0.1:{free_port()}").start(wait_ready=False)
    try:
        assert httpx.get(receiver.api_url + "/readyz", timeout=5).status_code == 503
        r = _http_export(receiver)
        assert r.status_code == 503, r.text
        assert "retry-after" in r.headers
        assert _grpc_export(receiver.grpc_target) == grpc.StatusCode.UNAVAILABLE
    finally:
        assert receiver.stop() == 0, receiver.logs()[-3000:]


def _ready(role: Role) -> int:
    try:
        return httpx.get(role.api_url + "/readyz", timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _stored(writer: Role, prefix: str) -> str:
    return writer.sql(
        f"SELECT count(), uniqExact(SpanName) FROM otel_traces WHERE SpanName LIKE '{prefix}%'", KEY
    )


class _Load(threading.Thread):
    """A sender under steady load: 5 spans per request, one request every 50 ms, each span named
    by a sequence number; records which spans were acknowledged (HTTP 200), and when."""

    def __init__(self, receiver: Role) -> None:
        super().__init__(daemon=True)
        self._url = f"{receiver.http_url}/v1/traces"
        self._halt = threading.Event()
        self.acked: list[tuple[float, str]] = []
        self.refused = 0

    def run(self) -> None:
        n = 0
        with httpx.Client(headers=HEADERS, timeout=10) as http:
            while not self._halt.is_set():
                names = [f"load {n + i}" for i in range(5)]
                n += 5
                body = traces_json([json_span({"k": "v"}, name=name) for name in names])
                try:
                    ok = http.post(self._url, content=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.acked += [(time.monotonic(), name) for name in names]
                else:
                    self.refused += 1
                self._halt.wait(0.05)

    def since(self, t: float) -> set[str]:
        return {name for at, name in self.acked if at >= t}

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def test_an_outage_then_a_replacement_cluster_lose_nothing_and_readiness_tells(tmp_path: Path) -> None:
    """Under steady load the broker dies: every role turns not ready, senders are refused
    retryably and nothing is acknowledged. The roles are pointed at a new, empty cluster (offsets
    start again at 0): they turn ready, and every span acknowledged after the switch is stored
    exactly once (no FINAL), as is everything stored before."""
    first = MockBrokerProcess()
    env = dict(INFERLINE_API_KEYS=f"{KEY}={PROJECT}", INFERLINE_KAFKA__DELIVERY_TIMEOUT_S="2")
    roles = [
        Role(name, role_env(tmp_path, first.bootstrap, **env), tmp_path)
        for name in ("processor", "writer", "receiver")
    ]
    second: MockBrokerProcess | None = None
    load: _Load | None = None
    try:
        for r in roles:
            r.start()
        _, writer, receiver = roles
        load = _Load(receiver)
        load.start()
        assert wait_for(lambda: len(load.acked) >= 200 and int(_stored(writer, "load").split()[0]) >= 200, 60)

        first.kill()
        assert wait_for(lambda: all(_ready(r) == 503 for r in roles), timeout=30), [_ready(r) for r in roles]
        outage = time.monotonic()
        time.sleep(3)  # the load goes on against the dead cluster
        assert not load.since(outage), "a span was acknowledged while Kafka was gone"
        assert _http_export(receiver).status_code == 503

        for r in roles:
            r.stop()
        second = MockBrokerProcess()
        for r in roles:
            r.env = role_env(tmp_path, second.bootstrap, **env)
            r.start()  # waits for /readyz 200
        switched = time.monotonic()
        assert wait_for(lambda: len(load.since(switched)) >= 500, timeout=60)
        load.stop()
        after = load.since(switched)
        assert after and load.refused > 0

        def stored_after() -> set[str]:
            rows = writer.sql(
                "SELECT SpanName FROM otel_traces WHERE SpanName IN "
                f"({', '.join(repr(n) for n in sorted(after))})",
                KEY,
            )
            return set(rows.splitlines())

        assert wait_for(lambda: stored_after() == after, timeout=60), len(after - stored_after())
        count, unique = _stored(writer, "load").split("\t")
        assert count == unique, "a span was stored twice"
        assert "replaying" not in writer.logs() and "rebuilding" not in writer.logs()
    finally:
        try:
            if load is not None:
                load.stop()
        finally:
            for r in reversed(roles):
                r.stop()
            first.kill()
            if second is not None:
                second.kill()
