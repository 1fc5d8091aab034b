"""Per-stage micro-benchmarks: what each step of the hot path costs per span, on one core.

    python -m bench.stages [--quick] [--json PATH]

Inputs are the load generator's own requests (bench.payloads: ~3 KB GenAI spans of every
convention with content, some PII; plain HTTP/database spans). Each stage is timed alone as the
fastest of several runs (other processes only ever add time), and reported as µs per span and
spans/s per core. A stage that the code under test no longer offers is reported as n/a, not
as a crash. Run in its own process: it opens a chDB store of its own.
"""

from __future__ import annotations

import argparse
import copy
import resource
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.bench_pii import calibrate, timeit
from bench.payloads import as_logged, build_template
from inferline.core.config import BatchSettings
from inferline.core.logging import configure_logging
from inferline.core.records import Batch, LogRecord, Span
from inferline.otlp.flatten import flatten_logs, flatten_span_bytes, flatten_spans
from inferline.otlp.json_codec import decode_json, decode_protobuf
from inferline.processors.chain import ProcessorChain, build_processor
from inferline.processors.normalise import GenAINormaliser
from inferline.processors.otel_rows import log_row, trace_row

PROJECT = "bench"


def _requests(kind: str, transport: str, count: int, spans: int) -> list[tuple[bytes, bytes | None, int]]:
    import random

    rng, prefix = random.Random(11), secrets.token_bytes(8)
    out = []
    for i in range(count):
        t = build_template(kind, transport, spans, rng, prefix)
        traces, logs = t.stamp(i << 16)
        out.append((traces, logs, t.spans))
    return out


class StageInputs(NamedTuple):
    """What the CPU stages are timed on: GenAI requests decoded, and their records flattened."""

    proto: list[tuple[bytes, bytes | None, int]]  # (traces, logs, spans) as sent
    logged: list[bytes]  # the traces as a receiver logs them: without the spans it refused
    requests: list[ExportTraceServiceRequest]
    log_requests: list[ExportLogsServiceRequest]
    spans: list[Span]
    logs: list[LogRecord]
    span_count: int


def stage_inputs() -> StageInputs:
    """4 requests of 200 GenAI spans of every convention with their content log records (the
    load generator's own), as this table and the single-stage scripts (`stage_cpu`,
    `pii_stage`, `cpu_flatten_normalise`) time them."""
    proto = _requests("genai", "grpc", 4, 200)
    requests = [decode_protobuf(b, ExportTraceServiceRequest) for b, _, _ in proto]
    log_requests = [decode_protobuf(lb, ExportLogsServiceRequest) for _, lb, _ in proto if lb]
    return StageInputs(
        proto,
        [as_logged(b)[0] for b, _, _ in proto],
        requests,
        log_requests,
        [s for r in requests for s in flatten_spans(r, PROJECT).records],
        [rec for r in log_requests for rec in flatten_logs(r, PROJECT).records],
        sum(s for _, _, s in proto),
    )


def stage_batch(inputs: StageInputs) -> Batch:
    """The inputs' rows as the processors after normalisation get them (a fresh normaliser: spans,
    then their content logs as a separate request)."""
    normaliser = GenAINormaliser()
    rows = normaliser.normalise(inputs.spans, []) + normaliser.normalise([], inputs.logs)
    return Batch(
        inferences=rows,
        spans=[trace_row(s) for s in inputs.spans],
        logs=[log_row(r) for r in inputs.logs],
    )


