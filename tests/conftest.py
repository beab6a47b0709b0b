from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from middleware import MemoryStore, RedisStore, Store
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_tool(exc: Exception) -> None:
    """A missing tool skips a test on a developer's machine and fails it in CI."""
    if IN_CI:
        pytest.fail(f"required in CI: {exc}")
    pytest.skip(str(exc))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL when given, else a redis-server the suite starts on a free loopback port."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    try:
        server = RedisServer()
    except FileNotFoundError as exc:
        need_tool(exc)
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server owned by one test, which it may pause, stop and restart."""
    try:
        server = RedisServer()
    except FileNotFoundError as exc:
        need_tool(exc)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


async def _drop_prefix(store: RedisStore) -> None:
    keys = [key async for key in store.client.scan_iter(match=f"{store.prefix}:*", count=1000)]
    for key in keys:
        await store.client.unlink(key)


@pytest.fixture
async def redis_store(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[RedisStore]:
    """A RedisStore on the test Redis, with a prefix of its own (nothing else in that Redis is touched)."""
    store = RedisStore.from_url(redis_url, prefix=f"idemtest-{os.getpid()}-{abs(hash(request.node.nodeid))}")
    await _drop_prefix(store)
    yield store
    await _drop_prefix(store)
    await store.close()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A 3-master Redis Cluster on loopback ports, started once for the session."""
    try:
        cluster = RedisCluster()
    except FileNotFoundError as exc:
        need_tool(exc)
    try:
        yield cluster.url
    finally:
        cluster.close()


@pytest.fixture(params=["memory", "fakeredis", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """The same cases against every store: MemoryStore, and RedisStore on fakeredis, a real Redis and a real
    3-master Redis Cluster."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "fakeredis":
        import fakeredis

        fake = RedisStore(fakeredis.FakeAsyncRedis())
        yield fake
        await fake.close()
        return
    cluster = request.param == "cluster"
    url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    prefix = f"idemtest-{os.getpid()}-{abs(hash(request.node.nodeid))}"
    real = RedisStore.from_url(url, prefix=prefix, cluster=cluster)
    await _drop_prefix(real)
    yield real
    await _drop_prefix(real)
    await real.close()


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()
