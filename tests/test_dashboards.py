"""The Grafana dashboards: they parse, use the provisioned data sources, every ClickHouse panel
runs against the real schema (macros expanded as Grafana's ClickHouse plugin expands them) and
returns its columns and the right numbers, and every Prometheus panel names exported metrics."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferline.storage.clickhouse import connect
from inferline.storage.schema import migrate
from tests.conftest import ROOT
from tests.promql_helpers import fill_grafana_variables, unknown_names

pytestmark = pytest.mark.integration

DEPLOY = ROOT / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
PLUGIN = "grafana-clickhouse-datasource"

# Time range and interval of the simulated panel (the plugin's query.TimeRange / query.Interval).
# When the store's rows were written (they are placed relative to it): set by the `store`
# fixture, not at import, which can be many minutes earlier in a long run.
_CLOCK = {"now": int(time.time())}


def now() -> int:
    return _CLOCK["now"]


INTERVAL_S = 60


def expand_macros(
    sql: str, from_s: int | None = None, to_s: int | None = None, interval_s: int = INTERVAL_S
) -> str:
    """What the plugin's backend (pkg/macros) sends to ClickHouse for each macro; by default the
    dashboard's range: the last 6 hours."""
    from_s = now() - 6 * 3600 if from_s is None else from_s
    to_s = now() + 300 if to_s is None else to_s
    time_dt = (f"toDateTime({from_s})", f"toDateTime({to_s})")
    time_ms = (f"fromUnixTimestamp64Milli({from_s * 1000})", f"fromUnixTimestamp64Milli({to_s * 1000})")
    dates = tuple(f"toDate('{time.strftime('%Y-%m-%d', time.gmtime(t))}')" for t in (from_s, to_s))
    with_column = {
        "timeFilter": lambda c: f"{c} >= {time_dt[0]} AND {c} <= {time_dt[1]}",
        "timeFilter_ms": lambda c: f"{c} >= {time_ms[0]} AND {c} <= {time_ms[1]}",
        "dateFilter": lambda c: f"{c} >= {dates[0]} AND {c} <= {dates[1]}",
        "timeInterval": lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {interval_s} second)",
        "timeInterval_ms": lambda c: (
            f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {interval_s * 1000} millisecond)"
        ),
    }
    plain = {
        "fromTime_ms": time_ms[0],
        "toTime_ms": time_ms[1],
        "fromTime": time_dt[0],
        "toTime": time_dt[1],
        "interval_s": str(interval_s),
    }
    sql = re.sub(
        r"\$__(\w+)\(([^()]*)\)",
        lambda m: with_column[m[1]](m[2].strip()) if m[1] in with_column else m[0],
        sql,
    )
    for name, value in plain.items():
        sql = re.sub(rf"\$__{name}\b", value, sql)
    leftover = re.search(r"\$__\w+", sql)
    assert leftover is None, f"{leftover[0]} is not a macro of {PLUGIN}"
    return sql


def fill_variables(sql: str, projects: list[str]) -> str:
    """Grafana's template interpolation, which runs before the plugin's macros."""
    sql = sql.replace("${project:singlequote}", ",".join(f"'{p}'" for p in projects))
    leftover = re.search(r"\$\{[^}]+\}|\$(?!__)\w+", sql)
    assert leftover is None, f"unknown variable {leftover[0]}"
    return sql


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def clickhouse_panels() -> list[tuple[str, dict[str, Any]]]:
    return [
        (p["title"], p)
        for d in DASHBOARDS
        for p in panels(load(d))
        if p.get("datasource", {}).get("type") == PLUGIN
    ]


def provisioned_datasource_list() -> list[dict[str, Any]]:
    path = DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yml"
    return yaml.safe_load(path.read_text())["datasources"]


def provisioned_datasources() -> dict[str, str]:
    return {d["uid"]: d["type"] for d in provisioned_datasource_list()}


# --- structure ------------------------------------------------------------------------------------


