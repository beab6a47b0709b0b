"""RedisStore on a real 3-master Redis Cluster: records spread over every master, the middleware runs a key once,
and the dashboard lists, evicts and changes TTLs there. (The store contract runs on it too: `store` fixture.)"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from dashboard import create_dashboard
from middleware import RedisStore, RequestInfo, StoredResponse
from tests.orders_app import create_app
from tests.test_dashboard_routes import UI

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
async def cluster_store(redis_cluster_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(redis_cluster_url, prefix=f"clustertest-{os.getpid()}", cluster=True)
    yield store
    async for key in store.client.scan_iter(match=f"{store.prefix}:*"):
        await store.client.unlink(key)
    await store.close()


async def test_records_spread_over_every_master(cluster_store: RedisStore) -> None:
    for i in range(60):
        req = RequestInfo("anonymous", "POST", "/orders", f"spread-{i}", "/orders", "fp")
        await cluster_store.claim(cluster_store.record_key(req), req, 30_000)
    client = cluster_store.client
    assert isinstance(client, aioredis.RedisCluster)
    per_node = []
    for node in client.get_primaries():
        count = 0
        async with aioredis.Redis(host=node.host, port=int(node.port)) as direct:
            async for _ in direct.scan_iter(match=f"{cluster_store.prefix}:*"):
                count += 1
        per_node.append(count)
    assert len(per_node) == 3 and all(n > 5 for n in per_node) and sum(per_node) == 60


async def test_concurrent_duplicates_execute_once_on_a_cluster(cluster_store: RedisStore) -> None:
    await cluster_store.connect()  # topology and command table first, as an app's lifespan would
    app = create_app(cluster_store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for key in ("c1", "c2", "c3"):
            responses = await asyncio.gather(
                *(client.post("/orders?sleep=0.2", json={}, headers={"Idempotency-Key": key}) for _ in range(20))
            )
            assert sorted(r.status_code for r in responses).count(200) == 1
            again = await client.post("/orders?sleep=0.2", json={}, headers={"Idempotency-Key": key})
            assert again.headers["idempotent-replayed"] == "true"
    assert dict(app.state.calls) == {"c1": 1, "c2": 1, "c3": 1}


async def test_dashboard_lists_evicts_and_sets_ttl_on_a_cluster(cluster_store: RedisStore) -> None:
    keys = []
    for i in range(30):
        req = RequestInfo("anonymous", "POST", "/orders", f"dash-{i:02d}", "/orders", "fp")
        claim = await cluster_store.claim(cluster_store.record_key(req), req, 30_000)
        await cluster_store.complete(cluster_store.record_key(req), claim.token, StoredResponse(201, [], b"x"), 60_000)
        keys.append(cluster_store.record_key(req))
    app = create_dashboard(cluster_store, registry=CollectorRegistry())
    ui = UI(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver"))
    page = await ui.get("/keys?size=200")
    assert all(f"dash-{i:02d}" in page.text for i in range(30))
    assert "Evicted" in (await ui.post("/actions/evict", {"k": keys[0]})).text
    assert await cluster_store.get(keys[0]) is None
    assert "TTL set" in (await ui.post("/actions/ttl", {"k": keys[1], "ttl": "600"})).text
    record = await cluster_store.get(keys[1])
    assert record is not None and 590_000 < record.pttl_ms <= 600_000
    assert "Evicted 29 record(s)" in (await ui.post("/actions/bulk-evict", {"key": "dash-"})).text
    assert (await cluster_store.keyspace_stats()).records == 0
    await ui.client.aclose()