class Stages:
    def __init__(self, min_time: float) -> None:
        self.min_time = min_time
        self.results: dict[str, dict[str, Any]] = {}

    def time(
        self, name: str, label: str, fn: Callable[[], object], spans: int, min_time: float | None = None
    ) -> None:
        try:
            seconds = timeit(fn, self.min_time if min_time is None else min_time)
        except Exception as e:  # the code under test changed shape: say so, go on
            self.results[name] = {"label": label, "error": f"{type(e).__name__}: {e}"[:200]}
            print(f"  {label:<52} n/a ({type(e).__name__}: {str(e)[:60]})")
            return
        us = seconds / spans * 1e6
        self.results[name] = {
            "label": label,
            "us_per_span": round(us, 2),
            "spans_per_s_per_core": round(1e6 / us),
        }
        print(f"  {label:<52} {us:8.1f} µs/span  {1e6 / us:>10,.0f} spans/s per core")

    def fresh(
        self,
        name: str,
        label: str,
        make: Callable[[], Any],
        run: Callable[[Any], object],
        spans: int,
        runs: int,
    ) -> None:
        """For stages that change their input (masking): each run gets an untouched copy."""
        try:
            inputs = [make() for _ in range(runs + 1)]
            run(inputs.pop())  # warm
            best = float("inf")
            for item in inputs:
                started = time.perf_counter()
                run(item)
                best = min(best, time.perf_counter() - started)
        except Exception as e:
            self.results[name] = {"label": label, "error": f"{type(e).__name__}: {e}"[:200]}
            print(f"  {label:<52} n/a ({type(e).__name__}: {str(e)[:60]})")
            return
        us = best / spans * 1e6
        self.results[name] = {
            "label": label,
            "us_per_span": round(us, 2),
            "spans_per_s_per_core": round(1e6 / us),
        }
        print(f"  {label:<52} {us:8.1f} µs/span  {1e6 / us:>10,.0f} spans/s per core")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing runs")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    configure_logging("error")  # the unknown-model warning and migrations are not figures
    min_time = 0.15 if args.quick else 0.6
    runs = 3 if args.quick else 7
    st = Stages(min_time)
    print(f"calibration loop {calibrate():.1f} µs (~10 µs on an idle modern x86 core)")

    inputs = stage_inputs()
    proto, n = inputs.proto, inputs.span_count
    js = _requests("genai", "http-json", 2, 200)
    nj = sum(s for _, _, s in js)
    size = sum(len(b) for b, _, _ in proto) / n
    print(f"GenAI requests: {len(proto)} × ~{n // len(proto)} spans, {size:,.0f} bytes/span protobuf")

    st.time(
        "protobuf_decode",
        "protobuf decode",
        lambda: [decode_protobuf(b, ExportTraceServiceRequest) for b, _, _ in proto],
        n,
    )
    st.time(
        "json_decode",
        "OTLP/JSON decode (orjson, walk to protobuf bytes, parse)",
        lambda: [decode_json(b, ExportTraceServiceRequest) for b, _, _ in js],
        nj,
    )
    one = js[0][0]
    st.time(
        "json_decode_reference",
        "OTLP/JSON decode, protobuf json_format (reference)",
        lambda: json_format.Parse(one, ExportTraceServiceRequest(), ignore_unknown_fields=True),
        js[0][2],
        min_time=0.05,
    )
    requests, log_requests, spans, logs = inputs.requests, inputs.log_requests, inputs.spans, inputs.logs
    # What a worker does with a log entry: the wire reader, from the bytes (no protobuf decode).
    logged = inputs.logged
    st.time(
        "flatten",
        "read logged requests into Span objects",
        lambda: [flatten_span_bytes(b, PROJECT) for b in logged],
        n,
    )
    print(f"  ({len(logs)} correlated log records with content come with these spans)")

    def normalise() -> None:
        normaliser = GenAINormaliser()
        normaliser.normalise(spans, [])
        normaliser.normalise([], logs)  # content that arrives after its span, as in a separate request

    st.time("normalise", "normalise GenAI conventions (+ late log content)", normalise, n)
    _normalise_by_example(st)
    st.time(
        "otel_rows",
        "otel_traces / otel_logs rows",
        lambda: ([trace_row(s) for s in spans], [log_row(r) for r in logs]),
        n,
    )

    base = stage_batch(inputs)
    for name, label in (
        ("price", "price (pricing)"),
        ("pii", "PII detection + masking"),
        ("sentiment", "sentiment"),
    ):
        try:
            stage = build_processor(name if name != "price" else "pricing", {})
        except Exception as e:
            st.results[name] = {"label": label, "error": str(e)[:200]}
            continue
        st.fresh(name, label, lambda: copy.deepcopy(base), stage.process, n, runs)

    # One long-lived chain, as in the service (warm caches); fresh records per run, because
    # masking may rewrite attribute values the records share with their rows.
    chain = ProcessorChain()

    def records() -> tuple[list[Any], list[Any]]:
        return (
            [s for r in requests for s in flatten_spans(r, PROJECT).records],
            [rec for r in log_requests for rec in flatten_logs(r, PROJECT).records],
        )

    st.fresh(
        "chain",
        "whole processor chain (all of the above)",
        records,
        lambda sl: (chain.run(sl[0], []), chain.run([], sl[1])),
        n,
        runs,
    )

    # chDB insert of the enriched rows (as the chain leaves them: every column set): encoding to
    # Native, then the engine's insert.
    enriched = copy.deepcopy(base)
    for name in ("pricing", "pii", "sentiment"):
        build_processor(name, {}).process(enriched)
    _insert_stages(st, enriched, n, runs)
    _receive_stages(st, proto, n)
    _json_stages(st, js, nj)

    plain = _requests("plain", "grpc", 2, 500)
    np_ = sum(s for _, _, s in plain)
    plain_logged = [as_logged(b)[0] for b, _, _ in plain]
    st.time(
        "plain_path",
        "plain spans: read + rows + chain",
        lambda: [chain.run(flatten_span_bytes(b, PROJECT).records, []) for b in plain_logged],
        np_,
    )
    total = sum(
        st.results[k].get("us_per_span", 0)
        for k in (
            "flatten",
            "normalise",
            "otel_rows",
            "price",
            "pii",
            "sentiment",
            "native_encode",
            "chdb_insert",
        )
    )
    label = "sum of the GenAI protobuf path"
    print(f"  {label:<52} {total:8.1f} µs/span  {1e6 / total:>10,.0f} spans/s per core")
    # A JSON request costs what a protobuf one does, plus its decoding on a worker (the protobuf
    # path's `flatten` is the worker's read of the log entry, which JSON has too; the receiver's
    # protobuf decode is in `receive`).
    json_total = total + st.results.get("json_worker", {}).get("us_per_span", 0)
    label = "sum of the GenAI OTLP/JSON path"
    print(f"  {label:<52} {json_total:8.1f} µs/span  {1e6 / json_total:>10,.0f} spans/s per core")
    figures = {
        "calibration_us": round(calibrate(), 2),
        "stages": st.results,
        "genai_path_us_per_span": round(total, 2),
        "genai_json_path_us_per_span": round(json_total, 2),
    }
    if args.json:
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    return figures


