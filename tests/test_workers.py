"""The embedded service's worker processes: requests split by trace id, content joins across
requests still meet their span, and a worker that dies costs a retry, not data."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from inferline.core.errors import Overloaded
from inferline.core.memory import anonymous_rss_bytes
from inferline.otlp.json_codec import decode_json
from inferline.otlp.shard import shard_spans
from inferline.service.workers import DECODER_NAME, WORKER_NAME, QueueGate
from tests.conftest import Service, make_service, wait_for
from tests.genai_examples import example
from tests.otlp_helpers import json_span, logs_json, new_span_id, new_trace_id, traces_json

pytestmark = pytest.mark.e2e


def _request(traces: int, spans_per_trace: int, resources: int = 3) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    trace_ids = [new_trace_id() for _ in range(traces)]
    for r in range(resources):
        part = decode_json(
            traces_json(
                [json_span({"i": i}, trace_id=t) for t in trace_ids for i in range(spans_per_trace)],
                {"service.name": f"svc-{r}"},
                scope=f"scope-{r}",
            ),
            ExportTraceServiceRequest,
        )
        request.resource_spans.extend(part.resource_spans)
    return request


@pytest.mark.parametrize("shards", [2, 3])
def test_every_span_lands_in_exactly_one_shard_with_its_trace(shards: int) -> None:
    request = _request(traces=40, spans_per_trace=3)
    parts = shard_spans(request, shards)
    assert len(parts) == shards  # 40 random traces fill every shard

    seen: list[tuple[str, str, int]] = []
    trace_shard: dict[bytes, int] = {}
    for k, part in parts.items():
        for rs in part.resource_spans:
            service = rs.resource.attributes[0].value.string_value
            for ss in rs.scope_spans:
                # resource and scope travel with every span
                assert ss.scope.name == "scope-" + service.removeprefix("svc-")
                for span in ss.spans:
                    assert trace_shard.setdefault(span.trace_id, k) == k
                    seen.append((service, span.span_id.hex(), k))
    assert len(seen) == 3 * 40 * 3
    assert len({(s, span_id) for s, span_id, _ in seen}) == len(seen)


def test_a_request_within_one_shard_is_passed_on_without_a_copy() -> None:
    request = _request(traces=1, spans_per_trace=5, resources=1)
    parts = shard_spans(request, 4)
    assert list(parts.values()) == [request]
    assert next(iter(parts.values())) is request


@pytest.fixture(scope="module")
def workers_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = make_service(tmp_path_factory.mktemp("workers"), INFERLINE_WORKERS="2")
    svc.start()
    yield svc
    assert svc.stop() == 0, svc.logs()[-3000:]


def _post(svc: Service, path: str, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{svc.http_url}{path}",
        content=body,
        headers={"x-api-key": svc.key, "content-type": "application/json"},
        timeout=30,
    )


def test_content_logs_join_their_spans_across_split_requests(workers_service: Service) -> None:
    """Spans of 30 traces in one request and their content log records in another: both are split
    over two workers, and each trace's records still meet in the same one."""
    ex = example("10.2")
    ids = [(new_trace_id(), new_span_id()) for _ in range(30)]
    logs = [{**log, "traceId": t, "spanId": s} for t, s in ids for log in ex["logs"]]
    spans = [
        json_span(ex["span"]["attributes"], trace_id=t, span_id=s, name=ex["span"]["name"]) for t, s in ids
    ]
    assert _post(workers_service, "/v1/logs", logs_json(logs)).status_code == 200
    assert _post(workers_service, "/v1/traces", traces_json(spans)).status_code == 200

    trace_list = ",".join(f"'{t}'" for t, _ in ids)
    rows = workers_service.sql(
        "SELECT trace_id, prompt_messages, response_messages FROM llm_inferences FINAL "
        f"WHERE trace_id IN ({trace_list}) FORMAT JSONEachRow"
    )
    found = [orjson.loads(line) for line in rows.splitlines()]
    assert len(found) == 30
    for row in found:
        assert orjson.loads(row["prompt_messages"]) == ex["expected"]["prompt_messages"]
        assert orjson.loads(row["response_messages"]) == ex["expected"]["completion_messages"]


def _workers(svc: Service) -> list[psutil.Process]:
    assert svc.process is not None
    return psutil.Process(svc.process.pid).children(recursive=True)


