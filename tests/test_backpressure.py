"""Overload and storage failure: senders are acknowledged once the local log has their data, so
a storage outage costs them nothing until the log is full (then a retryable status); nothing
acknowledged is lost, nothing is stored twice, and memory stays bounded. Runs the real receivers,
the real local log and engine, and a real chDB store in this process, so the store can be broken
on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil
import pytest
from clickhouse_connect.driver.client import Client
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.api.app import health_app
from inferline.api.metrics_access import MetricsAccess
from inferline.core.config import BatchSettings, LocalLogSettings, ProcessorSettings
from inferline.core.memory import anonymous_rss_bytes
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.processors.chain import ProcessorChain
from inferline.receivers.otlp.admission import Admission
from inferline.receivers.otlp.grpc import otlp_grpc_server
from inferline.receivers.otlp.http import otlp_http_app
from inferline.receivers.otlp.memory import MemoryCeiling
from inferline.service.embedded_pipeline import EmbeddedEngine
from inferline.service.processing import native_blocks
from inferline.service.workers import InThread
from inferline.storage.clickhouse import connect
from inferline.storage.keys import ApiKeys
from inferline.storage.schema import migrate
from tests.conftest import free_port, make_service
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, logs_json, traces_json
from tests.prom_helpers import metrics_text

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

# This module is about the writer path; enrichment stages are tested on their own.
PRICING_ONLY = ProcessorSettings(chain=["pricing"])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    path: Path = tmp_path_factory.mktemp("chdb") / "clickhouse"
    client = connect(f"chdb://{path}")
    migrate(client)
    keys = ApiKeys(client)
    key = keys.create("backpressure")
    yield client, keys, key
    client.close()


async def _post(app: Any, key: str, body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.post(
            "/v1/traces",
            content=body,
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        )


def _engine(client: Client, data_dir: Path, log_bytes: int = 64 << 20) -> EmbeddedEngine:
    """Embedded mode between the receivers and ClickHouse, started (call from the event loop)."""
    engine = EmbeddedEngine(
        data_dir,
        InThread(ProcessorChain(PRICING_ONLY), native_blocks),
        Inserter(client, retries=0),
        BatchSettings(max_rows=1000, min_delay_s=0.01, max_delay_s=0.05),
        LocalLogSettings(max_bytes=log_bytes),
    )
    engine.start()
    return engine


@contextlib.contextmanager
def _slow_disk(engine: EmbeddedEngine) -> Iterator[None]:
    """The log's writes wait (as on a stalled disk) while this holds the log's write lock."""
    lock = engine.log._write_lock
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


async def _stored(client: Client, query: str, want: int = 1, timeout: float = 15) -> int:
    """Polls a count until it reaches `want` (rows land a flush after the acknowledgement)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        n = int(str(await loop.run_in_executor(None, client.command, query)))
        if n >= want or loop.time() > deadline:
            return n
        await asyncio.sleep(0.05)


def test_past_the_log_bound_requests_are_refused_with_429_and_retry_after(
    store: tuple, tmp_path: Path
) -> None:
    """Storage is down, so nothing leaves the log: once it holds its bound of unstored bytes, the
    next request is refused (429, Retry-After) instead of growing the disk without end."""
    client, keys, key = store
    filler = "x" * 4000
    body = traces_json([json_span({"payload": filler}, name=f"bound {i}") for i in range(150)])  # ~600 KB

    async def scenario() -> list[httpx.Response]:
        engine = _engine(client, tmp_path, log_bytes=1 << 20)
        app = otlp_http_app(engine.sink, keys, 4 << 20)
        answers = [await _post(app, key, body) for _ in range(2)]
        await engine.close(timeout_s=0.5)
        return answers

    client.command("DETACH TABLE otel_traces")
    try:
        fits, too_many = asyncio.run(scenario())
    finally:
        client.command("ATTACH TABLE otel_traces")
    assert fits.status_code == 200
    assert too_many.status_code == 429
    assert too_many.headers["retry-after"] == "1"
    assert "not yet stored" in too_many.json()["message"]


