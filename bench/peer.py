"""Side by side (`python -m bench --peer phoenix`): the same bounded GenAI load against a peer and
against inferline's embedded service, back to back in one run, and persisted spans/s of each.

Both get the same generator (bench.loadgen) with the same seed, so the same requests: GenAI spans
of every convention bench.payloads builds, `--genai-spans` per request. Two things differ from
the embedded phases, for both targets alike: every request goes over gRPC, and the correlated log
records of the older OTel GenAI convention are not sent (Phoenix has no logs endpoint, and takes
no OTLP/JSON). Each target is started fresh and gets a warm-up (one request per sender, stored
before the measured load starts), then `--peer-spans` spans from `--peer-senders` closed-loop
senders, and nothing else while it runs.

Persisted means stored where a query finds it: rows in `otel_traces` for inferline (through its
SQL endpoint), rows in Phoenix's `spans` table. The count is polled every POLL_S during the load
and after it until it reaches what was acknowledged or stops growing for SETTLE_S; persisted
spans/s is the spans the load added over the time from its first send to the last time the
count grew.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import phoenix, services
from bench.payloads import span_id_prefix
from bench.phases import MB, LoadGenerator, Sql
from bench.procstats import ProcessTree
from bench.progress import Progress

PEERS = ("phoenix",)
POLL_S = 0.2  # the persisted window is known to this much; a 5,000-span load lasts seconds here
SETTLE_S = 20.0  # no growth for this long after the last acknowledgement: all that will be stored is
WARMUP_BYTE, LOAD_BYTE = 0xD0, 0xD1  # span id prefixes (bench.payloads.phase_base)


@dataclass
class Stored:
    """A target's stored span count as polled during one load: spans added since `baseline`, and
    when the count last grew."""

    baseline: int
    spans: int = 0
    grew_at: float = 0.0

    def see(self, total: int, now: float) -> None:
        added = total - self.baseline
        if added != self.spans:
            self.spans, self.grew_at = added, now


def persisted_rate(spans: int, first_send: float, last_ack: float, grew_at: float) -> float:
    """Spans stored per second, from the first send to the last time the count grew (at least
    to the last acknowledgement: the load was still being sent until then)."""
    window = max(grew_at, last_ack) - first_send
    return spans / window if spans and window > 0 else 0.0


def _load(
    gen: LoadGenerator,
    count: Callable[[], int],
    tree: ProcessTree,
    show: Progress,
    label: str,
    phase_byte: int,
    requests: int,
    senders: int,
    timeout_s: float,
) -> dict[str, Any]:
    """Send `requests` requests, wait until they are stored, return the figures."""
    load_avg = os.getloadavg()[0]  # the machine is shared: how busy it was is part of the figure
    stored = Stored(count())
    start = tree.sample()
    peak_rss = start.rss
    gen.start(
        {
            "phase": label,
            "phase_byte": phase_byte,
            "kind": "genai",
            "mode": "closed",
            "seconds": timeout_s,  # a bound in case the target stalls; max_requests ends the load
            "concurrency": senders,
            "rate": 0,
            "max_requests": requests,
        }
    )
    result: dict[str, Any] = {}
    acked = 0
    next_poll = 0.0
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        event = gen.next_event(timeout=POLL_S) if not result else {}
        if event.get("ev") == "result":
            result = event
        elif event.get("ev") == "progress":
            acked = event["acked_spans"]
        now = time.time()
        if now >= next_poll:
            next_poll = now + POLL_S
            stored.see(count(), now)
            peak_rss = max(peak_rss, tree.sample().rss)
        if result:
            if stored.spans >= result["acked_spans"]:
                break
            if now - max(stored.grew_at, result["last_ack"]) > SETTLE_S:
                break  # stopped growing short of what was acknowledged: reported as not stored
            time.sleep(POLL_S)
        show.update(
            f"  {label:<18} acked {result.get('acked_spans', acked):>7,}  stored {stored.spans:>7,} spans"
            f"  {'draining' if result else 'sending'}"
        )
    show.done()
    if not result:
        raise RuntimeError(f"{label}: the load did not finish within {timeout_s:.0f} s")
    end = tree.sample()
    first = result["first_send"]
    cpu = end.cpu_s - start.cpu_s
    rate = persisted_rate(stored.spans, first, result["last_ack"], stored.grew_at)
    return {
        "requests": result["requests"],
        "acked_spans": result["acked_spans"],
        "persisted_spans": stored.spans,
        "not_stored_spans": max(0, result["acked_spans"] - stored.spans),
        "refused_total": sum(result["refused"].values()),
        "errors": result["errors"],
        "errors_total": sum(result["errors"].values()),
        "accepted_spans_per_s": round(result["acked_spans"] / max(result["last_ack"] - first, 1e-9), 1),
        "persisted_spans_per_s": round(rate, 1),
        "send_s": round(result["last_ack"] - first, 2),
        "persist_s": round(max(stored.grew_at, result["last_ack"]) - first, 2),
        "ack_latency_ms": result["ack_latency_ms"],
        "service_cpu_s": round(cpu, 2),
        "service_cpu_s_per_10k_spans": round(cpu / stored.spans * 10_000, 2) if stored.spans else None,
        "peak_rss_mb": round(peak_rss / MB, 1),
        "generator_cpu_s": round(result["generator_cpu_s"], 2),
        "load_avg_1m_at_start": round(load_avg, 2),
    }


def _measure(
    args: argparse.Namespace,
    show: Progress,
    name: str,
    grpc: str,
    http: str,
    key: str,
    count: Callable[[], int],
    tree: ProcessTree,
) -> dict[str, Any]:
    """Warm-up, then the measured load, against one target."""
    gen = LoadGenerator(
        {
            "grpc": grpc,
            "http": http,
            "key": key,
            "genai_spans": args.genai_spans,
            "plain_spans": args.plain_spans,
            "seed": 7,
            "transport": "grpc",
            "logs": False,
        }
    )
    try:
        per_request = gen.info["genai"]["spans_per_request"]
        requests = max(1, math.ceil(args.peer_spans / per_request))
        timeout = args.peer_timeout
        _load(
            gen,
            count,
            tree,
            show,
            f"{name} warm-up",
            WARMUP_BYTE,
            args.peer_senders,
            args.peer_senders,
            timeout,
        )
        figures = _load(gen, count, tree, show, name, LOAD_BYTE, requests, args.peer_senders, timeout)
    finally:
        gen.close()
    show.say(
        f"  {name:<10} acked {figures['acked_spans']:,} spans in {figures['send_s']:.1f} s,"
        f" stored {figures['persisted_spans']:,} by {figures['persist_s']:.1f} s:"
        f" {figures['persisted_spans_per_s']:,.0f} spans/s persisted"
        f"  (cpu {figures['service_cpu_s_per_10k_spans'] or 0:.1f} s/10k,"
        f" rss {figures['peak_rss_mb']:,.0f} MB)"
    )
    return figures


def run(args: argparse.Namespace, tmp: Path, show: Progress, overrides: dict[str, str]) -> dict[str, Any]:
    """Phoenix first (if it cannot be installed or started, nothing else is worth running), then
    inferline; the ratio is inferline's persisted spans/s over Phoenix's."""
    show.say(f"  installing {phoenix.SPEC} into {phoenix.VENV} (reused while the range is unchanged)")
    version = phoenix.install(phoenix.VENV, phoenix.SPEC)
    out: dict[str, Any] = {
        "peer": args.peer,
        "peer_version": version,
        "peer_spec": phoenix.SPEC,
        "load": {
            "spans": args.peer_spans,
            "spans_per_request": args.genai_spans,
            "senders": args.peer_senders,
            "transport": "grpc",
            "log_records": False,
        },
    }
    with phoenix.serve(tmp / "phoenix", phoenix.VENV) as server:
        show.say(f"  Phoenix {version} up (pid {server.process.pid}), working dir {tmp / 'phoenix'}")
        out["phoenix"] = _measure(
            args,
            show,
            "phoenix",
            server.grpc,
            server.http,
            "",
            lambda: phoenix.stored_spans(server.database),
            ProcessTree([server.process.pid]),
        )
    with services.embedded(tmp / "peer-inferline", overrides) as target:
        show.say(f"  inferline embedded service up (pid {target.roots[0]})")
        sql = Sql(target.api, target.key)
        out["inferline"] = _measure(
            args,
            show,
            "inferline",
            target.grpc,
            target.http,
            target.key,
            lambda: sql.number("SELECT count() FROM otel_traces"),
            ProcessTree(target.roots),
        )
        # The enriched rows too, not only the spans: inferline's GenAI output is these.
        out["inferline"]["persisted_inferences"] = sql.number(
            "SELECT uniqExact(span_id) FROM llm_inferences"
            f" WHERE startsWith(span_id, '{span_id_prefix(LOAD_BYTE)}')"
        )
    peer_rate = out["phoenix"]["persisted_spans_per_s"]
    ours = out["inferline"]["persisted_spans_per_s"]
    out["ratio_inferline_to_peer"] = round(ours / peer_rate, 1) if peer_rate else None
    # CPU per stored span depends less on what else the machine runs than a rate does.
    peer_cpu = out["phoenix"]["service_cpu_s_per_10k_spans"]
    our_cpu = out["inferline"]["service_cpu_s_per_10k_spans"]
    out["cpu_ratio_peer_to_inferline"] = round(peer_cpu / our_cpu, 1) if peer_cpu and our_cpu else None
    return out