def test_workers_give_back_the_memory_building_their_chain_took(workers_service: Service) -> None:
    """Building the chain can peak at ~190 MB that is free again afterwards (compiling the names
    gazetteer, when the Hyperscan cache does not have it yet); a worker hands it back to the OS
    instead of keeping it resident for its life (each was ~280 MB before)."""
    workers = [p for p in _workers(workers_service) if "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) >= 2
    for p in workers:
        assert p.memory_info().rss < 160 * 2**20, (p.pid, p.memory_info().rss)


def test_json_senders_are_answered_while_every_worker_is_busy(workers_service: Service) -> None:
    """OTLP/JSON is decoded by a process of its own, so a JSON sender's answer does not wait
    behind the workers' processing (here: both workers stopped); the spans are stored once they
    run again."""
    assert workers_service.process is not None
    children = psutil.Process(workers_service.process.pid).children()
    workers = [p for p in children if p.name() == WORKER_NAME]
    assert len(workers) == 2 and [p.name() for p in children].count(DECODER_NAME) == 1
    trace_ids = [new_trace_id() for _ in range(5)]
    body = traces_json([json_span({"gen_ai.system": "openai"}, trace_id=t) for t in trace_ids])
    for p in workers:
        p.suspend()
    try:
        started = time.monotonic()
        r = _post(workers_service, "/v1/traces", body)
        assert r.status_code == 200, r.text
        assert time.monotonic() - started < 5
    finally:
        for p in workers:
            p.resume()
    trace_list = ",".join(f"'{t}'" for t in trace_ids)
    query = f"SELECT count() FROM otel_traces WHERE TraceId IN ({trace_list})"
    assert wait_for(lambda: int(workers_service.sql(query)) == 5, 30)


def test_killed_workers_cost_senders_nothing_and_are_replaced(workers_service: Service) -> None:
    """Senders are answered once the local log has their data, so killing every worker costs
    them nothing; the workers are replaced and what they were given is processed again."""
    before = _workers(workers_service)
    assert len(before) >= 2
    for p in before:
        os.kill(p.pid, signal.SIGKILL)

    trace_ids = [new_trace_id() for _ in range(20)]
    body = traces_json([json_span({"gen_ai.system": "openai"}, trace_id=t) for t in trace_ids])
    # OTLP/JSON is decoded in a worker: a request that met a dead one is refused retryably once.
    statuses = []
    for _ in range(50):
        r = _post(workers_service, "/v1/traces", body)
        statuses.append(r.status_code)
        if r.status_code == 200:
            break
        assert r.status_code == 503 and r.headers.get("retry-after"), r.text
        time.sleep(0.2)
    assert statuses[-1] == 200 and len(statuses) <= 3, statuses

    trace_list = ",".join(f"'{t}'" for t in trace_ids)
    stored = workers_service.sql(f"SELECT count() FROM otel_traces WHERE TraceId IN ({trace_list})")
    assert int(stored) == 20
    assert {p.pid for p in _workers(workers_service)}.isdisjoint(p.pid for p in before)
    assert "a worker died" in workers_service.logs()


def test_workers_setting_zero_runs_in_a_thread(tmp_path: Path) -> None:
    svc = make_service(tmp_path, INFERLINE_WORKERS="0")
    svc.start()
    try:
        assert _workers(svc) == []
        assert '"workers": 0' in svc.logs()
    finally:
        assert svc.stop() == 0


def test_past_the_memory_ceiling_the_workers_count_and_are_asked_to_hand_memory_back(tmp_path: Path) -> None:
    """The ceiling is the whole service's (what a container's limit counts): the refusal's log
    line reports the (anonymous) memory of the main process and its workers together, and the workers and
    the engine are asked to hand freed memory back, without an error."""
    svc = make_service(tmp_path, INFERLINE_WORKERS="2", INFERLINE_MAX_RSS_BYTES="1")
    svc.start()
    try:
        r = _post(svc, "/v1/traces", traces_json([json_span({"i": 1})]))
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        assert "memory ceiling" in r.json()["message"]
        assert svc.process is not None
        main_rss = anonymous_rss_bytes(psutil.Process(svc.process.pid))
        children_rss = sum(anonymous_rss_bytes(p) for p in _workers(svc))
        assert wait_for(lambda: "rss_after_reclaim" in svc.logs(), timeout=20)
        line = next(ln for ln in svc.logs().splitlines() if "rss_after_reclaim" in ln)
        reported = orjson.loads(line)["rss_bytes"]
        assert reported > main_rss + children_rss / 2, (reported, main_rss, children_rss)
        assert "reclaiming memory failed" not in svc.logs()
    finally:
        assert svc.stop() == 0


def test_json_decoded_in_a_worker_still_names_what_is_wrong(workers_service: Service) -> None:
    bad = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 5}]}]}]}'
    r = _post(workers_service, "/v1/traces", bad)
    assert r.status_code == 400
    assert "resourceSpans[0].scopeSpans[0].spans[0].traceId" in r.json()["message"]
    # and the worker that decoded it goes on serving
    ok = _post(workers_service, "/v1/traces", traces_json([json_span({"k": "v"})]))
    assert ok.status_code == 200


