"""Reading a role's /metrics the way Prometheus does: the text format, parsed by prometheus-client."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# Every service the tests and the benchmark start takes this token (INFERLINE_METRICS_TOKEN).
METRICS_TOKEN = "metrics-token-of-the-tests"
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def metrics_text(api_url: str) -> str:
    """A role's /metrics page, read with the metrics token as Prometheus is configured to."""
    r = httpx.get(f"{api_url}/metrics", headers=METRICS_AUTH, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


def parse(text: str) -> Samples:
    """The samples of a /metrics page, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(api_url: str) -> Samples:
    return parse(metrics_text(api_url))


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """The samples of `name` summed by their value of `label` (e.g. per table)."""
    out: dict[str, float] = {}
    for (sample_name, labels), v in samples.items():
        key = dict(labels).get(label)
        if sample_name == name and key is not None:
            out[key] = out.get(key, 0.0) + v
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def series(samples: Samples, name: str) -> list[Mapping[str, str]]:
    """The label sets of every sample called `name`."""
    return [dict(labels) for n, labels in samples if n == name]
