"""The query benchmark's store: N inferences loaded straight into chDB, and the queries users run.

    python -m bench.query --data-dir DIR --rows 10000000 [--runs 5] [--json PATH]

Creates the service's schema under DIR (the same layout as INFERLINE_DATA_DIR, so the service can
be started on it afterwards), fills `llm_inferences` with one INSERT … SELECT FROM numbers(N):
7 days, 20 projects ("default" holds ~40%), 12 models from 6 providers with skewed popularity,
Pareto-skewed users, log-normal latencies (per-model scale), TTFT on streaming calls, log-normal
token counts, cost = tokens × per-model price, 2% errors. The materialized views that feed the
rollups are dropped for the load and recreated after it (fed by one GROUP BY over the loaded rows
when --backfill is on): per-block view inserts cost several times the load itself.

Then times each query (median of --runs after one warm-up) directly on the engine.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inferline.core.logging import configure_logging
from inferline.storage.clickhouse import connect
from inferline.storage.schema import migrate

# model, provider, share (%), input $/M, output $/M, latency scale
MODELS = [
    ("gpt-4o-mini", "openai", 30, 0.15, 0.60, 1.0),
    ("gpt-4o", "openai", 10, 2.50, 10.0, 1.4),
    ("gpt-4.1", "openai", 8, 2.00, 8.00, 1.6),
    ("gpt-4.1-mini", "openai", 6, 0.40, 1.60, 1.0),
    ("o3-mini", "openai", 3, 1.10, 4.40, 3.0),
    ("claude-sonnet-4-5", "anthropic", 15, 3.00, 15.0, 1.5),
    ("claude-3-5-haiku", "anthropic", 6, 0.80, 4.00, 0.8),
    ("gemini-2.5-flash", "gcp.gemini", 10, 0.30, 2.50, 0.7),
    ("gemini-2.5-pro", "gcp.gemini", 4, 1.25, 10.0, 1.6),
    ("llama-3.1-70b", "aws.bedrock", 3, 0.72, 0.72, 1.2),
    ("mistral-large", "mistral_ai", 3, 2.00, 6.00, 1.3),
    ("command-r-plus", "cohere", 2, 2.50, 10.0, 1.3),
]
PROJECT = "default"


def _array(values: list[Any]) -> str:
    return "[" + ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values) + "]"


def load_sql(rows: int, one_project: bool = False) -> str:
    """INSERT … SELECT generating `rows` inferences; constant arrays index per-model properties.
    `one_project`: every row in PROJECT instead of ~40% there and the rest in 19 others."""
    pick = [i + 1 for i, m in enumerate(MODELS) for _ in range(m[2])]  # model index by share
    project = f"'{PROJECT}'" if one_project else f"if(p = 1, '{PROJECT}', concat('proj-', toString(p)))"
    return f"""
INSERT INTO llm_inferences (project_id, inference_id, trace_id, span_id, parent_span_id, start_time,
  end_time, latency_ms, ttft_ms, provider, model, request_model, response_id, operation, convention, success,
  error_type, status_message, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
  reasoning_tokens, total_tokens, input_cost_usd, output_cost_usd, total_cost_usd, price_status,
  prompt_messages, response_messages, streaming, finish_reasons, temperature, top_p, max_tokens, user_id,
  session_id, tenant_id, service_name, environment, server_address, agent_name, tags, labels, pii_found,
  prompt_sentiment,
  prompt_sentiment_label, response_sentiment, response_sentiment_label, version)
