"""`make bench`: per-stage micro-benchmarks, the embedded service under load, the Kafka roles
under load, and the query benchmark; a summary against the issue's targets; a results file.

    python -m bench [--quick] [--only stages,embedded,kafka,query] [--seconds 20] ...
    python -m bench --peer phoenix [--peer-spans 10000]   # side by side with Arize Phoenix

Every duration and size has a flag, and an environment variable for `make bench`
(BENCH_SECONDS, BENCH_OPEN_SECONDS, BENCH_HALF_SECONDS, BENCH_KAFKA_SECONDS, BENCH_QUERY_ROWS, BENCH_ONLY,
BENCH_CONCURRENCY, BENCH_QUICK=1, BENCH_PEER, BENCH_PEER_SPANS); INFERLINE_* variables pass
through to the service.
Figures are printed and saved, never asserted. docs/performance.md explains the method.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import peer, report, services
from bench.phases import LoadGenerator, Phase, Sql, phase_line, run_phase
from bench.procstats import ProcessTree, machine
from bench.progress import Progress
from bench.query import ENDPOINT_QUERIES, PROJECT, QUERIES
from tests.conftest import ROOT

SECTIONS = ("stages", "embedded", "kafka", "query")


def _env(name: str, default: Any) -> Any:
    value = os.environ.get(name)
    return type(default)(value) if value not in (None, "") else default


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "--only",
        default=_env("BENCH_ONLY", ""),
        help=f"comma-separated sections of {','.join(SECTIONS)} (default: all of them, or none with --peer)",
    )
    p.add_argument(
        "--quick", action="store_true", default=bool(_env("BENCH_QUICK", 0)), help="5 s phases, 1M rows"
    )
    p.add_argument("--seconds", type=float, default=_env("BENCH_SECONDS", 15.0), help="closed-loop phases")
    p.add_argument(
        "--open-seconds", type=float, default=_env("BENCH_OPEN_SECONDS", 12.0), help="open-loop phases"
    )
    p.add_argument(
        "--half-seconds",
        type=float,
        default=_env("BENCH_HALF_SECONDS", 40.0),
        help="the half-load phase (c), whose ack p99 is a target: long enough for ~400 requests",
    )
    p.add_argument("--warmup-seconds", type=float, default=3.0)
    p.add_argument(
        "--idle-wait",
        type=float,
        default=60.0,
        help="before each measured phase, wait up to this long for the service to go idle (0: don't)",
    )
    p.add_argument(
        "--phases",
        default="",
        help="comma-separated load phases to run (default: all; embedded: genai_max, plain_max,"
        " genai_half, genai_overload; kafka: genai_max, genai_half); the half and 2x phases need genai_max",
    )
    p.add_argument("--kafka-seconds", type=float, default=_env("BENCH_KAFKA_SECONDS", 10.0))
    p.add_argument(
        "--concurrency", type=int, default=_env("BENCH_CONCURRENCY", 64), help="closed-loop senders"
    )
    p.add_argument("--genai-spans", type=int, default=200, help="GenAI spans per request")
    p.add_argument("--plain-spans", type=int, default=500, help="plain spans per request")
    p.add_argument("--max-requests", type=int, default=100_000, help="cap per phase")
    p.add_argument(
        "--drain-timeout", type=float, default=120.0, help="wait for ClickHouse to hold what was acknowledged"
    )
    p.add_argument("--query-rows", type=int, default=_env("BENCH_QUERY_ROWS", 10_000_000))
    p.add_argument("--query-runs", type=int, default=5)
    p.add_argument(
        "--backfill",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="feed the rollups after the query load",
    )
    p.add_argument("--service-env", action="append", default=[], metavar="INFERLINE_X=V")
    p.add_argument("--results-dir", type=Path, default=report.RESULTS_DIR)
    p.add_argument(
        "--peer",
        choices=peer.PEERS,
        default=_env("BENCH_PEER", "") or None,
        help="also run the side-by-side section: install the peer in its own virtualenv (bench/.peers/),"
        " send it and then inferline's embedded service the same bounded GenAI load over gRPC, print"
        " persisted spans/s of both and the ratio; alone, it runs no other section",
    )
    p.add_argument(
        "--peer-spans",
        type=int,
        default=_env("BENCH_PEER_SPANS", 10_000),
        help="GenAI spans sent to each side (in requests of --genai-spans)",
    )
    p.add_argument("--peer-senders", type=int, default=4, help="closed-loop senders for each side")
    p.add_argument(
        "--peer-timeout",
        type=float,
        default=900.0,
        help="longest wait for one side to take and store its load",
    )
    args = p.parse_args(argv)
    if not args.only:
        args.only = "" if args.peer else ",".join(SECTIONS)
    if args.quick:
        args.seconds = min(args.seconds, 5.0)
        args.open_seconds = min(args.open_seconds, 5.0)
        args.half_seconds = min(args.half_seconds, 5.0)
        args.idle_wait = min(args.idle_wait, 10.0)
        args.kafka_seconds = min(args.kafka_seconds, 5.0)
        args.warmup_seconds = min(args.warmup_seconds, 2.0)
        args.query_rows = min(args.query_rows, 1_000_000)
        args.query_runs = min(args.query_runs, 3)
    unknown = set(args.only.split(",")) - set(SECTIONS) - {""}
    if unknown:
        p.error(f"unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    return args


def section(results: dict[str, Any], name: str, show: Progress, fn: Callable[[], dict[str, Any]]) -> None:
    show.say(f"\n== {name}")
    started = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as e:  # one section failing must not lose the others' figures
        show.done()
        traceback.print_exc()
        results[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
    results[name]["section_s"] = round(time.perf_counter() - started, 1)


def run_stages(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out = tmp / "stages.json"
    cmd = [sys.executable, "-m", "bench.stages", "--json", str(out)] + (["--quick"] if args.quick else [])
    subprocess.run(cmd, cwd=ROOT, check=True)
    return orjson.loads(out.read_bytes())


def load_phases(
    target: services.Target,
    args: argparse.Namespace,
    show: Progress,
    phases: list[str],
    first_byte: int,
    seconds: float,
    settle_s: float,
) -> dict[str, Any]:
    """Warm-up, then the phases named: genai_max, plain_max, genai_half, genai_overload. The open
    loop's rates follow from genai_max."""
    gen = LoadGenerator(
        {
            "grpc": target.grpc,
            "http": target.http,
            "key": target.key,
            "genai_spans": args.genai_spans,
            "plain_spans": args.plain_spans,
            "seed": 7,
        }
    )
    sql = Sql(target.api, target.key)
    tree = ProcessTree(target.roots)
    out: dict[str, Any] = {"payloads": {k: gen.info[k] for k in ("genai", "plain")}, "phases": {}}
    g, p = gen.info["genai"], gen.info["plain"]
    show.say(
        f"  generator ready in {gen.info['build_s']} s: GenAI requests of {g['spans_per_request']:.0f} spans,"
        f" ~{g['bytes_per_span_protobuf']:,} bytes/span; plain requests of {p['spans_per_request']:.0f}"
        f" spans,"
        f" ~{p['bytes_per_span_protobuf']} bytes/span"
    )
    drain = {"settle_s": settle_s, "drain_timeout_s": args.drain_timeout}
    try:
        byte = first_byte
        plan: list[Phase] = [
            Phase(
                "warmup",
                "warm-up",
                "genai",
                "closed",
                byte,
                args.warmup_seconds,
                concurrency=args.concurrency,
            )
        ]
        max_rate = 0.0
        for name in phases:
            byte += 1
            if name == "genai_max":
                plan.append(
                    Phase(name, "(a) GenAI, closed loop", "genai", "closed", byte, seconds, args.concurrency)
                )
            elif name == "plain_max":
                plan.append(
                    Phase(name, "(b) plain, closed loop", "plain", "closed", byte, seconds, args.concurrency)
                )
            elif name == "genai_half":
                plan.append(Phase(name, "(c) GenAI, open, 0.5x", "genai", "open", byte, args.half_seconds))
            elif name == "genai_overload":
                plan.append(Phase(name, "(d) GenAI, open, 2x", "genai", "open", byte, args.open_seconds))
        for phase in plan:
            # The warm-up is one request per sender at most: in Kafka mode a longer one only
            # leaves a backlog to drain before the measured phases.
            phase.max_requests = args.concurrency if phase.name == "warmup" else args.max_requests
            if phase.name in ("genai_half", "genai_overload"):
                if not max_rate:
                    out["phases"][phase.name] = {"error": "needs the rate measured by genai_max"}
                    continue
                phase.rate = max_rate * (0.5 if phase.name == "genai_half" else 2.0)
                show.say(f"  {phase.label}: offering {phase.rate:,.0f} spans/s")
            try:
                idle_wait = 0.0 if phase.name == "warmup" else args.idle_wait
                figures = run_phase(gen, sql, tree, show, phase, **drain, idle_wait_s=idle_wait)
            except (
                RuntimeError,
                OSError,
                ValueError,
                httpx.HTTPError,
            ) as e:  # keep the other phases' figures
                show.say(f"  {phase.name} failed: {e}")
                out["phases"][phase.name] = {"error": f"{type(e).__name__}: {e}"[:500]}
                if gen.process.poll() is not None:
                    break
                continue
            out["phases"][phase.name] = figures
            if phase.name == "genai_max":
                # What the pipeline sustains end to end: acceptance can run ahead of storage for a
                # while (the local log, Kafka absorb it), so half load is half the persisted rate.
                max_rate = figures["persisted_spans_per_s"]
            show.say(phase_line(phase.name, figures))
    finally:
        gen.close()
    return out


