"""Where the CPU stages run: in a thread beside the event loop, or fanned out to worker processes
so that every core works (one Python process uses about one core). Embedded mode and the
processor role use them alike, on entries of their durable log (`inferline.service.processing`).

Entries are split by trace id into partitions upstream (the receiver), and a partition always goes
to the same worker, so all records of a trace meet in one process, where the normaliser joins
content from log records to their span.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Generic

import structlog
from google.protobuf.message import Message

from inferline.core import metrics
from inferline.core.config import ProcessorSettings
from inferline.core.errors import Overloaded, Unavailable
from inferline.core.memory import collector_deferred, release_free_heap, settle_after_start
from inferline.core.records import SourceEntry
from inferline.otlp.json_codec import decoded_as_protobuf, read_back_json
from inferline.otlp.prepared import Prepared, prepare_received
from inferline.otlp.protobuf import parse
from inferline.otlp.validate import TimeWindow
from inferline.processors.chain import ProcessorChain
from inferline.service.parent_watch import die_with_parent, name_process
from inferline.service.processing import (
    Encoder,
    Held,
    Output,
    Processed,
    expire_held,
    forget_partitions,
    process_entries,
)

log = structlog.get_logger()

# Process names (`ps -o comm`, psutil's `name()`) of the two kinds of child processes.
WORKER_NAME = "inferline-work"
DECODER_NAME = "inferline-json"

# Counters the CPU stages move; a worker process sends back how far, the service adds it.
_WORKER_COUNTERS = (metrics.VALUES_OUT_OF_RANGE, metrics.ROWS_NOT_STORED)


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


class InThread(Generic[Output]):
    """One thread beside the event loop (the loop stays free to take requests meanwhile)."""

    count = 1

    def __init__(self, chain: ProcessorChain, encoder: Encoder[Output]) -> None:
        self._chain = chain
        self._encoder = encoder
        # One thread: the normaliser's join caches are not shared between threads.
        self._executor: Executor = ThreadPoolExecutor(1, thread_name_prefix="process")

    async def start(self) -> None:
        return None

    async def process(self, worker: int, entries: list[SourceEntry]) -> Processed[Output]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, process_entries, self._chain, entries, self._encoder
        )

    async def expire(self, worker: int) -> Held:
        return await asyncio.get_running_loop().run_in_executor(self._executor, expire_held, self._chain)

    async def forget(self, worker: int, partitions: list[tuple[str, int]]) -> Held:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, forget_partitions, self._chain, partitions)

    async def assume_calls_remembered_since(self, since: float) -> None:
        """Before the first entry: the normaliser's memory is complete from `since` (read from the
        store). Not kept across `restart`: a fresh chain vouches from its own start again."""
        normaliser = self._chain.normaliser
        await asyncio.get_running_loop().run_in_executor(
            self._executor, normaliser.assume_calls_remembered_since, since
        )

    async def restart(self) -> None:
        """Forget the join's memory (the log is replayed from the committed positions)."""
        self._chain = await asyncio.get_running_loop().run_in_executor(self._executor, self._chain.fresh)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class WorkerDied(Exception):
    """A worker process died (and was replaced): what it held in memory is gone."""


