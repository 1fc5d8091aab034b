"""`BatchHistogram` scrapes exactly as prometheus-client's `Histogram` would after the same
observations: dashboards and alert rules read `_bucket{le=...}`, `_count` and `_sum`."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from inferline.core.batch_histogram import BatchHistogram

pytestmark = pytest.mark.unit

BUCKETS = (0.05, 0.1, 0.5, 1, 2, 5, 30)


def _scrape(registry: CollectorRegistry) -> list[str]:
    # Without `_created` series: inferline turns them off (core/metrics.py).
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def _pair() -> tuple[BatchHistogram, Histogram, CollectorRegistry, CollectorRegistry]:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("call_seconds", "model call duration", "model", BUCKETS, registry=ours)
    plain = Histogram("call_seconds", "model call duration", ["model"], buckets=BUCKETS, registry=theirs)
    return batch, plain, ours, theirs


def test_the_scrape_is_the_same_as_a_histogram_observed_value_by_value() -> None:
    batch, plain, ours, theirs = _pair()
    rng = random.Random(7)
    for _ in range(40):
        model = rng.choice(["gpt-4o", "claude-sonnet", "other"])
        # Values on the bounds themselves belong to that bucket (le is <=), past the last to +Inf.
        values = [rng.choice([rng.uniform(0, 60), *BUCKETS]) for _ in range(rng.randint(0, 30))]
        batch.observe_many(model, values)
        for v in values:
            plain.labels(model).observe(v)
    assert _scrape(ours) == _scrape(theirs)
    assert any(line.startswith('call_seconds_bucket{le="+Inf",model="gpt-4o"}') for line in _scrape(ours))


def test_nothing_is_scraped_before_the_first_observation_and_buckets_must_be_sorted() -> None:
    _, _, ours, theirs = _pair()
    assert _scrape(ours) == _scrape(theirs)
    with pytest.raises(ValueError, match="sorted"):
        BatchHistogram("x_seconds", "x", "model", (1, 0.5), registry=None)
