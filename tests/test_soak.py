"""A bounded soak in CI (bench/soak.py runs the full 100,000): mixed outcomes over 32 connections with the
dashboard in use; no unexpected status, flat server memory, Redis back to baseline after the TTL."""

from __future__ import annotations

import os

import pytest

from tests.redis_server import RedisServer
from tests.soak import soak
from tests.uvicorn_server import UvicornServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_soak(own_redis: RedisServer) -> None:
    total = int(os.environ.get("SOAK_REQUESTS", "4000"))
    server = UvicornServer("tests.orders_app:app_from_env", env={"REDIS_URL": own_redis.url, "TTL": "6"})
    try:
        result = await soak(server.url, own_redis.url, server.process.pid, total=total, ttl=6.0)
    finally:
        server.stop()
    assert result.unexpected == []
    assert sum(result.statuses.values()) >= total
    assert result.dashboard_failures == [] and result.dashboard_calls > 0
    assert result.redis_after_ttl_keys == 0  # every record expired: nothing leaks
    assert result.redis_after_ttl_bytes < result.redis_baseline_bytes + 1_000_000
    # flat after warm-up: allow allocator noise, not growth with the request count
    assert result.rss_end_kb < result.rss_after_warmup_kb * 1.25 + 20_000, result
