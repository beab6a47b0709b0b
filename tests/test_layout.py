"""The Redis record layout (middleware/layout.py and the Lua scripts that write it) on a real Redis: hostile scopes,
routes, paths, keys, header bytes and bodies come back exactly, and none can forge a line or a field."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from middleware import RecordFilter, RedisStore, RequestInfo, StoredResponse

pytestmark = pytest.mark.redis

hostile_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
keys = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=255)
header_names = st.one_of(st.binary(min_size=1, max_size=30), st.sampled_from([b"x: y", b"a:", b"%3A", b"\xff: \n"]))
responses = st.builds(
    lambda status, headers, body, stored: StoredResponse(
        status, headers, body if stored else b"", stored, len(body) if stored else len(body) + 1_000_000
    ),
    st.integers(100, 599),
    st.lists(st.tuples(header_names, st.binary(max_size=60)), max_size=5),
    st.binary(max_size=3000),
    st.booleans(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    scope=hostile_text,
    route=hostile_text.map(lambda s: "/" + s),
    path=hostile_text.map(lambda s: "/" + s),
    key=keys,
    response=responses,
)
def test_every_field_round_trips(
    redis_url: str, scope: str, route: str, path: str, key: str, response: StoredResponse
) -> None:
    async def run() -> None:
        store = RedisStore.from_url(redis_url, prefix=f"layout-{uuid.uuid4().hex[:8]}")
        request = RequestInfo(scope, "POST", route, key, path, uuid.uuid4().hex)
        name = store.record_key(request)
        try:
            claim = await store.claim(name, request, 5000)
            for record in (await store.get(name), (await store.summaries([name]))[0]):
                assert record is not None
                assert (record.state, record.scope, record.route, record.path, record.key, record.method) == (
                    "in_flight", scope, route, path, key, "POST",
                )  # fmt: skip
                assert (record.token, record.fingerprint, record.owner) == (
                    claim.token,
                    request.fingerprint,
                    store.owner,
                )
            assert await store.complete(name, claim.token, response, 60_000) is not None
            replay = await store.claim(name, request, 5000)
            assert replay.outcome == "completed" and replay.response == response
            whole = await store.get(name)
            assert whole is not None
            assert (whole.state, whole.scope, whole.route, whole.path, whole.key) == (
                "completed",
                scope,
                route,
                path,
                key,
            )
            assert (whole.status, whole.size, whole.stored, whole.body) == (
                response.status, response.size, response.stored, response.body,
            )  # fmt: skip
            assert whole.headers == [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers]
            summary = (await store.summaries([name]))[0]
            assert summary is not None and (summary.status, summary.size, summary.stored, summary.key) == (
                response.status, response.size, response.stored, key,
            )  # fmt: skip
        finally:
            await store.evict(name)
            await store.close()

    asyncio.run(run())


@pytest.mark.anyio
async def test_a_listing_reads_a_record_whose_first_lines_are_long(redis_url: str) -> None:
    """A listing reads 2 KB of each record; a longer scope and path make it read the whole record instead."""
    store = RedisStore.from_url(redis_url, prefix=f"layout-{uuid.uuid4().hex[:8]}")
    request = RequestInfo("s" * 3000, "POST", "/orders/{id}", "k", "/orders/" + "9" * 3000, "f" * 32)
    name = store.record_key(request)
    try:
        claim = await store.claim(name, request, 5000)
        await store.complete(name, claim.token, StoredResponse(201, [], b"{}", True, 2), 60_000)
        page = await store.list_records(RecordFilter())
        assert [(r.scope, r.path, r.status) for r in page.records] == [(request.scope, request.path, 201)]
    finally:
        await store.evict(name)
        await store.close()


@pytest.mark.anyio
async def test_a_completed_record_costs_under_300_bytes_beyond_its_body(redis_url: str) -> None:
    """The issue's figure: MEMORY USAGE less the body, for a typical POST /orders with a 98-byte JSON body."""
    store = RedisStore.from_url(redis_url, prefix="idemscope")
    body = b'{"id":"ord_8e03978e40d543e8","sku":"tea","quantity":2,"status":"created","total":1250,"cur":"eur"}'
    request = RequestInfo(
        "auth:0123456789abcdef", "POST", "/orders", "8e03978e-40d5-43e8-bc93-6894a57f9324", "/orders", "f" * 32
    )
    name = store.record_key(request)
    try:
        claim = await store.claim(name, request, 5000)
        headers = [(b"content-length", b"98"), (b"content-type", b"application/json")]
        await store.complete(name, claim.token, StoredResponse(201, headers, body, True, len(body)), 60_000)
        assert int(await store.client.memory_usage(name) or 0) - len(body) < 300
    finally:
        await store.evict(name)
        await store.close()
