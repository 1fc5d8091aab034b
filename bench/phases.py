"""Running one load phase against a service and turning what it saw into figures.

A phase: the generator sends (closed or open loop) while this process samples the service's
process tree (CPU, RSS) and shows a live line; then it waits until ClickHouse holds what was
acknowledged (the local log or Kafka is the durable point; ClickHouse has the rows once the
pipeline drained), and checks that every acknowledged span id is there.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from bench.payloads import phase_base, span_id_prefix
from bench.procstats import ProcessTree
from bench.progress import Progress
from tests.conftest import ROOT
from tests.prom_helpers import METRICS_AUTH, Samples, by_label, parse, value

MB = 1024 * 1024
IDLE_CORES = 0.2  # below this much CPU over a second, the service has digested the last phase


class LoadGenerator:
    """The generator process (bench.loadgen) and the thread reading its reports."""

    def __init__(self, target: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._write(target)
        self.info = self.next_event(timeout=120)
        if self.info.get("ev") != "ready":
            raise RuntimeError(f"load generator did not start: {self.info}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.events.put(orjson.loads(line))
        self.events.put({"ev": "exited", "code": self.process.wait()})

    def _write(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(orjson.dumps(message).decode() + "\n")
        self.process.stdin.flush()

    def start(self, command: dict[str, Any]) -> None:
        self._write({"cmd": "run", **command})

    def next_event(self, timeout: float) -> dict[str, Any]:
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            return {"ev": "none"}
        if event.get("ev") == "exited":
            raise RuntimeError(f"load generator exited with {event['code']}")
        return event

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._write({"cmd": "exit"})
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()


def full_collections(samples: Samples) -> tuple[float, float, float]:
    """A process's full collections so far: (count, seconds, count over 50 ms), from
    `inferline_gc_pause_seconds{generation="2"}`."""
    count = value(samples, "inferline_gc_pause_seconds_count", generation="2")
    within = value(samples, "inferline_gc_pause_seconds_bucket", generation="2", le="0.05")
    return count, value(samples, "inferline_gc_pause_seconds_sum", generation="2"), count - within


def stored_row_lookups(samples: Samples) -> dict[str, float]:
    """A storing process's inference rows before their insert so far, by outcome (vouched,
    looked_up, found: `inferline_stored_row_lookups_total`); empty where it is not served."""
    return by_label(samples, "inferline_stored_row_lookups_total", "outcome")


class Sql:
    """The service's read-only SQL endpoint, with the project's key."""

    def __init__(self, api_url: str, key: str) -> None:
        self._api = api_url
        self._url = api_url + "/"
        self._headers = {"Authorization": f"Bearer {key}"}
        # One client for the run: a new one per call built an SSL context each time (~15% of the
        # harness's CPU while it polls, and part of every query's measured time).
        self._http = httpx.Client()

    def metrics(self) -> Samples:
        """The serving process's /metrics now (empty if unreadable)."""
        try:
            r = self._http.get(self._api + "/metrics", headers=METRICS_AUTH, timeout=10)
        except httpx.HTTPError:
            return {}
        return parse(r.text)

    def log_backlog_bytes(self) -> int | None:
        """Bytes the embedded service's local log holds that ClickHouse does not have yet (its
        `inferline_queue_depth{queue="local_log_bytes"}` gauge); None where there is no local
        log (the Kafka roles) or the metrics cannot be read."""
        key = ("inferline_queue_depth", frozenset({("queue", "local_log_bytes")}))
        backlog = self.metrics().get(key)
        return None if backlog is None else int(backlog)

    def query(self, sql: str, timeout: float = 120) -> str:
        r = self._http.post(self._url, content=sql, headers=self._headers, timeout=timeout)
        if r.status_code != 200:
            raise RuntimeError(f"SQL endpoint answered {r.status_code}: {r.text[:300]}")
        return r.text

    def number(self, sql: str) -> int:
        return int(self.query(sql).strip() or 0)

    def timed(self, sql: str) -> float:
        started = time.perf_counter()
        self.query(sql)
        return time.perf_counter() - started


@dataclass
class Phase:
    name: str  # genai_max, plain_max, genai_half, genai_overload, warmup
    label: str  # what the live line says
    kind: str  # genai | plain
    mode: str  # closed | open
    phase_byte: int
    seconds: float
    concurrency: int = 0
    rate: float = 0.0  # open loop: offered spans/s
    max_requests: int = 10**9


