"""Metrics of the request path kept in plain Python, exported through a prometheus_client collector.

A prometheus_client Counter or Histogram takes a lock and walks its buckets on every update. Here each metric child
keeps a list of the updates not yet counted, and an update is that list's own `append` (`child.add(value)`: one C
call, atomic, so any thread may update, and no object made per update). `Tallies.fold()` adds the pending updates
into plain numbers, under a lock, when the registry is collected (a scrape) or every FOLD_EVERY requests: a sum
in C, and for a histogram a sort and one `bisect` per bucket bound rather than one per update. `collect()` exports
them as the families, names and labels prometheus_client's metrics would (without `_created` series). For one
process only: with PROMETHEUS_MULTIPROC_DIR the scrape may happen in another process, and IdempotencyMetrics uses
prometheus_client's own metrics instead.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from functools import reduce
from operator import add

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

FOLD_EVERY = 1000  # requests whose updates are kept at most before they are folded in without waiting for a scrape
KINDS: dict[str, type[Metric]] = {
    "counter": CounterMetricFamily, "gauge": GaugeMetricFamily, "histogram": HistogramMetricFamily
}  # fmt: skip


def take(pending: list[float]) -> list[float]:
    """The updates pending so far, removed from the list. Updates appended meanwhile (by another thread) land
    after them, so they stay for the next fold."""
    count = len(pending)
    taken = pending[:count]
    del pending[:count]
    return taken


class ValueTally:
    """One child of a counter or a gauge."""

    __slots__ = ("add", "pending", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.pending: list[float] = []
        self.add: Callable[[float], None] = self.pending.append  # add an amount (a gauge's may be negative)

    def fold(self) -> None:
        if self.pending:
            self.value = reduce(add, take(self.pending), self.value)  # in order, as a running sum adds them


class HistogramTally:
    """One child of a histogram: a count per bucket (not cumulative; the last is +Inf) and the sum."""

    __slots__ = ("add", "bounds", "counts", "pending", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.pending: list[float] = []
        self.add: Callable[[float], None] = self.pending.append  # observe a value

    def fold(self) -> None:
        if not self.pending:
            return
        values = take(self.pending)
        self.sum = reduce(add, values, self.sum)
        values.sort()
        below = 0
        for i, bound in enumerate(self.bounds):  # a value goes to the first bucket whose bound is >= it ("le")
            upto = bisect_right(values, bound)
            self.counts[i] += upto - below
            below = upto
        self.counts[-1] += len(values) - below


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
            total = 0
            buckets = []
            for bound, n in zip((*child.bounds, float("inf")), child.counts, strict=True):
                total += n
                buckets.append((floatToGoString(bound), float(total)))  # type: ignore[no-untyped-call]
            family.add_metric(values, buckets, child.sum)  # type: ignore[attr-defined]
        return family


class Tallies(Collector):
    """The families, and the collector that folds and exports them."""

    def __init__(self) -> None:
        self.families: list[Family] = []
        self._fold_lock = threading.RLock()

    def family(
        self, kind: str, name: str, documentation: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = ()
    ) -> Family:
        family = Family(kind, name, documentation, labelnames, buckets)
        self.families.append(family)
        return family

    def fold(self) -> None:
        with self._fold_lock:
            for family in self.families:
                for child in list(family.children.values()):
                    child.fold()

    def describe(self) -> Iterable[Metric]:
        return [KINDS[f.kind](f.name, f.documentation, labels=f.labelnames) for f in self.families]  # type: ignore[call-arg]

    def collect(self) -> Iterable[Metric]:
        with self._fold_lock:  # exported as folded, with no fold in between: counts and sums agree
            self.fold()
            return [family.export() for family in self.families]