def test_storage_down_costs_senders_nothing_and_everything_lands_when_it_is_back(
    store: tuple, tmp_path: Path
) -> None:
    """HTTP and gRPC senders are acknowledged while ClickHouse is down (the local log has their
    data); once it is back, both spans are stored, each once."""
    client, keys, key = store
    http_span = json_span(GENAI_ATTRIBUTES, name="storage down http")
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = bytes(range(1, 17)), b"\x02" * 8, "storage down grpc"
    span.start_time_unix_nano = span.end_time_unix_nano = time.time_ns()
    grpc_trace = span.trace_id.hex()

    async def scenario() -> tuple[int, int, int, int]:
        engine = _engine(client, tmp_path)
        port = free_port()
        server = otlp_grpc_server(engine.sink, keys, f"127.0.0.1:{port}", 1 << 20)
        await server.start()
        client.command("DETACH TABLE otel_traces")
        try:
            http_status = (
                await _post(otlp_http_app(engine.sink, keys, 1 << 20), key, traces_json([http_span]))
            ).status_code
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
                await call(request.SerializeToString(), metadata=(("x-api-key", key),), timeout=10)
            await asyncio.sleep(0.3)  # flushes fail meanwhile, and are retried
        finally:
            client.command("ATTACH TABLE otel_traces")
        http_rows = await _stored(
            client, f"SELECT count() FROM otel_traces WHERE TraceId = '{http_span['traceId']}'"
        )
        grpc_rows = await _stored(client, f"SELECT count() FROM otel_traces WHERE TraceId = '{grpc_trace}'")
        inferences = await _stored(
            client, f"SELECT count() FROM llm_inferences WHERE trace_id = '{http_span['traceId']}'"
        )
        await server.stop(None)
        await engine.close(timeout_s=5)
        return http_status, http_rows, grpc_rows, inferences

    assert asyncio.run(scenario()) == (200, 1, 1, 1)


def test_out_of_range_values_do_not_poison_a_shared_batch(store: tuple, tmp_path: Path) -> None:
    """One sender's absurd values share a batch with another project's clean spans: both are
    accepted, the clean rows are intact and the absurd values are emptied, not the batch failed."""
    client, keys, key = store
    other_key = keys.create("clean-neighbour")
    poisoned_attributes = dict(
        GENAI_ATTRIBUTES,
        **{
            "gen_ai.request.max_tokens": 5_000_000_000,  # > UInt32
            "gen_ai.usage.input_tokens": "20000000000000000000",  # > UInt64
            "gen_ai.usage.cost": 1e7,  # > Decimal(18, 12)
        },
    )
    poisoned = json_span(poisoned_attributes, name="poisoned")
    clean = json_span(GENAI_ATTRIBUTES, name="clean")
    bad_log = {
        "traceId": poisoned["traceId"],
        "spanId": poisoned["spanId"],
        "body": "severity out of range",
    }
    logs_body = logs_json([bad_log]).replace(b'"body"', b'"severityNumber":300,"body"')

    async def scenario() -> list[int]:
        engine = _engine(client, tmp_path)
        app = otlp_http_app(engine.sink, keys, 1 << 20)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            headers = {"content-type": "application/json"}
            responses = await asyncio.gather(
                http.post(
                    "/v1/traces", content=traces_json([poisoned]), headers={**headers, "x-api-key": key}
                ),
                http.post("/v1/logs", content=logs_body, headers={**headers, "x-api-key": key}),
                http.post(
                    "/v1/traces", content=traces_json([clean]), headers={**headers, "x-api-key": other_key}
                ),
            )
        await engine.close(timeout_s=10)  # stores what the log holds
        return [r.status_code for r in responses]

    assert asyncio.run(scenario()) == [200, 200, 200]
    row = client.query(
        "SELECT input_tokens, max_tokens, total_cost_usd, price_status FROM llm_inferences "
        f"WHERE trace_id = '{poisoned['traceId']}'"
    ).result_rows
    # The carried cost is impossible, so the span is priced; its token count makes that cost
    # impossible too: no cost ("error") rather than a wrong one, and the count itself emptied.
    assert row == [(0, None, None, "error")]
    assert (
        client.command(f"SELECT SeverityNumber FROM otel_logs WHERE TraceId = '{poisoned['traceId']}'") == 0
    )
    clean_row = client.query(
        "SELECT project_id, input_tokens, max_tokens FROM llm_inferences "
        f"WHERE trace_id = '{clean['traceId']}'"
    ).result_rows
    assert clean_row == [("clean-neighbour", 1200, 256)]


