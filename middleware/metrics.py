"""Prometheus metrics of the middleware (and of the dashboard's actions).

Build them with `IdempotencyMetrics.for_registry(registry, prefix)`: one set per registry and prefix, so several
apps in one process share them instead of failing on duplicate registration. Labels are bounded: `route` is a
route template (or `__unmatched__`), `method` one of the configured methods; never a key, path or tenant.

The request path's counts and observations are tallied in plain Python and folded into the prometheus_client
metrics when the registry is collected (a scrape), or every FOLD_EVERY of them: a request pays a list append
instead of a lock per update. In multiprocess mode (PROMETHEUS_MULTIPROC_DIR) the scrape may happen in another
process, so every update goes straight to the metric files.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Iterable
from typing import ClassVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app, multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.routing import Route

from . import __version__
from .types import Receive, Scope, Send

OUTCOMES = (
    "processed",
    "replayed",
    "conflict",
    "mismatch",
    "invalid_key",
    "missing_key",
    "store_error",
    "not_stored",
)
OPERATIONS = ("claim", "complete", "release", "renew")
ADMIN_ACTIONS = ("evict", "bulk_evict", "release", "set_ttl")
ADMIN_RESULTS = ("ok", "not_found", "refused", "error")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
HELD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
AGE_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 24 * 3600.0, 7 * 24 * 3600.0)
SIZE_BUCKETS = (256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0)
FOLD_EVERY = 1000  # tallied updates kept at most before they are folded in without waiting for a scrape


class _Fold(Collector):
    """Registered before the metrics, so collecting the registry folds the tallies in before they are read."""

    def __init__(self, metrics: IdempotencyMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        self.metrics.fold()
        return []


class IdempotencyMetrics:
    _instances: ClassVar[dict[tuple[int, str], IdempotencyMetrics]] = {}
    _lock = threading.Lock()

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None, prefix: str = "idempotency") -> IdempotencyMetrics:
        registry = REGISTRY if registry is None else registry
        with cls._lock:
            found = cls._instances.get((id(registry), prefix))
            if found is None or found.registry is not registry:
                found = cls._instances[(id(registry), prefix)] = cls(registry, prefix)
            return found

    def __init__(self, registry: CollectorRegistry, prefix: str = "idempotency") -> None:
        self.registry = registry
        self.deferred = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
        # Tallies not yet folded in. A deque's append and popleft are atomic, so a fold in another thread (a scrape
        # served by prometheus_client's own HTTP server) never loses or doubles an update made meanwhile.
        self._counts: deque[Counter] = deque()
        self._observations: deque[tuple[Histogram, float]] = deque()
        if self.deferred:
            registry.register(_Fold(self))
        p = prefix
        self.requests = Counter(
            f"{p}_requests",
            "Requests seen by the idempotency middleware, by outcome.",
            ["outcome", "method", "route"],
            registry=registry,
        )
        self.store_duration = Histogram(
            f"{p}_store_operation_duration_seconds",
            "Time of one store operation (one Redis round trip), by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.store_errors = Counter(
            f"{p}_store_errors",
            "Store operations that failed (timeout, connection, Redis error), by operation and error class.",
            ["operation", "error"],
            registry=registry,
        )
        self.lock_held = Histogram(
            f"{p}_lock_held_seconds",
            "Time from claiming a key to storing its response.",
            buckets=HELD_BUCKETS,
            registry=registry,
        )
        self.replay_age = Histogram(
            f"{p}_replay_age_seconds",
            "Age of the stored response when a retry replayed it (how late clients retry).",
            buckets=AGE_BUCKETS,
            registry=registry,
        )
        self.stored_bytes = Histogram(
            f"{p}_stored_response_bytes",
            "Size of response bodies stored for replay.",
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.leases_lost = Counter(
            f"{p}_leases_lost",
            "Responses not stored because the key's lease had expired or moved to another owner.",
            registry=registry,
        )
        self.lease_renewals = Counter(
            f"{p}_lease_renewals",
            "Lease renewals (heartbeats) of long-running requests.",
            registry=registry,
        )
        self.in_flight = Gauge(
            f"{p}_requests_in_flight",
            "Requests holding an idempotency lock in this process (summed over live processes).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.build_info = Gauge(
            f"{p}_build_info",
            "idemscope version, always 1.",
            ["version"],
            multiprocess_mode="max",
            registry=registry,
        )
        self.admin_actions = Counter(
            f"{p}_admin_actions",
            "Manual actions taken in the dashboard or the CLI, by action and result.",
            ["action", "result"],
            registry=registry,
        )
        self.build_info.labels(__version__).set(1)
        self.operation_duration = {operation: self.store_duration.labels(operation) for operation in OPERATIONS}
        for action in ADMIN_ACTIONS:
            for result in ADMIN_RESULTS:
                self.admin_actions.labels(action, result)
        self._children: dict[tuple[str, str, str], Counter] = {}
        self._routes_seen: set[tuple[str, str]] = set()
        self._pid = os.getpid()

    def count(self, outcome: str, method: str, route: str) -> None:
        child = self._children.get((outcome, method, route))
        if child is None:
            child = self._init_route(outcome, method, route)
        if not self.deferred:
            child.inc()
            return
        self._counts.append(child)
        if len(self._counts) >= FOLD_EVERY:
            self.fold()

    def observe(self, histogram: Histogram, value: float) -> None:
        """`histogram.observe(value)`, tallied (see the module's docstring)."""
        if not self.deferred:
            histogram.observe(value)
            return
        self._observations.append((histogram, value))
        if len(self._observations) >= FOLD_EVERY:
            self.fold()

    def fold(self) -> None:
        """Move the tallies into the prometheus_client metrics."""
        counts: dict[Counter, int] = {}
        with contextlib.suppress(IndexError):
            while True:
                child = self._counts.popleft()
                counts[child] = counts.get(child, 0) + 1
        for child, n in counts.items():
            child.inc(n)
        with contextlib.suppress(IndexError):
            while True:
                histogram, value = self._observations.popleft()
                histogram.observe(value)

    def _init_route(self, outcome: str, method: str, route: str) -> Counter:
        with self._lock:
            if (method, route) not in self._routes_seen:
                self._routes_seen.add((method, route))
                for name in OUTCOMES:  # every outcome of a route is exported from its first request on
                    self._children[(name, method, route)] = self.requests.labels(name, method, route)
            return self._children[(outcome, method, route)]


class MetricsApp:
    """An ASGI app serving /metrics (prometheus_client's, with OpenMetrics content negotiation).

    With `registry=None` it serves the global registry, or, when PROMETHEUS_MULTIPROC_DIR is set (several worker
    processes), the sum over all processes' metric files.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                registry = CollectorRegistry()
                multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            else:
                registry = REGISTRY
        self.registry = registry
        self._app = make_asgi_app(registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def metrics_app(registry: CollectorRegistry | None = None) -> MetricsApp:
    """`app.add_route("/metrics", metrics_app())`, or `app.mount("/metrics", metrics_app())`."""
    return MetricsApp(registry)


def expose_metrics(app: Starlette, path: str = "/metrics", registry: CollectorRegistry | None = None) -> None:
    """Serve the metrics at `path` on a Starlette or FastAPI app: `expose_metrics(app)`."""
    app.router.routes.append(Route(path, metrics_app(registry), name="metrics"))
