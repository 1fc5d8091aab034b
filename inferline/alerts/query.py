"""The one query that measures every rule of a project at one minute.

Rules do not get a query each: the project's minutes are read once (from
`inference_stats_by_minute`, the analytics rollup) and every rule's figures are aggregates over
them with its own condition (`sumIf`, `quantilesTDigestMergeIf`). A rule filtered by tenant or
tag reads `llm_inferences` (no rollup keeps those by the minute) in a second branch of the same
query; feedback ratings and evaluation scores come from `feedback` and `scores` in scalar
subqueries of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from inferline.alerts.rules import RuleSpec
from inferline.storage.rollups import AGGREGATES, BY_MINUTE, QUANTILES

DAY = timedelta(days=1)
# slow_share reads the latency digest at every percent: the share above N ms is the number of
# percentiles above it (resolution: one percentage point, plus the digest's own error).
_PERCENTS = tuple(round(p / 100, 2) for p in range(1, 100))
_LEVELS = ", ".join(str(q) for q in QUANTILES)
_QUANTILE_INDEX = {"p50": QUANTILES.index(0.5) + 1, "p95": QUANTILES.index(0.95) + 1, "p99": 4}


@dataclass(frozen=True, slots=True)
class Averaged:
    """A metric averaged from a table of its own (no rollup): a scalar subquery of the query."""

    alias: str
    table: str
    value: str
    time: str  # DateTime64(3|9) column the window applies to
    present: str  # which rows count


AVERAGED = {
    "avg_rating": Averaged("ratings", "feedback", "toFloat64(rating)", "created_at", "rating IS NOT NULL"),
    # A rule names its score (`score_name`); scores of every scope count (span, trace, session).
    "avg_score": Averaged("scores", "scores", "value", "timestamp", "value IS NOT NULL"),
}


@dataclass(frozen=True, slots=True)
class Measurement:
    value: float | None  # None: nothing to measure (no calls, or no cost a day earlier)
    calls: int  # calls (ratings, scores for avg_*, calls with a TTFT for ttft_*) in the window


@dataclass(frozen=True, slots=True)
class ProjectQuery:
    sql: str
    params: dict[str, Any]
    rules: tuple[tuple[str, RuleSpec], ...]

    def measurements(self, row: dict[str, Any]) -> dict[str, Measurement]:
        out = {}
        # avg_rating / avg_score rules' figures are (average, count) pairs in their table's tuple,
        # in rule order.
        seen = dict.fromkeys(AVERAGED, 0)
        for i, (rule_id, spec) in enumerate(self.rules):
            source = AVERAGED.get(spec.metric)
            if source is not None:
                k = seen[spec.metric]
                average, count = row[source.alias][2 * k : 2 * k + 2]
                seen[spec.metric] += 1
                out[rule_id] = Measurement(_finite(average) if count else None, int(count))
            else:
                out[rule_id] = _measure(spec, row, i)
        return out


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


def build(project_id: str, rules: list[tuple[str, RuleSpec]], end: datetime) -> ProjectQuery:
    """`end` is a whole minute: every rule looks at the whole minutes before it."""
    params: dict[str, Any] = {"project": project_id, "end": _ts(end)}
    tag_keys = sorted({k for _, spec in rules for k in spec.filter.tags})
    tag_columns = {k: f"tag_{i}" for i, k in enumerate(tag_keys)}
    params |= {f"tk_{i}": k for i, k in enumerate(tag_keys)}

    def reach(spec: RuleSpec) -> datetime:
        start = end - timedelta(minutes=spec.window_minutes)
        return start - DAY if spec.metric == "cost_vs_previous_day" else start

    minute_rules = [s for _, s in rules if s.metric not in AVERAGED]
    rollup_from = min((reach(s) for s in minute_rules if not s.filter.needs_raw), default=end)
    raw_from = min((reach(s) for s in minute_rules if s.filter.needs_raw), default=end)
    params |= {"rollup_from": _ts(rollup_from), "raw_from": _ts(raw_from)}
    blanks = "".join(f", '' AS {c}" for c in tag_columns.values())
    branches = [
        f"SELECT 'rollup' AS src, minute, model, request_model, provider, '' AS tenant{blanks}, "
        + ", ".join(a.name for a in AGGREGATES)
        + f" FROM {BY_MINUTE.table} WHERE project_id = {{project:String}}"
        " AND minute >= {rollup_from:DateTime('UTC')} AND minute < {end:DateTime('UTC')}"
    ]
    if raw_from < end:
        tags = "".join(f", tags[{{tk_{i}:String}}] AS {c}" for i, c in enumerate(tag_columns.values()))
        group = ", ".join(["minute", "model", "request_model", "provider", "tenant", *tag_columns.values()])
        # version = 1, as the rollups: later versions of an inference only add content.
        branches.append(
            "SELECT 'raw' AS src, toDateTime(toStartOfMinute(start_time), 'UTC') AS minute, model, "
            f"request_model, provider, tenant_id AS tenant{tags}, "
            + ", ".join(f"{a.state} AS {a.name}" for a in AGGREGATES)
            + " FROM llm_inferences WHERE project_id = {project:String} AND version = 1"
            " AND start_time >= {raw_from:DateTime64(3, 'UTC')} AND start_time < {end:DateTime64(3, 'UTC')}"
            f" GROUP BY {group}"
        )

    columns: list[str] = []
    averaged: dict[str, list[str]] = {}
    for i, (_, spec) in enumerate(rules):
        start = end - timedelta(minutes=spec.window_minutes)
        params[f"r{i}_from"] = _ts(start)
        source = AVERAGED.get(spec.metric)
        if source is not None:
            cond = f"{source.time} >= {{r{i}_from:DateTime64(3, 'UTC')}}"
            if spec.score_name is not None:
                params[f"r{i}_score"] = spec.score_name
                cond += f" AND name = {{r{i}_score:String}}"
            averaged.setdefault(spec.metric, []).extend(
                [f"avgIf({source.value}, {cond})", f"countIf({cond})"]
            )
            continue
        cond = _condition(
            spec, i, f"{{r{i}_from:DateTime('UTC')}}", "{end:DateTime('UTC')}", tag_columns, params
        )
        columns += _figures(spec, i, cond)
        if spec.metric == "cost_vs_previous_day":
            params[f"r{i}_prev_from"] = _ts(start - DAY)
            params[f"r{i}_prev_end"] = _ts(end - DAY)
            prev = _condition(
                spec,
                i,
                f"{{r{i}_prev_from:DateTime('UTC')}}",
                f"{{r{i}_prev_end:DateTime('UTC')}}",
                tag_columns,
                params,
            )
            columns.append(f"sumIf(cost_usd, {prev}) AS r{i}_prev_cost")
    for metric, figures in averaged.items():
        source = AVERAGED[metric]
        start = min(end - timedelta(minutes=sp.window_minutes) for _, sp in rules if sp.metric == metric)
        params[f"{source.alias}_from"] = _ts(start)
        columns.append(
            f"(SELECT tuple({', '.join(figures)}) FROM {source.table} FINAL"
            f" WHERE project_id = {{project:String}} AND {source.present}"
            f" AND {source.time} >= {{{source.alias}_from:DateTime64(3, 'UTC')}}"
            f" AND {source.time} < {{end:DateTime64(3, 'UTC')}}) AS {source.alias}"
        )
    union = "\n    UNION ALL\n    ".join(branches)
    # count() makes it an aggregation: one row, even over no rows and with only ratings asked for.
    sql = f"SELECT {', '.join(['count() AS source_rows', *columns])}\nFROM (\n    {union}\n)"
    return ProjectQuery(sql, params, tuple(rules))


def _condition(
    spec: RuleSpec, i: int, start: str, end: str, tag_columns: dict[str, str], params: dict[str, Any]
) -> str:
    f = spec.filter
    parts = [f"src = '{'raw' if f.needs_raw else 'rollup'}'", f"minute >= {start}", f"minute < {end}"]
    if f.model is not None:
        params[f"r{i}_model"] = f.model
        parts.append(f"(model = {{r{i}_model:String}} OR request_model = {{r{i}_model:String}})")
    if f.provider is not None:
        params[f"r{i}_provider"] = f.provider
        parts.append(f"provider = {{r{i}_provider:String}}")
    if f.tenant is not None:
        params[f"r{i}_tenant"] = f.tenant
        parts.append(f"tenant = {{r{i}_tenant:String}}")
    for j, (key, value) in enumerate(sorted(f.tags.items())):
        params[f"r{i}_tag{j}"] = value
        parts.append(f"{tag_columns[key]} = {{r{i}_tag{j}:String}}")
    return " AND ".join(parts)


def _figures(spec: RuleSpec, i: int, cond: str) -> list[str]:
    m = spec.metric
    out = [f"sumIf(requests, {cond}) AS r{i}_calls"]
    if m.startswith("latency_"):
        out.append(f"quantilesTDigestMergeIf({_LEVELS})(latency_digest, {cond}) AS r{i}_q")
    elif m.startswith("ttft_"):
        out.append(f"sumIf(ttft_requests, {cond}) AS r{i}_ttft_calls")
        out.append(f"quantilesTDigestMergeIf({_LEVELS})(ttft_digest, {cond}) AS r{i}_q")
    elif m == "error_rate":
        out.append(f"sumIf(successes, {cond}) AS r{i}_ok")
    elif m == "slow_share":
        levels = ", ".join(str(p) for p in _PERCENTS)
        out.append(f"quantilesTDigestMergeIf({levels})(latency_digest, {cond}) AS r{i}_pct")
    elif m in ("cost_per_hour", "cost_per_day", "cost_vs_previous_day"):
        out.append(f"sumIf(cost_usd, {cond}) AS r{i}_cost")
    elif m == "tokens_per_minute":
        out.append(f"sumIf(tokens_total, {cond}) AS r{i}_tokens")
    return out


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _measure(spec: RuleSpec, row: dict[str, Any], i: int) -> Measurement:
    m = spec.metric
    calls = int(row[f"r{i}_calls"])
    window_s = spec.window_minutes * 60
    value: float | None = None
    if calls == 0 and m != "cost_vs_previous_day":
        return Measurement(None, 0)
    if m.startswith("latency_") or m.startswith("ttft_"):
        if m.startswith("ttft_"):
            calls = int(row[f"r{i}_ttft_calls"])
        value = _finite(row[f"r{i}_q"][_QUANTILE_INDEX[m[-3:]] - 1]) if calls else None
    elif m == "error_rate":
        value = 1 - int(row[f"r{i}_ok"]) / calls
    elif m == "slow_share":
        assert spec.slow_ms is not None
        value = sum(1 for q in row[f"r{i}_pct"] if q > spec.slow_ms) / len(_PERCENTS)
    elif m == "cost_per_hour":
        value = float(row[f"r{i}_cost"]) * 3600 / window_s
    elif m == "cost_per_day":
        value = float(row[f"r{i}_cost"]) * 86400 / window_s
    elif m == "cost_vs_previous_day":
        before = float(row[f"r{i}_prev_cost"])
        value = float(row[f"r{i}_cost"]) / before if before > 0 else None
    elif m == "tokens_per_minute":
        value = int(row[f"r{i}_tokens"]) * 60 / window_s
    return Measurement(value, calls)
