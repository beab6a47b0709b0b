"""Replay / conflict / mismatch rates over time, from Prometheus or from this process's own counters."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

CHARTED = ("replayed", "conflict", "mismatch")
WIDTH, HEIGHT = 640, 160


@dataclass
class Series:
    outcome: str
    points: list[tuple[float, float]]  # (unix time, requests per second)


@dataclass
class Chart:
    source: str
    series: list[Series]
    error: str = ""

    def polylines(self) -> list[tuple[str, str, float]]:
        """(outcome, SVG points attribute "x,y x,y ...", latest rate) per series, scaled into WIDTH x HEIGHT."""
        all_points = [p for s in self.series for p in s.points]
        if not all_points:
            return []
        t0 = min(t for t, _ in all_points)
        t1 = max(t for t, _ in all_points)
        top = max(max(v for _, v in all_points), 0.1)
        span = max(t1 - t0, 1.0)
        out = []
        for s in self.series:
            coords = " ".join(
                f"{(t - t0) / span * WIDTH:.1f},{HEIGHT - 10 - v / top * (HEIGHT - 20):.1f}" for t, v in s.points
            )
            out.append((s.outcome, coords, s.points[-1][1] if s.points else 0.0))
        return out

    @property
    def peak(self) -> float:
        return max((v for s in self.series for _, v in s.points), default=0.0)


class LocalRates:
    """Samples the in-process counters when the overview is viewed (at most every `every` seconds)."""

    def __init__(self, registry: CollectorRegistry, prefix: str, every: float = 5.0, keep: int = 360) -> None:
        self.registry = registry
        self.metric = f"{prefix}_requests"
        self.every = every
        self.samples: deque[tuple[float, dict[str, float]]] = deque(maxlen=keep)

    def totals(self) -> dict[str, float]:
        totals = dict.fromkeys(CHARTED, 0.0)
        for family in self.registry.collect():
            if family.name != self.metric:
                continue
            for sample in family.samples:
                outcome = sample.labels.get("outcome", "")
                if sample.name.endswith("_total") and outcome in totals:
                    totals[outcome] += sample.value
        return totals

    def chart(self) -> Chart:
        now = time.time()
        if not self.samples or now - self.samples[-1][0] >= self.every:
            self.samples.append((now, self.totals()))
        series = []
        for outcome in CHARTED:
            points = []
            for (t_a, a), (t_b, b) in zip(list(self.samples), list(self.samples)[1:], strict=False):
                points.append((t_b, max(0.0, b[outcome] - a[outcome]) / max(t_b - t_a, 1e-6)))
            series.append(Series(outcome, points))
        return Chart("this process's counters", series)


class PrometheusRates:
    """Asks a Prometheus server for the last half hour of rates (query_range)."""

    def __init__(self, url: str, prefix: str, window: float = 1800, step: float = 30, timeout: float = 3.0) -> None:
        self.url = url.rstrip("/")
        self.prefix = prefix
        self.window, self.step, self.timeout = window, step, timeout

    async def chart(self) -> Chart:
        try:
            series = await asyncio.to_thread(self._fetch)
        except Exception as exc:  # the dashboard keeps working without its chart
            return Chart(f"Prometheus at {self.url}", [], f"Prometheus query failed: {exc.__class__.__name__}: {exc}")
        return Chart(f"Prometheus at {self.url}", series)

    def _fetch(self) -> list[Series]:
        end = time.time()
        out = []
        for outcome in CHARTED:
            query = f'sum(rate({self.prefix}_requests_total{{outcome="{outcome}"}}[1m]))'
            params = urllib.parse.urlencode({"query": query, "start": end - self.window, "end": end, "step": self.step})
            with urllib.request.urlopen(f"{self.url}/api/v1/query_range?{params}", timeout=self.timeout) as reply:
                data = json.load(reply)
            result = data.get("data", {}).get("result", [])
            values = result[0]["values"] if result else []
            out.append(Series(outcome, [(float(t), float(v)) for t, v in values]))
        return out
