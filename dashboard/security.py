"""Who may use the dashboard, and what protects it from the hostile data it shows.

Auth is a token (bearer, or the password of HTTP basic auth for browsers) compared in constant time, or the host
app's own dependencies when the dashboard is mounted. Mutations also need a CSRF token (double submit: a cookie and
a header htmx sends) and a same-origin request. Every response carries a strict CSP and no-store.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Callable

from fastapi import HTTPException, Request

from middleware.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "idemscope_csrf"
CSRF_HEADER = "x-csrf-token"

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response of the dashboard (a plain ASGI middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message["headers"] = headers + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


class TokenAuth:
    """A FastAPI dependency: `Authorization: Bearer <token>` or basic auth with the token as password."""

    def __init__(self, token: str) -> None:
        if len(token) < 16:
            raise ValueError("the dashboard token must be at least 16 characters long")
        self.token = token.encode()

    def __call__(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        supplied = b""
        user = ""
        if scheme.lower() == "bearer":
            supplied = value.strip().encode()
            user = "bearer"
        elif scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, password = "", ""
            supplied = password.encode()
        if not supplied or not hmac.compare_digest(supplied, self.token):
            raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": 'Basic realm="idemscope"'})
        request.state.actor = user or "token"


def default_actor(request: Request) -> str:
    actor = getattr(request.state, "actor", None)
    if actor:
        return str(actor)
    client = request.client
    return f"anonymous@{client.host}" if client else "anonymous"


def csrf_token(request: Request) -> tuple[str, bool]:
    """The CSRF token of this browser, and whether the cookie must be set."""
    existing = request.cookies.get(CSRF_COOKIE, "")
    if len(existing) == 32 and all(c in "0123456789abcdef" for c in existing):
        return existing, False
    return secrets.token_hex(16), True


def check_mutation(request: Request, read_only: bool) -> None:
    """Refuse a mutation in read-only mode, from another origin, or without the CSRF token."""
    if read_only:
        raise HTTPException(403, "the dashboard is read-only")
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        raise HTTPException(403, "cross-site request refused")
    origin = request.headers.get("origin")
    if origin is not None and origin != _own_origin(request):
        raise HTTPException(403, "cross-origin request refused")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), header.encode()):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page")


def _own_origin(request: Request) -> str:
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}"


Actor = Callable[[Request], str]
