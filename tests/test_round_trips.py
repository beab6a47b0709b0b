"""Redis round trips and commands per request, on a real redis-server: the store's own count of its calls, and
INFO commandstats for every command Redis ran (inside scripts too)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis.asyncio as aioredis

from middleware import RedisStore
from tests.orders_app import create_app
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def commands(client: aioredis.Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def delta(client: aioredis.Redis, before: dict[str, int]) -> dict[str, int]:
    after = await commands(client)
    after["info"] -= 1  # the INFO that read these numbers
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}


async def test_round_trips_per_outcome(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url)
    observer = aioredis.Redis.from_url(own_redis.url)
    app = create_app(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await client.post("/orders", json={}, headers={"Idempotency-Key": "warm-up"})  # loads scripts, connects

        async def measure(*requests: tuple[str, str, dict[str, int]]) -> tuple[int, dict[str, int]]:
            before, trips = await commands(observer), store.round_trips
            await asyncio.gather(*(client.post(p, json=b, headers={"Idempotency-Key": k}) for p, k, b in requests))
            return store.round_trips - trips, await delta(observer, before)

        # processed: the claim (SET NX GET), then the complete script (which runs GET and SET inside Redis)
        assert await measure(("/orders", "fresh", {})) == (2, {"set": 2, "evalsha": 1, "get": 1})
        assert await measure(("/orders", "fresh", {})) == (1, {"set": 1})  # replay
        assert await measure(("/orders", "fresh", {"other": 1})) == (1, {"set": 1})  # mismatch
        before, trips = await commands(observer), store.round_trips
        await client.post("/orders", json={})  # no key
        assert (store.round_trips - trips, await delta(observer, before)) == (0, {})
        slow = asyncio.create_task(client.post("/orders?sleep=0.3", json={}, headers={"Idempotency-Key": "busy"}))
        await asyncio.sleep(0.1)
        assert await measure(("/orders", "busy", {})) == (1, {"set": 1})  # conflict
        await slow
    await store.close()
    await observer.aclose()


async def test_scripts_reload_after_script_flush(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url)
    app = create_app(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await client.post("/orders", json={}, headers={"Idempotency-Key": "a"})
        await store.client.script_flush()
        response = await client.post("/orders", json={}, headers={"Idempotency-Key": "b"})
        replay = await client.post("/orders", json={}, headers={"Idempotency-Key": "a"})
    assert response.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
    await store.close()
