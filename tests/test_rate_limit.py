"""Per-project rate limits: a project over its rate gets 429 + Retry-After over HTTP and
RESOURCE_EXHAUSTED + RetryInfo over gRPC, nothing of the refused request is stored, its retry after
the wait is accepted, and another project sending at the same time is not affected."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.core.config import RateLimitSettings
from inferline.core.errors import RateLimited
from inferline.otlp.json_codec import decode_json
from inferline.receivers.otlp.rate_limit import RateLimiter
from tests.conftest import Service, make_service, running_with_other_project
from tests.otlp_helpers import json_span, logs_json, traces_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TRACES_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Every project may send 0.2 span/s with a bucket of 5 spans; log records are not limited."""
    svc = make_service(
        tmp_path_factory.mktemp("ratelimit"),
        INFERLINE_RATE_LIMIT__SPANS_PER_S="0.2",
        INFERLINE_RATE_LIMIT__BURST_S="25",
    )
    yield from running_with_other_project(svc)


def _post(svc: Service, key: str, body: bytes, path: str = "/v1/traces") -> httpx.Response:
    return httpx.post(
        f"{svc.http_url}{path}",
        content=body,
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
        timeout=30,
    )


def _spans(n: int, name: str) -> tuple[bytes, list[str]]:
    spans = [json_span({"http.route": "/limited"}, name=f"{name} {i}") for i in range(n)]
    return traces_json(spans), [s["traceId"] for s in spans]


def _stored(svc: Service, key: str, trace_ids: list[str]) -> int:
    ids = ", ".join(f"'{t}'" for t in trace_ids)
    return int(svc.sql(f"SELECT count() FROM otel_traces WHERE TraceId IN ({ids})", key))


def _grpc_export(svc: Service, key: str, body: bytes) -> grpc.RpcError | None:
    with grpc.insecure_channel(svc.grpc_target) as channel:
        try:
            channel.unary_unary(TRACES_EXPORT)(body, metadata=(("x-api-key", key),), timeout=30)
        except grpc.RpcError as e:
            return e
    return None


def test_a_project_over_its_rate_is_refused_and_another_is_not(service: Service) -> None:
    key, other = service.key, service.extra_keys["other"]
    burst, burst_ids = _spans(5, "burst")
    assert _post(service, key, burst).status_code == 200  # the whole bucket

    over, over_ids = _spans(1, "over")
    refused = _post(service, key, over)
    assert refused.status_code == 429, refused.text
    wait_s = int(refused.headers["retry-after"])
    assert 1 <= wait_s <= 5  # one span at 0.2/s
    assert "rate limit" in refused.json()["message"]

    over_grpc, over_grpc_ids = _spans(1, "over grpc")
    error = _grpc_export(service, key, decode_json(over_grpc, ExportTraceServiceRequest).SerializeToString())
    assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = dict(error.trailing_metadata())["grpc-status-details-bin"]
    retry = error_details_pb2.RetryInfo()
    assert status_pb2.Status.FromString(details).details[0].Unpack(retry)
    assert 1 <= retry.retry_delay.seconds <= 5

    # Meanwhile another project has a bucket of its own, on both protocols; and log records
    # of the limited project are not limited.
    theirs, their_ids = _spans(4, "neighbour")
    assert _post(service, other, theirs).status_code == 200
    one, one_ids = _spans(1, "neighbour grpc")
    assert (
        _grpc_export(service, other, decode_json(one, ExportTraceServiceRequest).SerializeToString()) is None
    )
    log = {"traceId": "", "spanId": "", "body": "not limited"}
    assert _post(service, key, logs_json([log]), "/v1/logs").status_code == 200

    # The sender's retry, after the wait it was told, is accepted.
    time.sleep(wait_s)
    assert _post(service, key, over).status_code == 200

    assert _stored(service, key, burst_ids + over_ids) == 6
    assert _stored(service, key, over_grpc_ids) == 0  # refused means not stored
    assert _stored(service, other, their_ids + one_ids) == 5


def test_buckets_refill_at_the_rate_and_a_large_request_is_not_starved() -> None:
    now = [0.0]
    limiter = RateLimiter(
        RateLimitSettings(spans_per_s=10, burst_s=1, projects={"vip": {"spans_per_s": 0}}),
        clock=lambda: now[0],
    )
    limiter.take("p", "traces", 25)  # larger than the bucket (10): let in while it is full
    with pytest.raises(RateLimited) as refused:
        limiter.check("p", "traces")  # in debt by 15
    assert refused.value.retry_after_s == 2  # 16 tokens at 10/s
    now[0] += 2.5
    limiter.take("p", "traces", 10)  # refilled: 10 tokens, the bucket's size
    limiter.take("vip", "traces", 1_000_000)  # 0 = no limit for this project
    limiter.take("p", "logs", 1_000_000)  # no log limit configured
    with pytest.raises(RateLimited):
        limiter.take("p", "traces", 1)