SELECT
  {project} AS project_id,
  reinterpretAsUUID(sipHash128(number)) AS inference_id,
  lower(hex(sipHash128(number, 1))) AS trace_id,
  lower(hex(sipHash64(number))) AS span_id,
  '' AS parent_span_id,
  now64(9) - toIntervalMillisecond(rand64(1) % (7 * 86400000)) AS start_time,
  start_time + toIntervalMillisecond(toUInt64(latency_ms)) AS end_time,
  least({_array([m[5] for m in MODELS])}[m] * randLogNormal(log(700), 0.6), 120000) AS latency_ms,
  if(streaming, latency_ms * (0.1 + 0.3 * rand(2) / 4294967295.0), NULL) AS ttft_ms,
  {_array([m[1] for m in MODELS])}[m] AS provider,
  {_array([m[0] for m in MODELS])}[m] AS model,
  model AS request_model,
  '' AS response_id, 'chat' AS operation,
  ['otel_genai', 'openinference', 'openllmetry', 'vercel_ai', 'langfuse', 'openlit'][1 + rand(3) % 6]
    AS convention,
  rand(4) % 50 != 0 AS success, if(success, '', 'RateLimitError') AS error_type, '' AS status_message,
  toUInt64(least(randLogNormal(log(1200), 0.9), 200000)) AS input_tokens,
  toUInt64(least(randLogNormal(log(250), 0.8), 16000)) AS output_tokens,
  if(rand(5) % 3 = 0, intDiv(input_tokens * (rand(6) % 90), 100), 0) AS cache_read_tokens,
  0 AS cache_write_tokens, 0 AS reasoning_tokens, input_tokens + output_tokens AS total_tokens,
  toDecimal64(input_tokens * {_array([m[3] for m in MODELS])}[m] / 1000000, 12) AS input_cost_usd,
  toDecimal64(output_tokens * {_array([m[4] for m in MODELS])}[m] / 1000000, 12) AS output_cost_usd,
  input_cost_usd + output_cost_usd AS total_cost_usd,
  'priced' AS price_status, '[]' AS prompt_messages, '[]' AS response_messages,
  rand(7) % 10 < 7 AS streaming, ['stop'] AS finish_reasons, 0.2 AS temperature, NULL AS top_p,
  1024 AS max_tokens,
  concat('u_', toString(toUInt32(pow(rand(8) / 4294967295.0, 3) * 50000))) AS user_id,
  concat('s_', toString(rand(9) % 500000)) AS session_id,
  ['acme', 'globex', 'initech'][1 + rand(10) % 3] AS tenant_id,
  ['checkout-bot', 'support-api', 'search', 'summariser', 'agent-runner', 'translate'][1 + rand(11) % 6]
    AS service_name,
  'production' AS environment, '' AS server_address, '' AS agent_name, map() AS tags, [] AS labels,
  map() AS pii_found, NULL AS prompt_sentiment, '' AS prompt_sentiment_label, NULL AS response_sentiment,
  '' AS response_sentiment_label, 1 AS version
