"""CPU time per request of the benchmark's FastAPI app called in process (no HTTP server, no load generator), bare
and behind the middleware: what the middleware itself costs, without wrk and uvicorn competing for the CPU.

    python bench/inprocess.py [--requests 300] [--concurrency 32] [--rounds 7] [--no-metrics] [--redis-url URL]

`concurrency` tasks each send `requests` requests in turn (so the auto-pipelined connection batches as under load),
on uvloop, against a real Redis (its own redis-server on a free port unless --redis-url or REDIS_URL is given).
Prints the best round of each: bare, fresh keys, replays. To see where the time goes:
`py-spy record -o profile.svg -- python bench/inprocess.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.redis_server import RedisServer

BODY = b'{"sku": "tea", "quantity": 2}'


async def client(app: Any, keys: list[bytes | None]) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: Any) -> None:
        pass

    for key in keys:
        headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), (b"content-length", b"29")]
        if key is not None:
            headers.append((b"idempotency-key", key))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/orders", "raw_path": b"/orders", "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 80),
        }  # fmt: skip
        await app(scope, receive, send)


async def main(args: argparse.Namespace, redis_url: str) -> None:
    create_app = importlib.import_module("bench.app").create_app  # (by name: mypy checks bench/ as loose files)

    os.environ.update(BENCH_STORE="none", REDIS_URL=redis_url, BENCH_METRICS="0" if args.no_metrics else "1")
    bare = create_app()
    os.environ["BENCH_STORE"] = "redis"
    guarded = create_app()
    run = uuid.uuid4().hex
    await client(bare, [None] * 100)
    await client(guarded, [f"warm-{run}-{i}".encode() for i in range(100)])
    best: dict[str, float] = {}
    for r in range(args.rounds):
        for label, app, fresh in (("bare", bare, False), ("fresh key", guarded, True), ("replay", guarded, True)):
            keysets: list[list[bytes | None]] = [
                [f"{run}-{r}-{c}-{i}".encode() if fresh else None for i in range(args.requests)]
                for c in range(args.concurrency)
            ]
            started = time.process_time()
            await asyncio.gather(*(client(app, keys) for keys in keysets))
            cpu = (time.process_time() - started) / (args.requests * args.concurrency) * 1e6
            best[label] = min(best.get(label, cpu), cpu)
    metrics = "off" if args.no_metrics else "on"
    print(f"CPU per request, best of {args.rounds} rounds, metrics {metrics}:")
    for label, cpu in best.items():
        print(f"  {label:<10} {cpu:7.1f} us  ({cpu / best['bare']:.2f}x bare)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-metrics", action="store_true")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    arguments = parser.parse_args()
    server = None if arguments.redis_url else RedisServer()
    try:
        uvloop.run(main(arguments, arguments.redis_url or (server.url if server else "")))
    finally:
        if server is not None:
            server.close()
