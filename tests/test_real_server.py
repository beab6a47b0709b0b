"""Black-box tests: a real uvicorn process on loopback, a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.redis_server import RedisServer
from tests.uvicorn_server import UvicornServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def server(own_redis: RedisServer) -> Iterator[UvicornServer]:
    srv = UvicornServer("tests.orders_app:app_from_env", env={"REDIS_URL": own_redis.url, "STORE_TIMEOUT": "0.5"})
    try:
        yield srv
    finally:
        srv.stop()


async def test_fifty_concurrent_requests_with_one_key_execute_once(server: UvicornServer) -> None:
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=10) as client:
        responses = await asyncio.gather(
            *(client.post("/orders?sleep=0.3", json={"n": 1}, headers={"Idempotency-Key": "storm"}) for _ in range(50))
        )
        calls = (await client.get("/calls", params={"key": "storm"})).json()["calls"]
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 1 and codes.count(409) == 49, codes
    assert calls == 1


async def test_replay_is_byte_identical_over_http(server: UvicornServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        for path in ("/orders", "/binary", "/stream?size=25000", "/text"):
            first = await client.post(path, json={"n": "é"}, headers={"Idempotency-Key": f"bytes{path}"})
            again = await client.post(path, json={"n": "é"}, headers={"Idempotency-Key": f"bytes{path}"})
            assert again.status_code == first.status_code
            assert again.content == first.content
            assert again.headers["idempotent-replayed"] == "true"
            for name in ("content-type", "content-length", "x-custom"):
                assert again.headers.get(name) == first.headers.get(name)


async def test_redis_paused_gives_fast_503_then_recovers(server: UvicornServer, own_redis: RedisServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        assert (await client.post("/orders", json={}, headers={"Idempotency-Key": "before"})).status_code == 200
        own_redis.pause()
        try:
            for i in range(5):
                started = time.monotonic()
                response = await client.post("/orders", json={}, headers={"Idempotency-Key": f"paused-{i}"})
                elapsed = time.monotonic() - started
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "1"
                assert response.headers["content-type"] == "application/problem+json"
                assert elapsed < 1.5, elapsed  # store_timeout is 0.5 s: never a hang
            calls = (await client.get("/calls", params={"key": "paused-0"})).json()["calls"]
            assert calls == 0
        finally:
            own_redis.resume()
        deadline = time.monotonic() + 10
        while True:
            response = await client.post("/orders", json={}, headers={"Idempotency-Key": "after"})
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert response.status_code == 200
        replay = await client.post("/orders", json={}, headers={"Idempotency-Key": "before"})
        assert replay.headers["idempotent-replayed"] == "true"


async def test_redis_restarted_recovers(server: UvicornServer, own_redis: RedisServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        assert (await client.post("/orders", json={}, headers={"Idempotency-Key": "r1"})).status_code == 200
        own_redis.stop()
        started = time.monotonic()
        down = await client.post("/orders", json={}, headers={"Idempotency-Key": "r2"})
        assert down.status_code == 503 and time.monotonic() - started < 1.5
        own_redis.start()
        deadline = time.monotonic() + 10
        while True:
            response = await client.post("/orders", json={}, headers={"Idempotency-Key": "r3"})
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert response.status_code == 200