def persisted_counts(sql: Sql, prefix: str, genai: bool) -> tuple[int, int]:
    spans = sql.number(f"SELECT count() FROM otel_traces WHERE startsWith(SpanId, '{prefix}')")
    rows = (
        sql.number(f"SELECT uniqExact(span_id) FROM llm_inferences WHERE startsWith(span_id, '{prefix}')")
        if genai
        else 0
    )
    return spans, rows


def missing_ids(sql: Sql, table: str, column: str, prefix: str, ranges: list[list[int]]) -> int:
    """How many acknowledged span ids `table` does not hold."""
    text = sql.query(
        f"SELECT DISTINCT {column} FROM {table} WHERE startsWith({column}, '{prefix}') FORMAT TSV"
    )
    stored = {int(h, 16) for h in text.split()}
    return sum(1 for base, n in ranges for i in range(base, base + n) if i not in stored)


def wait_until_idle(tree: ProcessTree, show: Progress, label: str, max_wait_s: float) -> float:
    """Waits until the service's processes use less than IDLE_CORES of CPU over a second, at most
    `max_wait_s`, and returns the seconds waited. Every acknowledged span is stored before a phase
    ends, but the engine goes on merging what it stored (a closed phase leaves ~a million rows):
    measured from then, the next phase shared the cores with that (the half-load phase began at
    221% CPU after the plain one), so each phase now measures its own load."""
    started = last_t = time.time()
    last_cpu = tree.sample().cpu_s
    while time.time() - started < max_wait_s:
        time.sleep(1.0)
        now_cpu, now_t = tree.sample().cpu_s, time.time()
        busy = (now_cpu - last_cpu) / max(now_t - last_t, 1e-9)
        if busy < IDLE_CORES:
            break
        last_cpu, last_t = now_cpu, now_t
        show.update(f"  {label:<24} waiting for the service to go idle ({busy * 100:.0f}% CPU)")
    return round(time.time() - started, 1)


def _larger_backlog(sql: Sql, peak: int | None) -> int | None:
    """The larger of `peak` and the local log's backlog now (None while there is no local log)."""
    now = sql.log_backlog_bytes()
    return peak if now is None else max(peak or 0, now)


