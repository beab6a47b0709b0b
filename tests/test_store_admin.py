"""The admin contract (listing, filters, stats, bulk evict, audit) on every store."""

from __future__ import annotations

import asyncio

import pytest

from middleware import AuditEntry, RecordFilter, RequestInfo, Store, StoredResponse, is_stuck

pytestmark = pytest.mark.anyio


async def put(
    store: Store,
    key: str,
    *,
    method: str = "POST",
    route: str = "/orders",
    status: int | None = 201,
    body: bytes = b"x",
) -> str:
    req = RequestInfo("anonymous", method, route, key, route, "fp")
    record_key = store.record_key(req)
    claim = await store.claim(record_key, req, 30_000)
    if status is not None:
        await store.complete(record_key, claim.token, StoredResponse(status, [], body, True, len(body)), 60_000)
    return record_key


async def listed(store: Store, record_filter: RecordFilter, page_size: int = 1000) -> set[str]:
    keys: set[str] = set()
    cursor = 0
    while True:
        page = await store.list_records(record_filter, cursor, page_size=page_size, scan_budget=50)
        keys |= {r.key for r in page.records}
        assert all(r.body == b"" for r in page.records)  # listings never carry bodies
        cursor = page.cursor
        if page.done:
            return keys


async def test_filters(store: Store) -> None:
    await put(store, "alpha-1")
    await put(store, "alpha-2", status=404)
    await put(store, "beta-1", status=None)  # in flight
    await put(store, "beta-2", method="PATCH", route="/orders/{id}", status=500)
    await put(store, "a*[x]?", status=200)
    assert await listed(store, RecordFilter()) == {"alpha-1", "alpha-2", "beta-1", "beta-2", "a*[x]?"}
    assert await listed(store, RecordFilter(key="alpha")) == {"alpha-1", "alpha-2"}
    assert await listed(store, RecordFilter(key="*")) == {"a*[x]?"}  # glob characters are literal
    assert await listed(store, RecordFilter(key="[x]")) == {"a*[x]?"}
    assert await listed(store, RecordFilter(state="in_flight")) == {"beta-1"}
    assert await listed(store, RecordFilter(method="patch")) == {"beta-2"}
    assert await listed(store, RecordFilter(route="/orders/{id}")) == {"beta-2"}
    assert await listed(store, RecordFilter(status_class="4xx")) == {"alpha-2"}
    assert await listed(store, RecordFilter(status_class="2xx", key="1")) == {"alpha-1"}


async def test_paging_with_a_small_budget_finds_everything(store: Store) -> None:
    made = {f"k{i}" for i in range(120)}
    for key in made:
        await put(store, key)
    assert await listed(store, RecordFilter(), page_size=7) == made


def test_bad_filters_are_refused() -> None:
    with pytest.raises(ValueError):
        RecordFilter(state="bogus")
    with pytest.raises(ValueError):
        RecordFilter(status_class="6xx")
    with pytest.raises(ValueError):
        RecordFilter(key="k" * 300)


async def test_keyspace_stats(store: Store) -> None:
    await put(store, "a", body=b"12345")
    await put(store, "b", body=b"123")
    await put(store, "c", status=None)
    stats = await store.keyspace_stats()
    assert (stats.records, stats.in_flight, stats.completed, stats.stored_bytes) == (3, 1, 2, 8)
    assert stats.complete and stats.oldest_lock is not None and stats.oldest_lock.key == "c"
    assert stats.stuck == []


async def test_stuck_lock_is_reported(store: Store) -> None:
    req = RequestInfo("anonymous", "POST", "/slow", "s", "/slow", "fp")
    await store.claim(store.record_key(req), req, 400)  # nobody renews it
    await asyncio.sleep(0.25)
    stats = await store.keyspace_stats()
    assert [r.key for r in stats.stuck] == ["s"]
    record = (await store.summaries([store.record_key(req)]))[0]
    assert record is not None and is_stuck(record, record.created_ms + 300)


async def test_evict_many_and_summaries_of_gone_keys(store: Store) -> None:
    keys = [await put(store, f"e{i}") for i in range(5)]
    assert await store.evict_many([*keys[:3], "nope"]) == 3
    summaries = await store.summaries(keys)
    assert [s is None for s in summaries] == [True, True, True, False, False]
    assert await store.evict_many([]) == 0


async def test_audit_is_capped_and_newest_first(store: Store) -> None:
    for i in range(7):
        await store.audit_append(AuditEntry(i, "alice", "evict", f"rk{i % 2}", "ok", 1000, None, "d"), cap=5)
    entries = await store.audit_read(100)
    assert [e.at_ms for e in entries] == [6, 5, 4, 3, 2]
    assert [e.at_ms for e in await store.audit_for("rk0")] == [6, 4, 2]
    assert entries[0] == AuditEntry(6, "alice", "evict", "rk0", "ok", 1000, None, "d")