def test_requests_beyond_the_inflight_budget_are_refused_before_reading(store: tuple, tmp_path: Path) -> None:
    """While one request holds the in-flight byte budget (its append waits for the disk), the next
    is refused with 429 as soon as its first bytes arrive, instead of being read into memory."""
    client, keys, key = store
    body = traces_json([json_span(GENAI_ATTRIBUTES, name=f"budget {i}") for i in range(3)])

    async def scenario() -> list[httpx.Response]:
        engine = _engine(client, tmp_path)
        admission = Admission(max_bytes=len(body) + 100)
        app = otlp_http_app(engine.sink, keys, 1 << 20, admission)
        transport = httpx.ASGITransport(app=app)
        headers = {"content-type": "application/json", "x-api-key": key}
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            with _slow_disk(engine):  # the append waits
                first = asyncio.create_task(http.post("/v1/traces", content=body, headers=headers))
                await asyncio.sleep(0.1)  # the first is now waiting for its append, holding its bytes
                second = await http.post("/v1/traces", content=body, headers=headers)
            responses = [await first, second]
        assert admission.used == 0  # every share given back
        await engine.close(timeout_s=5)
        return responses

    first, second = asyncio.run(scenario())
    assert first.status_code == 200
    assert second.status_code == 429 and second.headers["retry-after"] == "1"
    assert "in flight" in second.json()["message"]


def test_a_stalled_body_holds_only_what_it_sent_and_is_answered_408(store: tuple, tmp_path: Path) -> None:
    """Nine connections that announced 16 MiB bodies and sent nothing more held the whole
    in-flight budget, with no time limit: every other sender got 429 for as long as they stayed
    open. A body now holds the bytes it sent, and one that stops arriving is answered 408."""
    client, keys, key = store
    body = traces_json([json_span(GENAI_ATTRIBUTES, name="beside a stalled body")])

    async def stalled(app: Any, sent: list[dict[str, Any]], disconnects: bool = False) -> None:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/traces",
            "headers": [
                (b"content-type", b"application/json"),
                (b"x-api-key", key.encode()),
                (b"content-length", str(16 << 20).encode()),
            ],
            "query_string": b"",
        }
        chunks = [{"type": "http.request", "body": b'{"resourceSpans": [', "more_body": True}]

        async def receive() -> dict[str, Any]:
            if chunks:
                return chunks.pop()
            if disconnects:
                return {"type": "http.disconnect"}
            await asyncio.sleep(3600)  # the sender went quiet
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)

    async def scenario() -> tuple[list[list[dict[str, Any]]], httpx.Response, int]:
        engine = _engine(client, tmp_path)
        admission = Admission(max_bytes=4 << 20)  # less than one announced body
        app = otlp_http_app(engine.sink, keys, 32 << 20, admission, body_idle_timeout_s=0.5)
        answers: list[list[dict[str, Any]]] = [[] for _ in range(10)]
        quiet = [asyncio.create_task(stalled(app, sent)) for sent in answers[:9]]
        quiet.append(asyncio.create_task(stalled(app, answers[9], disconnects=True)))
        await asyncio.sleep(0.1)
        headers = {"content-type": "application/json", "x-api-key": key}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            beside = await http.post("/v1/traces", content=body, headers=headers)
        await asyncio.gather(*quiet)
        used = admission.used
        await engine.close(timeout_s=5)
        return answers, beside, used

    answers, beside, used = asyncio.run(scenario())
    assert beside.status_code == 200, beside.text
    for sent in answers[:9]:
        assert sent[0]["status"] == 408
        assert b"no part of the request body arrived" in sent[1]["body"]
    # A sender gone mid-body is no server error (it was answered 500 and logged as one).
    assert answers[9][0]["status"] == 400 and b"client disconnected" in answers[9][1]["body"]
    assert used == 0


