"""Per-route options (the `idempotent` decorator) and finding the route template of a request.

The middleware runs before the router, so it asks the router the same question the router will answer next:
which route matches this scope. Starlette and FastAPI routers (with mounts) are understood; any other ASGI app
can pass `route_resolver=` to the middleware.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.routing import Match

from .types import Scope

UNMATCHED = "__unmatched__"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RouteOptions:
    """Overrides for one route; None keeps the middleware's setting."""

    enabled: bool = True
    required: bool | None = None
    ttl: float | None = None
    lease: float | None = None
    max_body_size: int | None = None


def idempotent(
    *,
    enabled: bool = True,
    required: bool | None = None,
    ttl: float | None = None,
    lease: float | None = None,
    max_body_size: int | None = None,
) -> Callable[[F], F]:
    """Mark an endpoint with idempotency options. Put it below the route decorator::

    @app.post("/payments")
    @idempotent(required=True, ttl=7 * 24 * 3600)
    async def create_payment(...): ...

    @app.post("/search")
    @idempotent(enabled=False)
    async def search(...): ...
    """
    options = RouteOptions(enabled=enabled, required=required, ttl=ttl, lease=lease, max_body_size=max_body_size)

    def mark(endpoint: F) -> F:
        endpoint.__idemscope__ = options  # type: ignore[attr-defined]
        return endpoint

    return mark


@dataclass(frozen=True)
class ResolvedRoute:
    template: str  # the route template, or UNMATCHED
    options: RouteOptions | None


NO_ROUTE = ResolvedRoute(UNMATCHED, None)
RouteResolver = Callable[[Scope], ResolvedRoute]


class StarletteRouteResolver:
    """Find the route template by matching the app's routes (recursing into mounts), with a bounded cache."""

    def __init__(self, app: object = None, cache_size: int = 4096) -> None:
        self._app = app  # used when the scope names no app (the middleware wraps the Starlette app from outside)
        self._cache: OrderedDict[tuple[Any, str, str], ResolvedRoute] = OrderedDict()
        self._cache_size = cache_size

    def __call__(self, scope: Scope) -> ResolvedRoute:
        app = scope.get("app", self._app)
        routes = getattr(getattr(app, "router", None), "routes", None)
        if routes is None:
            return NO_ROUTE
        cache_key = (id(app), scope["method"], scope["path"])
        found = self._cache.get(cache_key)
        if found is not None:
            self._cache.move_to_end(cache_key)
            return found
        found = _match(routes, scope, "") or NO_ROUTE
        self._cache[cache_key] = found
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return found


def _match(routes: Sequence[Any], scope: Scope, prefix: str) -> ResolvedRoute | None:
    partial: ResolvedRoute | None = None
    for route in routes:
        try:
            match, child = route.matches(scope)
        except Exception:  # a custom route that cannot match this scope
            continue
        if match is Match.NONE:
            continue
        path = getattr(route, "path", "")
        inner = getattr(route, "routes", None)
        if inner:  # Mount or Host: keep matching inside it
            found = _match(inner, {**scope, **child}, prefix + path)
            if found is not None:
                return found
            continue
        resolved = ResolvedRoute(prefix + path, getattr(getattr(route, "endpoint", None), "__idemscope__", None))
        if match is Match.FULL:
            return resolved
        partial = partial or resolved
    return partial