FROM (
  SELECT number,
    {_array(pick)}[1 + rand(12) % {len(pick)}] AS m,
    if(rand(13) % 100 < 40, 1, 2 + rand(14) % 19) AS p
  FROM numbers({rows})
)"""


# name → (what a user asks, SQL). `{project}` is the key's project: named explicitly here; the
# SQL endpoint adds the same filter on its own.
# The minute rollup the analytics API reads is always filled (a GROUP BY over the load, ~2-3 s
# per million rows here); the others only with --backfill.
MINUTE_ROLLUP = "inference_stats_by_minute"

QUERIES: dict[str, tuple[str, str]] = {
    "p95_cost_by_model_rollup": (
        "p95 latency + total cost by model, one project, 7 days, minute rollup",
        "SELECT model, quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(latency_digest)[3] AS p95_ms, "
        f"sum(cost_usd) AS cost_usd FROM {MINUTE_ROLLUP} "
        "WHERE project_id = '{project}' AND minute >= now() - INTERVAL 7 DAY "
        "GROUP BY model ORDER BY cost_usd DESC",
    ),
    "p95_cost_by_model": (
        "p95 latency + total cost by model, one project, 7 days",
        "SELECT model, quantile(0.95)(latency_ms) AS p95_ms, sum(total_cost_usd) AS cost_usd "
        "FROM llm_inferences WHERE project_id = '{project}' AND start_time >= now() - INTERVAL 7 DAY "
        "GROUP BY model ORDER BY cost_usd DESC",
    ),
    "p95_cost_by_model_all_rows": (
        "p95 latency + total cost by model, every row (no project filter)",
        "SELECT model, quantile(0.95)(latency_ms) AS p95_ms, sum(total_cost_usd) AS cost_usd "
        "FROM llm_inferences WHERE start_time >= now() - INTERVAL 7 DAY "
        "GROUP BY model ORDER BY cost_usd DESC",
    ),
    "latency_ttft_cost_by_model": (
        "p50/p95/p99 latency and TTFT, calls, total cost by model, one project, 7 days",
        "SELECT model, count() AS calls, quantiles(0.5, 0.95, 0.99)(latency_ms) AS latency_ms, "
        "quantiles(0.5, 0.95, 0.99)(ttft_ms) AS ttft_ms, sum(total_cost_usd) AS cost_usd "
        "FROM llm_inferences WHERE project_id = '{project}' AND start_time >= now() - INTERVAL 7 DAY "
        "GROUP BY model ORDER BY cost_usd DESC",
    ),
    "top_users_by_cost": (
        "top 20 users by cost, one project, 7 days",
        "SELECT user_id, count() AS calls, sum(total_tokens) AS tokens, sum(total_cost_usd) AS cost_usd "
        "FROM llm_inferences WHERE project_id = '{project}' AND start_time >= now() - INTERVAL 7 DAY "
        "GROUP BY user_id ORDER BY cost_usd DESC LIMIT 20",
    ),
    "daily_cost_by_model": (
        "cost per day and model, one project, 7 days",
        "SELECT toDate(start_time) AS day, model, sum(total_cost_usd) AS cost_usd "
        "FROM llm_inferences WHERE project_id = '{project}' AND start_time >= now() - INTERVAL 7 DAY "
        "GROUP BY day, model ORDER BY day, model",
    ),
}
ENDPOINT_QUERIES = (
    "p95_cost_by_model_rollup",
    "p95_cost_by_model",
    "latency_ttft_cost_by_model",
    "top_users_by_cost",
    "daily_cost_by_model",
)


def median_ms(run: Any, runs: int) -> dict[str, float]:
    run()  # warm: the first read of a column pulls it into the page cache
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1), "runs": runs}


def dependent_views(client: Any) -> list[tuple[str, str, str]]:
    """(name, CREATE statement, target table) of the materialized views reading llm_inferences."""
    deps = client.query(
        "SELECT dependencies_table FROM system.tables "
        "WHERE database = currentDatabase() AND name = 'llm_inferences'"
    ).result_rows
    names = deps[0][0] if deps else []
    out = []
    for name in names:
        create = client.query(
            "SELECT create_table_query FROM system.tables "
            "WHERE database = currentDatabase() AND name = {n:String}",
            parameters={"n": name},
        ).result_rows[0][0]
        target = re.search(r"\bTO\s+([`\w.]+)", create)
        out.append((name, create, target.group(1) if target else ""))
    return out


def load(client: Any, rows: int, backfill: bool, one_project: bool = False) -> dict[str, Any]:
    views = dependent_views(client)
    for name, _, _ in views:
        client.command(f"DROP VIEW `{name}`")
    started = time.perf_counter()
    # optimize_on_insert=0: the rows are unique, so ReplacingMergeTree's insert-time merge only costs.
    client.command(
        load_sql(rows, one_project),
        settings={"optimize_on_insert": 0, "max_partitions_per_insert_block": 1000},
    )
    load_s = time.perf_counter() - started
    backfill_s = rollup_s = 0.0
    for _name, create, target in views:
        client.command(create)
        if target and (backfill or target.endswith(f".{MINUTE_ROLLUP}")):
            as_select = re.search(r"\bAS\s+SELECT\b", create, re.IGNORECASE)
            assert as_select is not None, create  # every materialized view is CREATE … AS SELECT
            select = create[as_select.start() + 3 :]
            started = time.perf_counter()
            client.command(
                f"INSERT INTO {target} {select}", settings={"max_partitions_per_insert_block": 1000}
            )
            if target.endswith(f".{MINUTE_ROLLUP}"):
                rollup_s = time.perf_counter() - started
            else:
                backfill_s += time.perf_counter() - started
    return {
        "load_s": round(load_s, 1),
        "rows_per_s": round(rows / load_s),
        "views": len(views),
        "backfill_s": round(backfill_s, 1),
        "rollup_fill_s": round(rollup_s, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backfill", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    configure_logging("error")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    client = connect(f"chdb://{(args.data_dir / 'clickhouse').resolve()}")
    migrate(client)
    print(f"  loading {args.rows:,} inferences over 7 days into chDB…", flush=True)
    loaded = load(client, args.rows, args.backfill)
    total, in_project = client.query(
        "SELECT count(), countIf(project_id = {p:String}) FROM llm_inferences", parameters={"p": PROJECT}
    ).result_rows[0]
    disk = client.query(
        "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = currentDatabase() "
        "AND table = 'llm_inferences'"
    ).result_rows[0][0]
    print(
        f"  loaded {total:,} rows in {loaded['load_s']} s ({loaded['rows_per_s']:,} rows/s),"
        f" {disk / 2**20:,.0f} MiB on disk; project '{PROJECT}' has {in_project:,};"
        f" {loaded['views']} rollup views"
        + f"; minute rollup filled in {loaded['rollup_fill_s']} s"
        + (f", the others backfilled in {loaded['backfill_s']} s" if args.backfill else ""),
        flush=True,
    )
    direct: dict[str, Any] = {}
    for name, (label, sql) in QUERIES.items():
        sql = sql.format(project=PROJECT)
        direct[name] = {"label": label, **median_ms(lambda sql=sql: client.query(sql), args.runs)}
        print(
            f"  {label:<78} {direct[name]['median_ms']:8.1f} ms (median of {args.runs}, direct)", flush=True
        )
    client.close()
    figures = {"rows": total, "project_rows": in_project, "bytes_on_disk": disk, **loaded, "direct": direct}
    if args.json:
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    return figures


if __name__ == "__main__":
    main()
