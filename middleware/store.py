"""The contract every store keeps, and how a request becomes a storage key.

A record is one Redis hash (or its in-memory equivalent) named::

    <prefix>:{<tag>}:<METHOD>:<route>:<key>

`tag` is 20 hex characters of SHA-256 over scope, method, route and key. It is the Redis Cluster hash tag, so
records spread over all slots, and it carries the scope: two clients using the same key get different records.
Each script touches exactly one record key, so every operation is single-slot.
"""

from __future__ import annotations

import hashlib
import os
import socket
from abc import ABC, abstractmethod

from .records import Claim, Record, RequestInfo, StoredResponse

DEFAULT_PREFIX = "idemscope"


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Store(ABC):
    """Atomic operations on idempotency records. Times are in milliseconds."""

    prefix: str = DEFAULT_PREFIX

    def record_key(self, request: RequestInfo) -> str:
        identity = "\n".join((request.scope, request.method, request.route, request.key)).encode()
        tag = hashlib.sha256(identity).hexdigest()[:20]
        return f"{self.prefix}:{{{tag}}}:{request.method}:{request.route}:{request.key}"

    # -- the request path: claim, then complete or release; renew while running --

    @abstractmethod
    async def claim(self, record_key: str, request: RequestInfo, lease_ms: int) -> Claim:
        """Atomically create an in-flight record, or report the record that is there."""

    @abstractmethod
    async def complete(self, record_key: str, token: str, response: StoredResponse, ttl_ms: int) -> int | None:
        """Store the response if `token` still owns the record. Returns how long the lock was held (ms), or None
        if the lease was lost."""

    @abstractmethod
    async def release(self, record_key: str, token: str) -> bool:
        """Delete the in-flight record if `token` still owns it."""

    @abstractmethod
    async def renew(self, record_key: str, token: str, lease_ms: int) -> bool:
        """Extend the lease if `token` still owns the in-flight record."""

    # -- inspection and administration (dashboard, CLI) --

    @abstractmethod
    async def get(self, record_key: str) -> Record | None:
        """The whole record, or None."""

    @abstractmethod
    async def scan(self, cursor: int, match: str, count: int) -> tuple[int, list[str]]:
        """One SCAN step over record keys matching a glob `match` (already escaped by the caller)."""

    @abstractmethod
    async def evict(self, record_key: str) -> bool:
        """Delete a record whatever its state."""

    @abstractmethod
    async def set_ttl(self, record_key: str, ttl_ms: int) -> bool:
        """Set a record's remaining time to live, only if it still exists."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
