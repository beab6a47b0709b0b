"""Cost of the metrics per request: the middleware in process, metrics on vs off.

    python bench/metrics_cost.py [--requests 20000] [--redis-url URL]

Calls the middleware directly (no HTTP server, so the figure is the middleware's own CPU time) around a minimal
ASGI app, for fresh keys (claim + complete) and replays, on MemoryStore and, with --redis-url or REDIS_URL, on
RedisStore. Rounds alternate on/off to spread machine noise; the best round of each is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from prometheus_client import CollectorRegistry

from middleware import IdempotencyMiddleware, MemoryStore, RedisStore, Store

BODY = b'{"amount": 1000, "currency": "eur"}'


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"id": 1}'})


async def run(mw: IdempotencyMiddleware, keys: list[bytes]) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: Any) -> None:
        pass

    started = time.process_time()
    for key in keys:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/orders",
            "raw_path": b"/orders",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"idempotency-key", key)],
        }
        await mw(scope, receive, send)
    return (time.process_time() - started) / len(keys) * 1e6


async def measure(store: Store, n: int, rounds: int) -> dict[str, dict[str, float]]:
    best: dict[str, dict[str, float]] = {"fresh": {}, "replay": {}}
    for r in range(rounds):
        for metrics in (True, False) if r % 2 == 0 else (False, True):
            mw = IdempotencyMiddleware(app, store=store, metrics=metrics, registry=CollectorRegistry())
            keys = [f"{r}-{metrics}-{i}".encode() for i in range(n)]
            label = "on" if metrics else "off"
            fresh = await run(mw, keys)
            replay = await run(mw, keys)
            best["fresh"][label] = min(best["fresh"].get(label, 1e9), fresh)
            best["replay"][label] = min(best["replay"].get(label, 1e9), replay)
    return best


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    args = parser.parse_args()
    stores: list[tuple[str, Store]] = [("MemoryStore", MemoryStore())]
    if args.redis_url:
        stores.append(("RedisStore", RedisStore.from_url(args.redis_url, prefix="idemscope-bench")))
    print(f"{'store':<12} {'scenario':<8} {'metrics on':>12} {'metrics off':>12} {'cost':>10}")
    for name, store in stores:
        result = await measure(store, args.requests, args.rounds)
        for scenario, numbers in result.items():
            on, off = numbers["on"], numbers["off"]
            print(f"{name:<12} {scenario:<8} {on:>9.1f} us {off:>9.1f} us {on - off:>+7.1f} us")
        if isinstance(store, RedisStore):
            keys = [k async for k in store.client.scan_iter(match="idemscope-bench:*", count=1000)]
            for i in range(0, len(keys), 1000):
                await store.client.unlink(*keys[i : i + 1000])
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