def run_phase(
    gen: LoadGenerator,
    sql: Sql,
    tree: ProcessTree,
    show: Progress,
    phase: Phase,
    *,
    settle_s: float,
    drain_timeout_s: float,
    check_loss: bool = True,
    idle_wait_s: float = 0.0,
) -> dict[str, Any]:
    waited_idle = wait_until_idle(tree, show, phase.label, idle_wait_s) if idle_wait_s else 0.0
    prefix = span_id_prefix(phase.phase_byte)
    genai = phase.kind == "genai"
    start = tree.sample()
    metrics_before = sql.metrics()
    peak_rss, peak_pss, peak_anon = start.rss, start.pss or 0, start.anon
    gen.start(
        {
            "phase": phase.name,
            "phase_byte": phase.phase_byte,
            "kind": phase.kind,
            "mode": phase.mode,
            "seconds": phase.seconds,
            "concurrency": phase.concurrency,
            "rate": phase.rate,
            "max_requests": phase.max_requests,
        }
    )
    last_cpu, last_t = start.cpu_s, time.time()
    cpu_pct = 0.0
    persisted_live = 0
    peak_log: int | None = None  # the local log's largest backlog seen (None: no local log)
    next_poll = time.time() + 2.0
    result: dict[str, Any] = {}
    while True:
        event = gen.next_event(timeout=0.25)
        s = tree.sample()
        peak_rss = max(peak_rss, s.rss)
        peak_pss = max(peak_pss, s.pss or 0)
        peak_anon = max(peak_anon, s.anon)
        now = time.time()
        if now - last_t >= 1.0:
            cpu_pct, last_cpu, last_t = (s.cpu_s - last_cpu) / (now - last_t) * 100, s.cpu_s, now
        if event.get("ev") == "result":
            result = event
            break
        if now >= next_poll:  # what a dashboard would see; cheap, and shows Kafka-mode lag
            next_poll = now + 2.0
            with contextlib.suppress(httpx.HTTPError, RuntimeError):
                persisted_live = persisted_counts(sql, prefix, False)[0]
            peak_log = _larger_backlog(sql, peak_log)
        if event.get("ev") == "progress":
            elapsed = max(event["elapsed"], 1e-9)
            show.update(
                f"  {phase.label:<24} {elapsed:5.1f}/{phase.seconds:.0f}s"
                f"  acked {event['acked_spans']:>9,} spans"
                f" ({event['acked_spans'] / elapsed:>7,.0f}/s)  persisted {persisted_live:>9,}"
                f"  refused {event['refused']:>5,}  err {event['errors']}  in flight {event['inflight']:>3}"
                f"  service cpu {cpu_pct:4.0f}%  rss {s.rss / MB:5.0f} MB"
            )
    # Wait until ClickHouse holds every acknowledged span (and its inference row and log records):
    # at once in embedded mode; in Kafka mode once the pipeline has drained. Gives up when nothing
    # has moved for `settle_s`, or after `drain_timeout_s`; what is still missing then is lost.
    peak_log = _larger_backlog(sql, peak_log)  # the load just ended: where a backlog peaks
    drain_started = time.time()
    done_at = drain_started
    deadline = drain_started + drain_timeout_s
    ranges = result["acked_ranges"]

    def missing() -> tuple[int, int, int]:
        spans = missing_ids(sql, "otel_traces", "SpanId", prefix, ranges) if check_loss else 0
        rows = missing_ids(sql, "llm_inferences", "span_id", prefix, ranges) if check_loss and genai else 0
        logs = 0
        if genai and result["acked_log_records"]:
            stored = sql.number(f"SELECT count() FROM otel_logs WHERE startsWith(SpanId, '{prefix}')")
            logs = max(0, result["acked_log_records"] - stored)
        return spans, rows, logs

    # Cheap counts first, while the backlog is large.
    persisted = persisted_counts(sql, prefix, False)[0]
    stable_since = time.time()
    while persisted < result["acked_spans"] and time.time() < deadline:
        time.sleep(0.5)
        s = tree.sample()
        peak_rss, peak_pss, peak_anon = (
            max(peak_rss, s.rss),
            max(peak_pss, s.pss or 0),
            max(peak_anon, s.anon),
        )
        now_persisted = persisted_counts(sql, prefix, False)[0]
        now = time.time()
        if now_persisted != persisted:
            persisted, done_at, stable_since = now_persisted, now, now
        elif now - stable_since > settle_s:
            break
        show.update(f"  {phase.label:<24} draining: {persisted:,} of {result['acked_spans']:,} spans stored")
    lost = missing()
    while any(lost) and time.time() < deadline:
        show.update(f"  {phase.label:<24} draining: missing spans/rows/logs {lost}")
        time.sleep(1.0)
        now_lost = missing()
        now = time.time()
        if now_lost != lost:
            lost, done_at, stable_since = now_lost, now, now
        elif now - stable_since > settle_s:
            break
    # Missing at the deadline but still in the local log is not lost, only not stored yet: nothing
    # leaves the log before ClickHouse has it (a slow drain, e.g. a large closed-loop backlog).
    backlog = sql.log_backlog_bytes() if check_loss and any(lost) else None
    persisted, rows = persisted_counts(sql, prefix, genai)
    end = tree.sample()
    metrics_after = sql.metrics()
    full, full_s, full_slow = (
        b - a for a, b in zip(full_collections(metrics_before), full_collections(metrics_after), strict=True)
    )
    lookups_before = stored_row_lookups(metrics_before)
    lookups = {k: v - lookups_before.get(k, 0.0) for k, v in stored_row_lookups(metrics_after).items()}
    show.done()
    first = result["first_send"] or drain_started
    accept_window = max(result["last_ack"] - first, 1e-9)
    persist_window = max(max(done_at, result["last_ack"]) - first, 1e-9)
    cpu = end.cpu_s - start.cpu_s
    figures: dict[str, Any] = {
        "mode": phase.mode,
        "kind": phase.kind,
        "seconds": phase.seconds,
        "concurrency": phase.concurrency or None,
        "offered_spans_per_s": round(phase.rate) if phase.mode == "open" else None,
        "acked_spans": result["acked_spans"],
        "acked_genai_spans": result["acked_genai_spans"],
        "acked_log_records": result["acked_log_records"],
        "persisted_spans": persisted,
        "persisted_genai_spans": rows,
        "accepted_spans_per_s": round(result["acked_spans"] / accept_window, 1),
        "persisted_spans_per_s": round(persisted / persist_window, 1),
        "persisted_genai_spans_per_s": round(rows / persist_window, 1) if genai else None,
        "ack_latency_ms": result["ack_latency_ms"],
        "ack_latency_ms_by_transport": result.get("ack_latency_ms_by_transport", {}),
        "log_ack_latency_ms": result["log_ack_latency_ms"],
        "send_lateness_ms": result["send_lateness_ms"],
        "requests": result["requests"],
        "refused": result["refused"],
        "refused_total": sum(result["refused"].values()),
        "errors": result["errors"],
        "errors_total": sum(result["errors"].values()),
        "partial_requests": result["partial_requests"],
        "skipped_by_generator": result["skipped"],
        "drain_s": round(max(0.0, done_at - result["last_ack"]), 2) if result["last_ack"] else None,
        "waited_for_idle_s": waited_idle,
        "service_cpu_s": round(cpu, 2),
        "service_cpu_s_per_10k_spans": round(cpu / persisted * 10_000, 3) if persisted else None,
        "service_cpu_cores_busy": round(cpu / persist_window, 2),
        "peak_rss_mb": round(peak_rss / MB, 1),
        "peak_pss_mb": round(peak_pss / MB, 1) if peak_pss else None,
        "peak_anon_mb": round(peak_anon / MB, 1),
        # What the local log held that ClickHouse did not have yet, at its largest (sampled every
        # 2 s while the load ran, and as it ended): receivers refuse once it reaches its limit.
        "peak_log_backlog_mb": round(peak_log / MB, 2) if peak_log is not None else None,
        "service_processes": end.processes,
        "generator_cpu_s": round(result["generator_cpu_s"], 2),
        # The serving process's full garbage collections: each pauses every request in flight.
        "full_gc_pauses": {
            "count": int(full),
            "total_ms": round(full_s * 1000, 1),
            "over_50ms": int(full_slow),
        },
        # Inference rows the exporter looked up in ClickHouse before inserting them, or did not
        # need to (their normaliser vouched for them): ~20 µs of the engine per row looked up.
        "stored_row_lookups": {k: int(v) for k, v in sorted(lookups.items())},
    }
    if check_loss and backlog:
        figures["lost_spans"] = None  # not known: the drain timed out with data still in the log
        figures["unstored_spans"] = lost[0]
        figures["log_backlog_bytes"] = backlog
        if genai:
            figures["unstored_inferences"] = lost[1]
            figures["unstored_log_records"] = lost[2]
    elif check_loss:
        figures["lost_spans"] = lost[0]
        if genai:
            figures["lost_inferences"] = lost[1]
            figures["lost_log_records"] = lost[2]
    return figures