def test_a_flush_that_reached_only_some_tables_is_completed_without_duplicates(
    store: tuple, tmp_path: Path
) -> None:
    """The span table took a flush, the inference table did not: the sender was acknowledged
    anyway (the log has the data), and the exporter retries the same flush with the same token
    until the inference table is back. Then the span is in each table once, without FINAL: the
    retried block was dropped as a duplicate by its token."""
    client, keys, key = store
    span = json_span(GENAI_ATTRIBUTES, name="partly committed")

    async def scenario() -> tuple[int, int, int]:
        engine = _engine(client, tmp_path)
        client.command("DETACH TABLE llm_inferences")
        try:
            status = (
                await _post(otlp_http_app(engine.sink, keys, 1 << 20), key, traces_json([span]))
            ).status_code
            trace = f"TraceId = '{span['traceId']}'"
            await _stored(client, f"SELECT count() FROM otel_traces WHERE {trace}")
            await asyncio.sleep(0.5)  # the failed flush is retried meanwhile
        finally:
            client.command("ATTACH TABLE llm_inferences")
        inferences = await _stored(
            client, f"SELECT count() FROM llm_inferences WHERE trace_id = '{span['traceId']}'"
        )
        await engine.close(timeout_s=5)
        spans = int(client.command(f"SELECT count() FROM otel_traces WHERE {trace}"))
        return status, spans, inferences

    assert asyncio.run(scenario()) == (200, 1, 1)


def test_readiness_follows_storage(store: tuple, tmp_path: Path) -> None:
    """/readyz turns 503 while flushes fail and back to 200 once one succeeds: what an
    orchestrator needs to stop routing senders to an instance whose storage is down (its log
    would only fill up)."""
    client, keys, key = store
    body = traces_json([json_span(GENAI_ATTRIBUTES, name="readiness")])

    async def scenario() -> list[int]:
        engine = _engine(client, tmp_path)
        otlp = otlp_http_app(engine.sink, keys, 1 << 20)
        api = health_app(lambda: engine.healthy, MetricsAccess.of())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://api") as http:

            async def ready_becomes(status: int) -> int:
                for _ in range(200):
                    got = (await http.get("/readyz")).status_code
                    if got == status:
                        return got
                    await asyncio.sleep(0.05)
                return got

            statuses = [(await http.get("/readyz")).status_code]
            client.command("DETACH TABLE otel_traces")
            try:
                statuses.append((await _post(otlp, key, body)).status_code)
                statuses.append(await ready_becomes(503))
            finally:
                client.command("ATTACH TABLE otel_traces")
            statuses.append(await ready_becomes(200))
        await engine.close(timeout_s=5)
        return statuses

    assert asyncio.run(scenario()) == [200, 200, 503, 200]


