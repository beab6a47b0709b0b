"""The `idemscope` command against a real Redis: keys ls/show/evict/release/ttl, and its refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

PREFIX = "clitest"
SEED = """
import asyncio, sys
from middleware import RedisStore, RequestInfo, StoredResponse

async def main(url):
    store = RedisStore.from_url(url, prefix="clitest")
    for key, status in (("order-1", 201), ("order-2", 404), ("a*b?", 201)):
        req = RequestInfo("anonymous", "POST", "/orders", key, "/orders", "f" * 32)
        claim = await store.claim(store.record_key(req), req, 30000)
        body = b'{"id": 1}'
        response = StoredResponse(status, [(b"content-type", b"application/json")], body, True, len(body))
        await store.complete(store.record_key(req), claim.token, response, 3600000)
    req = RequestInfo("anonymous", "POST", "/slow", "running", "/slow", "f" * 32)
    await store.claim(store.record_key(req), req, 30000)
    await store.close()

asyncio.run(main(sys.argv[1]))
"""


def idemscope(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    command = [sys.executable, "-m", "dashboard.cli", *args]
    if url is not None and args[0] == "keys":  # the store options belong to the `keys` command
        command[4:4] = ["--redis-url", url, "--prefix", PREFIX]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)


@pytest.fixture
def seeded(own_redis: RedisServer) -> Iterator[str]:
    subprocess.run([sys.executable, "-c", SEED, own_redis.url], check=True, timeout=30)
    yield own_redis.url


def record_keys(url: str, **filters: str) -> dict[str, str]:
    args = ["keys", "ls", "--json", *[f"--{k}={v}" for k, v in filters.items()]]
    out = idemscope(*args, url=url)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    return {r["key"]: r["record_key"] for r in rows}


def test_ls_with_filters(seeded: str) -> None:
    assert set(record_keys(seeded)) == {"order-1", "order-2", "a*b?", "running"}
    assert set(record_keys(seeded, status="4xx")) == {"order-2"}
    assert set(record_keys(seeded, state="in_flight")) == {"running"}
    assert set(record_keys(seeded, key="*")) == {"a*b?"}  # literal, not a glob
    table = idemscope("keys", "ls", url=seeded)
    assert "4 record(s)" in table.stderr and "completed" in table.stdout


def test_show_evict_ttl_release(seeded: str) -> None:
    keys = record_keys(seeded)
    shown = idemscope("keys", "show", keys["order-1"], "--body", url=seeded)
    record = json.loads(shown.stdout)
    assert record["status"] == 201 and record["route"] == "/orders" and '"id": 1' in record["body"]
    assert "token" not in record

    ttl = idemscope("keys", "ttl", keys["order-1"], "120", url=seeded)
    assert ttl.returncode == 0 and "TTL set to 2 min" in ttl.stdout
    client = redis.Redis.from_url(seeded)
    assert 100_000 < client.pttl(keys["order-1"]) <= 120_000
    refused = idemscope("keys", "ttl", keys["running"], "120", url=seeded)
    assert refused.returncode == 1 and "release the lock instead" in refused.stdout

    released = idemscope("keys", "release", keys["running"], url=seeded)
    assert released.returncode == 0 and "Lock released" in released.stdout
    assert client.exists(keys["running"]) == 0
    not_in_flight = idemscope("keys", "release", keys["order-2"], url=seeded)
    assert not_in_flight.returncode == 1 and client.exists(keys["order-2"]) == 1

    evicted = idemscope("keys", "evict", keys["order-2"], url=seeded)
    assert evicted.returncode == 0 and client.exists(keys["order-2"]) == 0
    again = idemscope("keys", "evict", keys["order-2"], url=seeded)
    assert again.returncode == 1 and "Already gone" in again.stdout

    audit = [json.loads(raw) for raw in client.lrange(f"{PREFIX}:audit", 0, -1)]
    assert [(a["action"], a["result"]) for a in audit] == [
        ("evict", "not_found"), ("evict", "ok"), ("release", "ok"), ("set_ttl", "refused"), ("set_ttl", "ok"),
    ]  # fmt: skip
    assert audit[0]["actor"].startswith("cli:")
    client.close()


def test_clear_errors() -> None:
    missing = idemscope("keys", "ls")
    assert missing.returncode == 2 and "give --redis-url" in missing.stderr
    wrong_key = idemscope("keys", "show", "not-a-record", url="redis://127.0.0.1:1/0")
    assert wrong_key.returncode == 2 and "not a record key" in wrong_key.stderr
    unreachable = idemscope("keys", "ls", url="redis://127.0.0.1:1/0")
    assert unreachable.returncode == 2 and "cannot reach Redis" in unreachable.stderr
    bad_url = idemscope("keys", "ls", url="http://nope")
    assert bad_url.returncode == 2 and "bad Redis URL" in bad_url.stderr


def test_dashboard_refuses_a_public_bind_without_auth() -> None:
    out = idemscope("dashboard", "--redis-url", "redis://127.0.0.1:1/0", "--host", "0.0.0.0")
    assert out.returncode == 2 and "without auth" in out.stderr
    out = idemscope("demo", "--host", "0.0.0.0")
    assert out.returncode == 2 and "without auth" in out.stderr