def chosen(args: argparse.Namespace, phases: list[str]) -> list[str]:
    """The phases of a section that `--phases` names (all of them without it)."""
    wanted = set(filter(None, args.phases.split(",")))
    return [p for p in phases if not wanted or p in wanted]


def run_embedded(
    args: argparse.Namespace, tmp: Path, show: Progress, overrides: dict[str, str]
) -> dict[str, Any]:
    with services.embedded(tmp / "embedded", overrides) as target:
        show.say(f"  embedded service up (pid {target.roots[0]}), data in {tmp / 'embedded'}")
        return load_phases(
            target,
            args,
            show,
            chosen(args, ["genai_max", "plain_max", "genai_half", "genai_overload"]),
            0xA0,
            args.seconds,
            # The drain's patience: one flush of the exporter's largest batches (tens of thousands
            # of rows, with the rollup views) can take several seconds on a busy 2-vCPU host, and
            # at 3 s the drain gave up in the middle of one, reporting spans "not stored yet".
            10.0,
        )


def run_kafka(
    args: argparse.Namespace, tmp: Path, show: Progress, overrides: dict[str, str]
) -> dict[str, Any]:
    with services.kafka(tmp / "kafka", overrides) as target:
        show.say(
            f"  receiver, processor, writer up (pids {target.roots})"
            f" on a mock cluster (pid {target.others['mock_broker']})"
        )
        # 30 s without progress before what is missing counts as lost: one Kafka-writer flush of
        # a large backlog (an insert per partition) can take longer than 15 s on 2 vCPUs.
        out = load_phases(
            target, args, show, chosen(args, ["genai_max", "genai_half"]), 0xB0, args.kafka_seconds, 30.0
        )
        return out


