"""MemoryStore: the same records and semantics as RedisStore, in one process.

For tests, single-process apps and the embedded demo. Every operation runs without awaiting, so on one event loop
each is atomic, as a Lua script is in Redis. Expired records disappear when touched and in periodic sweeps.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable

from .admin import AuditEntry
from .glob import glob_to_regex
from .records import (
    COMPLETED,
    IN_FLIGHT,
    Claim,
    Record,
    RequestInfo,
    StoredResponse,
    encode_headers,
    record_from_fields,
)
from .store import AUDIT_CAP, DEFAULT_PREFIX, Store, new_token, owner_id


class MemoryStore(Store):
    def __init__(self, *, prefix: str = DEFAULT_PREFIX, clock: Callable[[], float] = time.time) -> None:
        self.prefix = prefix
        self.owner = owner_id()
        self._clock = clock
        self._records: dict[str, dict[str, bytes]] = {}
        self._expires: dict[str, int] = {}  # record key -> expiry time (ms)
        self._seq: dict[str, int] = {}  # record key -> creation order, the scan cursor
        self._counter = itertools.count(1)
        self._next_sweep = 0
        self._audit: deque[AuditEntry] = deque()

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _live(self, record_key: str) -> dict[str, bytes] | None:
        now = self._now()
        if now >= self._next_sweep:
            self._sweep(now)
        fields = self._records.get(record_key)
        if fields is not None and self._expires[record_key] <= now:
            self._drop(record_key)
            return None
        return fields

    def _sweep(self, now: int) -> None:
        for key in [k for k, at in self._expires.items() if at <= now]:
            self._drop(key)
        self._next_sweep = now + 1000

    def _drop(self, record_key: str) -> None:
        self._records.pop(record_key, None)
        self._expires.pop(record_key, None)
        self._seq.pop(record_key, None)

    def _owned(self, record_key: str, token: str) -> dict[str, bytes] | None:
        fields = self._live(record_key)
        if fields is None or fields["state"] != IN_FLIGHT.encode() or fields["token"] != token.encode():
            return None
        return fields

    async def claim(self, record_key: str, request: RequestInfo, lease_ms: int) -> Claim:
        now = self._now()
        fields = self._live(record_key)
        if fields is None:
            token = new_token()
            self._records[record_key] = {
                "v": b"1",
                "state": IN_FLIGHT.encode(),
                "token": token.encode(),
                "fp": request.fingerprint.encode(),
                "lease": str(lease_ms).encode(),
                "method": request.method.encode(),
                "route": request.route.encode(),
                "key": request.key.encode(),
                "scope": request.scope.encode(),
                "path": request.path.encode(),
                "owner": self.owner.encode(),
                "created": str(now).encode(),
                "renewed": str(now).encode(),
                "renewals": b"0",
            }
            self._expires[record_key] = now + lease_ms
            self._seq[record_key] = next(self._counter)
            return Claim("claimed", token=token)
        if fields["fp"] != request.fingerprint.encode():
            return Claim("mismatch")
        if fields["state"] == IN_FLIGHT.encode():
            return Claim("in_flight", retry_after_ms=self._expires[record_key] - now)
        record = record_from_fields(record_key, fields, 0)
        response = StoredResponse(
            status=record.status,
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in record.headers],
            body=record.body,
            stored=record.stored,
            size=len(record.body),
        )
        return Claim("completed", response=response, age_ms=max(0, now - record.completed_ms))

    async def complete(self, record_key: str, token: str, response: StoredResponse, ttl_ms: int) -> int | None:
        fields = self._owned(record_key, token)
        if fields is None:
            return None
        now = self._now()
        fields.update(
            state=COMPLETED.encode(),
            status=str(response.status).encode(),
            headers=encode_headers(response.headers).encode(),
            body=response.body if response.stored else b"",
            stored=b"1" if response.stored else b"0",
            size=str(response.size).encode(),
            completed=str(now).encode(),
        )
        self._expires[record_key] = now + ttl_ms
        return now - int(fields["created"])

    async def release(self, record_key: str, token: str) -> bool:
        if self._owned(record_key, token) is None:
            return False
        self._drop(record_key)
        return True

    async def renew(self, record_key: str, token: str, lease_ms: int) -> bool:
        fields = self._owned(record_key, token)
        if fields is None:
            return False
        now = self._now()
        fields.update(
            renewed=str(now).encode(),
            lease=str(lease_ms).encode(),
            renewals=str(int(fields["renewals"]) + 1).encode(),
        )
        self._expires[record_key] = now + lease_ms
        return True

    async def get(self, record_key: str) -> Record | None:
        fields = self._live(record_key)
        if fields is None:
            return None
        return record_from_fields(record_key, fields, self._expires[record_key] - self._now())

    async def scan(self, cursor: int, match: str, count: int) -> tuple[int, list[str]]:
        """Like SCAN: every record alive for the whole iteration is returned once; the cursor is creation order."""
        self._sweep(self._now())
        pattern = glob_to_regex(match)
        found: list[str] = []
        scanned = 0
        for key, seq in self._seq.items():  # insertion order is creation order
            if seq <= cursor:
                continue
            scanned += 1
            if pattern.match(key):
                found.append(key)
            if scanned >= count:
                return seq, found
        return 0, found

    async def evict(self, record_key: str) -> bool:
        if self._live(record_key) is None:
            return False
        self._drop(record_key)
        return True

    async def summaries(self, record_keys: list[str]) -> list[Record | None]:
        now = self._now()
        found: list[Record | None] = []
        for key in record_keys:
            fields = self._live(key)
            if fields is None:
                found.append(None)
                continue
            light = {k: v for k, v in fields.items() if k not in ("body", "headers")}
            found.append(record_from_fields(key, light, self._expires[key] - now))
        return found

    async def evict_many(self, record_keys: list[str]) -> int:
        gone = 0
        for key in record_keys:
            if self._live(key) is not None:
                self._drop(key)
                gone += 1
        return gone

    async def audit_append(self, entry: AuditEntry, cap: int = AUDIT_CAP) -> None:
        self._audit.appendleft(entry)
        while len(self._audit) > cap:
            self._audit.pop()

    async def audit_read(self, limit: int = 100) -> list[AuditEntry]:
        return list(itertools.islice(self._audit, limit))

    async def set_ttl(self, record_key: str, ttl_ms: int) -> bool:
        if self._live(record_key) is None:
            return False
        self._expires[record_key] = self._now() + ttl_ms
        return True
