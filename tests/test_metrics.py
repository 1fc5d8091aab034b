"""/metrics after known traffic: every counter moved by exactly what was sent, on the embedded
service and on a distributed role (all stages over librdkafka's mock cluster)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka
import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.conftest import Service, make_service, running_with_other_project, wait_for
from tests.kafka_helpers import Role, mock_cluster, role_env
from tests.otlp_helpers import GENAI_ATTRIBUTES, GENAI_COST, json_span, logs_json, sdk_spans, traces_json
from tests.prom_helpers import METRICS_AUTH, Samples, moved, scrape, series, value

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.timeout(240)]

LOGS_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
TRACES_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# Per span of GENAI_ATTRIBUTES / sdk_spans: tokens, duration, time to first token.
INPUT_TOKENS, OUTPUT_TOKENS, DURATION_S, TTFT_S = 1200, 85, 1.9, 0.412


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """An embedded service whose project "other" may send 0.1 span/s with a burst of 2."""
    svc = make_service(
        tmp_path_factory.mktemp("metrics"),
        INFERLINE_RATE_LIMIT__PROJECTS='{"other": {"spans_per_s": 0.1}}',
        INFERLINE_RATE_LIMIT__BURST_S="20",
    )
    yield from running_with_other_project(svc)


def _post(url: str, path: str, body: bytes, key: str) -> httpx.Response:
    return httpx.post(
        f"{url}{path}",
        content=body,
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
        timeout=30,
    )


def _grpc(target: str, method: str, body: bytes, key: str) -> grpc.StatusCode:
    with grpc.insecure_channel(target) as channel:
        try:
            channel.unary_unary(method)(body, metadata=(("x-api-key", key),), timeout=30)
        except grpc.RpcError as e:
            return e.code()
    return grpc.StatusCode.OK


def _one_log_record() -> bytes:
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.body.string_value = "payment authorised"
    return request.SerializeToString()


def _send_known_traffic(svc: Service) -> None:
    key, other = svc.key, svc.extra_keys["other"]
    headers = {"authorization": f"Bearer {key}"}
    # Real SDK exporters: 3 GenAI spans over gRPC; 1 failed GenAI call and 2 plain spans over HTTP.
    grpc_exporter = GrpcSpanExporter(endpoint=svc.grpc_target, insecure=True, headers=headers)
    http_exporter = HttpSpanExporter(endpoint=f"{svc.http_url}/v1/traces", headers=headers)
    assert grpc_exporter.export(sdk_spans(count=3)) == SpanExportResult.SUCCESS
    mixed = sdk_spans(error=True) + sdk_spans(attributes={"http.route": "/pay"}, name="GET /pay", count=2)
    assert http_exporter.export(mixed) == SpanExportResult.SUCCESS
    grpc_exporter.shutdown()
    http_exporter.shutdown()

    # Partial success: one good plain span, one with an all-zero trace id.
    bad = json_span({}, trace_id="0" * 32)
    r = _post(svc.http_url, "/v1/traces", traces_json([json_span({"http.route": "/ok"}), bad]), key)
    assert r.status_code == 200 and r.json()["partialSuccess"]["rejectedSpans"] == "1"
    # Logs: 2 over HTTP, 1 over gRPC.
    records = [{"traceId": "", "spanId": "", "body": f"line {i}"} for i in range(2)]
    assert _post(svc.http_url, "/v1/logs", logs_json(records), key).status_code == 200
    assert _grpc(svc.grpc_target, LOGS_EXPORT, _one_log_record(), key) == grpc.StatusCode.OK
    # Not counted as records: a bad key on both protocols, a malformed body.
    assert _post(svc.http_url, "/v1/traces", traces_json([json_span({})]), "nope").status_code == 401
    assert _grpc(svc.grpc_target, LOGS_EXPORT, _one_log_record(), "nope") == grpc.StatusCode.UNAUTHENTICATED
    assert _post(svc.http_url, "/v1/traces", b"{not json", key).status_code == 400

    # Project "other": 3 GenAI spans fit its burst; what follows is over its rate, on both protocols.
    genai = traces_json([json_span(GENAI_ATTRIBUTES, name=f"other {i}") for i in range(3)])
    assert _post(svc.http_url, "/v1/traces", genai, other).status_code == 200
    assert _post(svc.http_url, "/v1/traces", traces_json([json_span({})]), other).status_code == 429
    assert _grpc(svc.grpc_target, TRACES_EXPORT, b"", other) == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture(scope="module")
def traffic(service: Service) -> tuple[Samples, Samples]:
    """/metrics before and after the known traffic (sent once: project "other" is over its rate
    after it)."""
    before = scrape(service.api_url)
    _send_known_traffic(service)
    service.settle()  # rows are written (and counted) a flush after the acknowledgement
    return before, scrape(service.api_url)


def test_a_project_key_does_not_read_metrics(service: Service, traffic: tuple[Samples, Samples]) -> None:
    """The page names every project (here "other") and counts its traffic."""
    assert any(
        labels.get("project") == "other" for labels in series(traffic[1], "inferline_llm_cost_usd_total")
    )
    for headers in (
        {},
        {"authorization": f"Bearer {service.key}"},
        {"x-api-key": service.extra_keys["other"]},
    ):
        r = httpx.get(f"{service.api_url}/metrics", headers=headers, timeout=10)
        assert r.status_code == 401 and "other" not in r.text
    assert httpx.get(f"{service.api_url}/readyz", timeout=10).status_code == 200


def test_embedded_mode_makes_a_metrics_token_when_none_is_configured(tmp_path: Path) -> None:
    svc = make_service(tmp_path, INFERLINE_METRICS_TOKEN="")
    svc.start()
    try:
        token = (svc.data_dir / "metrics_token").read_text().strip()
        assert httpx.get(f"{svc.api_url}/metrics", headers=METRICS_AUTH, timeout=10).status_code == 401
        r = httpx.get(f"{svc.api_url}/metrics", headers={"authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 200 and "inferline_queue_depth" in r.text
        assert token not in svc.logs()
    finally:
        assert svc.stop() == 0, svc.logs()[-3000:]


def test_counters_move_by_what_was_sent(traffic: tuple[Samples, Samples]) -> None:
    before, after = traffic

    def d(name: str, **labels: str) -> float:
        return moved(before, after, name, **labels)

    requests = "inferline_otlp_requests_total"
    assert d(requests, protocol="grpc", signal="traces", outcome="accepted") == 1
    assert d(requests, protocol="http", signal="traces", outcome="accepted") == 2  # SDK + "other"
    assert d(requests, protocol="http", signal="traces", outcome="partial") == 1
    assert d(requests, protocol="http", signal="logs", outcome="accepted") == 1
    assert d(requests, protocol="grpc", signal="logs", outcome="accepted") == 1
    assert d(requests, protocol="http", signal="traces", outcome="unauthenticated") == 1
    assert d(requests, protocol="grpc", signal="logs", outcome="unauthenticated") == 1
    assert d(requests, protocol="http", signal="traces", outcome="invalid") == 1
    assert d(requests, protocol="http", signal="traces", outcome="refused") == 1
    assert d(requests, protocol="grpc", signal="traces", outcome="refused") == 1

    accepted = "inferline_otlp_records_accepted_total"
    assert d(accepted, protocol="grpc", signal="traces") == 3
    assert d(accepted, protocol="http", signal="traces") == 3 + 1 + 3
    assert d(accepted, protocol="http", signal="logs") == 2
    assert d(accepted, protocol="grpc", signal="logs") == 1
    assert d("inferline_otlp_records_rejected_total", protocol="http", signal="traces") == 1
    assert d("inferline_requests_refused_total", protocol="http", reason="rate_limit") == 1
    assert d("inferline_requests_refused_total", protocol="grpc", reason="rate_limit") == 1

    # Everything acknowledged was written once it settled.
    assert d("inferline_rows_written_total", table="otel_traces") == 3 + 3 + 1 + 3
    assert d("inferline_rows_written_total", table="otel_logs") == 3
    assert d("inferline_rows_written_total", table="llm_inferences") == 3 + 1 + 3
    assert d("inferline_batch_rows_sum", table="otel_traces") == 10
    assert d("inferline_flush_duration_seconds_count", table="otel_traces") >= 1
    assert value(after, "inferline_queue_depth", queue="pending_rows") == 0
    assert value(after, "inferline_queue_depth", queue="inflight_bytes") == 0
    assert value(after, "inferline_up") == 1
    assert series(after, "inferline_build_info")[0]["version"]
    # The traffic's allocations ran young collections, each timed.
    assert d("inferline_gc_pause_seconds_count", generation="0") >= 1


def test_llm_metrics_match_the_inferences_sent(service: Service, traffic: tuple[Samples, Samples]) -> None:
    before, after = traffic
    [(model, provider)] = {
        tuple(line.split("\t"))
        for line in service.sql("SELECT DISTINCT model, provider FROM llm_inferences").split("\n")
        if line
    }
    assert (model, provider) == (GENAI_ATTRIBUTES["gen_ai.response.model"], "openai")

    def d(name: str, **labels: str) -> float:
        return moved(before, after, name, **labels)

    mine = {"project": "default", "model": model, "provider": provider}
    theirs = {**mine, "project": "other"}
    assert d("inferline_llm_inferences_total", **mine, status="ok") == 3
    assert d("inferline_llm_inferences_total", **mine, status="error") == 1
    assert d("inferline_llm_inferences_total", **theirs, status="ok") == 3
    assert d("inferline_llm_tokens_total", **mine, type="input") == 4 * INPUT_TOKENS
    assert d("inferline_llm_tokens_total", **mine, type="output") == 4 * OUTPUT_TOKENS
    assert d("inferline_llm_tokens_total", **theirs, type="input") == 3 * INPUT_TOKENS
    cost = d("inferline_llm_cost_usd_total", project="default", model=model)
    assert math.isclose(cost, 4 * float(GENAI_COST), rel_tol=1e-9)
    assert math.isclose(
        d("inferline_llm_cost_usd_total", project="other", model=model), 3 * float(GENAI_COST), rel_tol=1e-9
    )
    assert d("inferline_llm_latency_seconds_count", model=model) == 7
    assert math.isclose(d("inferline_llm_latency_seconds_sum", model=model), 7 * DURATION_S, rel_tol=1e-6)
    assert d("inferline_llm_latency_seconds_bucket", model=model, le="2.0") == 7
    assert d("inferline_llm_latency_seconds_bucket", model=model, le="1.0") == 0
    assert d("inferline_llm_ttft_seconds_count", model=model) == 7
    assert math.isclose(d("inferline_llm_ttft_seconds_sum", model=model), 7 * TTFT_S, rel_tol=1e-6)
    # No per-user, session or trace label anywhere.
    labels = {k for (_, ls) in after for k, _ in ls}
    assert not labels & {"user", "user_id", "session", "session_id", "trace_id", "key"}


def test_kafka_roles_serve_the_pipeline_and_llm_metrics(tmp_path: Path) -> None:
    """The distributed stages in one process (`--role all`): receiver counts, writer-side LLM
    metrics once committed, consumer lag drained to zero, a dead-lettered raw message."""
    owner, bootstrap = mock_cluster()
    key, project = "metrics-kafka-key", "proj-metrics"
    role = Role("all", role_env(tmp_path, bootstrap, INFERLINE_API_KEYS=f"{key}={project}"), tmp_path)
    role.start()
    try:
        exporter = GrpcSpanExporter(
            endpoint=role.grpc_target, insecure=True, headers={"authorization": f"Bearer {key}"}
        )
        assert exporter.export(sdk_spans(count=2)) == SpanExportResult.SUCCESS
        exporter.shutdown()
        producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap})
        producer.produce(
            "otlp_spans", b"\x0a\xff not OTLP", headers=[("inferline-project", project.encode())]
        )
        producer.flush(10)

        labels = {
            "project": project,
            "model": GENAI_ATTRIBUTES["gen_ai.response.model"],
            "provider": "openai",
        }

        def settled() -> Samples | None:
            s = scrape(role.api_url)
            done = (
                value(s, "inferline_llm_inferences_total", **labels, status="ok") == 2
                and value(s, "inferline_dlq_records_total", stage="processor", reason="decode") == 1
                and value(
                    s, "inferline_kafka_consumer_lag", group="inferline-writer", topic="inferline.spans"
                )
                == 0
            )
            return s if done else None

        samples = wait_for(settled, timeout=60, interval=0.5)
        assert samples, role.logs()[-3000:]
        assert value(samples, "inferline_otlp_records_accepted_total", protocol="grpc", signal="traces") == 2
        assert value(samples, "inferline_llm_tokens_total", **labels, type="input") == 2 * INPUT_TOKENS
        assert value(samples, "inferline_rows_written_total", table="llm_inferences") == 2
        groups = {(s["group"], s["topic"]) for s in series(samples, "inferline_kafka_consumer_lag")}
        assert ("inferline-processor", "otlp_spans") in groups
        assert ("inferline-writer", "inferline.inferences") in groups
        assert value(samples, "inferline_queue_depth", queue="kafka_pending_bytes") == 0
        assert {"queue": "kafka_pending_bytes"} in series(samples, "inferline_queue_depth")
    finally:
        assert role.stop() == 0, role.logs()[-3000:]
        del owner
