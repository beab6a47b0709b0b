"""Redis commands per request, counted on a real redis-server with INFO commandstats."""

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


# Commands our Lua scripts call: commandstats counts them too, but they are not round trips.
INSIDE_SCRIPTS = {"time", "get", "getrange", "set", "pttl", "del"}


async def delta(client: aioredis.Redis, before: dict[str, int]) -> dict[str, int]:
    """Round trips by command: commandstats deltas, less the commands run inside scripts."""
    after = await commands(client)
    after["info"] -= 1  # the INFO that read these numbers
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0) and k not in INSIDE_SCRIPTS}


async def test_round_trips_per_outcome(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url)
    observer = aioredis.Redis.from_url(own_redis.url)
    app = create_app(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await client.post("/orders", json={}, headers={"Idempotency-Key": "warm-up"})  # loads scripts, connects

        async def measure(*requests: tuple[str, str, dict[str, int]]) -> dict[str, int]:
            before = await commands(observer)
            await asyncio.gather(*(client.post(p, json=b, headers={"Idempotency-Key": k}) for p, k, b in requests))
            return await delta(observer, before)

        assert await measure(("/orders", "fresh", {})) == {"evalsha": 2}  # claim, complete
        assert await measure(("/orders", "fresh", {})) == {"evalsha": 1}  # replay
        assert await measure(("/orders", "fresh", {"other": 1})) == {"evalsha": 1}  # mismatch
        before = await commands(observer)
        await client.post("/orders", json={})  # no key
        assert await delta(observer, before) == {}
        slow = asyncio.create_task(client.post("/orders?sleep=0.3", json={}, headers={"Idempotency-Key": "busy"}))
        await asyncio.sleep(0.1)
        assert await measure(("/orders", "busy", {})) == {"evalsha": 1}  # conflict
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