def _normalise_by_example(st: Stages) -> None:
    """The normaliser on each convention's reference example (tests/genai_examples.py), small
    spans without much content: where one convention costs more than the others."""
    from tests.genai_examples import EXAMPLE_KEYS, example, make_logs, make_span

    figures = {}
    for key in EXAMPLE_KEYS:
        ex = example(key)
        spans, logs = [make_span(ex, seed=f"{key}/{i}") for i in range(50)], make_logs(ex)
        normaliser = GenAINormaliser()
        figures[key] = round(
            timeit(partial(normaliser.normalise, spans, logs), st.min_time / 3) / 50 * 1e6, 1
        )
    st.results["normalise_by_example_us"] = figures
    print(
        f"  {'normalise, per doc example (µs/span)':<52} "
        + "  ".join(f"{k}: {v}" for k, v in figures.items())
    )


def _receive_stages(st: Stages, proto: list[tuple[bytes, bytes | None, int]], n: int) -> None:
    """The embedded service's main process per request, before and after the workers: parse,
    check and split by trace id, as the receivers do (the upb parse, then the compiled splitter
    reading the received bytes: `prepare_received`); append to the local log (fsynced), read back
    and pickled for a worker. With the chDB insert, this is the main-process budget of issue #12
    (≤ 30 µs/span); HTTP/gRPC handling and ClickHouse's merges come on top."""
    import asyncio
    import pickle

    from inferline.bus.local_log import Append, LocalLog
    from inferline.core.records import SPANS
    from inferline.otlp.prepared import prepare_received
    from inferline.otlp.validate import TimeWindow

    window, workers = TimeWindow(spans_days=180, logs_days=180), 2

    def receive() -> list[tuple[int, bytes]]:
        parts = []
        for body, _, _ in proto:
            request = decode_protobuf(body, ExportTraceServiceRequest)
            parts += list(prepare_received(body, request, workers, window).parts.items())
        return parts

    st.time("receive", "receive: parse, check, split by trace (main)", receive, n)
    parts = receive()

    async def log_round_trip(log: LocalLog) -> None:
        # Every request at once, as concurrent senders: one group commit (one fsync) for them.
        await asyncio.gather(*(log.append([Append(k, SPANS, "default", b)]) for k, b in parts))
        positions = log.committed()
        for k in range(workers):
            entries = log.read(k, positions.get(k, 0), 1 << 20)
            pickle.dumps(entries)  # what a worker is sent
            if entries:
                positions[k] = entries[-1].offset + 1
        log.commit(positions)  # the stored entries are deleted

    async def timed() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            log = LocalLog(Path(tmp) / "log", max_bytes=1 << 34)
            log.open()
            log.start()
            await log_round_trip(log)  # warm
            best = float("inf")
            for _ in range(5):
                started = time.perf_counter()
                await log_round_trip(log)
                best = min(best, time.perf_counter() - started)
            await log.close()
            return best

    try:
        us = asyncio.run(timed()) / n * 1e6
    except Exception as e:
        st.results["local_log"] = {"label": "local log", "error": f"{type(e).__name__}: {e}"[:200]}
        return
    label = "local log: append + fsync, read back, pickle (main)"
    st.results["local_log"] = {
        "label": label,
        "us_per_span": round(us, 2),
        "spans_per_s_per_core": round(1e6 / us),
    }
    print(f"  {label:<52} {us:8.1f} µs/span  {1e6 / us:>10,.0f} spans/s per core")


