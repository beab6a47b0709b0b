"""The manual actions, shared by the web UI and the CLI: each is race-safe, audited, logged and counted.

Evict is an UNLINK; release is a compare-and-delete on the lock's owner token (never deletes a record that
completed a moment ago); TTL changes apply only to records that still exist and have completed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from middleware import AuditEntry, IdempotencyMetrics, RecordFilter, Store
from middleware.admin import now_ms

from . import present

audit_log = logging.getLogger("idemscope.audit")

MIN_TTL_SECONDS = 1
MAX_TTL_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Outcome:
    result: str  # ok | not_found | refused | error
    text: str
    count: int = 0

    @property
    def ok(self) -> bool:
        return self.result == "ok"


class Actions:
    def __init__(self, store: Store, metrics: IdempotencyMetrics | None = None, batch: int = 1000) -> None:
        self.store = store
        self.metrics = metrics
        self.batch = batch

    async def _record(
        self, actor: str, action: str, record_key: str, outcome: Outcome,
        ttl_before: int | None = None, ttl_after: int | None = None, detail: str = "",
    ) -> Outcome:  # fmt: skip
        entry = AuditEntry(now_ms(), actor, action, record_key, outcome.result, ttl_before, ttl_after, detail)
        if self.metrics is not None:
            self.metrics.admin_actions.labels(action, outcome.result).inc()
        audit_log.info(entry.to_json())
        try:
            await self.store.audit_append(entry)
        except Exception:
            audit_log.exception("could not append to the audit list")
        return outcome

    async def evict(self, record_key: str, actor: str) -> Outcome:
        before = await self.store.get(record_key)
        gone = await self.store.evict(record_key)
        outcome = (
            Outcome("ok", "Evicted: the next request with this key runs again.", 1)
            if gone
            else Outcome("not_found", "Already gone: the key expired or was evicted.")
        )
        return await self._record(actor, "evict", record_key, outcome, before.pttl_ms if before else None)

    async def release(self, record_key: str, token: str, actor: str) -> Outcome:
        before = await self.store.get(record_key)
        if token and await self.store.release(record_key, token):
            outcome = Outcome("ok", "Lock released: a retry with this key runs the request again.", 1)
        else:
            after = await self.store.get(record_key)
            if after is None:
                outcome = Outcome("not_found", "Nothing to release: the lock is gone (it expired or was released).")
            elif after.state == "completed":
                outcome = Outcome(
                    "refused", "Not released: the request completed a moment ago and its response is stored."
                )
            else:
                outcome = Outcome("refused", "Not released: the lock now belongs to another request.")
        return await self._record(actor, "release", record_key, outcome, before.pttl_ms if before else None)

    async def set_ttl(self, record_key: str, seconds: int, actor: str) -> Outcome:
        if not MIN_TTL_SECONDS <= seconds <= MAX_TTL_SECONDS:
            return Outcome("refused", f"TTL must be from {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS} seconds.")
        ttl_ms = seconds * 1000
        before = await self.store.get(record_key)
        if before is not None and before.state == "in_flight":
            outcome = Outcome("refused", "A lock's lifetime is its lease: release the lock instead.")
            return await self._record(actor, "set_ttl", record_key, outcome, before.pttl_ms, ttl_ms, "in flight")
        if await self.store.set_ttl(record_key, ttl_ms):
            outcome = Outcome("ok", f"TTL set to {present.duration(ttl_ms)}.", 1)
        else:
            outcome = Outcome("not_found", "The key no longer exists.")
        return await self._record(actor, "set_ttl", record_key, outcome, before.pttl_ms if before else None, ttl_ms)

    async def count_matching(self, record_filter: RecordFilter, scan_budget: int) -> tuple[int, bool]:
        """How many records match (exact when the second value is True, else a lower bound)."""
        count, cursor, scanned = 0, 0, 0
        while True:
            page = await self.store.list_records(record_filter, cursor, page_size=self.batch, scan_budget=self.batch)
            count += len(page.records)
            scanned += page.scanned
            cursor = page.cursor
            if page.done:
                return count, True
            if scanned >= scan_budget:
                return count, False

    async def bulk_evict(
        self, actor: str, selected: list[str] | None = None, record_filter: RecordFilter | None = None,
        limit: int = 100_000,
    ) -> Outcome:  # fmt: skip
        """Evict the selected keys, or everything matching the filter (SCAN + UNLINK in batches, own prefix only)."""
        started = time.monotonic()
        evicted = 0
        finished = True
        if selected is not None:
            for i in range(0, len(selected), self.batch):
                evicted += await self.store.evict_many(selected[i : i + self.batch])
            what = f"{len(selected)} selected"
        else:
            record_filter = record_filter or RecordFilter()
            cursor = 0
            while True:
                page = await self.store.list_records(
                    record_filter, cursor, page_size=self.batch, scan_budget=self.batch
                )
                evicted += await self.store.evict_many([r.redis_key for r in page.records])
                cursor = page.cursor
                if page.done:
                    break
                if evicted >= limit:
                    finished = False
                    break
            what = f"filter {record_filter}"
        text = f"Evicted {evicted} record(s) in {time.monotonic() - started:.2f} s."
        if not finished:
            text += " More match: run it again to continue."
        return await self._record(actor, "bulk_evict", "*", Outcome("ok", text, evicted), detail=f"{evicted}: {what}")
