"""The full soak: 100,000 requests of mixed outcomes over 32 connections, the dashboard in use.

    python bench/soak.py [--requests 100000] [--ttl 10]

Starts its own redis-server and a uvicorn server on loopback; prints the statuses, server RSS after warm-up and
at the end, and Redis memory before, at the peak and after the TTL.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.redis_server import RedisServer
from tests.soak import soak
from tests.uvicorn_server import UvicornServer


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--ttl", type=float, default=10.0)
    args = parser.parse_args()
    redis_server = RedisServer()
    server = UvicornServer("tests.orders_app:app_from_env", env={"REDIS_URL": redis_server.url, "TTL": str(args.ttl)})
    try:
        result = await soak(server.url, redis_server.url, server.process.pid, args.requests, args.connections, args.ttl)
    finally:
        server.stop()
        redis_server.close()
    print(f"{result.requests} requests in {result.seconds:.1f} s ({result.requests / result.seconds:.0f}/s)")
    for name, count in sorted(result.statuses.items()):
        print(f"  {name:<16} {count}")
    print(f"unexpected statuses: {len(result.unexpected)}", *result.unexpected[:10], sep="\n  ")
    print(f"server RSS: {result.rss_after_warmup_kb} kB after warm-up, {result.rss_end_kb} kB at the end")
    print(
        f"Redis: {result.redis_baseline_bytes} B before, {result.redis_peak_keys} records at the end of the load, "
        f"{result.redis_after_ttl_keys} records and {result.redis_after_ttl_bytes} B after the TTL"
    )
    print(f"dashboard: {result.dashboard_calls} calls, {len(result.dashboard_failures)} failures")


if __name__ == "__main__":
    asyncio.run(main())
