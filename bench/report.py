"""The issue's targets next to the figures of a run, and the results file."""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.phases import MB
from inferline.core.config import LocalLogSettings
from tests.conftest import ROOT

RESULTS_DIR = ROOT / "bench" / "results"


@dataclass
class Target:
    what: str
    figure: float | None  # None: not measured in this run
    target: float
    at_least: bool  # True: figure ≥ target is met; False: figure ≤ target
    unit: str
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.figure is None:
            return None
        return self.figure >= self.target if self.at_least else self.figure <= self.target

    def as_json(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "figure": self.figure,
            "target": self.target,
            "at_least": self.at_least,
            "unit": self.unit,
            "met": self.met,
            "note": self.note,
        }


def _by_transport(latencies: dict[str, dict[str, float]] | None, requests: int | None = None) -> str:
    """p99 per transport, e.g. "p99 over 412 requests; grpc 40, http 45, http-json 190 ms"
    (OTLP/JSON is decoded before its answer; protobuf is not). Over ~100 requests a p99 is the
    second-slowest request: the count says how much one slow request moves it."""
    if not latencies:
        return ""
    over = f"over {requests:,} requests; " if requests else ""
    per = ", ".join(f"{t} {v.get('p99', 0):,.0f}" for t, v in sorted(latencies.items()))
    return f"p99 {over}{per} ms"


def _get(d: dict[str, Any] | None, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


# Per-stage CPU budgets of issue #12 (µs per GenAI span, `--only stages`): stage keys summed.
STAGE_BUDGETS: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("sentiment", ("sentiment",), 15),
    ("PII", ("pii",), 20),
    ("normalise + flatten", ("normalise", "flatten"), 30),
    ("encoding rows for ClickHouse", ("native_encode",), 8),
    ("main process (receive, local log, chDB insert)", ("receive", "local_log", "chdb_insert"), 30),
)


