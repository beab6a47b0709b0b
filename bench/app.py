"""The benchmark's app: a small JSON POST handler, with or without the middleware (chosen by environment).

BENCH_STORE=none|redis|memory, BENCH_METRICS=1|0, BENCH_PIPELINED=1|0, BENCH_BODY=<response body bytes>, REDIS_URL.
"""

from __future__ import annotations

import asyncio
import gc
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from middleware import IdempotencyMiddleware, MemoryStore, RedisStore, Store


class Order(BaseModel):
    sku: str
    quantity: int


def create_app() -> FastAPI:
    app = FastAPI()
    kind = os.environ.get("BENCH_STORE", "none")
    size = int(os.environ.get("BENCH_BODY", "0"))
    padding = "x" * max(0, size - 60)
    if kind != "none":
        pipelined = os.environ.get("BENCH_PIPELINED", "1") == "1"
        store: Store = (
            RedisStore.from_url(os.environ["REDIS_URL"], pipelined=pipelined) if kind == "redis" else MemoryStore()
        )
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

    if os.environ.get("BENCH_GC_FREEZE", "1") == "1":
        # Move everything loaded so far out of the collector's reach, as production apps do after start-up
        # (it keeps full collections from rescanning FastAPI and pydantic); applied to every scenario alike.
        gc.freeze()
    return app
