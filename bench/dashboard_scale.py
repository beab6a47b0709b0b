"""How the dashboard's listing behaves on a large keyspace: load N records by pipeline, time the pages.

    python bench/dashboard_scale.py [--records 1000000] [--redis-url URL]

Without --redis-url/REDIS_URL it starts its own redis-server on a free loopback port (and stops it after).
Reports the load time, Redis memory, and the time of: the first keys page, a filtered page (key substring,
status class, route), the locks page query, and the overview's bounded count. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from middleware import RecordFilter, RedisStore, RequestInfo, layout
from tests.redis_server import RedisServer

PREFIX = "idemscale"
ROUTES = ["/orders", "/orders/{order_id}/items", "/payments", "/refunds"]


async def load(store: RedisStore, n: int, batch: int = 5000) -> None:
    """Records laid out as RedisStore writes them (middleware/layout.py): 1 in 1,000 in flight, the rest completed."""
    headers = layout.header_block([(b"content-type", b"application/json"), (b"content-length", b"29")])
    body = b'{"id": 1, "ok": true, "n": 1}'
    now = int(time.time() * 1000)
    for start in range(0, n, batch):
        async with store.client.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + batch)):
                route = ROUTES[i % len(ROUTES)]
                key = f"k-{i:07d}-{i * 7919 % 100003:05d}"
                record_key = f"{PREFIX}:{{{i:020x}}}:POST:{route}:{key}"
                request = RequestInfo("anonymous", "POST", route, key, route, "f" * 32)
                if i % 1000 == 0:
                    value = layout.in_flight(request, f"t{i}", 30_000, now, b"bench:1")
                else:  # what complete.lua writes
                    place = layout.place_line(request)
                    status = 404 if i % 50 == 0 else 201
                    value = f"C {'f' * 32} {now} 3 {status} 29 1\n".encode() + place + b"\n" + headers + body
                pipe.set(record_key, value, px=86_400_000)
            await pipe.execute()


async def timed(label: str, coro: object) -> tuple[str, float, object]:
    started = time.perf_counter()
    result = await coro  # type: ignore[misc]
    return label, time.perf_counter() - started, result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    args = parser.parse_args()
    server = None if args.redis_url else RedisServer()
    url = args.redis_url or (server.url if server else "")
    store = RedisStore.from_url(url, prefix=PREFIX, timeout=30)
    try:
        started = time.perf_counter()
        await load(store, args.records)
        load_seconds = time.perf_counter() - started
        memory = (await store.client.info("memory"))["used_memory_human"]
        print(f"loaded {args.records} records in {load_seconds:.1f} s; Redis used_memory {memory}")
        rows = [
            await timed("first keys page (50 rows)", store.list_records(RecordFilter(), 0, 50, 10_000)),
            await timed("filter: key contains '-12345'", store.list_records(RecordFilter(key="-12345"), 0, 50, 10_000)),
            await timed("filter: status 4xx", store.list_records(RecordFilter(status_class="4xx"), 0, 50, 10_000)),
            await timed("filter: route /payments", store.list_records(RecordFilter(route="/payments"), 0, 50, 10_000)),
            await timed(
                "locks (in flight, 200 rows)", store.list_records(RecordFilter(state="in_flight"), 0, 200, 10_000)
            ),
            await timed("overview counts (budget 10,000)", store.keyspace_stats(10_000)),
        ]
        print(f"{'query':<36} {'seconds':>8} {'rows':>6} {'scanned':>8}")
        for label, seconds, result in rows:
            records = getattr(result, "records", 0)
            found = len(records) if isinstance(records, list) else records
            scanned = getattr(result, "scanned", 0)
            print(f"{label:<36} {seconds:>8.3f} {found:>6} {scanned:>8}")
    finally:
        if server is not None:
            server.close()
        else:
            cursor = 0
            while True:
                cursor, keys = await store.client.scan(cursor, match=f"{PREFIX}:*", count=10_000)
                if keys:
                    await store.client.unlink(*keys)
                if cursor == 0:
                    break
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
