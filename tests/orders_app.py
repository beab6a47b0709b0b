"""A small FastAPI app behind the middleware, used by in-process and real-server tests.

`calls` counts executions per idempotency key (the handler reads the header itself), so tests can prove that a
key ran exactly once.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from prometheus_client import REGISTRY, CollectorRegistry

from dashboard import create_dashboard
from middleware import IdempotencyMiddleware, MemoryStore, RedisStore, Store, expose_metrics, idempotent


def create_app(store: Store, registry: CollectorRegistry | None = None, **options: Any) -> FastAPI:
    """`registry=None`: a fresh registry (in-process tests); pass REGISTRY for the global or multiprocess one."""
    app = FastAPI()
    registry = CollectorRegistry() if registry is None else registry
    app.add_middleware(IdempotencyMiddleware, store=store, registry=registry, **options)
    expose_metrics(app, registry=None if registry is REGISTRY else registry)
    calls: Counter[str] = Counter()
    app.state.calls = calls

    exec_log = os.environ.get("EXEC_LOG")

    def count(request: Request) -> int:
        """Counts an execution; with EXEC_LOG set, also appends `key pid` to that file (shared by processes)."""
        key = request.headers.get("idempotency-key", "")
        calls[key] += 1
        if exec_log:
            fd = os.open(exec_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{key} {os.getpid()}\n".encode())
            finally:
                os.close(fd)
        return calls[key]

    @app.post("/orders")
    async def create_order(request: Request, payload: dict[str, Any]) -> dict[str, Any]:
        n = count(request)
        # ?sleep= is part of the fingerprint; the x-sleep header is not (a retry may wait less)
        await asyncio.sleep(float(request.query_params.get("sleep") or request.headers.get("x-sleep") or 0))
        return {"order": payload, "execution": n, "pid": os.getpid()}

    @app.post("/orders/{order_id}/items", status_code=201)
    async def add_item(request: Request, order_id: int) -> dict[str, Any]:
        return {"order_id": order_id, "execution": count(request)}

    @app.patch("/orders/{order_id}")
    async def patch_order(request: Request, order_id: int) -> dict[str, Any]:
        return {"order_id": order_id, "execution": count(request)}

    @app.post("/text")
    async def text(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"plain text #{count(request)}\n", headers={"x-custom": "kept"})

    @app.post("/binary")
    async def binary(request: Request) -> Response:
        count(request)
        return Response(bytes(range(256)) * 4, media_type="application/octet-stream")

    @app.post("/empty", status_code=204)
    async def empty(request: Request) -> Response:
        count(request)
        return Response(status_code=204)

    @app.post("/stream")
    async def stream(request: Request) -> StreamingResponse:
        n = count(request)
        size = int(request.query_params.get("size", "30000"))

        async def chunks() -> AsyncIterator[bytes]:
            sent = 0
            while sent < size:
                chunk = bytes([n % 256]) * min(10_000, size - sent)
                sent += len(chunk)
                yield chunk

        return StreamingResponse(chunks(), media_type="application/x-test")

    @app.post("/cookie")
    async def cookie(request: Request) -> Response:
        count(request)
        response = Response("ok")
        response.set_cookie("session", "secret")
        return response

    @app.post("/fail")
    async def fail(request: Request) -> Response:
        return Response(f"failed #{count(request)}", status_code=503)

    @app.post("/boom")
    async def boom(request: Request) -> Response:
        count(request)
        raise RuntimeError("boom")

    @app.post("/conflict-404")
    async def not_found(request: Request) -> Response:
        count(request)
        return Response("no such thing", status_code=404)

    @app.post("/required")
    @idempotent(required=True)
    async def required(request: Request) -> dict[str, int]:
        return {"execution": count(request)}

    @app.post("/opted-out")
    @idempotent(enabled=False)
    async def opted_out(request: Request) -> dict[str, int]:
        return {"execution": count(request)}

    @app.post("/short-ttl")
    @idempotent(ttl=0.3)
    async def short_ttl(request: Request) -> dict[str, int]:
        return {"execution": count(request)}

    @app.post("/slow")
    @idempotent(lease=float(os.environ.get("SLOW_LEASE", "0.6")))
    async def slow(request: Request) -> dict[str, int]:
        n = count(request)
        await asyncio.sleep(float(request.query_params.get("sleep", "1")))
        return {"execution": n}

    @app.get("/calls")
    async def get_calls(key: str) -> dict[str, int]:
        return {"calls": calls[key]}

    return app


def app_from_env() -> FastAPI:
    """For `uvicorn tests.orders_app:app_from_env --factory`: REDIS_URL selects the store."""
    url = os.environ.get("REDIS_URL")
    store: Store = (
        RedisStore.from_url(url, prefix=os.environ.get("IDEMSCOPE_PREFIX", "idemscope")) if url else MemoryStore()
    )
    app = create_app(
        store,
        registry=REGISTRY,
        store_timeout=float(os.environ.get("STORE_TIMEOUT", "0.5")),
        lease=float(os.environ.get("LEASE", "30")),
        ttl=float(os.environ.get("TTL", "86400")),
    )
    app.mount("/idempotency", create_dashboard(store, registry=REGISTRY))
    return app