class WorkerProcesses(Generic[Output]):
    """`count` processes, one executor each, so a partition always reaches the same one."""

    def __init__(
        self,
        settings: ProcessorSettings,
        count: int,
        encoder: Encoder[Output],
        log_level: str = "info",
        max_wait_s: float = 2.0,
        json_decoders: int = 0,
    ) -> None:
        self._init_args = (settings.model_dump_json(), encoder, log_level, os.getpid())
        # spawn, not fork: the service already runs ClickHouse's threads when workers start.
        self._context = multiprocessing.get_context("spawn")
        self._executors = [self._new() for _ in range(count)]
        # OTLP/JSON is decoded in processes of its own: a sender waits on that answer, and behind a
        # worker's batch of processing (~100-300 ms) it waited longest of all senders (bench, half
        # load: JSON p99 344 ms against 19-42 for protobuf; 79 ms with a decoder of its own).
        self._decoder_args = (log_level, os.getpid())
        self._decoders = [self._new_decoder() for _ in range(json_decoders)]
        self._next_decoder = 0
        self._replaced = False
        # At most two requests per decoder are decoded or waiting, each at most `max_wait_s`; the
        # rest get a retryable refusal.
        self._gate = QueueGate(2 * max(1, json_decoders), max_wait_s)

    @property
    def count(self) -> int:
        return len(self._executors)

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=self._context, initializer=_init, initargs=self._init_args)

    def _new_decoder(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            1, mp_context=self._context, initializer=_init_decoder, initargs=self._decoder_args
        )

    async def start(self) -> None:
        """Waits until every worker has imported and built its chain (a second or two), and every
        JSON decoder has started."""
        await asyncio.gather(
            self._workers_ready(), *(asyncio.wrap_future(d.submit(_decoder_ready)) for d in self._decoders)
        )

    async def _workers_ready(self) -> None:
        await asyncio.gather(*(asyncio.wrap_future(e.submit(_ready)) for e in self._executors))

    async def assume_calls_remembered_since(self, since: float) -> None:
        """Before the first entry: every worker's normaliser is complete from `since` (read from
        the store). Workers started later (`restart`, a replacement) vouch from their own start:
        the store may by then hold rows of calls their predecessors made."""
        await asyncio.gather(
            *(asyncio.wrap_future(e.submit(_assume_in_worker, since)) for e in self._executors)
        )

    async def process(self, worker: int, entries: list[SourceEntry]) -> Processed[Output]:
        processed, counted = await self._submit(worker, _process_in_worker, entries)
        for counter_index, labels, amount in counted:
            _WORKER_COUNTERS[counter_index].labels(*labels).inc(amount)
        return processed

    async def expire(self, worker: int) -> Held:
        return await self._submit(worker, _expire_in_worker)

    async def forget(self, worker: int, partitions: list[tuple[str, int]]) -> Held:
        return await self._submit(worker, _forget_in_worker, partitions)

    async def _submit(self, k: int, fn: Any, *args: Any) -> Any:
        if self._replaced:
            # A worker was replaced (its death seen by another call, whose caller may not be the
            # one that replays): its memory of the join is gone, which the pipeline must hear
            # about before it hands out more work.
            self._replaced = False
            raise WorkerDied("a worker was replaced")
        executor = self._executors[k]
        try:
            return await asyncio.wrap_future(executor.submit(fn, *args))
        except BrokenProcessPool:
            self._replace(k, executor)
            raise WorkerDied(f"worker {k} died") from None

    async def decode_json(self, body: bytes, request_type: type[Message]) -> tuple[bytes, Message]:
        """OTLP/JSON decoded in a decoder process: the receiving process only parses the protobuf
        that comes back, a small fraction of the work (the bytes and their message, as
        `read_back_json` gives them)."""
        encoded = await self._on_next(_decode_json_in_decoder, body, request_type)
        return encoded, parse(encoded, request_type)

    async def prepare_json(
        self, body: bytes, request_type: type[Message], partitions: int, window: TimeWindow | None
    ) -> Prepared:
        """OTLP/JSON decoded, checked, split and serialised in a decoder process
        (`inferline.otlp.prepared`): the receiving process appends what comes back unparsed."""
        prepared: Prepared = await self._on_next(
            _prepare_json_in_decoder, body, request_type, partitions, window
        )
        return prepared

    async def _on_next(self, fn: Any, *args: Any) -> Any:
        """`fn(*args)` on the next JSON decoder in turn, for a request waiting on its answer."""
        if not self._decoders:
            raise RuntimeError("these workers were made without JSON decoders")
        async with self._gate.slot():
            self._next_decoder = k = (self._next_decoder + 1) % len(self._decoders)
            decoder = self._decoders[k]
            try:
                return await asyncio.wrap_future(decoder.submit(fn, *args))
            except BrokenProcessPool:
                # A decoder holds nothing of the pipeline's: replaced, and the sender retries.
                if self._decoders[k] is decoder:
                    log.error("a JSON decoder process died; starting a new one", decoder=k)
                    self._decoders[k] = self._new_decoder()
                raise Unavailable("a decoder process restarted, retry") from None

    async def restart(self) -> None:
        """Every worker afresh: after one died, the others' memory of the join must go too, since
        the log is replayed from the committed positions."""
        old, self._executors = self._executors, [self._new() for _ in self._executors]
        for e in old:
            _kill(e)
        self._replaced = False
        await self._workers_ready()  # the decoders hold nothing of the join: they stay

    def _replace(self, k: int, executor: ProcessPoolExecutor) -> None:
        if self._executors[k] is executor:
            log.error("a worker process died; starting a new one", worker=k)
            self._executors[k] = self._new()
            self._replaced = True

    def reclaim(self, timeout_s: float = 10.0) -> None:
        """Blocking, from any thread: each worker and decoder hands its free heap back to the OS
        (once its current batch is done). A worker holds what its largest batches needed long
        after they are gone (~85 MB idle, ~250 MB after a minute of full load, measured)."""
        futures = [e.submit(release_free_heap) for e in [*self._executors, *self._decoders]]
        for f in futures:
            with contextlib.suppress(Exception):  # a dead worker is replaced by its next caller
                f.result(timeout_s)

    def close(self) -> None:
        for e in [*self._executors, *self._decoders]:
            e.shutdown(wait=True)


