"""RFC 9457 problem+json responses the middleware sends on its own account."""

from __future__ import annotations

import json
import math

from .types import Send

PROBLEM_BASE = "urn:idemscope:problem:"


async def send_problem(
    send: Send,
    status: int,
    problem: str,
    title: str,
    detail: str,
    *,
    retry_after_ms: int | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(
        {"type": PROBLEM_BASE + problem, "title": title, "status": status, "detail": detail},
        separators=(",", ":"),
    ).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if retry_after_ms is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(retry_after_ms / 1000))).encode()))
    if extra_headers:
        headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
