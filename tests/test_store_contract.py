"""One contract, three stores: MemoryStore, RedisStore on fakeredis, RedisStore on a real redis-server."""

from __future__ import annotations

import asyncio

import pytest

from middleware import RequestInfo, Store, StoredResponse
from middleware.glob import escape_glob

pytestmark = pytest.mark.anyio


def info(key: str = "k1", fingerprint: str = "fp-1", route: str = "/orders", scope: str = "anonymous") -> RequestInfo:
    return RequestInfo(scope=scope, method="POST", route=route, key=key, path=route, fingerprint=fingerprint)


RESPONSE = StoredResponse(201, [(b"content-type", b"application/json"), (b"x-a", b"1")], b'{"id":1}', True, 8)


async def test_claim_then_in_flight_then_complete_then_replay(store: Store) -> None:
    req = info()
    key = store.record_key(req)
    first = await store.claim(key, req, 5000)
    assert first.outcome == "claimed" and first.token
    second = await store.claim(key, req, 5000)
    assert second.outcome == "in_flight"
    assert 4000 < second.retry_after_ms <= 5000
    held = await store.complete(key, first.token, RESPONSE, 60_000)
    assert held is not None and held >= 0
    third = await store.claim(key, req, 5000)
    assert third.outcome == "completed"
    assert third.response == RESPONSE
    assert third.age_ms >= 0


async def test_fingerprint_survives_completion(store: Store) -> None:
    req = info(fingerprint="fp-A")
    key = store.record_key(req)
    claim = await store.claim(key, req, 5000)
    await store.complete(key, claim.token, RESPONSE, 60_000)
    record = await store.get(key)
    assert record is not None and record.fingerprint == "fp-A"
    assert (await store.claim(key, req, 5000)).outcome == "completed"
    assert (await store.claim(key, info(fingerprint="fp-B"), 5000)).outcome == "mismatch"


async def test_mismatch_while_in_flight(store: Store) -> None:
    req = info()
    key = store.record_key(req)
    await store.claim(key, req, 5000)
    assert (await store.claim(key, info(fingerprint="other"), 5000)).outcome == "mismatch"


async def test_complete_release_renew_check_the_owner_token(store: Store) -> None:
    req = info()
    key = store.record_key(req)
    claim = await store.claim(key, req, 5000)
    assert await store.complete(key, "not-the-owner", RESPONSE, 60_000) is None
    assert await store.release(key, "not-the-owner") is False
    assert await store.renew(key, "not-the-owner", 5000) is False
    assert (await store.claim(key, req, 5000)).outcome == "in_flight"
    assert await store.renew(key, claim.token, 5000) is True
    record = await store.get(key)
    assert record is not None and record.renewals == 1 and record.state == "in_flight"
    assert await store.release(key, claim.token) is True
    assert (await store.claim(key, req, 5000)).outcome == "claimed"


async def test_release_never_deletes_a_completed_record(store: Store) -> None:
    req = info()
    key = store.record_key(req)
    claim = await store.claim(key, req, 5000)
    await store.complete(key, claim.token, RESPONSE, 60_000)
    assert await store.release(key, claim.token) is False
    assert await store.renew(key, claim.token, 5000) is False
    assert (await store.claim(key, req, 5000)).outcome == "completed"


async def test_lease_expires_and_a_late_owner_cannot_store(store: Store) -> None:
    req = info()
    key = store.record_key(req)
    stale = await store.claim(key, req, 100)
    await asyncio.sleep(0.25)
    fresh = await store.claim(key, req, 5000)
    assert fresh.outcome == "claimed"  # a crashed owner's key is free again after one lease
    assert await store.complete(key, stale.token, RESPONSE, 60_000) is None  # not over the newer owner
    assert await store.complete(key, fresh.token, RESPONSE, 60_000) is not None


async def test_renewal_keeps_the_lease(store: Store) -> None:
    req = info()
    key = store.record_key(req)
    claim = await store.claim(key, req, 500)
    for _ in range(4):  # 0.8 s in all: well past the first lease
        await asyncio.sleep(0.2)
        assert await store.renew(key, claim.token, 500)
    assert (await store.claim(key, req, 500)).outcome == "in_flight"


