"""Failures production sees, with real processes and a real Redis on loopback; every loop bounded.

Executions are counted in an append-only file (EXEC_LOG) that every server process writes, so a key executed
twice anywhere shows up.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry

from dashboard import create_dashboard
from middleware import RecordFilter, RedisStore
from tests.redis_server import RedisServer
from tests.test_dashboard_routes import UI
from tests.uvicorn_server import UvicornServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


def executions(log: Path) -> Counter[str]:
    if not log.exists():
        return Counter()
    return Counter(line.split(" ")[0] for line in log.read_text().splitlines() if line)


def start(redis_server: RedisServer, log: Path, workers: int = 1, **env: str) -> UvicornServer:
    return UvicornServer(
        "tests.orders_app:app_from_env",
        env={"REDIS_URL": redis_server.url, "EXEC_LOG": str(log), "STORE_TIMEOUT": "1.0", **env},
        workers=workers,
    )


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "executions.log"


async def test_retry_storm_over_workers_and_instances(own_redis: RedisServer, log: Path) -> None:
    """Two uvicorn workers plus a second app instance; 200 keys, each retried around its completion."""
    servers = [start(own_redis, log, workers=2), start(own_redis, log)]
    try:
        rng = random.Random(7)
        limits = httpx.Limits(max_connections=32)
        clients = [httpx.AsyncClient(base_url=s.url, timeout=20, limits=limits) for s in servers]
        gate = asyncio.Semaphore(32)
        statuses: Counter[int] = Counter()
        first_body: dict[str, bytes] = {}

        async def attempt(key: str, delay: float) -> None:
            await asyncio.sleep(delay)
            async with gate:
                client = rng.choice(clients)
                response = await client.post("/orders?sleep=0.05", json={"key": key}, headers={"Idempotency-Key": key})
            statuses[response.status_code] += 1
            if response.status_code == 200:  # the first answer, or a replay of it: the same bytes from any process
                assert response.content == first_body.setdefault(key, response.content)

        keys = [f"storm-{i}" for i in range(200)]
        # each key: 6 attempts spread over 0-150 ms, across the ~50 ms the first one takes to complete
        await asyncio.gather(*(attempt(k, rng.uniform(0, 0.15)) for k in keys for _ in range(6)))
        assert set(statuses) <= {200, 409}, statuses
        counts = executions(log)
        assert set(counts) == set(keys)
        assert [k for k, n in counts.items() if n != 1] == []  # zero keys executed twice
        # afterwards every key replays the one stored body, whichever instance answers
        for key in keys[:50]:
            replays = [
                await c.post("/orders?sleep=0.05", json={"key": key}, headers={"Idempotency-Key": key}) for c in clients
            ]
            assert all(r.headers.get("idempotent-replayed") == "true" for r in replays)
            assert replays[0].content == replays[1].content
        for client in clients:
            await client.aclose()
    finally:
        for server in servers:
            server.stop()
    assert sum(executions(log).values()) == 200


async def test_killed_worker_frees_its_key_after_one_lease(own_redis: RedisServer, log: Path) -> None:

    lease = 6.0
    doomed = start(own_redis, log, LEASE=str(lease))
    async with httpx.AsyncClient(base_url=doomed.url, timeout=30) as client:
        pending = [
            asyncio.create_task(client.post("/orders", json={}, headers={"Idempotency-Key": key, "X-Sleep": "30"}))
            for key in ("killed-wait", "killed-release")
        ]
        await asyncio.sleep(0.5)
        doomed.kill()
        for task in pending:
            with pytest.raises(httpx.TransportError):
                await task
    survivor = start(own_redis, log, LEASE=str(lease))
    store = RedisStore.from_url(own_redis.url)
    dashboard = create_dashboard(store, registry=CollectorRegistry())
    ui = UI(httpx.AsyncClient(transport=httpx.ASGITransport(app=dashboard), base_url="http://testserver"))
    try:
        async with httpx.AsyncClient(base_url=survivor.url, timeout=30) as client:
            held = await client.post("/orders", json={}, headers={"Idempotency-Key": "killed-wait"})
            assert held.status_code == 409 and 1 <= int(held.headers["retry-after"]) <= lease
            # heartbeats stop with the worker: within half a lease the dashboard calls both locks stuck
            deadline = time.monotonic() + lease
            while True:
                locks = await ui.get("/locks")
                stuck_rows = [row for row in locks.text.split("<tr") if 'class="stuck"' in row]
                both = all(any(key in row for row in stuck_rows) for key in ("killed-wait", "killed-release"))
                if both or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert both, locks.text
            # an operator releases one of them from the dashboard before its lease ends
            page = await store.list_records(RecordFilter(key="killed-release"))
            record_key = page.records[0].redis_key
            token = (await store.get(record_key)).token  # type: ignore[union-attr]
            released = await ui.post("/actions/release", {"k": record_key, "token": token})
            assert "Lock released" in released.text
            retried = await client.post("/orders", json={}, headers={"Idempotency-Key": "killed-release"})
            assert retried.status_code == 200 and "idempotent-replayed" not in retried.headers
            # the other frees itself when its lease ends
            deadline = time.monotonic() + lease + 2
            while True:
                retry = await client.post("/orders", json={}, headers={"Idempotency-Key": "killed-wait"})
                if retry.status_code != 409 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)
            assert retry.status_code == 200 and "idempotent-replayed" not in retry.headers
            replay = await client.post("/orders", json={}, headers={"Idempotency-Key": "killed-wait"})
            assert replay.headers["idempotent-replayed"] == "true"
        # the dead worker started each once; the survivor ran each retry exactly once
        assert executions(log) == Counter({"killed-wait": 2, "killed-release": 2})
    finally:
        await ui.client.aclose()
        await store.close()
        survivor.stop()


async def test_handler_slower_than_several_leases(own_redis: RedisServer, log: Path) -> None:
    server = start(own_redis, log, LEASE="0.6")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            slow = asyncio.create_task(client.post("/orders?sleep=3", json={}, headers={"Idempotency-Key": "slow"}))
            conflicts = []
            for _ in range(5):  # 5 leases' worth of retries while it runs
                await asyncio.sleep(0.5)
                conflicts.append(await client.post("/orders?sleep=3", json={}, headers={"Idempotency-Key": "slow"}))
            first = await slow
            replay = await client.post("/orders?sleep=3", json={}, headers={"Idempotency-Key": "slow"})
            metrics = (await client.get("/metrics")).text
        assert [c.status_code for c in conflicts] == [409] * 5
        assert first.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
        assert replay.content == first.content
        assert executions(log) == Counter({"slow": 1})
        renewals = next(
            float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("idempotency_lease_renewals_total")
        )
        assert renewals >= 12  # every 0.2 s for 3 s
    finally:
        server.stop()


async def test_client_disconnect_still_stores_the_result(own_redis: RedisServer, log: Path) -> None:
    server = start(own_redis, log)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=0.3) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                await impatient.post("/orders?sleep=1", json={"n": 1}, headers={"Idempotency-Key": "gone"})
        await asyncio.sleep(1.2)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            retry = await client.post("/orders?sleep=1", json={"n": 1}, headers={"Idempotency-Key": "gone"})
        assert retry.status_code == 200 and retry.headers["idempotent-replayed"] == "true"
        assert retry.json()["execution"] == 1
        assert executions(log) == Counter({"gone": 1})
    finally:
        server.stop()


@pytest.fixture
def full_redis() -> Iterator[RedisServer]:
    server = RedisServer("--maxmemory-policy", "noeviction")
    yield server
    server.close()


async def test_redis_out_of_memory_fails_cleanly(full_redis: RedisServer, log: Path) -> None:
    server = start(full_redis, log)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            before = await client.post("/orders", json={"n": 1}, headers={"Idempotency-Key": "stored-before"})
            assert before.status_code == 200
            filler = redis.Redis.from_url(full_redis.url)
            for i in range(200):
                filler.set(f"filler:{i}", b"x" * 10_000)
            used = int(filler.info("memory")["used_memory"])
            filler.config_set("maxmemory", used - 500_000)  # well below what is used: every write is refused
            with pytest.raises(redis.exceptions.OutOfMemoryError, match="maxmemory"):
                filler.set("one-more", b"x")
            filler.close()
            for i in range(5):
                started = time.monotonic()
                refused = await client.post("/orders", json={}, headers={"Idempotency-Key": f"oom-{i}"})
                assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
                assert time.monotonic() - started < 2
            replay = await client.post("/orders", json={"n": 1}, headers={"Idempotency-Key": "stored-before"})
            assert replay.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
            assert replay.content == before.content  # reads still work: never a wrong replay
            mismatch = await client.post("/orders", json={"n": 2}, headers={"Idempotency-Key": "stored-before"})
            assert mismatch.status_code == 422
            metrics = (await client.get("/metrics")).text
        assert 'idempotency_store_errors_total{error="OutOfMemoryError",operation="claim"} 5.0' in metrics
        assert executions(log) == Counter({"stored-before": 1})
    finally:
        server.stop()