def test_over_the_memory_ceiling_requests_are_refused_until_memory_comes_back(
    store: tuple, tmp_path: Path
) -> None:
    """Past the process's memory ceiling (anonymous memory) both receivers refuse with a retryable
    status (503 + Retry-After, UNAVAILABLE + RetryInfo) before reading anything; once memory is
    back, the same request is accepted."""
    client, keys, key = store
    body = traces_json([json_span(GENAI_ATTRIBUTES, name="memory ceiling")])
    # The test process alone: other tests may leave processes of their own beside it.
    ceiling = MemoryCeiling(
        anonymous_rss_bytes(psutil.Process()) + (128 << 20), interval_s=0.01, descendants=False
    )

    async def scenario() -> tuple[httpx.Response, grpc.RpcError | None, httpx.Response]:
        engine = _engine(client, tmp_path)
        sink = engine.sink
        admission = Admission(64 << 20, memory=ceiling)
        app = otlp_http_app(sink, keys, 1 << 20, admission)
        port = free_port()
        server = otlp_grpc_server(sink, keys, f"127.0.0.1:{port}", 1 << 20, admission)
        await server.start()
        ballast = b"x" * (384 << 20)  # touched pages: the RSS really grows
        await asyncio.sleep(0.05)
        over = await _post(app, key, body)
        grpc_error = None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            try:
                await call(ExportTraceServiceRequest().SerializeToString(), metadata=(("x-api-key", key),))
            except grpc.RpcError as e:
                grpc_error = e
        del ballast
        await asyncio.sleep(0.05)
        after = await _post(app, key, body)
        await server.stop(None)
        await engine.close(timeout_s=5)
        return over, grpc_error, after

    over, grpc_error, after = asyncio.run(scenario())
    assert over.status_code == 503 and over.headers["retry-after"] == "2"
    assert "memory ceiling" in over.json()["message"]
    assert grpc_error is not None and grpc_error.code() == grpc.StatusCode.UNAVAILABLE
    retry = error_details_pb2.RetryInfo()
    details = dict(grpc_error.trailing_metadata())["grpc-status-details-bin"]
    status_pb2.Status.FromString(details).details[0].Unpack(retry)
    assert retry.retry_delay.seconds == 2
    assert after.status_code == 200


def test_a_flood_is_refused_with_memory_bounded(tmp_path: Path) -> None:
    """Many senders at once against a small in-flight budget: the excess is refused (429) before
    its body is read, the service's memory stays flat, every acknowledged span is stored and no
    refused one is."""
    svc = make_service(tmp_path, INFERLINE_MAX_INFLIGHT_BYTES=str(1 << 20))
    svc.start()
    process = psutil.Process(svc.process.pid)  # type: ignore[union-attr]
    headers = {"authorization": f"Bearer {svc.key}", "content-type": "application/json"}
    filler = "x" * 2000

    def body(sender: int, i: int) -> bytes:  # ~500 KB, 200 spans, names unique to the request
        return traces_json(
            [json_span({"payload": filler}, name=f"flood {sender}/{i} {n}") for n in range(200)]
        )

    warmup = httpx.post(f"{svc.http_url}/v1/traces", content=body(-1, 0), headers=headers, timeout=60)
    assert warmup.status_code == 200
    baseline = process.memory_info().rss
    peak = [baseline]
    answers: dict[str, int] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], process.memory_info().rss)

    def send(sender: int, bodies: list[bytes]) -> None:
        with httpx.Client(timeout=60) as http:
            for i, b in enumerate(bodies):
                r = http.post(f"{svc.http_url}/v1/traces", content=b, headers=headers)
                answers[f"{sender}/{i}"] = r.status_code

    senders = [threading.Thread(target=send, args=(s, [body(s, i) for i in range(6)])) for s in range(24)]
    watcher = threading.Thread(target=watch)
    watcher.start()
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    done.set()
    watcher.join()
    try:
        assert set(answers.values()) == {200, 429}, answers
        # 24 senders × 500 KB at once would be ~12 MB of bodies and many times that decoded;
        # with a 1 MB budget only two requests are held at a time.
        assert peak[0] - baseline < 96 << 20, (peak[0] - baseline) >> 20
        stored = svc.sql(
            "SELECT splitByChar(' ', SpanName)[2] AS request, count() FROM otel_traces "
            "WHERE SpanName LIKE 'flood %' AND request != '-1/0' GROUP BY request FORMAT TSV"
        )
        per_request = dict(line.split("\t") for line in stored.splitlines())
        acknowledged = {r for r, status in answers.items() if status == 200}
        assert set(per_request) == acknowledged
        assert set(per_request.values()) == {"200"}
        metrics = metrics_text(svc.api_url)
        assert 'inferline_requests_refused_total{protocol="http",reason="inflight_bytes"}' in metrics
    finally:
        assert svc.stop() == 0