def run_query(
    args: argparse.Namespace, tmp: Path, show: Progress, overrides: dict[str, str]
) -> dict[str, Any]:
    store = tmp / "query" / "data"
    out_json = tmp / "query.json"
    cmd = [
        sys.executable,
        "-m",
        "bench.query",
        "--data-dir",
        str(store),
        "--rows",
        str(args.query_rows),
        "--runs",
        str(args.query_runs),
        "--json",
        str(out_json),
        "--backfill" if args.backfill else "--no-backfill",
    ]
    subprocess.run(cmd, cwd=ROOT, check=True)  # its own process: chDB has one owner per store
    figures = orjson.loads(out_json.read_bytes())
    started = time.perf_counter()
    with services.embedded_on(store, overrides) as target:
        figures["service_start_s"] = round(time.perf_counter() - started, 1)
        sql = Sql(target.api, target.key)
        endpoint: dict[str, Any] = {}
        for name in ENDPOINT_QUERIES:
            label, text = QUERIES[name]
            text = text.format(project=PROJECT)
            sql.query(text)  # warm
            times = sorted(sql.timed(text) * 1000 for _ in range(args.query_runs))
            endpoint[name] = {
                "label": label,
                "median_ms": round(times[len(times) // 2], 1),
                "min_ms": round(times[0], 1),
                "runs": args.query_runs,
            }
            show.say(
                f"  {label:<78} {endpoint[name]['median_ms']:8.1f} ms"
                f" (median of {args.query_runs}, SQL endpoint)"
            )
        figures["endpoint"] = endpoint
    return figures


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    show = Progress()
    overrides = services.service_env(args.service_env)
    wanted = args.only.split(",")
    started = time.perf_counter()
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "git": report.git_state(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "service_env": overrides,
    }
    m = results["machine"]
    show.say(
        f"inferline bench on {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, Python {m['python']},"
        f" load average {m['load_avg_1m_at_start']}; service settings: {overrides or 'defaults'}"
    )
    with tempfile.TemporaryDirectory(prefix="inferline-bench-") as tmp_name:
        tmp = Path(tmp_name)
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "stages": lambda: run_stages(args, tmp),
            "embedded": lambda: run_embedded(args, tmp, show, overrides),
            "kafka": lambda: run_kafka(args, tmp, show, overrides),
            "query": lambda: run_query(args, tmp, show, overrides),
        }
        for name in SECTIONS:
            if name in wanted:
                section(results, name, show, steps[name])
        if args.peer:
            section(results, "peer", show, lambda: peer.run(args, tmp, show, overrides))
    results["total_s"] = round(time.perf_counter() - started, 1)
    for line in report.summary(results):
        print(line)
    path = report.write(results, args.results_dir)
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"\nresults: {shown}  (compare two runs: python -m bench.compare A.json B.json)")
    print(f"total {results['total_s']:.0f} s")
    failed = [n for n in (*SECTIONS, "peer") if isinstance(results.get(n), dict) and "error" in results[n]]
    if failed:
        print(f"sections that failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
