"""Managed-Redis connection forms: ACL username/password (least-privilege user) and TLS (`rediss://`)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from middleware import RecordFilter, RedisStore
from tests.conftest import need_tool
from tests.orders_app import create_app
from tests.redis_server import RedisServer, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

# The least a RedisStore needs (README: "Managed Redis"): its scripts and the commands they call, the dashboard's
# reads and writes, on its own key prefix only.
ACL_RULES = [
    "on", ">s3cret-pass", "resetkeys", "~idemscope:*", "resetchannels",
    "-@all", "+evalsha", "+eval", "+script|load", "+ping",
    "+get", "+getrange", "+set", "+pttl", "+pexpire", "+del", "+unlink", "+time", "+scan",
    "+lpush", "+ltrim", "+llen", "+lrange",
]  # fmt: skip


async def orders_roundtrip(store: RedisStore) -> None:
    await store.connect()
    app = create_app(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        first = await client.post("/orders", json={"n": 1}, headers={"Idempotency-Key": "acl-1"})
        again = await client.post("/orders", json={"n": 1}, headers={"Idempotency-Key": "acl-1"})
    assert first.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert (await store.keyspace_stats()).records == 1
    page = await store.list_records(RecordFilter())
    assert await store.evict(page.records[0].redis_key)


async def test_acl_user_with_least_privilege(own_redis: RedisServer) -> None:
    admin = redis.Redis.from_url(own_redis.url)
    admin.execute_command("ACL", "SETUSER", "idem", *ACL_RULES)  # type: ignore[no-untyped-call]
    admin.close()
    url = f"redis://idem:s3cret-pass@127.0.0.1:{own_redis.port}/0"
    store = RedisStore.from_url(url)
    await orders_roundtrip(store)
    await store.close()
    wrong = RedisStore.from_url(f"redis://idem:wrong@127.0.0.1:{own_redis.port}/0")
    app = create_app(wrong)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        refused = await client.post("/orders", json={}, headers={"Idempotency-Key": "acl-2"})
    assert refused.status_code == 503  # fails closed, with a clear log line, never runs the request
    await wrong.close()


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, int, Path]]:
    if shutil.which("openssl") is None:
        need_tool(FileNotFoundError("openssl is not installed"))
    ca_key, ca, key, csr, cert = (tmp_path / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
            "-subj", "/CN=idemscope test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext = tmp_path / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    tls_port = free_port()
    try:
        server = RedisServer(
            "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
        )  # fmt: skip
    except RuntimeError as exc:
        need_tool(FileNotFoundError(f"this redis-server cannot serve TLS: {exc}"))
    yield server, tls_port, ca
    server.close()


async def test_tls_rediss_url(tls_redis: tuple[RedisServer, int, Path]) -> None:
    _, tls_port, ca = tls_redis
    store = RedisStore.from_url(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}")
    await orders_roundtrip(store)
    await store.close()
    unverified = RedisStore.from_url(f"rediss://127.0.0.1:{tls_port}/0")  # the system CAs do not know ours
    with pytest.raises(redis.exceptions.ConnectionError):
        await unverified.client.ping()
    await unverified.close()