def _json_stages(st: Stages, js: list[tuple[bytes, bytes | None, int]], n: int) -> None:
    """What an OTLP/JSON request costs the embedded service beyond a protobuf one, on each side
    of the hand-off to a worker process: the worker's share (decoding, and since 2026-12-04 the
    checks, split and serialisation per partition too) and the main process's (turning the answer
    into log appends; the append itself is the `local_log` row, as for protobuf). Both as the
    service calls them; the code before the change (a protobuf request handed back and parsed,
    checked and split by the main process) is measured when it is what the code offers, so the
    same file compares before and after. As in a worker, the long-lived heap (the chain built
    above) is frozen: else the collector's full passes over it, which a worker does not make
    (`gc.freeze()` in `service/workers.py`), double the figures."""
    import gc
    import pickle

    from inferline.bus.local_log import Append
    from inferline.core.records import SPANS
    from inferline.otlp.protobuf import parse
    from inferline.otlp.shard import shard_spans
    from inferline.otlp.validate import TimeWindow, remove_invalid
    from inferline.service import workers

    window, partitions = TimeWindow(spans_days=180, logs_days=180), 2
    # The JSON decoder process's functions (named for the worker processes in older trees).
    prepare = _either(workers, "_prepare_json_in_decoder", "_prepare_json_in_worker")
    decode = _either(workers, "_decode_json_in_decoder", "_decode_json_in_worker")

    def worker() -> list[Any]:
        if prepare is not None:
            return [prepare(b, ExportTraceServiceRequest, partitions, window) for b, _, _ in js]
        assert decode is not None
        return [decode(b, ExportTraceServiceRequest) for b, _, _ in js]

    def receive(answers: list[bytes]) -> None:
        for answer in answers:  # as it arrives: pickled (the unpickling is the main process's)
            got = pickle.loads(answer)
            if prepare is not None:
                [Append(k, got.kind, PROJECT, part) for k, part in got.parts.items()]
                continue
            request = parse(got, ExportTraceServiceRequest)
            remove_invalid(request, window)
            parts = shard_spans(request, partitions)
            [Append(k, SPANS, PROJECT, part.SerializeToString()) for k, part in parts.items()]

    gc.collect()
    gc.freeze()
    try:
        st.time("json_worker", "OTLP/JSON: decode, check, split, hand back (decoder)", worker, n)
        answers = [pickle.dumps(a) for a in worker()]
        st.time("json_receive", "OTLP/JSON: append the decoder's answer (main)", partial(receive, answers), n)
    finally:
        gc.unfreeze()


