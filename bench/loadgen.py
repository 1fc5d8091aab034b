"""The load generator: a process of its own, driven by JSON lines on stdin, reporting on stdout.

    python -m bench.loadgen   (started by bench.run; not meant to be run by hand)

First line in: the target {"grpc", "http", "key", "genai_spans", "plain_spans", "seed",
"templates"?, "transport"?, "logs"?}; "transport" sends every request over that one transport,
"logs": false leaves out the correlated log records (a peer without a logs endpoint). The
generator builds its request templates and answers {"ev": "ready", ...}. Then one command per
line, {"cmd": "run", "phase": ..., "kind": "genai"|"plain", "mode": "closed"|"open", ...}, each
answered by progress lines every half second and one {"ev": "result", ...}; {"cmd": "exit"} ends.

Closed loop: `concurrency` senders, each sending its next request as soon as the last one is
answered, measures the most the service takes. Open loop: requests leave on a fixed schedule
(`rate` spans/s) whether or not earlier ones were answered, the way independent services send;
latency is measured from the scheduled time, so a stalled service cannot hide its queueing
(no coordinated omission). Both are bounded by `seconds` and `max_requests`.

Every acknowledged request's span ids are reported as (base, count) ranges for the loss check.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from bench.payloads import Template, build_templates, describe, phase_base

TEMPLATES_PER_KIND = 24
TIMEOUT_S = 60.0
HTTP_POOLS = 16
RETRYABLE_HTTP = {429, 503}
RETRYABLE_GRPC = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}
PATHS = {
    ("grpc", "traces"): "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    ("grpc", "logs"): "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    ("http", "traces"): "/v1/traces",
    ("http", "logs"): "/v1/logs",
}


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(event).decode() + "\n")
    sys.stdout.flush()


@dataclass
class Outcome:
    ok: bool
    code: str  # "ok", "http_429", "grpc_UNAVAILABLE", "timeout", ...
    retryable: bool = False
    rejected: int = 0  # records refused individually (partial success)


class Client:
    """One gRPC channel and one HTTP connection pool to the service; bodies go as raw bytes."""

    def __init__(self, grpc_target: str, http_url: str, key: str, connections: int) -> None:
        self._channel = grpc.aio.insecure_channel(
            grpc_target,
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
        # Identity (de)serialisers: the body is already an encoded request.
        self._calls = {
            signal: self._channel.unary_unary(PATHS[("grpc", signal)]) for signal in ("traces", "logs")
        }
        self._metadata = (("x-api-key", key),)
        # Several small HTTP pools instead of one large one: httpcore checks every connection of
        # its pool on each request (a socket poll and a peer-name lookup each), so one pool of 64
        # busy connections made the pool's bookkeeping ~20% of the generator's CPU.
        per_pool = max(1, connections // HTTP_POOLS)
        self._http_pools = [
            httpx.AsyncClient(
                base_url=http_url,
                headers={"x-api-key": key},
                timeout=TIMEOUT_S,
                limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool),
            )
            for _ in range(HTTP_POOLS)
        ]
        self._next_pool = itertools.cycle(self._http_pools).__next__

    async def send(self, transport: str, signal: str, body: bytes) -> Outcome:
        if transport == "grpc":
            try:
                reply = await self._calls[signal](body, metadata=self._metadata, timeout=TIMEOUT_S)
            except grpc.aio.AioRpcError as e:
                return Outcome(False, f"grpc_{e.code().name}", e.code() in RETRYABLE_GRPC)
            return Outcome(True, "ok", rejected=_rejected_protobuf(signal, reply))
        content_type = "application/json" if transport == "http-json" else "application/x-protobuf"
        try:
            r = await self._next_pool().post(
                PATHS[("http", signal)], content=body, headers={"content-type": content_type}
            )
        except httpx.TimeoutException:
            return Outcome(False, "timeout")
        except httpx.HTTPError as e:
            return Outcome(False, f"http_{type(e).__name__}")
        if r.status_code != 200:
            return Outcome(False, f"http_{r.status_code}", r.status_code in RETRYABLE_HTTP)
        if transport == "http-json":
            partial = orjson.loads(r.content or b"{}").get("partialSuccess") or {}
            return Outcome(
                True, "ok", rejected=int(partial.get("rejectedSpans", partial.get("rejectedLogRecords", 0)))
            )
        return Outcome(True, "ok", rejected=_rejected_protobuf(signal, r.content))

    async def close(self) -> None:
        for pool in self._http_pools:
            await pool.aclose()
        await self._channel.close()


def _rejected_protobuf(signal: str, reply: bytes) -> int:
    if not reply:
        return 0
    if signal == "traces":
        return ExportTraceServiceResponse.FromString(reply).partial_success.rejected_spans
    return ExportLogsServiceResponse.FromString(reply).partial_success.rejected_log_records


@dataclass
class Tally:
    """What one phase saw."""

    phase: str
    started: float = field(default_factory=time.time)
    requests: int = 0
    acked_requests: int = 0
    acked_spans: int = 0
    acked_genai_spans: int = 0
    sent_spans: int = 0
    log_requests: int = 0
    acked_log_records: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # retryable refusals by code
    errors: dict[str, int] = field(default_factory=dict)  # everything else that was not a 200
    partial_requests: int = 0
    latencies: list[float] = field(default_factory=list)  # trace requests, seconds
    # The same by transport (grpc, http, http-json): OTLP/JSON is decoded before the answer.
    latencies_by_transport: dict[str, list[float]] = field(default_factory=dict)
    log_latencies: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)  # open loop: send time - scheduled time
    skipped: int = 0  # open loop: not sent because too many were already waiting
    acked_ranges: list[tuple[int, int]] = field(default_factory=list)
    first_send: float = 0.0
    last_ack: float = 0.0
    inflight: int = 0

    def count(self, outcome: Outcome) -> None:
        if outcome.ok:
            return
        into = self.refused if outcome.retryable else self.errors
        into[outcome.code] = into.get(outcome.code, 0) + 1

    def progress(self) -> dict[str, Any]:
        return {
            "ev": "progress",
            "phase": self.phase,
            "elapsed": time.time() - self.started,
            "acked_spans": self.acked_spans,
            "sent_spans": self.sent_spans,
            "refused": sum(self.refused.values()),
            "errors": sum(self.errors.values()),
            "inflight": self.inflight,
        }

    def result(self, cpu_s: float) -> dict[str, Any]:
        return {
            "ev": "result",
            "phase": self.phase,
            "requests": self.requests,
            "acked_requests": self.acked_requests,
            "acked_spans": self.acked_spans,
            "acked_genai_spans": self.acked_genai_spans,
            "sent_spans": self.sent_spans,
            "log_requests": self.log_requests,
            "acked_log_records": self.acked_log_records,
            "refused": self.refused,
            "errors": self.errors,
            "partial_requests": self.partial_requests,
            "skipped": self.skipped,
            "first_send": self.first_send,
            "last_ack": self.last_ack,
            "ack_latency_ms": percentiles(self.latencies),
            "ack_latency_ms_by_transport": {
                transport: percentiles(samples) for transport, samples in self.latencies_by_transport.items()
            },
            "log_ack_latency_ms": percentiles(self.log_latencies),
            "send_lateness_ms": percentiles(self.lateness),
            "acked_ranges": self.acked_ranges,
            "generator_cpu_s": cpu_s,
        }


def percentiles(samples: list[float]) -> dict[str, float | int]:
    if not samples:
        return {"n": 0}
    s = sorted(samples)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, int(p * len(s)))] * 1000, 2)

    return {"n": len(s), "p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": round(s[-1] * 1000, 2)}


class Generator:
    def __init__(self, target: dict[str, Any]) -> None:
        self.target = target
        self.prefix = secrets.token_bytes(8)
        started = time.perf_counter()
        count, seed = int(target.get("templates", TEMPLATES_PER_KIND)), int(target["seed"])
        transport = str(target.get("transport", ""))
        self.templates = {
            "genai": build_templates("genai", count, target["genai_spans"], self.prefix, seed, transport),
            "plain": build_templates(
                "plain", max(1, count // 2), target["plain_spans"], self.prefix, seed, transport
            ),
        }
        self.send_logs = bool(target.get("logs", True))
        self.build_s = time.perf_counter() - started
        self.client = Client(target["grpc"], target["http"], target["key"], target.get("connections", 256))

    def ready(self) -> dict[str, Any]:
        return {
            "ev": "ready",
            "build_s": round(self.build_s, 2),
            "genai": describe(self.templates["genai"]),
            "plain": describe(self.templates["plain"]),
        }

    async def one(self, tally: Tally, template: Template, base: int, scheduled: float) -> None:
        """Send one request (and its log records once it is acknowledged), tallying both."""
        traces, logs = template.stamp(base)
        transport = template.transport
        sent = time.perf_counter()
        tally.requests += 1
        tally.sent_spans += template.spans
        tally.inflight += 1
        if not tally.first_send:
            tally.first_send = time.time()
        try:
            outcome = await self.client.send(transport, "traces", traces)
        finally:
            tally.inflight -= 1
        done = time.perf_counter()
        tally.count(outcome)
        if not outcome.ok:
            return
        tally.last_ack = time.time()
        tally.latencies.append(done - scheduled)
        tally.latencies_by_transport.setdefault(transport, []).append(done - scheduled)
        if scheduled != sent:
            tally.lateness.append(sent - scheduled)
        if outcome.rejected:
            tally.partial_requests += 1  # not counted as acknowledged: which spans were refused is unknown
            return
        tally.acked_requests += 1
        tally.acked_spans += template.spans
        tally.acked_genai_spans += template.genai_spans
        tally.acked_ranges.append((base, template.spans))
        if logs is None or not self.send_logs:
            return
        tally.log_requests += 1
        started = time.perf_counter()
        outcome = await self.client.send(transport, "logs", logs)
        tally.count(outcome)
        if outcome.ok and not outcome.rejected:
            tally.log_latencies.append(time.perf_counter() - started)
            tally.acked_log_records += template.log_records
            tally.last_ack = time.time()

    async def run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        tally = Tally(cmd["phase"])
        templates = self.templates[cmd["kind"]]
        # Each request takes a block of ids as large as the largest request.
        next_base = itertools.count(phase_base(cmd["phase_byte"]), max(t.spans for t in templates)).__next__
        order = itertools.cycle(range(len(templates))).__next__
        seconds, max_requests = float(cmd["seconds"]), int(cmd.get("max_requests", 10**9))
        cpu0 = time.process_time()
        reporter = asyncio.create_task(self._report(tally))
        deadline = time.perf_counter() + seconds
        try:
            if cmd["mode"] == "closed":
                await self._closed(
                    tally, templates, order, next_base, deadline, max_requests, cmd["concurrency"]
                )
            else:
                await self._open(tally, templates, order, next_base, deadline, max_requests, cmd)
        finally:
            reporter.cancel()
        return tally.result(time.process_time() - cpu0)

    async def _closed(
        self,
        tally: Tally,
        templates: list[Template],
        order: Callable[[], int],
        next_base: Callable[[], int],
        deadline: float,
        max_requests: int,
        concurrency: int,
    ) -> None:
        async def sender() -> None:
            while time.perf_counter() < deadline and tally.requests < max_requests:
                t = templates[order()]
                now = time.perf_counter()
                await self.one(tally, t, next_base(), now)

        await asyncio.gather(*(sender() for _ in range(concurrency)))

    async def _open(
        self,
        tally: Tally,
        templates: list[Template],
        order: Callable[[], int],
        next_base: Callable[[], int],
        deadline: float,
        max_requests: int,
        cmd: dict[str, Any],
    ) -> None:
        spans_per_request = sum(t.spans for t in templates) / len(templates)
        interval = spans_per_request / float(cmd["rate"])
        max_inflight = int(cmd.get("max_inflight", 512))
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        for k in itertools.count():
            scheduled = start + k * interval
            if scheduled >= deadline or k >= max_requests:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if tally.inflight >= max_inflight:
                tally.skipped += 1  # the service holds this many already; sending more only queues here
                continue
            task = asyncio.create_task(self.one(tally, templates[order()], next_base(), scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=TIMEOUT_S + 5)

    async def _report(self, tally: Tally) -> None:
        while True:
            await asyncio.sleep(0.5)
            emit(tally.progress())


async def main() -> None:
    loop = asyncio.get_running_loop()
    target = orjson.loads(await loop.run_in_executor(None, sys.stdin.readline))
    generator = Generator(target)
    emit(generator.ready())
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                break
            cmd = orjson.loads(line)
            if cmd["cmd"] == "exit":
                break
            emit(await generator.run(cmd))
    finally:
        await generator.client.close()


if __name__ == "__main__":
    asyncio.run(main())
