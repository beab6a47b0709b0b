"""Prometheus metrics of the middleware (and of the dashboard's actions).

Build them with `IdempotencyMetrics.for_registry(registry, prefix)`: one set per registry and prefix, so several
apps in one process share them instead of failing on duplicate registration. Labels are bounded: `route` is a
route template (or `__unmatched__`), `method` one of the configured methods; never a key, path or tenant.

The request path's metrics (requests, store operation durations, lock held, replay age, stored bytes, in flight)
are tallies in plain Python (tallies.py): a request pays a list append per update (`child.add(value)`) instead
of a lock and a bucket walk. In multiprocess mode (PROMETHEUS_MULTIPROC_DIR) the scrape may happen in another
process, so they are prometheus_client's own metrics, written to its files at every update.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app, multiprocess
from starlette.applications import Starlette
from starlette.routing import Route

from . import __version__
from .tallies import FOLD_EVERY, Tallies
from .types import Receive, Scope, Send


class Tally(Protocol):
    """A metric child on the request path: `add(value)` adds to a counter or gauge, or observes in a histogram."""

    add: Callable[[float], None]


class Direct:
    """A prometheus_client metric child behind `add` (multiprocess mode: each update written at once)."""

    __slots__ = ("add",)

    def __init__(self, add: Callable[[float], None]) -> None:
        self.add = add


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
        p = prefix
        # The request path's metrics: tallies in one process, prometheus_client's own metrics in multiprocess mode.
        self.tallies = Tallies() if "PROMETHEUS_MULTIPROC_DIR" not in os.environ else None
        self._unfolded = 0  # requests counted since the tallies were last folded in
        self._requests = self._counter(
            f"{p}_requests", "Requests seen by the idempotency middleware, by outcome.", ["outcome", "method", "route"]
        )
        store_duration = self._histogram(
            f"{p}_store_operation_duration_seconds",
            "Time of one store operation (one Redis round trip), by operation.",
            LATENCY_BUCKETS,
            ["operation"],
        )
        self.operation_duration = {operation: store_duration(operation) for operation in OPERATIONS}
        self.lock_held = self._histogram(
            f"{p}_lock_held_seconds", "Time from claiming a key to storing its response.", HELD_BUCKETS
        )()
        self.replay_age = self._histogram(
            f"{p}_replay_age_seconds",
            "Age of the stored response when a retry replayed it (how late clients retry).",
            AGE_BUCKETS,
        )()
        self.stored_bytes = self._histogram(
            f"{p}_stored_response_bytes", "Size of response bodies stored for replay.", SIZE_BUCKETS
        )()
        in_flight_doc = "Requests holding an idempotency lock in this process (summed over live processes)."
        if self.tallies is not None:
            self.in_flight: Tally = self.tallies.family("gauge", f"{p}_requests_in_flight", in_flight_doc).value()
            registry.register(self.tallies)
        else:
            gauge = Gauge(f"{p}_requests_in_flight", in_flight_doc, multiprocess_mode="livesum", registry=registry)
            self.in_flight = Direct(gauge.inc)
        # Rare events: prometheus_client's metrics in both modes.
        self.store_errors = Counter(
            f"{p}_store_errors",
            "Store operations that failed (timeout, connection, Redis error), by operation and error class.",
            ["operation", "error"],
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
        for action in ADMIN_ACTIONS:
            for result in ADMIN_RESULTS:
                self.admin_actions.labels(action, result)
        self._children: dict[tuple[str, str, str], Tally] = {}
        self._routes_seen: set[tuple[str, str]] = set()

    def _counter(self, name: str, documentation: str, labelnames: list[str]) -> Callable[..., Tally]:
        if self.tallies is not None:
            return self.tallies.family("counter", name, documentation, labelnames).value
        counter = Counter(name, documentation, labelnames, registry=self.registry)
        return lambda *values: Direct(counter.labels(*values).inc)

    def _histogram(
        self, name: str, documentation: str, buckets: tuple[float, ...], labelnames: Sequence[str] = ()
    ) -> Callable[..., Tally]:
        if self.tallies is not None:
            return self.tallies.family("histogram", name, documentation, labelnames, buckets).histogram
        histogram = Histogram(name, documentation, labelnames, buckets=buckets, registry=self.registry)
        return lambda *values: Direct((histogram.labels(*values) if values else histogram).observe)

    # -- the request path --

    def count(self, outcome: str, method: str, route: str) -> None:
        """One request's outcome; called once per request, it also folds the tallies in every FOLD_EVERY requests."""
        child = self._children.get((outcome, method, route))
        if child is None:
            child = self._init_route(outcome, method, route)
        child.add(1)
        if self.tallies is not None:
            self._unfolded += 1  # (a count lost between threads only delays a fold)
            if self._unfolded >= FOLD_EVERY:
                self._unfolded = 0
                self.tallies.fold()

    def _init_route(self, outcome: str, method: str, route: str) -> Tally:
        with self._lock:
            if (method, route) not in self._routes_seen:
                self._routes_seen.add((method, route))
                for name in OUTCOMES:  # every outcome of a route is exported from its first request on
                    self._children[(name, method, route)] = self._requests(name, method, route)
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
