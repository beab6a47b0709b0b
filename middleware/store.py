"""The contract every store keeps, and how a request becomes a storage key.

A record is one Redis string (layout.py; MemoryStore keeps its own fields) named::

    <prefix>:{<tag>}:<METHOD>:<route>:<key>

`tag` is 20 hex characters of SHA-256 over scope, method, route and key. It is the Redis Cluster hash tag, so
records spread over all slots, and it carries the scope: two clients using the same key get different records.
Each script touches exactly one record key, so every operation is single-slot.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import socket
from abc import ABC, abstractmethod

from .admin import AuditEntry, KeyspaceStats, RecordFilter, RecordPage, is_stuck, now_ms
from .records import IN_FLIGHT, Claim, Record, RequestInfo, StoredResponse

DEFAULT_PREFIX = "idemscope"
AUDIT_CAP = 1000
MAX_SCAN_STEP = 1000


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Tokens:
    """Owner tokens: a random per-process prefix and a counter (unique without a system call per request)."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):x}"


new_token = _Tokens().next


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

    @abstractmethod
    async def summaries(self, record_keys: list[str]) -> list[Record | None]:
        """Records without their response body and headers (for listings), in one round trip."""

    @abstractmethod
    async def evict_many(self, record_keys: list[str]) -> int:
        """Delete records (one batch); returns how many existed."""

    @abstractmethod
    async def audit_append(self, entry: AuditEntry, cap: int = AUDIT_CAP) -> None:
        """Add an entry to the capped audit list (newest first)."""

    @abstractmethod
    async def audit_read(self, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries."""

    def bound_calls(self, timeout: float) -> bool:
        """Take over the middleware's per-call timeout for claim/complete/release/renew. A store that enforces it
        itself returns True (the middleware then spares each call an asyncio timeout)."""
        return False

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # -- built on the operations above, the same for every store --

    async def list_records(
        self, record_filter: RecordFilter, cursor: int = 0, page_size: int = 50, scan_budget: int = 10_000
    ) -> RecordPage:
        """Scan from `cursor` until `page_size` records match or `scan_budget` keys were looked at (never KEYS)."""
        pattern = record_filter.pattern(self.prefix)
        found: list[Record] = []
        scanned = 0
        step = max(10, page_size)  # grows while a selective filter finds little, so few round trips are spent
        while True:
            step = max(1, min(step, MAX_SCAN_STEP, scan_budget - scanned))
            cursor, keys = await self.scan(cursor, pattern, step)
            scanned += step
            step *= 2
            if keys:
                found.extend(r for r in await self.summaries(keys) if r is not None and record_filter.accepts(r))
            if cursor == 0 or len(found) >= page_size or scanned >= scan_budget:
                return RecordPage(found, cursor, scanned)

    async def keyspace_stats(self, scan_budget: int = 10_000) -> KeyspaceStats:
        stats = KeyspaceStats()
        cursor = 0
        now = now_ms()
        while True:
            page = await self.list_records(RecordFilter(), cursor, page_size=MAX_SCAN_STEP, scan_budget=MAX_SCAN_STEP)
            cursor = page.cursor
            stats.scanned += page.scanned
            for record in page.records:
                stats.records += 1
                if record.state == IN_FLIGHT:
                    stats.in_flight += 1
                    if stats.oldest_lock is None or record.created_ms < stats.oldest_lock.created_ms:
                        stats.oldest_lock = record
                    if is_stuck(record, now):
                        stats.stuck.append(record)
                else:
                    stats.completed += 1
                    stats.stored_bytes += record.size if record.stored else 0
            if cursor == 0:
                return stats
            if stats.scanned >= scan_budget:
                stats.complete = False
                return stats

    async def audit_for(self, record_key: str, limit: int = AUDIT_CAP) -> list[AuditEntry]:
        return [e for e in await self.audit_read(limit) if e.record_key == record_key]
