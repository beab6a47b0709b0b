"""A bounded soak: a mix of outcomes against a real uvicorn server on a real Redis, with the dashboard in use.

Used by tests/test_soak.py (small counts) and bench/soak.py (full counts). Returns numbers; the caller asserts.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis


@dataclass
class SoakResult:
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)  # "kind:status"
    unexpected: list[str] = field(default_factory=list)
    rss_after_warmup_kb: int = 0
    rss_end_kb: int = 0
    redis_baseline_bytes: int = 0
    redis_peak_keys: int = 0
    redis_after_ttl_bytes: int = 0
    redis_after_ttl_keys: int = -1
    dashboard_calls: int = 0
    dashboard_failures: list[str] = field(default_factory=list)


EXPECTED = {
    "fresh": {200},
    "replay": {200},
    "duplicate": {200, 409},
    "mismatch": {422},
    "missing": {200},
    "invalid": {400},
}


def records(client: redis.Redis) -> int:
    """Idempotency records in Redis (the audit list is kept on purpose and not counted)."""
    return sum(1 for _ in client.scan_iter(match="idemscope:{*", count=1000))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def soak(
    base_url: str, redis_url: str, server_pid: int, total: int, connections: int = 32, ttl: float = 3.0
) -> SoakResult:
    result = SoakResult(requests=total)
    probe = redis.Redis.from_url(redis_url)
    result.redis_baseline_bytes = int(probe.info("memory")["used_memory"])
    rng = random.Random(42)
    completed: list[tuple[float, str]] = []  # (when, key): only keys well inside their TTL are retried
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    warmup = max(1, total // 10)
    done = 0
    stop_dashboard = asyncio.Event()

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal done
        roll = rng.random()
        headers: dict[str, str] = {}
        body = {"n": i}
        # replay only keys well inside their TTL: on a loaded machine a request can wait seconds for its turn
        fresh_enough = time.monotonic() - ttl / 4
        while completed and completed[0][0] < fresh_enough:
            completed.pop(0)
        if roll < 0.40 or not completed:
            kind, key = "fresh", f"soak-{i}"
        elif roll < 0.65:
            kind, key = "replay", rng.choice(completed)[1]
            body = {"n": int(key.split("-")[1])}
        elif roll < 0.75:
            kind, key = "duplicate", f"dup-{i}"
        elif roll < 0.85:
            kind, key = "mismatch", rng.choice(completed)[1]
            body = {"n": -1}
        elif roll < 0.95:
            kind, key = "missing", ""
        else:
            kind, key = "invalid", f"bad key {i}"
        if key:
            headers["Idempotency-Key"] = key
        if kind == "duplicate":
            replies = await asyncio.gather(
                *(client.post("/orders", json=body, headers={**headers, "X-Sleep": "0.02"}) for _ in range(2))
            )
        else:
            replies = [await client.post("/orders", json=body, headers=headers)]
        for reply in replies:
            result.statuses[f"{kind}:{reply.status_code}"] += 1
            if reply.status_code not in EXPECTED[kind]:
                result.unexpected.append(f"{kind} {key!r}: {reply.status_code} {reply.text[:200]}")
            if kind == "replay" and reply.headers.get("idempotent-replayed") != "true":
                result.unexpected.append(f"replay {key!r} was not replayed")
        if kind == "fresh":
            completed.append((time.monotonic(), key))
        done += 1
        if done == warmup:
            result.rss_after_warmup_kb = rss_kb(server_pid)

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await one(client, i)

    async def dashboard(client: httpx.AsyncClient) -> None:
        """An operator using the dashboard during the load: pages, then a TTL change and an eviction of a key of
        its own (so the load's replays stay replays)."""
        round_ = 0
        while not stop_dashboard.is_set():
            round_ += 1
            key = f"op-{round_}"
            await client.post("/orders", json={"op": round_}, headers={"Idempotency-Key": key})
            csrf = ""
            for url in ("/idempotency/", "/idempotency/locks", f"/idempotency/keys?key={key}"):
                page = await client.get(url)
                result.dashboard_calls += 1
                if page.status_code != 200:
                    result.dashboard_failures.append(f"GET {url}: {page.status_code}")
                found = re.search(r'"X-CSRF-Token": "([0-9a-f]{32})"', page.text)
                csrf = found.group(1) if found else csrf
            record_keys = [html.unescape(k) for k in re.findall(r'name="k" value="([^"]+)"', page.text)]
            if len(record_keys) != 1:
                result.dashboard_failures.append(f"keys page for {key}: {len(record_keys)} rows")
                continue
            hx = {"X-CSRF-Token": csrf, "HX-Request": "true", "Sec-Fetch-Site": "same-origin"}
            for action, data in (("ttl", {"k": record_keys[0], "ttl": "60"}), ("evict", {"k": record_keys[0]})):
                reply = await client.post(f"/idempotency/actions/{action}", data=data, headers=hx)
                result.dashboard_calls += 1
                if reply.status_code != 200:
                    result.dashboard_failures.append(f"POST {action}: {reply.status_code} {reply.text[:200]}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_dashboard.wait(), 0.5)

    started = time.monotonic()
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client,
        httpx.AsyncClient(base_url=base_url, timeout=30) as operator,
    ):
        watcher = asyncio.create_task(dashboard(operator))
        await asyncio.gather(*(worker(client) for _ in range(connections)))
        stop_dashboard.set()
        await watcher
    result.seconds = time.monotonic() - started
    result.rss_end_kb = rss_kb(server_pid)
    result.redis_peak_keys = records(probe)
    deadline = time.monotonic() + ttl + 30
    while time.monotonic() < deadline:
        result.redis_after_ttl_keys = records(probe)
        if result.redis_after_ttl_keys == 0:
            break
        await asyncio.sleep(0.5)
    result.redis_after_ttl_bytes = int(probe.info("memory")["used_memory"])
    probe.close()
    return result
