"""create_dashboard: the admin UI as a FastAPI app, to mount in the host app or to run standalone."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.params import Depends
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import REGISTRY, CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from middleware import IdempotencyMetrics, Store

from . import present
from .charts import LocalRates, PrometheusRates
from .security import Actor, SecurityHeaders, TokenAuth, default_actor
from .views import is_fragment, render, router

HERE = Path(__file__).resolve().parent
TOKEN_ENV = "IDEMSCOPE_DASHBOARD_TOKEN"


def templates_dir() -> Path:
    """In a wheel the templates sit inside the package; in a checkout, at the top level beside it."""
    packaged = HERE / "templates"
    return packaged if packaged.is_dir() else HERE.parent / "templates"


@dataclass
class Limits:
    page_size: int = 50
    max_page_size: int = 200
    scan_budget: int = 10_000
    max_scan_budget: int = 100_000
    poll_seconds: int = 5
    min_poll_seconds: int = 2
    max_poll_seconds: int = 60
    bulk_batch: int = 1000
    max_bulk: int = 100_000
    max_selected: int = 500


@dataclass
class Dashboard:
    """What every view needs; kept on `app.state.dashboard`."""

    store: Store
    templates: Jinja2Templates
    metrics: IdempotencyMetrics
    local_rates: LocalRates
    prometheus: PrometheusRates | None
    read_only: bool
    actor: Actor
    limits: Limits
    title: str


def create_dashboard(
    store: Store,
    *,
    token: str | None = None,
    read_only: bool = False,
    dependencies: Sequence[Depends] = (),
    actor: Actor = default_actor,
    prometheus_url: str | None = None,
    registry: CollectorRegistry | None = None,
    metrics_prefix: str = "idempotency",
    limits: Limits | None = None,
    title: str = "idemscope",
) -> FastAPI:
    """The dashboard app. Auth: `token` (or the IDEMSCOPE_DASHBOARD_TOKEN variable), or the host app's own
    `dependencies=[Depends(...)]` when mounted. `read_only=True` hides and refuses every mutation."""
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    guards: list[Any] = list(dependencies)
    if token:
        guards.append(Depends(TokenAuth(token)))
    registry = REGISTRY if registry is None else registry
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None, dependencies=guards)
    templates = Jinja2Templates(directory=str(templates_dir()))
    templates.env.filters.update(duration=present.duration, size=present.size, timestamp=present.timestamp)
    app.state.dashboard = Dashboard(
        store=store,
        templates=templates,
        metrics=IdempotencyMetrics.for_registry(registry, metrics_prefix),
        local_rates=LocalRates(registry, metrics_prefix),
        prometheus=PrometheusRates(prometheus_url, metrics_prefix) if prometheus_url else None,
        read_only=read_only,
        actor=actor,
        limits=limits or Limits(),
        title=title,
    )
    app.include_router(router)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_middleware(SecurityHeaders)
    return app


async def http_error(request: Request, exc: Exception) -> Response:
    """Errors as HTML: a message htmx swaps in place, or a page; 401 keeps its WWW-Authenticate challenge."""
    assert isinstance(exc, StarletteHTTPException)
    template = "idemscope/_message.html" if is_fragment(request) else "idemscope/error.html"
    response = render(request, template, status_code=exc.status_code, text=str(exc.detail), level="error")
    if exc.headers:
        response.headers.update(exc.headers)
    return response
