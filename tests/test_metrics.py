"""Metrics: exact increments per outcome (fresh registry per test), histograms, options, exposition."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from middleware import IdempotencyMetrics, MemoryStore, Store
from middleware.metrics import OUTCOMES
from middleware.tallies import FOLD_EVERY, HistogramTally
from tests.orders_app import create_app
from tests.test_middleware import BrokenStore, NoRenewStore

pytestmark = pytest.mark.anyio


def outcomes(registry: CollectorRegistry, route: str, method: str = "POST") -> dict[str, float]:
    found = {}
    for outcome in OUTCOMES:
        value = registry.get_sample_value(
            "idempotency_requests_total", {"outcome": outcome, "method": method, "route": route}
        )
        if value:
            found[outcome] = value
    return found


async def drive(store: Store, requests: list[tuple[str, str | None, Any]], **options: Any) -> CollectorRegistry:
    registry = CollectorRegistry()
    app = create_app(store, registry=registry, **options)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for path, key, body in requests:
            headers = {"Idempotency-Key": key} if key is not None else {}
            with contextlib.suppress(RuntimeError):  # /boom raises
                await client.post(path, json=body, headers=headers)
    return registry


async def test_processed_replayed_mismatch_invalid_missing() -> None:
    registry = await drive(
        MemoryStore(),
        [
            ("/orders", "a", {"n": 1}),
            ("/orders", "a", {"n": 1}),
            ("/orders", "a", {"n": 1}),
            ("/orders", "a", {"n": 2}),
            ("/orders", "bad key", {}),
            ("/orders", None, {}),
            ("/orders", "b", {}),
        ],
    )
    assert outcomes(registry, "/orders") == {
        "processed": 2,
        "replayed": 2,
        "mismatch": 1,
        "invalid_key": 1,
        "missing_key": 1,
    }


async def test_not_stored_on_5xx_and_exceptions() -> None:
    registry = await drive(MemoryStore(), [("/fail", "f", {}), ("/fail", "f", {}), ("/boom", "b", {})])
    assert outcomes(registry, "/fail") == {"not_stored": 2}
    assert outcomes(registry, "/boom") == {"not_stored": 1}
    assert (
        registry.get_sample_value("idempotency_store_operation_duration_seconds_count", {"operation": "release"}) == 3
    )


async def test_conflict() -> None:
    registry = CollectorRegistry()
    app = create_app(MemoryStore(), registry=registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await asyncio.gather(
            *(client.post("/orders?sleep=0.2", json={}, headers={"Idempotency-Key": "c"}) for _ in range(5))
        )
    assert outcomes(registry, "/orders") == {"processed": 1, "conflict": 4}


async def test_store_error() -> None:
    registry = await drive(BrokenStore(hang=False), [("/orders", "s", {})])
    assert outcomes(registry, "/orders") == {"store_error": 1}
    labels = {"operation": "claim", "error": "ConnectionError"}
    assert registry.get_sample_value("idempotency_store_errors_total", labels) == 1


async def test_every_outcome_is_pre_initialised_per_route() -> None:
    registry = await drive(MemoryStore(), [("/orders", "a", {})])
    for outcome in OUTCOMES:
        labels = {"outcome": outcome, "method": "POST", "route": "/orders"}
        assert registry.get_sample_value("idempotency_requests_total", labels) is not None
    for operation in ("claim", "complete", "release", "renew"):
        count = registry.get_sample_value(
            "idempotency_store_operation_duration_seconds_count", {"operation": operation}
        )
        assert count is not None


async def test_route_label_is_the_template_and_unmatched_share_one_value() -> None:
    registry = await drive(
        MemoryStore(),
        [("/orders/1/items", "a", {}), ("/orders/2/items", "b", {}), ("/nope/1", "c", {}), ("/nope/2", "d", {})],
    )
    assert outcomes(registry, "/orders/{order_id}/items") == {"processed": 2}
    # 404s are stored too (not 5xx), and all unknown paths share one label
    assert outcomes(registry, "__unmatched__") == {"processed": 2}
    text = "\n".join(str(s) for m in registry.collect() for s in m.samples)
    assert "/orders/1/items" not in text and "/nope/1" not in text


async def test_histograms() -> None:
    registry = await drive(MemoryStore(), [("/orders", "a", {"n": 1}), ("/orders", "a", {"n": 1})])
    assert registry.get_sample_value("idempotency_store_operation_duration_seconds_count", {"operation": "claim"}) == 2
    assert (
        registry.get_sample_value("idempotency_store_operation_duration_seconds_count", {"operation": "complete"}) == 1
    )
    assert registry.get_sample_value("idempotency_lock_held_seconds_count") == 1
    assert registry.get_sample_value("idempotency_replay_age_seconds_count") == 1
    assert registry.get_sample_value("idempotency_stored_response_bytes_count") == 1
    size = registry.get_sample_value("idempotency_stored_response_bytes_sum")
    assert size is not None and size > 10
    assert registry.get_sample_value("idempotency_requests_in_flight") == 0
    assert registry.get_sample_value("idempotency_build_info", {"version": "0.2.0"}) == 1


async def test_in_flight_gauge_while_running() -> None:
    registry = CollectorRegistry()
    app = create_app(MemoryStore(), registry=registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        slow = [
            asyncio.create_task(client.post("/orders?sleep=0.3", json={}, headers={"Idempotency-Key": f"k{i}"}))
            for i in range(3)
        ]
        await asyncio.sleep(0.15)
        assert registry.get_sample_value("idempotency_requests_in_flight") == 3
        await asyncio.gather(*slow)
    assert registry.get_sample_value("idempotency_requests_in_flight") == 0


async def test_lease_lost_and_renewals() -> None:
    registry = CollectorRegistry()
    app = create_app(NoRenewStore(), registry=registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        stale = asyncio.create_task(client.post("/slow?sleep=1.0", headers={"Idempotency-Key": "s"}))
        await asyncio.sleep(0.8)
        await client.post("/slow?sleep=0", headers={"Idempotency-Key": "s"})
        await stale
    assert registry.get_sample_value("idempotency_leases_lost_total") == 1
    assert registry.get_sample_value("idempotency_lease_renewals_total", {}) >= 3  # type: ignore[operator]
    assert outcomes(registry, "/slow") == {"processed": 1, "not_stored": 1}


async def test_metrics_can_be_switched_off() -> None:
    registry = await drive(MemoryStore(), [("/orders", "a", {})], metrics=False)
    assert [m.name for m in registry.collect()] == []


async def test_prefix_option() -> None:
    registry = await drive(MemoryStore(), [("/orders", "a", {})], metrics_prefix="payments_idem")
    labels = {"outcome": "processed", "method": "POST", "route": "/orders"}
    assert registry.get_sample_value("payments_idem_requests_total", labels) == 1
    assert registry.get_sample_value("idempotency_requests_total", labels) is None


def test_one_set_of_metrics_per_registry_and_prefix() -> None:
    registry = CollectorRegistry()
    assert IdempotencyMetrics.for_registry(registry) is IdempotencyMetrics.for_registry(registry)
    assert IdempotencyMetrics.for_registry(registry, "other") is not IdempotencyMetrics.for_registry(registry)
    create_app(MemoryStore(), registry=registry)
    create_app(MemoryStore(), registry=registry)  # two apps, one registry: no duplicate-registration error


async def test_metrics_endpoint_negotiates_openmetrics() -> None:
    app = create_app(MemoryStore())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        plain = await client.get("/metrics")
        open_metrics = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert plain.headers["content-type"].startswith("text/plain")
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.rstrip().endswith("# EOF")


def test_tallies_fold_in_at_every_scrape_and_lose_nothing_to_a_scraping_thread() -> None:
    """Updates are tallied and folded in when the registry is collected (or every FOLD_EVERY of them); a scrape
    from another thread (prometheus_client's own HTTP server) while requests update the metrics loses none."""
    import threading

    registry = CollectorRegistry()
    metrics = IdempotencyMetrics(registry)
    assert metrics.tallies is not None
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            registry.get_sample_value(
                "idempotency_requests_total", {"outcome": "processed", "method": "POST", "route": "/x"}
            )

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for _ in range(30_000):
            metrics.count("processed", "POST", "/x")
            metrics.lock_held.add(0.02)
    finally:
        stop.set()
        scraper.join()
    labels = {"outcome": "processed", "method": "POST", "route": "/x"}
    assert registry.get_sample_value("idempotency_requests_total", labels) == 30_000
    assert registry.get_sample_value("idempotency_lock_held_seconds_count") == 30_000
    assert registry.get_sample_value("idempotency_lock_held_seconds_bucket", {"le": "0.05"}) == 30_000


def test_tallies_stay_bounded_without_a_scrape() -> None:
    metrics = IdempotencyMetrics(CollectorRegistry())
    for _ in range(5 * FOLD_EVERY):
        metrics.count("processed", "POST", "/x")
        metrics.lock_held.add(0.02)
    assert isinstance(metrics.lock_held, HistogramTally) and len(metrics.lock_held.pending) <= FOLD_EVERY


def test_tallies_export_exactly_what_prometheus_client_metrics_would(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same updates, through the tallies (one process) and through prometheus_client's own metrics (as in
    multiprocess mode), give the same exposition: names, help, types, labels, cumulative buckets (`le` inclusive
    at the bounds), sums and the in-flight gauge. Only prometheus_client's `_created` series are not tallied."""
    from prometheus_client import generate_latest

    def exposition(metrics: IdempotencyMetrics) -> list[str]:
        metrics.count("processed", "POST", "/orders")
        metrics.count("processed", "POST", "/orders")
        metrics.count("conflict", "PATCH", "/orders/{id}")
        for value in (0.0, 0.0005, 0.0007, 0.001, 2.5, 3.0):  # bounds themselves, between, and past the last
            metrics.operation_duration["claim"].add(value)
        metrics.operation_duration["complete"].add(0.02)
        metrics.lock_held.add(0.25)
        metrics.replay_age.add(7 * 24 * 3600.0 + 1)
        metrics.stored_bytes.add(256)
        metrics.in_flight.add(1)
        metrics.in_flight.add(1)
        metrics.in_flight.add(-1)
        text = generate_latest(metrics.registry).decode()
        return [line for line in text.splitlines() if "_created" not in line]

    tallied = IdempotencyMetrics(CollectorRegistry())
    assert tallied.tallies is not None
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "unused")  # read by IdempotencyMetrics when it is built
    direct = IdempotencyMetrics(CollectorRegistry())
    assert direct.tallies is None
    assert exposition(tallied) == exposition(direct)
