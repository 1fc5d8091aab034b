"""A bounded, seeded fuzz run against the embedded service, over OTLP/HTTP protobuf, OTLP/HTTP
JSON and gRPC: valid requests mutated in every way a sender (or an attacker) could get wrong.
What must hold after thousands of them:

- no answer is a server error except a retryable 503 / UNAVAILABLE, and the service stays up;
- every request answered "accepted" had its records stored (or dead-lettered): the ingest ledger
  balances, and every span of an intact request answered without rejections is in ClickHouse;
- memory comes back within a bound once the run is over.

The seed is printed on failure; `INFERLINE_FUZZ_SEED` and `INFERLINE_FUZZ_CASES` rerun or widen it.
"""

from __future__ import annotations

import functools
import gzip
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import orjson
import psutil
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.conftest import Service, make_service, wait_for
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, sdk_spans, traces_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SEED = int(os.environ.get("INFERLINE_FUZZ_SEED", "20261203"))
CASES = int(os.environ.get("INFERLINE_FUZZ_CASES", "2000"))
TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
RSS_GROWTH_BOUND = 400 << 20  # after the run, once idle, over the tree's RSS before it


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = make_service(tmp_path_factory.mktemp("fuzz"))
    svc.start()
    try:
        yield svc
    finally:
        assert svc.stop() == 0


# -- payloads -------------------------------------------------------------------------------------


def _protobuf(rng: random.Random) -> tuple[bytes, list[str]]:
    spans = sdk_spans(count=rng.randint(1, 5), name=f"fuzz {rng.random():.6f}")
    return encode_spans(spans).SerializeToString(), [f"{s.context.span_id:016x}" for s in spans]


def _json(rng: random.Random) -> tuple[dict[str, Any], list[str]]:
    spans = [
        json_span(GENAI_ATTRIBUTES, name=f"fuzz json {rng.random():.6f}") for _ in range(rng.randint(1, 4))
    ]
    return orjson.loads(traces_json(spans)), [s["spanId"] for s in spans]


def _flip_bits(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(depth):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    return value


_ODD_VALUES: list[Any] = [
    None,
    True,
    -1,
    1e308,
    float("inf"),
    "NaN",
    "Infinity",
    "-0",
    "1e999",
    "\ud800",
    "\x00",
    [],
    {},
    [1, [2, [3]]],
    {"a": {"b": None}},
    "9" * 40,
    "x" * 300_000,
    -(2**70),
]


def _mutate_json(rng: random.Random, doc: Any) -> Any:
    """One random value of the document replaced by an odd one (wrong type, huge, deep, NaN)."""
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append((node, k))
                walk(v)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                paths.append((node, i))
                walk(v)

    walk(doc)
    for _ in range(rng.randint(1, 3)):
        parent, key = rng.choice(paths)
        choice = rng.random()
        parent[key] = _nested(rng.randint(1, 70)) if choice < 0.15 else rng.choice(_ODD_VALUES)
    return doc


def _json_bytes(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError):
        import json

        return json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")


@functools.cache
def _bomb() -> bytes:
    """64 MiB of zeros in ~64 KiB of gzip."""
    return gzip.compress(b"\0" * (64 << 20))


class Case:
    """One request: how it is sent, and the span ids it holds if it was left intact."""

    def __init__(self, transport: str, body: bytes, intact: list[str], headers: dict[str, str] | None = None):
        self.transport = transport
        self.body = body
        self.intact = intact
        self.headers = headers or {}


def make_case(rng: random.Random) -> Case:
    kind = rng.random()
    if kind < 0.15:  # intact, to prove the service still stores while being fuzzed
        body, ids = _protobuf(rng)
        return Case(rng.choice(["http-protobuf", "grpc"]), body, ids)
    if kind < 0.25:
        doc, ids = _json(rng)
        return Case("http-json", _json_bytes(doc), ids)
    if kind < 0.45:
        body, _ = _protobuf(rng)
        mutation = rng.choice(["flip", "truncate", "append", "random"])
        if mutation == "flip":
            body = _flip_bits(rng, body)
        elif mutation == "truncate":
            body = body[: rng.randrange(len(body))]
        elif mutation == "append":
            body = body + rng.randbytes(rng.randint(1, 64))
        else:
            body = rng.randbytes(rng.randint(0, 2048))
        return Case(rng.choice(["http-protobuf", "grpc"]), body, [])
    if kind < 0.75:
        doc, _ = _json(rng)
        return Case("http-json", _json_bytes(_mutate_json(rng, doc)), [])
    if kind < 0.82:  # text that is not JSON, or not UTF-8
        return Case(
            "http-json", rng.choice([b"{", b"[]", b"null", b'{"resourceSpans": 7}', b"\xff\xfe{}"]), []
        )
    if kind < 0.9:  # compression: bombs, lies, and a real gzip body
        doc, ids = _json(rng)
        choice = rng.random()
        if choice < 0.3:
            return Case("http-json", gzip.compress(_json_bytes(doc)), ids, {"content-encoding": "gzip"})
        if choice < 0.6:
            return Case("http-json", _bomb(), [], {"content-encoding": "gzip"})
        return Case(
            "http-json", _json_bytes(doc), [], {"content-encoding": rng.choice(["gzip", "br", "zstd"])}
        )
    # wrong content types for the body
    body, _ = _protobuf(rng)
    return Case("http-json", body, [], {"content-type": rng.choice(["text/plain", "application/xml", ""])})


# -- sending --------------------------------------------------------------------------------------


class Outcome:
    def __init__(self, code: str, accepted_intact: list[str]) -> None:
        self.code = code
        self.accepted_intact = accepted_intact


def send(svc: Service, channel: grpc.Channel, case: Case) -> Outcome:
    if case.transport == "grpc":
        call = channel.unary_unary(TRACE_EXPORT, request_serializer=None, response_deserializer=None)
        try:
            raw = call(case.body, metadata=(("authorization", f"Bearer {svc.key}"),), timeout=30)
        except grpc.RpcError as e:
            return Outcome(f"grpc {e.code().name}", [])
        response = ExportTraceServiceResponse.FromString(raw)
        rejected = response.partial_success.rejected_spans
        return Outcome("grpc OK", case.intact if not rejected else [])
    content_type = "application/x-protobuf" if case.transport == "http-protobuf" else "application/json"
    headers = {"authorization": f"Bearer {svc.key}", "content-type": content_type, **case.headers}
    r = httpx.post(f"{svc.http_url}/v1/traces", content=case.body, headers=headers, timeout=30)
    accepted: list[str] = []
    if r.status_code == 200 and case.intact:
        if case.transport == "http-json":
            partial = r.json().get("partialSuccess") or {}
            rejected = int(partial.get("rejectedSpans") or 0)
        else:
            rejected = ExportTraceServiceResponse.FromString(r.content).partial_success.rejected_spans
        accepted = case.intact if not rejected else []
    return Outcome(f"http {r.status_code}", accepted)


def _tree_rss(pid: int) -> int:
    main = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [main, *main.children(recursive=True)])


