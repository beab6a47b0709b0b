"""The records a store keeps, and what a claim answers. Plain data, no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

IN_FLIGHT = "in_flight"
COMPLETED = "completed"

ClaimOutcome = Literal["claimed", "mismatch", "in_flight", "completed"]


@dataclass(slots=True)
class RequestInfo:
    """What identifies one idempotent request, and what the record says about it."""

    scope: str
    method: str
    route: str
    key: str
    path: str
    fingerprint: str


@dataclass(slots=True)
class StoredResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    stored: bool = True  # False: the body was larger than the limit and was sent without being kept
    size: int = 0


@dataclass(slots=True)
class Claim:
    """The answer to a claim. `token` is set when claimed; `response` when completed."""

    outcome: ClaimOutcome
    token: str = ""
    retry_after_ms: int = 0
    response: StoredResponse | None = None
    age_ms: int = 0  # completed: time since the response was stored


@dataclass
class Record:
    """A record as the dashboard and the CLI see it (every field of its stored form, decoded)."""

    redis_key: str
    state: str
    key: str = ""
    method: str = ""
    route: str = ""
    path: str = ""
    scope: str = ""
    fingerprint: str = ""
    token: str = ""
    owner: str = ""
    lease_ms: int = 0
    created_ms: int = 0
    renewed_ms: int = 0
    renewals: int = 0
    completed_ms: int = 0
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stored: bool = False
    size: int = 0
    pttl_ms: int = -2  # remaining time to live as Redis reports it (-1: none, -2: gone)


def encode_headers(headers: list[tuple[bytes, bytes]]) -> str:
    return json.dumps([[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers], separators=(",", ":"))


def decode_headers(raw: str | bytes) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in json.loads(raw)]


def record_from_fields(redis_key: str, fields: dict[str, bytes], pttl_ms: int) -> Record:
    """Decode a record hash (bytes values, as Redis returns them)."""

    def text(name: str) -> str:
        return fields.get(name, b"").decode("utf-8", "replace")

    def number(name: str) -> int:
        try:
            return int(fields.get(name, b"0") or 0)
        except ValueError:
            return 0

    headers = (
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in decode_headers(fields["headers"])]
        if fields.get("headers")
        else []
    )
    return Record(
        redis_key=redis_key,
        state=text("state"),
        key=text("key"),
        method=text("method"),
        route=text("route"),
        path=text("path"),
        scope=text("scope"),
        fingerprint=text("fp"),
        token=text("token"),
        owner=text("owner"),
        lease_ms=number("lease"),
        created_ms=number("created"),
        renewed_ms=number("renewed"),
        renewals=number("renewals"),
        completed_ms=number("completed"),
        status=number("status"),
        headers=headers,
        body=fields.get("body", b""),
        stored=fields.get("stored") == b"1",
        size=number("size"),
        pttl_ms=pttl_ms,
    )
