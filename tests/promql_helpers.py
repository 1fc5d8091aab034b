"""PromQL checks shared by the dashboard and alert-rule tests: an expression parses, and every
series and label it names is one the processes export (inferline.core.metrics), so a renamed metric
breaks the test instead of silently emptying a panel or disarming an alert."""

from __future__ import annotations

import re
from functools import cache

import promql_parser
from prometheus_client.metrics import MetricWrapperBase

from inferline.core import metrics
from inferline.core.batch_histogram import BatchHistogram

# Labels Prometheus adds to every scraped series, and the one histograms add to buckets.
TARGET_LABELS = frozenset({"job", "instance"})
# Series Prometheus makes itself for every target (`up` is 0 when a scrape fails).
PROMETHEUS_SERIES = {"up": TARGET_LABELS, "scrape_duration_seconds": TARGET_LABELS}

# Grafana's built-in variables and this repository's dashboard variables, as Grafana fills them.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "30s",
    "$__range": "3h",
    "$job": ".*",
}


@cache
def exported_series() -> dict[str, frozenset[str]]:
    """Every series name the processes export → its label names."""
    series: dict[str, frozenset[str]] = dict(PROMETHEUS_SERIES)
    for metric in vars(metrics).values():
        if isinstance(metric, BatchHistogram):
            labels = frozenset({metric.label}) | TARGET_LABELS
            series[f"{metric.name}_bucket"] = labels | {"le"}
            series[f"{metric.name}_sum"] = series[f"{metric.name}_count"] = labels
            continue
        if not isinstance(metric, MetricWrapperBase):
            continue
        labels = frozenset(metric._labelnames) | TARGET_LABELS
        name = metric._name
        if metric._type == "counter":
            series[f"{name}_total"] = labels
        elif metric._type == "histogram":
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_sum"] = series[f"{name}_count"] = labels
        else:
            series[name] = labels
    return series


def fill_grafana_variables(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    leftover = re.search(r"\$\{?\w+", expr)
    assert leftover is None, f"unknown variable {leftover[0]} in {expr!r}"
    return expr


def unknown_names(expr: str) -> list[str]:
    """Parses `expr` (ValueError when it is not PromQL) and returns the series and labels it uses
    that no process exports, as readable strings; empty when all is known."""
    tree = promql_parser.parse(expr)
    known = exported_series()
    problems: list[str] = []

    def selectors(node: promql_parser.Expr) -> list[promql_parser.VectorSelector]:
        found: list[promql_parser.VectorSelector] = []

        def collect(n: promql_parser.Expr) -> None:
            if isinstance(n, promql_parser.VectorSelector):
                found.append(n)

        promql_parser.walk(node, collect)
        return found

    def labels_of(selector: promql_parser.VectorSelector) -> frozenset[str]:
        return known.get(selector.name or "", frozenset())

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name not in known:
                problems.append(f"series {node.name!r}")
                return
            for matcher in node.matchers.matchers:
                if matcher.name != "__name__" and matcher.name not in labels_of(node):
                    problems.append(f"label {matcher.name!r} of {node.name}")
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            for selector in selectors(node.expr):
                if selector.name not in known:
                    continue  # reported by the selector itself
                for label in node.modifier.labels:
                    if label not in labels_of(selector):
                        problems.append(f"label {label!r} of {selector.name} in {node.op}")

    promql_parser.walk(tree, visit)
    return problems