def _mixed_request(trace_ids: list[str], start_ns: int) -> bytes:
    """Three storable spans of every attribute type, one with an all-zero trace id and one older
    than the retention window: the same shape whatever the ids."""
    attributes = {"s": "text", "i": 7, "f": 0.5, "b": True, "list": ["a", 2], "map": {"k": "v"}}
    spans = [
        json_span(attributes, trace_id=t, name=f"op{i}", start_ns=start_ns + i, events=[{"name": "e"}])
        for i, t in enumerate(trace_ids)
    ]
    spans.append(json_span({"k": "v"}, trace_id="0" * 32, name="zero", start_ns=start_ns))
    spans.append(json_span({"k": "v"}, name="old", start_ns=start_ns - 400 * 86_400 * 10**9))
    return traces_json(spans)


def test_a_json_request_lands_as_the_same_request_in_protobuf_does(workers_service: Service) -> None:
    """OTLP/JSON is decoded, checked and split on a worker; the same request sent as protobuf is
    all done by the receiver. Senders get the same answer and the tables the same rows."""
    start_ns = time.time_ns() - 60 * 10**9
    as_json = [new_trace_id() for _ in range(3)]
    as_protobuf = [new_trace_id() for _ in range(3)]
    r_json = _post(workers_service, "/v1/traces", _mixed_request(as_json, start_ns))
    body = decode_json(_mixed_request(as_protobuf, start_ns), ExportTraceServiceRequest).SerializeToString()
    r_protobuf = httpx.post(
        f"{workers_service.http_url}/v1/traces",
        content=body,
        headers={"x-api-key": workers_service.key, "content-type": "application/x-protobuf"},
        timeout=30,
    )
    assert r_json.status_code == r_protobuf.status_code == 200
    partial = ExportTraceServiceResponse.FromString(r_protobuf.content).partial_success
    rejected = {"rejectedSpans": str(partial.rejected_spans), "errorMessage": partial.error_message}
    assert r_json.json() == {"partialSuccess": rejected}
    assert partial.rejected_spans == 2 and "trace_id must be 16 bytes" in partial.error_message

    def rows(trace_ids: list[str]) -> list[str]:
        ids = ",".join(f"'{t}'" for t in trace_ids)
        text = workers_service.sql(
            "SELECT SpanName, SpanKind, ServiceName, ScopeName, Timestamp, Duration, StatusCode, "
            "SpanAttributes, ResourceAttributes, Events.Name, Events.Attributes "
            f"FROM otel_traces WHERE TraceId IN ({ids}) ORDER BY SpanName FORMAT JSONEachRow"
        )
        return text.splitlines()

    stored = rows(as_json)
    assert len(stored) == 3
    assert stored == rows(as_protobuf)


def test_json_is_masked_at_the_receiver_when_asked_even_with_workers(tmp_path: Path) -> None:
    """Masking at the receiver needs the request's message in the receiving process: the JSON
    path that appends what a worker prepared must not bypass it."""
    svc = make_service(tmp_path, INFERLINE_WORKERS="2", INFERLINE_MASK_AT_RECEIVER="true")
    svc.start()
    try:
        trace_id = new_trace_id()
        body = traces_json([json_span({"note": "write to jane.doe@example.com"}, trace_id=trace_id)])
        assert _post(svc, "/v1/traces", body).status_code == 200
        row = orjson.loads(
            svc.sql(
                "SELECT SpanAttributes['note'] AS note, SpanAttributes['inferline.pii_found'] AS found "
                f"FROM otel_traces WHERE TraceId = '{trace_id}' FORMAT JSONEachRow"
            )
        )
        assert "jane.doe@example.com" not in row["note"]
        assert row["found"], row  # counted by the receiver's masking, not only the PII stage
    finally:
        assert svc.stop() == 0


def test_requests_wait_in_order_for_a_processor_then_are_refused() -> None:
    async def scenario() -> list[str]:
        gate = QueueGate(slots=1, max_wait_s=0.2)
        order: list[str] = []
        release = asyncio.Event()

        async def hold(name: str) -> None:
            async with gate.slot():
                order.append(name)
                await release.wait()

        first = asyncio.create_task(hold("first"))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as refused:
            async with gate.slot():
                order.append("never")
        assert refused.value.reason == "queue_wait"
        assert refused.value.retry_after_s >= 1

        second = asyncio.create_task(hold("second"))  # waits its turn, within the limit
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(first, second)
        return order

    assert asyncio.run(scenario()) == ["first", "second"]
