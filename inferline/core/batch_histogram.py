"""A Prometheus histogram fed a batch of observations at a time.

`prometheus_client.Histogram.observe` costs ~1.6 µs a value (two locked increments and a Python
loop over the buckets), and the exporter observes two values per committed model call (latency,
time to first token): ~3.3 µs per inference in the storing process, more than the rest of its
per-row bookkeeping. Here a batch's values are counted per bucket with one `bisect` each and added
under one lock; the series are exposed through prometheus-client's custom-collector interface,
with the same names, labels and bucket bounds a `Histogram` would have.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate

from prometheus_client.core import REGISTRY, CollectorRegistry, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

INF = float("inf")


class BatchHistogram:
    """A histogram with one label, observed a batch of values per label value at a time."""

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError("buckets not in sorted order")
        if not bounds or bounds[-1] != INF:
            bounds.append(INF)
        self.name = name
        self.documentation = documentation
        self.label = label
        self._bounds = tuple(bounds)
        self._le = [floatToGoString(b) for b in bounds]
        # Per label value: the count in each bucket (not cumulative) and the sum.
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe_many(self, label_value: str, values: Iterable[float]) -> None:
        bounds = self._bounds
        with self._lock:
            counts = self._counts.get(label_value)
            if counts is None:
                counts = self._counts[label_value] = [0] * len(bounds)
            total = self._sums.get(label_value, 0.0)
            for value in values:
                # The first bucket whose upper bound is >= value, as `Histogram.observe` finds it;
                # the sum added in the same order, so it is the same float.
                counts[bisect_left(bounds, value)] += 1
                total += value
            self._sums[label_value] = total

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=[self.label])

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        with self._lock:
            series = [(v, list(counts), self._sums[v]) for v, counts in self._counts.items()]
        for label_value, counts, total in series:
            cumulative = accumulate(counts)
            family.add_metric([label_value], list(zip(self._le, cumulative, strict=True)), total)
        yield family
