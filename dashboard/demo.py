"""`idemscope demo`: a small orders API behind the middleware, the dashboard at /idempotency, /metrics, and a
traffic generator that makes processed, replayed, conflicting, mismatched, in-flight and stuck keys."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from prometheus_client import CollectorRegistry

from middleware import IdempotencyMiddleware, RequestInfo, Store, expose_metrics, idempotent

from .app import create_dashboard

logger = logging.getLogger("idemscope.demo")

LANDING = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>idemscope demo</title>
<link rel="stylesheet" href="idempotency/static/dashboard.css"></head><body><main>
<h1>idemscope demo</h1>
<p>An orders API protected by the idempotency middleware. Try it:</p>
<pre class="body">curl -i -X POST {base}orders -H 'Idempotency-Key: "order-1"' -H 'content-type: application/json' \\
     -d '{{"sku": "tea", "quantity": 2}}'</pre>
<p>Run it twice: the second answer is replayed (<code>Idempotent-Replayed: true</code>).</p>
<ul>
<li><a href="idempotency/">The dashboard</a>: keys, locks, cached responses, audit log</li>
<li><a href="metrics">/metrics</a>: Prometheus metrics</li>
<li><a href="docs">API docs</a></li>
</ul>
<form method="post" action="demo/traffic"><button type="submit">Generate a burst of traffic</button></form>
</main></body></html>"""


def create_demo_app(
    store: Store, *, traffic: bool = True, registry: CollectorRegistry | None = None, token: str | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if traffic:
            app.state.tasks.add(asyncio.create_task(keep_generating(app, store)))
        yield
        for task in list(app.state.tasks):
            task.cancel()

    app = FastAPI(title="idemscope demo: orders API", lifespan=lifespan)
    app.add_middleware(IdempotencyMiddleware, store=store, ttl=900, lease=10, registry=registry)
    expose_metrics(app, registry=registry)
    orders: dict[str, dict[str, Any]] = {}

    @app.get("/", include_in_schema=False)
    async def landing(request: Request) -> HTMLResponse:
        return HTMLResponse(LANDING.format(base=str(request.base_url)))

    @app.post("/orders", status_code=201)
    async def create_order(order: dict[str, Any]) -> dict[str, Any]:
        order_id = uuid.uuid4().hex[:12]
        orders[order_id] = {"id": order_id, **order, "status": "created"}
        return orders[order_id]

    @app.post("/orders/{order_id}/refunds", status_code=201)
    @idempotent(required=True)
    async def refund(order_id: str, refund: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(float(refund.get("processing_seconds", 0)))
        return {"order_id": order_id, "refund": refund, "status": "refunded"}

    @app.post("/demo/traffic", include_in_schema=False)
    async def burst(request: Request) -> Response:
        task = asyncio.create_task(generate_traffic(app, store))
        app.state.tasks.add(task)
        task.add_done_callback(app.state.tasks.discard)
        return RedirectResponse(str(request.url_for("overview")), status_code=303)

    app.state.tasks = set()
    app.mount("/idempotency", create_dashboard(store, token=token, registry=registry))

    return app


async def keep_generating(app: FastAPI, store: Store, every: float = 15.0) -> None:
    while True:
        try:
            await generate_traffic(app, store)
        except Exception:
            logger.exception("traffic generator failed")
        await asyncio.sleep(every)


async def call(app: Any, method: str, path: str, key: str | None, body: dict[str, Any]) -> int:
    """One request through the whole app, in process (the middleware sees it like any other)."""
    raw = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"authorization", b"Bearer demo-client")]
    if key is not None:
        headers.append((b"idempotency-key", f'"{key}"'.encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": headers,
        "client": ("127.0.0.1", 0), "server": ("demo", 80),
    }  # fmt: skip
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def generate_traffic(app: FastAPI, store: Store) -> None:
    """One burst: every outcome the dashboard shows."""
    run = uuid.uuid4().hex[:6]
    skus = ["tea", "coffee", "cocoa", "matcha"]
    keys = [f"order-{run}-{i}" for i in range(12)]
    bodies = {k: {"sku": random.choice(skus), "quantity": random.randint(1, 5)} for k in keys}
    for k in keys:  # processed
        await call(app, "POST", "/orders", k, bodies[k])
    for k in keys[:6]:  # replayed: the client retried after a timeout
        await call(app, "POST", "/orders", k, bodies[k])
    for k in keys[:2]:  # mismatch: the same key reused for another order
        await call(app, "POST", "/orders", k, {"sku": "other", "quantity": 99})
    await call(app, "POST", "/orders", None, {"sku": "tea"})  # no key: passes through
    await call(
        app, "POST", "/orders", f"hostile-{run}-<script>alert(1)</script>", {"note": "<img src=x onerror=alert(1)>"}
    )
    # in flight: slow refunds, each retried at once (conflict)
    slow = [
        asyncio.create_task(
            call(app, "POST", f"/orders/{k}/refunds", f"refund-{k}", {"amount": 5, "processing_seconds": 8})
        )
        for k in keys[6:9]
    ]
    await asyncio.sleep(0.2)
    for k in keys[6:9]:
        await call(app, "POST", f"/orders/{k}/refunds", f"refund-{k}", {"amount": 5, "processing_seconds": 8})
    # a stuck lock: claimed by a "worker" that died without releasing it (frees itself after its 40 s lease)
    crashed = RequestInfo("demo", "POST", "/orders/{order_id}/refunds", f"crashed-{run}", "/orders/x/refunds", "0" * 32)
    await store.claim(store.record_key(crashed), crashed, 40_000)
    await asyncio.gather(*slow)