def test_fuzzed_requests_never_break_the_service_and_what_is_accepted_is_stored(fuzzed: Service) -> None:
    svc = fuzzed
    assert svc.process is not None
    rng = random.Random(SEED)
    pid = svc.process.pid
    rss_before = _tree_rss(pid)
    codes: Counter[str] = Counter()
    intact: list[str] = []
    with grpc.insecure_channel(
        svc.grpc_target, options=[("grpc.max_send_message_length", 128 << 20)]
    ) as channel:
        for _ in range(CASES):
            outcome = send(svc, channel, make_case(rng))
            codes[outcome.code] += 1
            intact += outcome.accepted_intact
            assert svc.process.poll() is None, f"the service died (seed {SEED}): {codes}"

    context = f"seed {SEED}, answers {dict(codes)}"
    server_errors = {c: n for c, n in codes.items() if c.startswith("http 5") and c != "http 503"}
    server_errors |= {
        c: n for c, n in codes.items() if c in ("grpc INTERNAL", "grpc UNKNOWN", "grpc DATA_LOSS")
    }
    assert not server_errors, context
    assert codes["http 200"] + codes["grpc OK"] > CASES // 10, context  # the run did store things
    assert codes["http 400"] > CASES // 10, context  # and did refuse things

    # Every span of an intact request answered without rejections is stored.
    ids = ", ".join(f"'{i}'" for i in intact)
    assert int(svc.sql(f"SELECT count() FROM otel_traces FINAL WHERE SpanId IN ({ids})")) == len(set(intact))

    # The ledger balances: every record accepted is stored or dead-lettered.
    ledger = (
        "SELECT sumIf(records, outcome = 'accepted'), sumIf(records, outcome = 'stored'), "
        "sumIf(records, outcome = 'dead_lettered') FROM ingest_ledger FINAL FORMAT TSV"
    )
    counts: Callable[[], list[int]] = lambda: [int(v) for v in svc.sql(ledger).split()]  # noqa: E731
    assert wait_for(lambda: (c := counts())[0] == c[1] + c[2], timeout=30, interval=0.5), (counts(), context)
    assert counts()[1] >= len(set(intact))

    # Memory comes back: the tree is within a bound of where it started, once idle.
    assert wait_for(lambda: _tree_rss(pid) < rss_before + RSS_GROWTH_BOUND, timeout=60, interval=2), (
        f"RSS {_tree_rss(pid) >> 20} MB, {rss_before >> 20} MB before",
        context,
    )