def phase_line(name: str, f: dict[str, Any]) -> str:
    lat = f["ack_latency_ms"]
    parts = [
        f"  {name:<16} accepted {f['accepted_spans_per_s']:>9,.0f} spans/s",
        f"persisted {f['persisted_spans_per_s']:>9,.0f}/s",
        f"ack p50/p95/p99 {lat.get('p50', 0):>6,.0f}/{lat.get('p95', 0):,.0f}/{lat.get('p99', 0):,.0f} ms",
        f"cpu {f['service_cpu_s_per_10k_spans'] or 0:5.2f} s/10k",
        f"rss {f['peak_rss_mb']:>6,.0f} MB (anon {f.get('peak_anon_mb') or 0:,.0f})",
    ]
    if f.get("peak_log_backlog_mb") is not None:
        parts.append(f"log backlog ≤ {f['peak_log_backlog_mb']:,.0f} MB")
    parts.append(f"generator cpu {f['generator_cpu_s']:.1f} s")
    if f.get("waited_for_idle_s", 0) >= 2:  # one second is the shortest look
        parts.append(f"waited {f['waited_for_idle_s']:.0f} s for the service to go idle")
    gc_pauses = f.get("full_gc_pauses") or {}
    if gc_pauses.get("count"):
        parts.append(f"full gc {gc_pauses['count']}x {gc_pauses['total_ms']:,.0f} ms")
    lookups = f.get("stored_row_lookups") or {}
    if lookups.get("looked_up") or lookups.get("vouched"):
        looked_up = lookups.get("looked_up", 0)
        parts.append(f"rows looked up {looked_up:,} of {looked_up + lookups.get('vouched', 0):,}")
    if f["refused_total"] or f["errors_total"]:
        parts.append(f"refused {f['refused_total']:,} errors {f['errors_total']:,}")
    if f.get("unstored_spans"):
        parts.append(f"not stored yet {f['unstored_spans']:,} (the drain timed out; still in the log)")
    elif "lost_spans" in f:
        parts.append(f"lost {f['lost_spans']}")
    by_transport = f.get("ack_latency_ms_by_transport") or {}
    if len(by_transport) > 1:
        each = ", ".join(
            f"{t} {v.get('p50', 0):,.0f}/{v.get('p99', 0):,.0f}" for t, v in sorted(by_transport.items())
        )
        parts.append(f"\n  {'':<16} ack p50/p99 by transport (ms): {each}")
    return "  ".join(parts)


__all__ = ["LoadGenerator", "Phase", "Sql", "phase_base", "phase_line", "run_phase"]