def _either(module: Any, *names: str) -> Any:
    """The first of `names` the module has (None if none): the code under test may be older."""
    return next((getattr(module, n) for n in names if hasattr(module, n)), None)


def _insert_stages(st: Stages, base: Batch, n: int, runs: int) -> None:
    """Native encoding (one core), then chDB's insert as the service pays it: CPU time of every
    thread of this process (the engine inserts, feeds the rollup views and merges on threads of
    its own, which a wall clock on the calling thread does not see), background merges included,
    for distinct rows (copies of one batch would compress and merge unrealistically well), at two
    flush sizes: each insert has a fixed cost per table and per rollup view, so the figure per
    span depends on how many spans a flush holds."""
    try:
        from inferline.exporters.clickhouse.inserter import Inserter
        from inferline.exporters.clickhouse.native import encode_block
        from inferline.storage.clickhouse import connect
        from inferline.storage.schema import LLM_INFERENCES, OTEL_LOGS, OTEL_TRACES, migrate
    except ImportError as e:
        st.results["chdb_insert"] = {"label": "chDB insert", "error": str(e)}
        return
    tables = ((OTEL_TRACES, base.spans), (OTEL_LOGS, base.logs), (LLM_INFERENCES, base.inferences))
    st.time(
        "native_encode",
        "encode Native blocks (3 tables)",
        lambda: [encode_block(t, rows) for t, rows in tables],
        n,
    )
    # The service flushes at `max_rows` rows (all tables together) when busy: that many rows of
    # these batches per flush, three flushes; and, for the fixed cost, flushes of one batch.
    rows_per_copy = len(base.spans) + len(base.logs) + len(base.inferences)
    per_flush = max(1, round(BatchSettings().max_rows / rows_per_copy))
    copies = 3 * per_flush
    batches = [_distinct_copy(base, i) for i in range(copies)]
    tables_of = (OTEL_TRACES, OTEL_LOGS, LLM_INFERENCES)
    encoded = [
        [
            (t.name, len(rows), encode_block(t, rows))
            for t, rows in zip(tables_of, (b.spans, b.logs, b.inferences), strict=True)
        ]
        for b in batches
    ]
    for name, size in (("chdb_insert", per_flush), ("chdb_insert_small", 1)):
        with tempfile.TemporaryDirectory() as tmp:
            client = connect(f"chdb://{tmp}/clickhouse")
            migrate(client)
            inserter = Inserter(client)
            started = _process_cpu_s()
            for first in range(0, copies, size):
                blocks = [b for copy in encoded[first : first + size] for b in copy]
                inserter.insert(Batch(encoded=blocks), uuid.uuid4().hex)
            _merges_settled(client)
            seconds = _process_cpu_s() - started
            client.close()
        us = seconds / (n * copies) * 1e6
        label = f"chDB insert, {n * size:,} spans a flush (+ merges)"
        st.results[name] = {
            "label": label,
            "us_per_span": round(us, 2),
            "spans_per_s_per_core": round(1e6 / us),
        }
        print(f"  {label:<52} {us:8.1f} µs/span  {1e6 / us:>10,.0f} spans/s per core")


def _distinct_copy(batch: Batch, i: int) -> Batch:
    """The batch with span and inference ids of its own (ReplacingMergeTree would collapse
    copies with the same ids when it merges, which real traffic never does)."""
    tag = f"{i:04x}"
    return Batch(
        spans=[dict(r, SpanId=tag + r["SpanId"][4:]) for r in batch.spans],
        logs=[dict(r, SpanId=tag + r["SpanId"][4:]) if r["SpanId"] else r for r in batch.logs],
        inferences=[
            dict(r, inference_id=str(uuid.uuid5(uuid.NAMESPACE_OID, f"{tag}{r['inference_id']}")))
            for r in batch.inferences
        ],
    )


def _process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return usage.ru_utime + usage.ru_stime


def _merges_settled(client: Any, timeout_s: float = 60.0) -> None:
    """Waits until the engine runs no merge and this process's CPU time stops moving."""
    deadline = time.monotonic() + timeout_s
    last = _process_cpu_s()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _process_cpu_s()
        if int(client.command("SELECT count() FROM system.merges")) == 0 and now - last < 0.03:
            return
        last = now


if __name__ == "__main__":
    main()
