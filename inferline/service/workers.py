"""Where the embedded service runs its CPU stages: in a thread of its own process, or fanned out
to worker processes so that every core works (one Python process uses about one core).

Both run the same steps: flatten the OTLP request, run the processor chain, and encode the rows
as Native blocks the writer passes straight to ClickHouse. With workers, each request is split
by trace id (`inferline.otlp.shard`) so all records of a trace meet in the same process, where the
normaliser joins content from log records to their span.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import structlog
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.core import metrics
from inferline.core.config import ProcessorSettings
from inferline.core.errors import Overloaded, Unavailable
from inferline.core.records import Batch
from inferline.exporters.clickhouse.native import encode_block
from inferline.otlp.flatten import flatten_logs, flatten_spans
from inferline.otlp.json_codec import decode_json
from inferline.otlp.shard import shard_logs, shard_spans
from inferline.processors.chain import ProcessorChain
from inferline.storage.schema import LLM_INFERENCES, OTEL_LOGS, OTEL_TRACES

log = structlog.get_logger()

Request = ExportTraceServiceRequest | ExportLogsServiceRequest
# (rejected records, why, the rows encoded for the writer)
Processed = tuple[int, str, Batch]

# Counters the CPU stages move; a worker process sends back how far, the service adds it.
_WORKER_COUNTERS = (metrics.VALUES_OUT_OF_RANGE,)


def process(chain: ProcessorChain, request: Request, project_id: str) -> Processed:
    if isinstance(request, ExportTraceServiceRequest):
        flat = flatten_spans(request, project_id)
        batch = chain.run(flat.records, [])
    else:
        flat = flatten_logs(request, project_id)
        batch = chain.run([], flat.records)
    return flat.rejected, flat.error, encode(batch)


def encode(batch: Batch) -> Batch:
    """The rows as Native blocks, plus the few fields of each inference the metrics read."""
    out = Batch(observed=[{k: row.get(k) for k in metrics.OBSERVED_FIELDS} for row in batch.inferences])
    for table, rows in (
        (OTEL_TRACES, batch.spans),
        (OTEL_LOGS, batch.logs),
        (LLM_INFERENCES, batch.inferences),
    ):
        if rows:
            out.encoded.append((table.name, len(rows), encode_block(table, rows)))
    return out


def merge(results: list[Processed]) -> Processed:
    if len(results) == 1:
        return results[0]
    batch = Batch()
    rejected, why = 0, ""
    for n, error, part in results:
        rejected += n
        why = why or error
        batch.extend(part)
    return rejected, why, batch


class QueueGate:
    """At most `slots` requests in processing at once; the rest wait their turn, in order, for
    at most `max_wait_s` and are then refused with a retryable status. Under overload senders
    back off and retry instead of every request queueing longer (and holding its memory)."""

    def __init__(self, slots: int, max_wait_s: float) -> None:
        self._slots = asyncio.Semaphore(slots)
        self._max_wait_s = max_wait_s

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        try:
            await asyncio.wait_for(self._slots.acquire(), self._max_wait_s)
        except TimeoutError:
            raise Overloaded(
                f"no processor free within {self._max_wait_s:g} s", reason="queue_wait"
            ) from None
        try:
            yield
        finally:
            self._slots.release()


class InThread:
    """One thread beside the event loop (the loop stays free to take requests meanwhile)."""

    def __init__(self, chain: ProcessorChain, max_wait_s: float = 2.0) -> None:
        self._chain = chain
        self._gate = QueueGate(2, max_wait_s)
        # One thread: the normaliser's join caches are not shared between threads.
        self._executor: Executor = ThreadPoolExecutor(1, thread_name_prefix="process")

    async def start(self) -> None:
        return None

    async def run(
        self, request: ExportTraceServiceRequest | ExportLogsServiceRequest, project_id: str
    ) -> Processed:
        loop = asyncio.get_running_loop()
        async with self._gate.slot():
            return await loop.run_in_executor(self._executor, process, self._chain, request, project_id)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class WorkerProcesses:
    """`count` processes, one executor each, so a trace's shard always reaches the same one."""

    def __init__(
        self, settings: ProcessorSettings, count: int, log_level: str = "info", max_wait_s: float = 2.0
    ) -> None:
        self._init_args = (settings.model_dump_json(), log_level)
        # spawn, not fork: the service already runs ClickHouse's threads when workers start.
        self._context = multiprocessing.get_context("spawn")
        self._executors = [self._new() for _ in range(count)]
        self._next_decoder = 0
        # Two requests per worker: one running, one ready to start the moment it finishes.
        self._gate = QueueGate(2 * count, max_wait_s)

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=self._context, initializer=_init, initargs=self._init_args)

    async def start(self) -> None:
        """Waits until every worker has imported and built its chain (a second or two)."""
        await asyncio.gather(*(asyncio.wrap_future(e.submit(_ready)) for e in self._executors))

    async def run(
        self, request: ExportTraceServiceRequest | ExportLogsServiceRequest, project_id: str
    ) -> Processed:
        count = len(self._executors)
        if isinstance(request, ExportTraceServiceRequest):
            kind, parts = "spans", shard_spans(request, count)
        else:
            kind, parts = "logs", shard_logs(request, count)
        async with self._gate.slot():
            results = await asyncio.gather(
                *(self._submit(k, kind, part.SerializeToString(), project_id) for k, part in parts.items())
            )
        return merge(list(results))

    async def decode_json(self, body: bytes, request_type: type[Message]) -> Message:
        """OTLP/JSON decoded in a worker (the next one in turn): the receiving process only
        parses the protobuf that comes back, a small fraction of the work."""
        self._next_decoder = k = (self._next_decoder + 1) % len(self._executors)
        executor = self._executors[k]
        try:
            async with self._gate.slot():
                encoded = await asyncio.wrap_future(
                    executor.submit(_decode_json_in_worker, body, request_type)
                )
        except BrokenProcessPool:
            self._replace(k, executor)
            raise Unavailable("a worker process restarted, retry") from None
        return request_type.FromString(encoded)

    def _replace(self, k: int, executor: ProcessPoolExecutor) -> None:
        if self._executors[k] is executor:
            log.error("a worker process died; starting a new one", worker=k)
            self._executors[k] = self._new()

    async def _submit(self, k: int, kind: str, body: bytes, project_id: str) -> Processed:
        executor = self._executors[k]
        try:
            rejected, why, batch, counted = await asyncio.wrap_future(
                executor.submit(_run_in_worker, kind, body, project_id)
            )
        except BrokenProcessPool:
            self._replace(k, executor)
            raise Unavailable("a worker process restarted, retry") from None
        for counter_index, labels, amount in counted:
            _WORKER_COUNTERS[counter_index].labels(*labels).inc(amount)
        return rejected, why, batch

    def close(self) -> None:
        for e in self._executors:
            e.shutdown(wait=True)


