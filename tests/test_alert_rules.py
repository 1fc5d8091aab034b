"""The Prometheus side of deploy/: alert rules and scrape config. With promtool installed, the
rules are checked and their unit tests (deploy/prometheus/alerts_test.yml) run; without it, the
same files are checked structurally and every expression is parsed and its metrics looked up."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.promql_helpers import unknown_names

pytestmark = pytest.mark.unit

PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts_test.yml"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (structural checks run)")

DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
# The alerts issue #7 asks for, by what they watch.
REQUIRED = {
    "InferlineLlmLatencyP99High": "inferline_llm_latency_seconds_bucket",
    "InferlineLlmErrorRateHigh": "inferline_llm_inferences_total",
    "InferlineLlmCostSpike": "inferline_llm_cost_usd_total",
    "InferlineIngestRefusing": "inferline_requests_refused_total",
    "InferlineConsumerLagHigh": "inferline_kafka_consumer_lag",
    "InferlineClickHouseInsertErrors": "inferline_clickhouse_insert_errors_total",
    "InferlineAbsent": "inferline_up",
    "InferlineNoDataWritten": "inferline_rows_written_total",
}


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def promtool(*args: str) -> None:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    promtool("check", "rules", RULES.name)


@needs_promtool
def test_alerts_fire_on_their_unit_test_series() -> None:
    promtool("test", "rules", RULE_TESTS.name)


@needs_promtool
def test_promtool_checks_the_scrape_config(tmp_path: Path) -> None:
    """Checked as Prometheus reads it in compose, where the token file is compose's secret."""
    token = tmp_path / "metrics_token"
    token.write_text("a-token")
    shutil.copy(RULES, tmp_path / RULES.name)
    config = (PROMETHEUS / "prometheus.yml").read_text()
    assert "/run/secrets/metrics_token" in config
    (tmp_path / "prometheus.yml").write_text(config.replace("/run/secrets/metrics_token", str(token)))
    promtool("check", "config", str(tmp_path / "prometheus.yml"))


def test_rule_groups_are_well_formed() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert groups and all(g["name"] and g["rules"] for g in groups)
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"Inferline[A-Z][A-Za-z0-9]+", rule["alert"])
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        assert DURATION.match(str(rule["for"])), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_required_alerts_exist() -> None:
    exprs = {r["alert"]: r["expr"] for r in rules()}
    for alert, metric in REQUIRED.items():
        assert metric in exprs.get(alert, ""), alert
    assert "offset 1d" in exprs["InferlineLlmCostSpike"] or "[1d]" in exprs["InferlineLlmCostSpike"]


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_rule_expression_parses_and_names_exported_metrics(rule: dict[str, Any]) -> None:
    assert unknown_names(rule["expr"]) == []


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())
    assert cases["rule_files"] == [RULES.name]
    fired = {
        check["alertname"]
        for test in cases["tests"]
        for check in test["alert_rule_test"]
        if check["exp_alerts"]
    }
    assert fired == {r["alert"] for r in rules()}


def test_prometheus_scrapes_every_role_of_the_compose_file() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == [RULES.name]
    scraped: dict[str, int] = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            scraped |= dict.fromkeys(sd["names"], sd["port"])
            # The roles' /metrics take a bearer token: the secret compose gives Prometheus.
            assert job["authorization"] == {"credentials_file": "/run/secrets/metrics_token"}, job
    assert "metrics_token" in compose["prometheus"]["secrets"]
    assert yaml.safe_load(COMPOSE.read_text())["secrets"]["metrics_token"] == {
        "environment": "INFERLINE_METRICS_TOKEN"
    }
    roles = {name: s for name, s in compose.items() if "--role" in s.get("command", [])}
    assert set(roles) == {"receiver", "processor", "writer"}
    for name in roles:
        assert scraped.get(name) == 8080, f"{name}'s API port (/metrics) is not scraped"
    # Prometheus reads this directory; alert rules need the trailing day for the cost baseline.
    prometheus = compose["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    (days,) = [
        m[1] for a in prometheus["command"] if (m := re.fullmatch(r"--storage.tsdb.retention.time=(\d+)d", a))
    ]
    assert int(days) >= 2


def test_clickhouse_in_compose_mounts_the_system_log_ttls() -> None:
    clickhouse = yaml.safe_load(COMPOSE.read_text())["services"]["clickhouse"]
    mounted = {m.split(":")[0]: m.split(":")[1] for m in clickhouse["volumes"]}
    for path in (ROOT / "deploy" / "clickhouse" / "config.d").glob("*.xml"):
        target = mounted.get(f"./clickhouse/config.d/{path.name}")
        assert target == f"/etc/clickhouse-server/config.d/{path.name}", path.name