def _stage_us(results: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    figures = [_get(results, "stages", "stages", k, "us_per_span") for k in keys]
    return round(sum(figures), 1) if all(f is not None for f in figures) else None


def _local_log_limit_mb(results: dict[str, Any]) -> float:
    """The embedded service's local log limit in this run (`--service-env` may have set it)."""
    raw = (results.get("service_env") or {}).get("INFERLINE_LOCAL_LOG__MAX_BYTES")
    settings = LocalLogSettings() if raw is None else LocalLogSettings.model_validate({"max_bytes": raw})
    return settings.max_bytes / MB


def targets(results: dict[str, Any]) -> list[Target]:
    """Issue #12's "done when", each next to the figure of this run that answers it."""
    phases = _get(results, "embedded", "phases") or {}
    kafka = _get(results, "kafka", "phases") or {}
    overload = phases.get("genai_overload") or {}
    measured = [f for f in (*phases.values(), *kafka.values()) if isinstance(f, dict)]
    lost = [f["lost_spans"] for f in measured if f.get("lost_spans") is not None]
    unstored = sum(f.get("unstored_spans") or 0 for f in measured)
    lost_inferences = [f["lost_inferences"] for f in measured if f.get("lost_inferences") is not None]
    lost_note = ", ".join(
        n
        for n in (
            f"inference rows missing: {sum(lost_inferences)}" if lost_inferences else "",
            f"{unstored:,} not stored yet when a drain timed out (still in the log)" if unstored else "",
        )
        if n
    )
    refusals = overload.get("refused_total")
    other_errors = overload.get("errors_total")
    embedded_rate = _get(phases, "genai_max", "persisted_genai_spans_per_s")
    kafka_rate = _get(kafka, "genai_max", "persisted_genai_spans_per_s")
    rows = _get(results, "query", "rows")
    rows_note = f"{rows / 1e6:.1f}M rows" if rows else ""
    return [
        Target(
            "GenAI spans/s persisted, embedded, full chain",
            embedded_rate,
            10_000,
            True,
            "spans/s",
            "the goal stays 20,000",
        ),
        Target(
            "plain spans/s persisted, embedded",
            _get(phases, "plain_max", "persisted_spans_per_s"),
            50_000,
            True,
            "spans/s",
        ),
        Target(
            "ack latency p99 at half the max GenAI load",
            _get(phases, "genai_half", "ack_latency_ms", "p99"),
            100,
            False,
            "ms",
            _by_transport(
                _get(phases, "genai_half", "ack_latency_ms_by_transport"),
                _get(phases, "genai_half", "ack_latency_ms", "n"),
            ),
        ),
        Target(
            "peak RSS of the service tree at 2x load",
            overload.get("peak_rss_mb"),
            1024,
            False,
            "MB",
            ", ".join(
                f"{what} {overload[key]:,.0f} MB"
                for what, key in (
                    ("anonymous (heaps, what the memory ceiling counts)", "peak_anon_mb"),
                    ("PSS", "peak_pss_mb"),
                )
                if overload.get(key) is not None
            ),
        ),
        Target(
            "retryable refusals at 2x load (429/503, RESOURCE_EXHAUSTED/UNAVAILABLE)",
            refusals,
            1,
            True,
            "requests",
            ", ".join(
                n
                for n in (
                    f"other errors: {other_errors}" if other_errors is not None else "",
                    f"local log backlog at most {overload['peak_log_backlog_mb']:,.0f} MB of its "
                    f"{_local_log_limit_mb(results):,.0f} MB: refusals start once it is full"
                    if overload.get("peak_log_backlog_mb") is not None
                    else "",
                )
                if n
            ),
        ),
        Target(
            "acknowledged spans lost, every phase",
            sum(lost) if lost else None,
            0,
            False,
            "spans",
            lost_note,
        ),
        Target(
            "Kafka mode's persisted GenAI spans/s over embedded mode's, same run",
            round(kafka_rate / embedded_rate, 2) if kafka_rate and embedded_rate else None,
            1.0,
            True,
            "x",
            f"{kafka_rate:,.0f} vs {embedded_rate:,.0f} spans/s" if kafka_rate and embedded_rate else "",
        ),
        *(
            Target(f"{name} stage, µs of CPU per GenAI span", _stage_us(results, keys), budget, False, "µs")
            for name, keys, budget in STAGE_BUDGETS
        ),
        Target(
            "p95 latency + cost by model, all rows, chDB direct",
            _get(results, "query", "direct", "p95_cost_by_model_all_rows", "median_ms"),
            150,
            False,
            "ms",
            rows_note,
        ),
        Target(
            "p95 latency + cost by model, one project, minute rollup (analytics API)",
            _get(results, "query", "direct", "p95_cost_by_model_rollup", "median_ms"),
            150,
            False,
            "ms",
            rows_note,
        ),
        Target(
            "p95 latency + cost by model, one project, SQL endpoint",
            _get(results, "query", "endpoint", "p95_cost_by_model", "median_ms"),
            150,
            False,
            "ms",
            f"{_get(results, 'query', 'project_rows') / 1e6:.1f}M rows in the project"
            if _get(results, "query", "project_rows")
            else "",
        ),
    ]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    if unit in ("ms", "µs"):
        return f"{value:,.1f} {unit}"
    if unit == "x":
        return f"{value:,.2f}{unit}"
    return f"{value:,.0f} {unit}"


def peer_lines(results: dict[str, Any]) -> list[str]:
    """The side-by-side section (bench.peer): persisted spans/s of the peer and of inferline."""
    side = results.get("peer")
    if not side:
        return []
    if "error" in side:
        return ["", f"Side by side: failed: {side['error']}"]
    load = side["load"]
    lines = [
        "",
        f"Side by side with {side['peer']} {side['peer_version']}: {load['spans']:,} GenAI spans each,"
        f" {load['spans_per_request']} per request, {load['senders']} senders, gRPC:",
        "",
    ]
    for name in (side["peer"], "inferline"):
        f = side[name]
        lines.append(
            f"  {name:<10} persisted {f['persisted_spans_per_s']:>8,.0f} spans/s"
            f"  ({f['persisted_spans']:,} of {f['acked_spans']:,} acknowledged stored"
            f" in {f['persist_s']:.1f} s; accepted {f['accepted_spans_per_s']:,.0f}/s;"
            f" CPU {f.get('service_cpu_s_per_10k_spans') or 0:.1f} s/10k spans;"
            f" load average {f.get('load_avg_1m_at_start', 0):.1f})"
        )
    ratio = side["ratio_inferline_to_peer"]
    lines.append(
        f"  inferline / {side['peer']}: {ratio:,.1f}x persisted spans/s" if ratio else "  ratio: n/a"
    )
    cpu = side.get("cpu_ratio_peer_to_inferline")
    if cpu:
        lines.append(f"  {side['peer']} / inferline: {cpu:,.1f}x CPU seconds per stored span")
    return lines


def summary(results: dict[str, Any]) -> list[str]:
    ts = targets(results)
    results["targets"] = [t.as_json() for t in ts]
    if all(t.figure is None for t in ts):  # e.g. a side-by-side run alone
        return peer_lines(results)
    lines = ["", "Targets (issue #12) on this machine:", ""]
    width = max(len(t.what) for t in ts)
    lines.append(f"  {'measure':<{width}}  {'figure':>16}  {'target':>16}  result")
    for t in ts:
        sign = "≥" if t.at_least else "≤"
        verdict = {True: "met", False: "NOT MET", None: "-"}[t.met]
        note = f"  ({t.note})" if t.note else ""
        target = f"{sign} {_fmt(t.target, t.unit)}"
        lines.append(f"  {t.what:<{width}}  {_fmt(t.figure, t.unit):>16}  {target:>16}  {verdict}{note}")
    kafka = _get(results, "kafka", "phases") or {}
    if kafka:
        lines += ["", "Kafka mode (mock cluster):", ""]
        for name, f in kafka.items():
            if name == "warmup":
                continue
            if "error" in f:
                lines.append(f"  {name:<16} failed: {f['error']}")
                continue
            lat = f.get("ack_latency_ms") or {}
            lines.append(
                f"  {name:<16} accepted {f['accepted_spans_per_s']:>8,.0f} spans/s"
                f"  persisted {f['persisted_spans_per_s']:>8,.0f}/s"
                f"  ack p50/p99 {lat.get('p50', 0):,.0f}/{lat.get('p99', 0):,.0f} ms"
                f"  CPU {f.get('service_cpu_s_per_10k_spans') or 0:.2f} s/10k  lost {f.get('lost_spans')}"
            )
    return lines + peer_lines(results)


def git_state() -> dict[str, Any]:
    def run(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "commit": run("rev-parse", "HEAD"),
        "dirty": bool(run("status", "--porcelain", "--untracked-files=no")),
    }


def write(results: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return path