def _kill(executor: ProcessPoolExecutor) -> None:
    for process in list(getattr(executor, "_processes", {}).values()):
        with contextlib.suppress(Exception):
            process.kill()
    executor.shutdown(wait=False, cancel_futures=True)


# --- inside a worker process -------------------------------------------------------------------

_chain: ProcessorChain | None = None
_encoder: Encoder[Any] | None = None


def _init(settings_json: str, encoder: Encoder[Any], log_level: str, parent_pid: int) -> None:
    global _chain, _encoder
    # Ctrl-C reaches the whole process group; the service decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)
    name_process(WORKER_NAME)
    from inferline.core.logging import configure_logging

    configure_logging(log_level)
    _chain = ProcessorChain(ProcessorSettings.model_validate_json(settings_json))
    _encoder = encoder
    # What building the chain freed goes back to the OS (~190 MB per worker), and its lexicons,
    # gazetteers and price tables leave the collector's reach (py-spy: ~19% of a worker's samples
    # were gc_collect_main, ~40 ms a full pass, before this). core/memory.py
    settle_after_start()


def _init_decoder(log_level: str, parent_pid: int) -> None:
    """A JSON decoder process: no processor chain, only the OTLP codecs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)
    name_process(DECODER_NAME)
    from inferline.core.logging import configure_logging

    configure_logging(log_level)
    settle_after_start()  # a full collection walked ~60k objects: +25-40 ms on a quarter of requests


def _decoder_ready() -> bool:
    return True


def _decode_json_in_decoder(body: bytes, request_type: type[Message]) -> bytes:
    return decoded_as_protobuf(body, request_type)


def _prepare_json_in_decoder(
    body: bytes, request_type: type[Message], partitions: int, window: TimeWindow | None
) -> Prepared:
    # `read_back_json`'s bytes are what the log's readers will parse (its message: the depth
    # check); split from those bytes as a protobuf request is (`prepare_received`).
    encoded, message = read_back_json(body, request_type)
    return prepare_received(encoded, message, partitions, window)


def _ready() -> bool:
    return _chain is not None


def _process_in_worker(entries: list[SourceEntry]) -> tuple[Processed[Any], list[Any]]:
    assert _chain is not None and _encoder is not None
    before = _counter_values()
    # No automatic collections during the batch; what outlives it (the join window's objects)
    # is then frozen, out of the collector's walks (core/memory.py).
    with collector_deferred():
        processed = process_entries(_chain, entries, _encoder)
    after = _counter_values()
    counted = [(i, labels, v - before.get((i, labels), 0.0)) for (i, labels), v in after.items()]
    return processed, [c for c in counted if c[2]]


def _assume_in_worker(since: float) -> None:
    assert _chain is not None
    _chain.normaliser.assume_calls_remembered_since(since)


def _expire_in_worker() -> Held:
    assert _chain is not None
    return expire_held(_chain)


def _forget_in_worker(partitions: list[tuple[str, int]]) -> Held:
    assert _chain is not None
    return forget_partitions(_chain, partitions)


def _counter_values() -> dict[tuple[int, tuple[str, ...]], float]:
    values = {}
    for i, counter in enumerate(_WORKER_COUNTERS):
        for metric in counter.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    values[(i, tuple(sample.labels.values()))] = sample.value
    return values
