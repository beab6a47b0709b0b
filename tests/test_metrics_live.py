"""Metrics from real processes: promtool lints /metrics, a real Prometheus scrapes it, two workers aggregate."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from middleware.metrics import OUTCOMES
from tests.conftest import need_tool
from tests.redis_server import RedisServer, free_port
from tests.uvicorn_server import UvicornServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        need_tool(FileNotFoundError(f"{name} is not installed (Debian/Ubuntu: apt-get install prometheus)"))
    assert path is not None
    return path


@pytest.fixture
def server(own_redis: RedisServer) -> Iterator[UvicornServer]:
    srv = UvicornServer("tests.orders_app:app_from_env", env={"REDIS_URL": own_redis.url, "STORE_TIMEOUT": "0.3"})
    try:
        yield srv
    finally:
        srv.stop()


async def every_outcome(client: httpx.AsyncClient, redis: RedisServer) -> dict[str, int]:
    """Traffic that produces each outcome; returns how many of each it produced."""
    k = {"Idempotency-Key": "k1"}
    assert (await client.post("/orders", json={"n": 1}, headers=k)).status_code == 200  # processed
    assert (await client.post("/orders", json={"n": 1}, headers=k)).status_code == 200  # replayed
    assert (await client.post("/orders", json={"n": 1}, headers=k)).status_code == 200  # replayed
    assert (await client.post("/orders", json={"n": 2}, headers=k)).status_code == 422  # mismatch
    assert (await client.post("/orders", json={}, headers={"Idempotency-Key": "a b"})).status_code == 400
    assert (await client.post("/orders", json={})).status_code == 200  # missing_key
    assert (await client.post("/fail", headers={"Idempotency-Key": "f"})).status_code == 503  # not_stored
    slow = asyncio.create_task(client.post("/orders?sleep=0.5", json={}, headers={"Idempotency-Key": "busy"}))
    await asyncio.sleep(0.2)
    assert (await client.post("/orders?sleep=0.5", json={}, headers={"Idempotency-Key": "busy"})).status_code == 409
    assert (await slow).status_code == 200  # processed
    redis.pause()
    try:
        assert (await client.post("/orders", json={}, headers={"Idempotency-Key": "down"})).status_code == 503
    finally:
        redis.resume()
    return {
        "processed": 2,
        "replayed": 2,
        "mismatch": 1,
        "invalid_key": 1,
        "missing_key": 1,
        "not_stored": 1,
        "conflict": 1,
        "store_error": 1,
    }


async def test_promtool_check_metrics_after_every_outcome(server: UvicornServer, own_redis: RedisServer) -> None:
    promtool = tool("promtool")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        expected = await every_outcome(client, own_redis)
        exposition = (await client.get("/metrics")).text
    assert set(expected) == set(OUTCOMES)
    for outcome, count in expected.items():
        assert f'idempotency_requests_total{{method="POST",outcome="{outcome}",route="' in exposition
        total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in exposition.splitlines()
            if line.startswith("idempotency_requests_total{") and f'outcome="{outcome}"' in line
        )
        assert total == count, outcome
    check = subprocess.run([promtool, "check", "metrics"], input=exposition.encode(), capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


async def test_real_prometheus_scrapes_the_counts(server: UvicornServer, own_redis: RedisServer) -> None:
    prometheus = tool("prometheus")
    workdir = Path(tempfile.mkdtemp(prefix="idemscope-prom-"))
    port = free_port()
    (workdir / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: idemscope\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n"
    )
    with open(workdir / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(timeout=5) as prom, httpx.AsyncClient(base_url=server.url, timeout=10) as app:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await prom.get(f"http://127.0.0.1:{port}/-/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (workdir / "prometheus.log").read_text()[-3000:]
                await asyncio.sleep(0.2)
            expected = await every_outcome(app, own_redis)
            query = "sum by (outcome) (idempotency_requests_total)"
            deadline = time.monotonic() + 30
            while True:
                reply = (await prom.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query})).json()
                seen = {r["metric"]["outcome"]: int(float(r["value"][1])) for r in reply["data"]["result"]}
                if seen == expected or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert seen == expected
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


async def test_two_worker_processes_aggregate(own_redis: RedisServer, tmp_path: Path) -> None:
    multiproc = tmp_path / "prom-multiproc"
    multiproc.mkdir()
    srv = UvicornServer(
        "tests.orders_app:app_from_env",
        env={"REDIS_URL": own_redis.url, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)},
        workers=2,
    )
    try:
        pids: set[int] = set()
        sent = 0
        while len(pids) < 2 or sent < 20:
            assert sent < 400, "the second worker never answered"
            async with httpx.AsyncClient(base_url=srv.url, timeout=10) as client:  # new connections each round
                replies = await asyncio.gather(
                    *(
                        client.post("/orders?sleep=0.05", json={}, headers={"Idempotency-Key": f"w{sent + i}"})
                        for i in range(10)
                    )
                )
            sent += 10
            pids |= {r.json()["pid"] for r in replies}
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as client:
            exposition = (await client.get("/metrics")).text
    finally:
        srv.stop()
    processed = sum(
        float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith("idempotency_requests_total{") and 'outcome="processed"' in line
    )
    assert processed == sent
    in_flight = [line for line in exposition.splitlines() if line.startswith("idempotency_requests_in_flight")]
    assert in_flight == ["idempotency_requests_in_flight 0.0"]
