"""The benchmark's app: a small JSON POST handler, with or without the middleware (chosen by environment).

BENCH_STORE=none|redis|memory|noop|noop-wait|<peer>, BENCH_METRICS=1|0, BENCH_PIPELINED=1|0,
BENCH_BODY=<response body bytes>, REDIS_URL.
"""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from middleware import Claim, IdempotencyMiddleware, MemoryStore, RedisStore, RequestInfo, Store, StoredResponse


class Order(BaseModel):
    sku: str
    quantity: int


def asgi_idempotency_header(app: FastAPI, redis_url: str) -> None:
    """As its README shows: RedisBackend(redis=...) and the middleware with its defaults."""
    import redis.asyncio as aioredis
    from idempotency_header_middleware import IdempotencyHeaderMiddleware
    from idempotency_header_middleware.backends import RedisBackend

    backend = RedisBackend(redis=aioredis.Redis.from_url(redis_url))
    app.add_middleware(cast(Any, IdempotencyHeaderMiddleware), backend=backend)  # a dataclass: its typing differs


def fastapi_idempotency_key(app: FastAPI, redis_url: str) -> None:
    """As its README shows: RedisBackend(redis_url=...) and the middleware with its defaults."""
    from fastapi_idempotency_key import IdempotencyMiddleware as PeerMiddleware
    from fastapi_idempotency_key import RedisBackend as PeerBackend

    app.add_middleware(PeerMiddleware, backend=PeerBackend(redis_url=redis_url))


class NoopStore(MemoryStore):
    """A diagnostic store: claims every key at once and stores nothing (`wait`: after one event-loop turn per call),
    so a run shows what the middleware costs without a store's work."""

    def __init__(self, wait: bool) -> None:
        super().__init__()
        self.wait = wait

    def bound_calls(self, timeout: float) -> bool:
        return True  # no timeout around calls that cannot hang

    async def claim(self, record_key: str, request: RequestInfo, lease_ms: int) -> Claim:
        if self.wait:
            await asyncio.sleep(0)
        return Claim("claimed", token="noop")

    async def complete(self, record_key: str, token: str, response: StoredResponse, ttl_ms: int) -> int | None:
        if self.wait:
            await asyncio.sleep(0)
        return 0


# Other idempotency middlewares on PyPI (bench/run.py --peers; pip install -e '.[bench,peers]')
PEERS = {"asgi-idempotency-header": asgi_idempotency_header, "fastapi-idempotency-key": fastapi_idempotency_key}


def create_app() -> FastAPI:
    app = FastAPI()
    kind = os.environ.get("BENCH_STORE", "none")
    store: Store | None = None
    size = int(os.environ.get("BENCH_BODY", "0"))
    padding = "x" * max(0, size - 60)
    if kind in PEERS:
        PEERS[kind](app, os.environ["REDIS_URL"])
    elif kind != "none":
        pipelined = os.environ.get("BENCH_PIPELINED", "1") == "1"
        if kind == "redis":
            store = RedisStore.from_url(os.environ["REDIS_URL"], pipelined=pipelined)
        else:
            store = NoopStore(wait=kind == "noop-wait") if kind.startswith("noop") else MemoryStore()
        app.add_middleware(
            IdempotencyMiddleware,
            store=store,
            metrics=os.environ.get("BENCH_METRICS", "1") == "1",
            registry=CollectorRegistry(),
            max_body_size=2 * 1024 * 1024,
        )

    @app.post("/orders", status_code=201)
    async def create_order(order: Order, request: Request) -> Response:
        hold = request.headers.get("x-hold")
        if hold:  # keeps a key in flight for the conflict scenario
            await asyncio.sleep(float(hold))
        content = {"id": 1, "sku": order.sku, "quantity": order.quantity}
        if padding:
            content["padding"] = padding
        return JSONResponse(content, status_code=201)

    @app.get("/bench/round-trips")
    async def round_trips() -> dict[str, int]:  # read by bench/run.py before and after each load
        return {"round_trips": store.round_trips if isinstance(store, RedisStore) else 0 if kind not in PEERS else -1}

    if os.environ.get("BENCH_GC_FREEZE", "1") == "1":
        # Move everything loaded so far out of the collector's reach, as production apps do after start-up
        # (it keeps full collections from rescanning FastAPI and pydantic); applied to every scenario alike.
        gc.freeze()
    return app
