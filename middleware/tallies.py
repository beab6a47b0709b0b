"""Metrics of the request path kept in plain Python, exported through a prometheus_client collector.

A prometheus_client Counter or Histogram takes a lock and walks its buckets on every update. Here a request appends
its update to a deque (atomic, so any thread may update); `Tallies.fold()` adds the queued updates into plain
numbers, under a lock, when the registry is collected (a scrape) or every FOLD_EVERY updates, and `collect()`
exports them as the families, names and labels prometheus_client's metrics would (without `_created` series).
For one process only: with PROMETHEUS_MULTIPROC_DIR the scrape may happen in another process, and
IdempotencyMetrics uses prometheus_client's own metrics instead.
"""

from __future__ import annotations

import contextlib
import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

FOLD_EVERY = 1000  # queued updates kept at most before they are folded in without waiting for a scrape
KINDS: dict[str, type[Metric]] = {
    "counter": CounterMetricFamily, "gauge": GaugeMetricFamily, "histogram": HistogramMetricFamily
}  # fmt: skip


class ValueTally:
    """One child of a counter or a gauge."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0


class HistogramTally:
    """One child of a histogram: a count per bucket (not cumulative; the last is +Inf) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bucket whose bound is >= value ("le")
        self.sum += value


class Family:
    """A metric name and its children, by label values."""

    def __init__(
        self, kind: str, name: str, documentation: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = ()
    ) -> None:
        self.kind, self.name, self.documentation = kind, name, documentation
        self.labelnames = tuple(labelnames)
        self.buckets = tuple(buckets)
        self.children: dict[tuple[str, ...], ValueTally | HistogramTally] = {}
        self._lock = threading.Lock()

    def child(self, *values: str) -> ValueTally | HistogramTally:
        found = self.children.get(values)
        if found is None:
            with self._lock:
                found = self.children.get(values)
                if found is None:
                    found = self.children[values] = HistogramTally(self.buckets) if self.buckets else ValueTally()
        return found

    def value(self, *values: str) -> ValueTally:
        child = self.child(*values)
        assert isinstance(child, ValueTally)
        return child

    def histogram(self, *values: str) -> HistogramTally:
        child = self.child(*values)
        assert isinstance(child, HistogramTally)
        return child

    def export(self) -> Metric:
        family = KINDS[self.kind](self.name, self.documentation, labels=self.labelnames)  # type: ignore[call-arg]
        for values, child in list(self.children.items()):
            if isinstance(child, ValueTally):
                family.add_metric(values, child.value)  # type: ignore[attr-defined]
                continue
            counts, total = list(child.counts), 0  # (a copy: count and +Inf agree even if an update lands meanwhile)
            buckets = []
            for bound, n in zip((*child.bounds, float("inf")), counts, strict=True):
                total += n
                buckets.append((floatToGoString(bound), float(total)))  # type: ignore[no-untyped-call]
            family.add_metric(values, buckets, child.sum)  # type: ignore[attr-defined]
        return family


Update = tuple[ValueTally, float] | tuple[HistogramTally, float]


class Tallies(Collector):
    """The families, the queue of updates not yet folded in, and the collector that exports them."""

    def __init__(self) -> None:
        self.families: list[Family] = []
        # Updates not yet folded in: (a value's child, amount to add) or (a histogram's child, observed value).
        # The updater appends, and calls fold() once the queue holds FOLD_EVERY of them.
        self.queue: deque[Update] = deque()
        self._fold_lock = threading.Lock()

    def family(
        self, kind: str, name: str, documentation: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = ()
    ) -> Family:
        family = Family(kind, name, documentation, labelnames, buckets)
        self.families.append(family)
        return family

    def fold(self) -> None:
        with self._fold_lock, contextlib.suppress(IndexError):
            popleft = self.queue.popleft
            while True:
                child, value = popleft()
                # (HistogramTally.observe inlined, and no call for a value: about 4.5 k fewer instructions per fresh
                # request, measured with bench/instructions.py)
                if type(child) is ValueTally:
                    child.value += value
                else:
                    child.counts[bisect_left(child.bounds, value)] += 1  # type: ignore[union-attr]
                    child.sum += value  # type: ignore[union-attr]

    def describe(self) -> Iterable[Metric]:
        return [KINDS[f.kind](f.name, f.documentation, labels=f.labelnames) for f in self.families]  # type: ignore[call-arg]

    def collect(self) -> Iterable[Metric]:
        self.fold()
        return [family.export() for family in self.families]
