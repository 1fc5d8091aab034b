"""Where the service's CPU goes per GenAI span (or plain span): by process and by thread name.

    python -m bench.service_cpu [--mode embedded|kafka] [--kind genai|plain] [--requests 40]
                                [--spans 500] [--senders 4] [--service-env K=V ...]

Starts a fresh embedded service (or Kafka mode's three roles on a mock cluster), sends it
`--requests` pre-built protobuf requests (`--kind genai`: the stage table's kind of spans, with
their content log records; `--kind plain`: HTTP/database spans) from `--senders` threads, waits
until its processes go idle (everything stored, merges done), and prints the CPU time each
process and each thread name spent, per span sent. The main process's threads named by ClickHouse
(`MergeMutate`, `ThreadPool`, ...) are the engine's; `Unknown` is chDB's name for any thread that
ran a query, Python's own included (the insert thread: in Kafka mode's writer, most of its time is
clickhouse-connect's Native encoding, in Python); `python` is the interpreter's other threads; the
worker processes run the processor chain. This is what the
stage table cannot show: the engine's work on its own threads, merges, and the hand-offs.
In Kafka mode each role's processes are labelled by role, and the mock broker is shown apart
(not part of the service's total).
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import grpc
import psutil

from bench.phases import stored_row_lookups
from bench.services import Target, embedded, kafka, service_env
from bench.stages import _requests
from tests.prom_helpers import by_label, scrape

_TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
_TICKS = os.sysconf("SC_CLK_TCK")

Seconds = dict[str, float]  # thread name -> CPU seconds
Snapshot = dict[str, Seconds]  # process label -> its threads' CPU seconds


def threads_cpu(pid: int) -> Seconds:
    """CPU seconds (user + system) of a process's live threads, summed by thread name."""
    out: Seconds = collections.defaultdict(float)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip().rstrip("0123456789")
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[name] += (int(fields[11]) + int(fields[12])) / _TICKS
    return out


def snapshot(roots: dict[str, int]) -> Snapshot:
    """Each root process (labelled: "main", or a Kafka role) and its children."""
    labels: dict[int, str] = {}
    for root_label, root in roots.items():
        labels[root] = root_label
        prefix = "" if root_label == "main" else f"{root_label} "
        for i, child in enumerate(psutil.Process(root).children(recursive=True)):
            cmdline = " ".join(child.cmdline())
            kind = "resource tracker" if "resource_tracker" in cmdline else f"worker {i}"
            labels[child.pid] = prefix + kind
    return {label: threads_cpu(pid) for pid, label in labels.items()}


def _roots(target: Target, mode: str) -> dict[str, int]:
    if mode == "embedded":
        return {"main": target.roots[0]}
    writer, processor, receiver = target.roots  # as bench.services.kafka starts them
    return {"receiver": receiver, "processor": processor, "writer": writer, **target.others}


class StoringProcess(NamedTuple):
    """What the storing process's /metrics say after the load."""

    # Per table: ClickHouse inserts, rows and seconds spent in them.
    inserts: dict[str, tuple[float, float, float]]
    # The inference rows the exporter looked up before inserting (`NewInferences`), by outcome.
    lookups: dict[str, float]
    # Its cyclic collector: collections and seconds in them, by generation (since its start).
    collections: dict[str, tuple[float, float]]


def storing_process(api: str) -> StoringProcess:
    m = scrape(api)
    n, rows = (
        by_label(m, "inferline_batch_rows_count", "table"),
        by_label(m, "inferline_batch_rows_sum", "table"),
    )
    seconds = by_label(m, "inferline_flush_duration_seconds_sum", "table")
    per_table = {t: (n[t], rows.get(t, 0.0), seconds.get(t, 0.0)) for t in sorted(n)}
    gc_n = by_label(m, "inferline_gc_pause_seconds_count", "generation")
    gc_s = by_label(m, "inferline_gc_pause_seconds_sum", "generation")
    collections = {g: (gc_n[g], gc_s.get(g, 0.0)) for g in sorted(gc_n)}
    return StoringProcess(per_table, stored_row_lookups(m), collections)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("embedded", "kafka"), default="embedded")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--kind", choices=("genai", "plain"), default="genai", help="the spans sent")
    parser.add_argument("--spans", type=int, default=500, help="spans per request")
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--service-env", action="append", default=[], metavar="INFERLINE_X=V")
    args = parser.parse_args(argv)
    requests = _requests(args.kind, "grpc", args.requests, args.spans)
    total = sum(n for _, _, n in requests)
    start = embedded if args.mode == "embedded" else kafka
    with tempfile.TemporaryDirectory() as tmp, start(Path(tmp), service_env(args.service_env)) as target:
        time.sleep(3)  # the workers' start
        channel = grpc.insecure_channel(target.grpc)
        export_traces, export_logs = channel.unary_unary(_TRACES), channel.unary_unary(_LOGS)
        metadata = (("authorization", f"Bearer {target.key}"),)
        pending = iter(requests)
        lock = threading.Lock()

        def send() -> None:
            while True:
                with lock:
                    request = next(pending, None)
                if request is None:
                    return
                traces, logs, _ = request
                export_traces(traces, metadata=metadata, timeout=120)
                if logs:
                    export_logs(logs, metadata=metadata, timeout=120)

        roots = _roots(target, args.mode)
        before, started = snapshot(roots), time.monotonic()
        senders = [threading.Thread(target=send) for _ in range(args.senders)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        acked_s = time.monotonic() - started
        last = None
        while True:  # idle: less than 0.1 s of CPU in 2 s
            time.sleep(2)
            cpu = sum(sum(c.values()) for c in snapshot(roots).values())
            if last is not None and cpu - last < 0.1:
                break
            last = cpu
        after = snapshot(roots)
        storing = storing_process(target.api)
    idle_s = time.monotonic() - started
    kind = "GenAI spans" if args.kind == "genai" else "plain spans"
    print(f"{total:,} {kind} acknowledged in {acked_s:.1f} s, the service idle after {idle_s:.1f} s")
    grand = 0.0
    for label, threads in after.items():
        earlier = before.get(label, {})
        spent = {name: s - earlier.get(name, 0.0) for name, s in threads.items()}
        seconds = sum(spent.values())
        if label not in target.others:
            grand += seconds
        if seconds < 0.01:
            continue
        busiest = sorted(spent.items(), key=lambda item: -item[1])[:6]
        top = ", ".join(f"{name} {s:.2f} s" for name, s in busiest if s >= 0.05)
        print(f"  {label:<10} {seconds:6.2f} s  {seconds / total * 1e6:6.1f} µs/span   {top}")
    print(f"  {'all':<10} {grand:6.2f} s  {grand / total * 1e6:6.1f} µs/span")
    print("inserts (the storing process's /metrics): table, inserts, rows, seconds in them")
    for table, (n, rows, seconds) in storing.inserts.items():
        print(f"  {table:<22} {n:5.0f} {rows:9,.0f} {seconds:7.2f} s")
    print(
        "inference rows before their insert: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(storing.lookups.items()))
    )
    print(
        "the storing process's collector since its start, by generation: "
        + ", ".join(f"{g}: {n:,.0f} in {s:.2f} s" for g, (n, s) in storing.collections.items())
    )


if __name__ == "__main__":
    main()