async def test_record_ttl_expires(store: Store) -> None:
    req = info()
    key = store.record_key(req)
    claim = await store.claim(key, req, 5000)
    await store.complete(key, claim.token, RESPONSE, 150)
    await asyncio.sleep(0.3)
    assert await store.get(key) is None
    assert (await store.claim(key, req, 5000)).outcome == "claimed"


async def test_record_fields_are_self_describing(store: Store) -> None:
    req = RequestInfo("tenant-7", "POST", "/orders/{id}", "key-1", "/orders/9", "f" * 32)
    key = store.record_key(req)
    assert key.startswith(f"{store.prefix}:{{")
    assert key.endswith(":POST:/orders/{id}:key-1")
    claim = await store.claim(key, req, 5000)
    record = await store.get(key)
    assert record is not None
    assert (record.state, record.method, record.route, record.path, record.key, record.scope) == (
        "in_flight",
        "POST",
        "/orders/{id}",
        "/orders/9",
        "key-1",
        "tenant-7",
    )
    assert record.token == claim.token and record.owner and record.lease_ms == 5000 and record.created_ms > 0
    await store.complete(key, claim.token, StoredResponse(200, [], b"\x00\xffbinary", True, 8), 60_000)
    record = await store.get(key)
    assert record is not None
    assert (record.state, record.status, record.body, record.stored, record.size) == (
        "completed",
        200,
        b"\x00\xffbinary",
        True,
        8,
    )
    assert record.completed_ms >= record.created_ms and 0 < record.pttl_ms <= 60_000


async def test_not_stored_body_is_recorded(store: Store) -> None:
    req = info()
    key = store.record_key(req)
    claim = await store.claim(key, req, 5000)
    await store.complete(key, claim.token, StoredResponse(200, [], b"", False, 5_000_000), 60_000)
    again = await store.claim(key, req, 5000)
    assert again.outcome == "completed" and again.response is not None and again.response.stored is False


async def test_scope_separates_clients(store: Store) -> None:
    alice, bob = info(scope="auth:alice"), info(scope="auth:bob")
    assert store.record_key(alice) != store.record_key(bob)
    claim = await store.claim(store.record_key(alice), alice, 5000)
    await store.complete(store.record_key(alice), claim.token, RESPONSE, 60_000)
    assert (await store.claim(store.record_key(bob), bob, 5000)).outcome == "claimed"


@pytest.mark.parametrize("hostile", ["*", "a*b", "?", "[abc]", "\\", "k\\*", "^$.+()|{}"])
async def test_glob_characters_are_ordinary_keys(store: Store, hostile: str) -> None:
    plain = info(key="a-b-c")
    weird = info(key=hostile)
    for req in (plain, weird):
        claim = await store.claim(store.record_key(req), req, 5000)
        await store.complete(store.record_key(req), claim.token, RESPONSE, 60_000)
    keys = await _scan_all(store, f"{escape_glob(store.prefix)}:*:{escape_glob(hostile)}")
    assert keys == [store.record_key(weird)]
    assert await store.evict(store.record_key(weird)) is True
    assert await store.get(store.record_key(plain)) is not None


async def test_scan_pages_through_everything(store: Store) -> None:
    made = set()
    for i in range(57):
        req = info(key=f"key-{i}")
        await store.claim(store.record_key(req), req, 5000)
        made.add(store.record_key(req))
    assert set(await _scan_all(store, f"{escape_glob(store.prefix)}:*", count=10)) == made


async def test_evict_and_set_ttl_only_touch_existing_records(store: Store) -> None:
    req = info()
    key = store.record_key(req)
    assert await store.set_ttl(key, 1000) is False
    assert await store.evict(key) is False
    claim = await store.claim(key, req, 5000)
    await store.complete(key, claim.token, RESPONSE, 60_000)
    assert await store.set_ttl(key, 120_000) is True
    record = await store.get(key)
    assert record is not None and 60_000 < record.pttl_ms <= 120_000
    assert await store.evict(key) is True
    assert await store.get(key) is None


async def _scan_all(store: Store, match: str, count: int = 100) -> list[str]:
    found: list[str] = []
    cursor = 0
    while True:
        cursor, keys = await store.scan(cursor, match, count)
        found.extend(keys)
        if cursor == 0:
            return found