# --- inside a worker process -------------------------------------------------------------------

_chain: ProcessorChain | None = None


def _init(settings_json: str, log_level: str) -> None:
    global _chain
    # Ctrl-C reaches the whole process group; the service decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from inferline.core.logging import configure_logging

    configure_logging(log_level)
    _chain = ProcessorChain(ProcessorSettings.model_validate_json(settings_json))


def _decode_json_in_worker(body: bytes, request_type: type[Message]) -> bytes:
    return decode_json(body, request_type).SerializeToString()


def _ready() -> bool:
    return _chain is not None


def _run_in_worker(kind: str, body: bytes, project_id: str) -> tuple[int, str, Batch, list[Any]]:
    assert _chain is not None
    cls = ExportTraceServiceRequest if kind == "spans" else ExportLogsServiceRequest
    before = _counter_values()
    rejected, why, batch = process(_chain, cls.FromString(body), project_id)
    after = _counter_values()
    counted = [(i, labels, v - before.get((i, labels), 0.0)) for (i, labels), v in after.items()]
    return rejected, why, batch, [c for c in counted if c[2]]


def _counter_values() -> dict[tuple[int, tuple[str, ...]], float]:
    values = {}
    for i, counter in enumerate(_WORKER_COUNTERS):
        for metric in counter.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    values[(i, tuple(sample.labels.values()))] = sample.value
    return values