def test_both_dashboards_ship() -> None:
    assert {d.name for d in DASHBOARDS} == {"llm.json", "pipeline.json"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_parses_and_uses_provisioned_datasources(path: Path) -> None:
    dashboard = load(path)
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    sources = provisioned_datasources()
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        if panel["type"] == "row":
            continue
        for source in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert sources.get(source["uid"]) == source["type"], (panel["title"], source)
        for target in panel["targets"]:
            assert target["refId"]
            assert target.get("rawSql") or target.get("expr"), panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert sources.get(variable["datasource"]["uid"]) == variable["datasource"]["type"]


def test_grafana_in_compose_loads_the_provisioning_and_the_plugin() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {m.split(":")[0]: m.split(":")[1] for m in grafana["volumes"]}
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/dashboards.yml").read_text())
    assert mounts["./grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    assert PLUGIN in grafana["environment"]["GF_INSTALL_PLUGINS"]
    (ch,) = [d for d in provisioned_datasource_list() if d["type"] == PLUGIN]
    assert ch["jsonData"]["host"] in compose["services"]
    variable = re.search(r"\$\{?(\w+)", ch["jsonData"]["username"])
    assert variable is not None, ch["jsonData"]["username"]  # the user comes from the environment
    assert variable[1] in grafana["environment"]


# --- ClickHouse panels against the schema -----------------------------------------------------------

# (project, model, provider, user, tenant, latency_ms, ttft_ms, success, error_type, cost, in, out,
#  minutes ago). gpt-4o-mini reports no TTFT; one call of acme fails.
CALLS = [
    ("acme", "gpt-4o-mini", "openai", "alice", "t-red", 300, None, True, "", "0.002", 100, 50, 10),
    ("acme", "gpt-4o-mini", "openai", "bob", "t-red", 500, None, False, "timeout", "0.001", 80, 0, 20),
    (
        "acme",
        "claude-haiku",
        "anthropic",
        "alice",
        "t-blue",
        1200,
        400,
        True,
        "",
        "0.020",
        1000,
        200,
        30,
    ),
    ("globex", "gpt-4o-mini", "openai", "carol", "t-green", 250, None, True, "", "0.500", 10, 10, 5),
]

# Every ClickHouse panel's columns, in order: a renamed column breaks the panel's overrides.
COLUMNS = {
    "Cost": ["cost_usd"],
    "Calls": ["calls"],
    "Success rate": ["success_rate"],
    "Tokens": ["tokens"],
    "Latency p95": ["p95_ms"],
    "Unpriced calls": ["unpriced_calls"],
    "Cost by model": ["time", "model", "cost_usd"],
    "Calls by model": ["time", "model", "calls"],
    "Latency p50 / p95 / p99 by model": ["time", "model", "p50", "p95", "p99"],
    "Time to first token p50 / p95 / p99 by model": ["time", "model", "p50", "p95", "p99"],
    "Tokens per second by model": ["time", "model", "input_per_s", "output_per_s"],
    "Success rate by model": ["time", "model", "success_rate"],
    "Models": [
        "model",
        "provider",
        "calls",
        "success_rate",
        "cost_usd",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "ttft_p50_ms",
        "ttft_p95_ms",
        "ttft_p99_ms",
    ],
    "Top users by cost": ["user_id", "calls", "cost_usd", "tokens", "avg_latency_ms"],
    "Top tenants by cost": ["tenant_id", "calls", "cost_usd", "tokens", "users"],
    "Slowest calls": [
        "start_time",
        "project_id",
        "model",
        "latency_ms",
        "ttft_ms",
        "success",
        "error_type",
        "trace_id",
    ],
    "Errors by type": ["model", "error_type", "calls"],
    "Cost by project": ["project_id", "calls", "cost_usd", "input_tokens", "output_tokens"],
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    client = connect(f"chdb://{tmp_path_factory.mktemp('dashboards') / 'clickhouse'}")
    migrate(client)
    _CLOCK["now"] = int(time.time())
    for i, (
        project,
        model,
        provider,
        user,
        tenant,
        latency,
        ttft,
        ok,
        error,
        cost,
        inp,
        out,
        ago,
    ) in enumerate(CALLS):
        start = f"now64(9) - INTERVAL {ago} MINUTE"
        values = (
            f"'{project}', toUUID('00000000-0000-0000-0000-00000000000{i}'), 'trace{i}', {start}, "
            f"{start} + INTERVAL {latency} MILLISECOND, {latency}, {'NULL' if ttft is None else ttft}, "
            f"'{model}', '{provider}', '{user}', '{tenant}', {str(ok).lower()}, '{error}', {cost}, "
            f"{inp}, {out}, {inp + out}"
        )
        columns = (
            "project_id, inference_id, trace_id, start_time, end_time, latency_ms, ttft_ms, model, provider, "
            "user_id, tenant_id, success, error_type, total_cost_usd, input_tokens, output_tokens, "
            "total_tokens, version"
        )
        client.command(f"INSERT INTO llm_inferences ({columns}) VALUES ({values}, 1)")
        if model.startswith("claude"):  # content arriving later rewrites the row at version 2
            client.command(f"INSERT INTO llm_inferences ({columns}) VALUES ({values}, 2)")
    yield client
    client.close()  # chDB holds one path per process


def run_panel(store: Any, panel: dict[str, Any], projects: list[str]) -> Any:
    (target,) = panel["targets"]
    return store.query(expand_macros(fill_variables(target["rawSql"], projects)))


def by_title(title: str) -> dict[str, Any]:
    return dict(clickhouse_panels())[title]


def test_every_clickhouse_panel_is_checked() -> None:
    assert {title for title, _ in clickhouse_panels()} == set(COLUMNS)


@pytest.mark.parametrize("title", list(COLUMNS))
def test_clickhouse_panel_runs_and_returns_its_columns(store: Any, title: str) -> None:
    panel = by_title(title)
    result = run_panel(store, panel, ["acme", "globex"])
    assert list(result.column_names) == COLUMNS[title]
    assert result.result_rows, f"{title}: no rows for calls inside the time range"
    if panel["targets"][0]["format"] == 0:  # time series: the plugin needs a time column first
        assert result.column_types[0].name.startswith("DateTime")


def test_panels_answer_the_numbers_of_the_calls(store: Any) -> None:
    def rows(title: str, projects: tuple[str, ...] = ("acme",)) -> list[tuple]:
        return run_panel(store, by_title(title), list(projects)).result_rows

    assert rows("Cost") == [(pytest.approx(0.023),)]  # the rewritten claude row counted once
    assert rows("Cost", ("acme", "globex")) == [(pytest.approx(0.523),)]
    assert rows("Calls") == [(3,)]
    assert rows("Success rate") == [(pytest.approx(2 / 3),)]
    assert rows("Tokens") == [(1430,)]
    users = rows("Top users by cost")
    assert [(u, calls, round(cost, 6)) for u, calls, cost, *_ in users] == [
        ("alice", 2, 0.022),
        ("bob", 1, 0.001),
    ]
    tenants = rows("Top tenants by cost")
    assert [(t, round(cost, 6), n) for t, _, cost, _, n in tenants] == [
        ("t-blue", 0.02, 1),
        ("t-red", 0.003, 2),
    ]
    assert rows("Errors by type") == [("gpt-4o-mini", "timeout", 1)]
    assert rows("Slowest calls")[0][2] == "claude-haiku"
    # Only models that report a time to first token are drawn.
    assert {r[1] for r in rows("Time to first token p50 / p95 / p99 by model")} == {"claude-haiku"}
    models = {r[0]: r for r in rows("Models")}
    assert models["gpt-4o-mini"][3] == pytest.approx(0.5) and models["gpt-4o-mini"][8] is None
    assert models["claude-haiku"][8] == pytest.approx(400)
    per_s = rows("Tokens per second by model")
    assert sum(r[2] for r in per_s) * INTERVAL_S == pytest.approx(1180)  # input tokens, acme


def test_time_range_limits_what_panels_read(store: Any) -> None:
    panel = by_title("Cost")
    sql = fill_variables(panel["targets"][0]["rawSql"], ["acme"])
    later = store.query(expand_macros(sql, from_s=now() - 15 * 60, to_s=now() + 300)).result_rows
    assert later == [(pytest.approx(0.002),)]  # only alice's gpt-4o-mini call, 10 minutes ago


def test_project_variable_lists_the_projects(store: Any) -> None:
    dashboard = load(DEPLOY / "grafana" / "dashboards" / "llm.json")
    (variable,) = dashboard["templating"]["list"]
    assert variable["name"] == "project" and variable["multi"] and variable["includeAll"]
    assert store.query(expand_macros(variable["query"])).result_rows == [("acme",), ("globex",)]


# --- Prometheus panels -------------------------------------------------------------------------------


def prometheus_targets() -> list[tuple[str, str]]:
    return [
        (f"{d.stem}: {p['title']} {t['refId']}", t["expr"])
        for d in DASHBOARDS
        for p in panels(load(d))
        for t in p.get("targets", [])
        if t.get("datasource", {}).get("type") == "prometheus"
    ]


def test_the_pipeline_dashboard_covers_the_pipeline_metrics() -> None:
    used = " ".join(expr for _, expr in prometheus_targets())
    for metric in (
        "inferline_otlp_requests_total",
        "inferline_otlp_records_accepted_total",
        "inferline_otlp_records_rejected_total",
        "inferline_requests_refused_total",
        "inferline_queue_depth",
        "inferline_batch_rows_bucket",
        "inferline_flush_duration_seconds_bucket",
        "inferline_clickhouse_insert_errors_total",
        "inferline_kafka_consumer_lag",
        "inferline_dlq_records_total",
        "inferline_llm_tokens_total",
        "inferline_llm_cost_usd_total",
    ):
        assert metric in used, metric


@pytest.mark.parametrize(("where", "expr"), prometheus_targets())
def test_prometheus_panel_names_only_exported_metrics(where: str, expr: str) -> None:
    assert unknown_names(fill_grafana_variables(expr)) == [], where
