"""The hot path's auto-pipelined connection, against a real redis-server (and under uvloop, as uvicorn runs it)."""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest
import redis
import uvloop

from middleware.autopipeline import AutoPipelineClient, pack
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

ECHO = "return ARGV[1]"
ECHO_SHA = hashlib.sha1(ECHO.encode()).hexdigest()


def test_pack_is_resp() -> None:
    assert pack(("SET", "k", 5, b"\x00\r\n")) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n5\r\n$3\r\n\x00\r\n\r\n"


def test_for_url_takes_only_plain_tcp_urls() -> None:
    client = AutoPipelineClient.for_url("redis://user:p%40ss@db.local:6380/3")
    assert client is not None
    assert (client.host, client.port, client.db, client.username, client.password) == (
        "db.local",
        6380,
        3,
        "user",
        "p@ss",
    )
    assert AutoPipelineClient.for_url("rediss://h:6380/0") is None
    assert AutoPipelineClient.for_url("unix:///tmp/redis.sock") is None
    assert AutoPipelineClient.for_url("redis://h:6379/0?ssl_cert_reqs=none") is None


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_concurrent_commands_share_one_connection_and_replies_match(own_redis: RedisServer, loop: str) -> None:
    async def main() -> None:
        client = AutoPipelineClient.for_url(own_redis.url)
        assert client is not None
        replies = await asyncio.gather(*(client.evalsha(ECHO_SHA, ECHO, [], [f"v{i}"]) for i in range(500)))
        assert replies == [f"v{i}".encode() for i in range(500)]
        clients = redis.Redis.from_url(own_redis.url).client_list()
        assert len(clients) == 2  # ours, and the one asking
        await client.close()

    (uvloop.run if loop == "uvloop" else asyncio.run)(main())


def test_an_abandoned_command_keeps_the_connection_in_step(own_redis: RedisServer) -> None:
    async def main() -> None:
        client = AutoPipelineClient.for_url(own_redis.url, timeout=0.3)
        assert client is not None
        assert await client.execute("PING") == b"PONG"
        own_redis.pause()
        try:
            started = time.monotonic()
            results = await asyncio.gather(
                *(client.execute("ECHO", f"late{i}") for i in range(20)), return_exceptions=True
            )
            assert all(isinstance(r, TimeoutError) for r in results) and time.monotonic() - started < 1.0
            with pytest.raises(TimeoutError):  # abandoned by its caller before its deadline
                async with asyncio.timeout(0.1):
                    await client.execute("ECHO", "later")
        finally:
            own_redis.resume()
        assert await client.execute("ECHO", "next") == b"next"  # not one of the late replies
        await client.close()

    asyncio.run(main())


def test_noscript_loads_the_script_again_and_errors_are_typed(own_redis: RedisServer) -> None:
    async def main() -> None:
        client = AutoPipelineClient.for_url(own_redis.url)
        assert client is not None
        assert await client.evalsha(ECHO_SHA, ECHO, [], ["a"]) == b"a"
        await client.execute("SCRIPT", "FLUSH")
        assert await client.evalsha(ECHO_SHA, ECHO, [], ["b"]) == b"b"
        with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
            await client.execute("NOSUCHCOMMAND")
        await client.execute("CONFIG", "SET", "maxmemory", "1")
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            await client.execute("SET", "k", "v")
        await client.execute("CONFIG", "SET", "maxmemory", "0")
        await client.close()

    asyncio.run(main())


def test_reconnects_after_a_restart_and_selects_its_db(own_redis: RedisServer) -> None:
    async def main() -> None:
        client = AutoPipelineClient.for_url(own_redis.url.replace("/0", "/3"))
        assert client is not None
        await client.execute("SET", "where", "db3")
        own_redis.stop()
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.execute("PING")
        own_redis.start()
        assert await client.execute("SET", "where", "db3-again") == b"OK"
        direct = redis.Redis.from_url(own_redis.url.replace("/0", "/3"))
        assert direct.get("where") == b"db3-again"
        direct.close()
        await client.close()

    asyncio.run(main())
