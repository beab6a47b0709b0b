"""The middleware's semantics, in process (httpx ASGI transport) on MemoryStore and on RedisStore/fakeredis."""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from middleware import IdempotencyMiddleware, MemoryStore, RedisStore, Store
from middleware.types import Message, Receive, Scope, Send
from tests.orders_app import create_app

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "fakeredis"])
async def fast_store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        import fakeredis

        store = RedisStore(fakeredis.FakeAsyncRedis())
        yield store
        await store.close()


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def post(client: httpx.AsyncClient, url: str, key: str | None, **kw: Any) -> httpx.Response:
    headers = dict(kw.pop("headers", {}))
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(url, headers=headers, **kw)


def is_problem(response: httpx.Response, status: int, problem: str) -> bool:
    body = response.json()
    return (
        response.status_code == status
        and response.headers["content-type"] == "application/problem+json"
        and body["status"] == status
        and body["type"].endswith(problem)
        and bool(body["detail"])
    )


# 1. Key syntax


async def test_quoted_and_bare_keys_name_the_same_key(fast_store: Store) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        first = await post(client, "/orders", '"abc-123"', json={"n": 1})
        second = await post(client, "/orders", "abc-123", json={"n": 1})
    assert first.status_code == second.status_code == 200
    assert second.headers["idempotent-replayed"] == "true"
    assert first.content == second.content
    assert app.state.calls['"abc-123"'] == 1 and app.state.calls["abc-123"] == 0


@pytest.mark.parametrize(
    "raw",
    [
        "",
        '""',
        "a" * 256,
        '"' + "a" * 256 + '"',
        "has space",
        '"has space"',
        '"unterminated',
        '"bad\\escape"',
        "tab\there",
        "caf\u00e9",
    ],
)
async def test_invalid_keys_get_400_problem(fast_store: Store, raw: str) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        response = await client.post(
            "/orders",
            json={"n": 1},
            headers=[(b"Idempotency-Key", raw.encode("utf-8"))],
        )
    assert is_problem(response, 400, "invalid-key")
    assert sum(app.state.calls.values()) == 0


async def test_key_limits_and_escapes(fast_store: Store) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        assert (await post(client, "/orders", "a" * 255, json={})).status_code == 200
        assert (await post(client, "/orders", '"q\\"uo\\\\te"', json={})).status_code == 200
        assert (await post(client, "/orders", 'q"uo\\te', json={})).headers["idempotent-replayed"] == "true"


async def test_two_key_headers_are_rejected(fast_store: Store) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        response = await client.post("/orders", json={}, headers=[("Idempotency-Key", "a"), ("Idempotency-Key", "b")])
    assert is_problem(response, 400, "invalid-key")


async def test_missing_key_passes_through_or_400_where_required(fast_store: Store) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        for _ in range(2):
            assert (await client.post("/orders", json={"n": 1})).status_code == 200
        assert is_problem(await client.post("/required"), 400, "missing-key")
        assert (await post(client, "/required", "r1")).status_code == 200
    assert app.state.calls[""] == 2 and app.state.calls["r1"] == 1


async def test_required_everywhere(fast_store: Store) -> None:
    app = create_app(fast_store, required=True)
    async with client_for(app) as client:
        assert is_problem(await client.post("/orders", json={}), 400, "missing-key")
        assert (await client.get("/calls", params={"key": "x"})).status_code == 200  # GET is not guarded


@pytest.mark.parametrize("key", ["*", "a*", "?", "[a-z]", "\\", "k\\*x", "{}", "%s", "';DROP--"])
async def test_glob_and_regex_characters_are_ordinary_keys(fast_store: Store, key: str) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        await post(client, "/orders", "plain", json={})
        first = await post(client, "/orders", key, json={})
        again = await post(client, "/orders", key, json={})
    assert first.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert app.state.calls[key] == 1 and app.state.calls["plain"] == 1


# 2. Scope


async def test_default_scope_is_the_callers_credentials(fast_store: Store) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        alice = await post(client, "/orders", "k", json={}, headers={"Authorization": "Bearer alice"})
        bob = await post(client, "/orders", "k", json={}, headers={"Authorization": "Bearer bob"})
        alice_again = await post(client, "/orders", "k", json={}, headers={"Authorization": "Bearer alice"})
    assert "idempotent-replayed" not in bob.headers  # bob cannot replay alice's response
    assert alice_again.headers["idempotent-replayed"] == "true" and alice_again.content == alice.content
    assert app.state.calls["k"] == 2


async def test_scope_callable_replaces_the_default(fast_store: Store) -> None:
    def tenant(scope: Scope) -> str:
        return str(dict(scope["headers"]).get(b"x-tenant", b"none").decode())

    app = create_app(fast_store, scope=tenant)
    async with client_for(app) as client:
        await post(client, "/orders", "k", json={}, headers={"X-Tenant": "t1", "Authorization": "a"})
        same = await post(client, "/orders", "k", json={}, headers={"X-Tenant": "t1", "Authorization": "b"})
        other = await post(client, "/orders", "k", json={}, headers={"X-Tenant": "t2"})
    assert same.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in other.headers


async def test_routes_namespace_keys(fast_store: Store) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        await post(client, "/orders/1/items", "k", content=b"")
        patched = await client.patch("/orders/1", headers={"Idempotency-Key": "k"})
    assert "idempotent-replayed" not in patched.headers


# 3. Fingerprint


async def test_same_key_other_payload_is_422(fast_store: Store) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        await post(client, "/orders", "k", json={"amount": 1})
        body = await post(client, "/orders", "k", json={"amount": 2})
        query = await post(client, "/orders?x=1", "k", json={"amount": 1})
        path = await post(client, "/orders/2/items", "k")
        replay = await post(client, "/orders", "k", json={"amount": 1})
    assert is_problem(body, 422, "key-reused") and is_problem(query, 422, "key-reused")
    assert "idempotent-replayed" not in path.headers  # another route is another key
    assert replay.headers["idempotent-replayed"] == "true"
    assert app.state.calls["k"] == 2


async def test_same_route_other_path_is_422(fast_store: Store) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        await post(client, "/orders/1/items", "k")
        assert is_problem(await post(client, "/orders/2/items", "k"), 422, "key-reused")


async def test_fingerprint_headers_option(fast_store: Store) -> None:
    app = create_app(fast_store, fingerprint_headers=["Content-Type"])
    async with client_for(app) as client:
        await post(client, "/text", "k", content=b"x", headers={"Content-Type": "text/plain"})
        other = await post(client, "/text", "k", content=b"x", headers={"Content-Type": "text/csv"})
    assert is_problem(other, 422, "key-reused")


async def test_the_app_receives_the_whole_body_in_chunks(fast_store: Store) -> None:
    seen: list[bytes] = []

    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    mw = IdempotencyMiddleware(echo, store=fast_store, registry=CollectorRegistry())
    chunks = [b"a" * 1000, b"", b"\xff\x00" * 3000, b"end"]

    async def one(parts: list[bytes]) -> list[Message]:
        return await call_asgi(mw, parts)

    first = await one(chunks)
    again = await one(chunks)
    regrouped = await one([b"".join(chunks)])  # the same bytes in one chunk: the same fingerprint
    assert seen == [b"".join(chunks)]
    assert first[1]["body"] == again[1]["body"] == regrouped[1]["body"] == b"".join(chunks)
    changed = await one([*chunks[:-1], b"END"])
    assert changed[0]["status"] == 422


async def test_huge_invalid_utf8_request_body_is_streamed_through(fast_store: Store) -> None:
    seen: list[int] = []

    async def sizer(scope: Scope, receive: Receive, send: Send) -> None:
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        seen.append(size)
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(size).encode()})

    mw = IdempotencyMiddleware(sizer, store=fast_store, registry=CollectorRegistry())
    chunk = b"\xff\xfe\x00" * 350_000  # about 1 MB of bytes that are not UTF-8, 20 times
    first = await call_asgi(mw, [chunk] * 20, key=b"huge")
    again = await call_asgi(mw, [chunk] * 20, key=b"huge")
    assert seen == [len(chunk) * 20]  # the app got every byte, once
    assert first[1]["body"] == again[1]["body"] == str(len(chunk) * 20).encode()
    assert (await call_asgi(mw, [chunk] * 19 + [chunk[:-1] + b"!"], key=b"huge"))[0]["status"] == 422


# 4. Atomic claim


async def test_concurrent_duplicates_execute_once(fast_store: Store) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        responses = await asyncio.gather(*(post(client, "/orders?sleep=0.2", "dup", json={"n": 1}) for _ in range(20)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 1 and codes.count(409) == 19
    conflict = next(r for r in responses if r.status_code == 409)
    assert is_problem(conflict, 409, "key-in-flight")
    assert 1 <= int(conflict.headers["retry-after"]) <= 30
    assert app.state.calls["dup"] == 1


# 5. Lease and heartbeat


async def test_heartbeat_keeps_a_slow_request_locked(fast_store: Store) -> None:
    registry = CollectorRegistry()
    app = create_app(fast_store, registry=registry)
    async with client_for(app) as client:
        slow = asyncio.create_task(post(client, "/slow?sleep=1.5", "s"))  # lease 0.6 s, renewed every 0.2 s
        await asyncio.sleep(1.0)  # past the first lease
        during = await post(client, "/slow?sleep=1.5", "s")
        first = await slow
        after = await post(client, "/slow?sleep=1.5", "s")
    assert during.status_code == 409 and int(during.headers["retry-after"]) == 1
    assert first.status_code == 200 and after.headers["idempotent-replayed"] == "true"
    assert app.state.calls["s"] == 1
    assert (registry.get_sample_value("idempotency_lease_renewals_total") or 0) >= 3


class NoRenewStore(MemoryStore):
    """Pretends to renew but does not: simulates a worker whose heartbeats never reach Redis."""

    async def renew(self, record_key: str, token: str, lease_ms: int) -> bool:
        return True


async def test_a_late_owner_never_overwrites_a_newer_one() -> None:
    registry = CollectorRegistry()
    app = create_app(NoRenewStore(), registry=registry)
    async with client_for(app) as client:
        stale = asyncio.create_task(post(client, "/slow?sleep=1.0", "s"))
        await asyncio.sleep(0.8)  # the 0.6 s lease ran out
        newer = await post(client, "/slow?sleep=0", "s")
        await stale
        replay = await post(client, "/slow?sleep=0", "s")
    assert newer.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true" and replay.content == newer.content
    assert registry.get_sample_value("idempotency_leases_lost_total") == 1


# 6. Store before send


async def test_response_is_stored_before_it_is_sent(fast_store: Store) -> None:
    app = create_app(fast_store)
    mw_store = fast_store
    stored_when_sent: list[bool] = []

    async def watching_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            keys = (await mw_store.scan(0, "*", 1000))[1]
            record = await mw_store.get(keys[0])
            stored_when_sent.append(record is not None and record.state == "completed")

    scope = http_scope("/orders", [(b"idempotency-key", b"sbs"), (b"content-type", b"application/json")])
    await app(scope, body_receiver([b'{"a":1}']), watching_send)
    assert stored_when_sent == [True]


async def test_client_gone_before_the_response_still_stores_it(fast_store: Store) -> None:
    app = create_app(fast_store)

    async def broken_send(message: Message) -> None:
        raise OSError("client disconnected")

    scope = http_scope("/orders", [(b"idempotency-key", b"gone"), (b"content-type", b"application/json")])
    with pytest.raises(OSError):
        await app(scope, body_receiver([b'{"a":1}']), broken_send)
    async with client_for(app) as client:
        retry = await post(client, "/orders", "gone", content=b'{"a":1}', headers={"content-type": "application/json"})
    assert retry.headers["idempotent-replayed"] == "true" and retry.json()["execution"] == 1


async def test_work_after_the_response_does_not_hold_it_back(fast_store: Store) -> None:
    """Like a FastAPI background task: the app keeps running after its last body message. The response is stored
    and sent meanwhile, not when the app returns."""
    events: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"created"})
        await asyncio.sleep(0.3)
        events.append("background work done")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            record = (await fast_store.summaries((await fast_store.scan(0, "*", 1000))[1]))[0]
            events.append(f"body sent, record {record.state if record else None}")

    mw = IdempotencyMiddleware(app, store=fast_store, registry=CollectorRegistry())
    await mw(http_scope("/orders", [(b"idempotency-key", b"bg")]), body_receiver([b"x"]), send)
    assert events == ["body sent, record completed", "background work done"]


async def test_an_error_after_the_whole_response_still_stores_and_sends_it(fast_store: Store) -> None:
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"created"})
        raise RuntimeError("after the response")

    async def send(message: Message) -> None:
        sent.append(message)

    mw = IdempotencyMiddleware(app, store=fast_store, registry=CollectorRegistry())
    with pytest.raises(RuntimeError):
        await mw(http_scope("/orders", [(b"idempotency-key", b"late-error")]), body_receiver([b"x"]), send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    replayed: list[Message] = []

    async def replay_send(message: Message) -> None:
        replayed.append(message)

    await mw(http_scope("/orders", [(b"idempotency-key", b"late-error")]), body_receiver([b"x"]), replay_send)
    assert replayed[0]["status"] == 201 and replayed[1]["body"] == b"created"


# 7. Faithful replay


@pytest.mark.parametrize(
    "path", ["/orders", "/text", "/binary", "/empty", "/stream", "/orders/5/items", "/conflict-404"]
)
async def test_replay_is_byte_identical(fast_store: Store, path: str) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        first = await post(client, path, "k", json={"x": [1, "é", None]})
        again = await post(client, path, "k", json={"x": [1, "é", None]})
    assert again.status_code == first.status_code
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert [h for h in again.headers.raw if h[0].lower() != b"idempotent-replayed"] == list(first.headers.raw)
    assert sum(app.state.calls.values()) == 1


async def test_set_cookie_is_not_replayed_unless_configured(fast_store: Store) -> None:
    for replay_set_cookie, expected in ((False, None), (True, "session=secret; Path=/; SameSite=lax")):
        app = create_app(fast_store, replay_set_cookie=replay_set_cookie)
        key = f"c-{replay_set_cookie}"
        async with client_for(app) as client:
            first = await post(client, "/cookie", key)
            again = await post(client, "/cookie", key)
        assert "session=secret" in first.headers["set-cookie"]
        assert again.headers.get("set-cookie") == expected


async def test_bytes_like_response_headers_are_stored_as_bytes(fast_store: Store) -> None:
    """ASGI asks for bytes; an app that sends bytearray or memoryview headers still gets them stored and replayed
    (and the skipped ones still skipped)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        headers = [(bytearray(b"X-Kind"), memoryview(b"bytes-like")), (bytearray(b"Set-Cookie"), b"s=1")]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": b"made"})

    wrapped = IdempotencyMiddleware(app, store=fast_store, registry=CollectorRegistry())
    replies: list[list[Message]] = [[], []]
    for sent in replies:  # (called directly: httpx's ASGI transport takes only bytes itself)
        await wrapped(http_scope("/anything", [(b"idempotency-key", b"bytes-like")]), body_receiver([b""]), _keep(sent))
    first = {bytes(k): bytes(v) for k, v in replies[0][0]["headers"]}  # as the app sent them
    again = dict(replies[1][0]["headers"])
    assert first[b"X-Kind"] == again[b"X-Kind"] == b"bytes-like"
    assert all(type(k) is bytes and type(v) is bytes for k, v in again.items())
    assert again[b"idempotent-replayed"] == b"true" and replies[1][1]["body"] == b"made"
    assert b"Set-Cookie" in first and b"set-cookie" not in {k.lower() for k in again}


@pytest.mark.redis
async def test_a_bytes_like_body_of_wide_items_is_stored_by_its_bytes(redis_store: RedisStore) -> None:
    """A memoryview of 4-byte items has len() 2 for 8 bytes: the record must hold the 8 bytes (on the real Redis
    hot path, a wrong length would break the connection's command stream)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": memoryview(array("I", [1, 2]))})

    wrapped = IdempotencyMiddleware(app, store=redis_store, registry=CollectorRegistry())
    replies: list[list[Message]] = [[], []]
    for sent in replies:
        await wrapped(http_scope("/wide", [(b"idempotency-key", b"wide")]), body_receiver([b""]), _keep(sent))
    assert bytes(replies[0][1]["body"]) == replies[1][1]["body"] == array("I", [1, 2]).tobytes()
    assert dict(replies[1][0]["headers"])[b"idempotent-replayed"] == b"true"


async def test_a_too_large_bytes_like_body_is_sized_in_bytes(fast_store: Store) -> None:
    """Past max_body_size the body is passed through; the record's size counts bytes, not a memoryview's items."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for last in (False, False, True):
            await send({"type": "http.response.body", "body": memoryview(array("I", [1, 2])), "more_body": not last})

    wrapped = IdempotencyMiddleware(app, store=fast_store, registry=CollectorRegistry(), max_body_size=4)
    await wrapped(http_scope("/wide", [(b"idempotency-key", b"wide-big")]), body_receiver([b""]), _discard)
    record = await fast_store.get((await fast_store.scan(0, "*", 100))[1][0])
    assert record is not None and not record.stored and record.size == 24


def _keep(sent: list[Message]) -> Send:
    async def send(message: Message) -> None:
        sent.append(message)

    return send


async def test_replay_marker_header_is_configurable(fast_store: Store) -> None:
    app = create_app(fast_store, replay_header="Idempotency-Replayed")
    async with client_for(app) as client:
        await post(client, "/orders", "k", json={})
        again = await post(client, "/orders", "k", json={})
    assert again.headers["idempotency-replayed"] == "true" and "idempotent-replayed" not in again.headers


async def test_large_body_is_streamed_and_never_run_twice(fast_store: Store) -> None:
    registry = CollectorRegistry()
    app = create_app(fast_store, registry=registry, max_body_size=25_000)
    async with client_for(app) as client:
        first = await post(client, "/stream?size=60000", "big")
        again = await post(client, "/stream?size=60000", "big")
    assert first.status_code == 200 and len(first.content) == 60_000
    assert is_problem(again, 409, "response-not-stored")
    assert "retry-after" not in again.headers
    assert app.state.calls["big"] == 1
    keys = (await fast_store.scan(0, "*", 100))[1]
    record = await fast_store.get(keys[0])
    assert record is not None and record.state == "completed" and not record.stored and record.size == 60_000


# 8. Failures


async def test_5xx_is_not_stored_and_a_retry_runs_again(fast_store: Store) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        first = await post(client, "/fail", "f")
        again = await post(client, "/fail", "f")
    assert (first.status_code, again.status_code) == (503, 503)
    assert first.text == "failed #1" and again.text == "failed #2"


async def test_store_status_option_can_keep_5xx(fast_store: Store) -> None:
    app = create_app(fast_store, store_status=lambda status: True)
    async with client_for(app) as client:
        await post(client, "/fail", "f")
        again = await post(client, "/fail", "f")
    assert again.text == "failed #1" and again.headers["idempotent-replayed"] == "true"


async def test_exception_propagates_and_releases_the_key(fast_store: Store) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        for _ in range(2):
            with pytest.raises(RuntimeError, match="boom"):
                await post(client, "/boom", "b")
    assert app.state.calls["b"] == 2
    assert (await fast_store.scan(0, "*", 100))[1] == []


# 9. Store outage


class BrokenStore(MemoryStore):
    def __init__(self, hang: bool) -> None:
        super().__init__()
        self.hang = hang

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        if self.hang:
            await asyncio.sleep(3600)
        raise ConnectionError("Redis is down")


@pytest.mark.parametrize("hang", [True, False])
async def test_store_outage_fails_closed_fast(hang: bool) -> None:
    registry = CollectorRegistry()
    app = create_app(BrokenStore(hang), registry=registry, store_timeout=0.3)
    async with client_for(app) as client:
        started = time.monotonic()
        response = await post(client, "/orders", "k", json={})
        elapsed = time.monotonic() - started
    assert is_problem(response, 503, "store-unavailable") and response.headers["retry-after"] == "1"
    assert elapsed < 2.0
    assert app.state.calls["k"] == 0
    error = "TimeoutError" if hang else "ConnectionError"
    assert registry.get_sample_value("idempotency_store_errors_total", {"operation": "claim", "error": error}) == 1


async def test_store_outage_fail_open_runs_the_request() -> None:
    app = create_app(BrokenStore(False), fail_open=True)
    async with client_for(app) as client:
        response = await post(client, "/orders", "k", json={"a": 1})
    assert response.status_code == 200 and response.json()["order"] == {"a": 1}


class FailingCompleteStore(MemoryStore):
    async def complete(self, *args: Any, **kwargs: Any) -> int | None:
        raise ConnectionError("Redis went away")


async def test_store_failure_after_the_app_ran_still_sends_its_response() -> None:
    app = create_app(FailingCompleteStore())
    async with client_for(app) as client:
        response = await post(client, "/orders", "k", json={"a": 1})
    assert response.status_code == 200 and response.json()["execution"] == 1


# Routing, options, pass-through


async def test_opted_out_route_and_other_methods_pass_through(fast_store: Store) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        for _ in range(2):
            await post(client, "/opted-out", "o")
            await client.put("/orders", headers={"Idempotency-Key": "bad key"})  # PUT is not guarded by default
    assert app.state.calls["o"] == 2


async def test_per_route_ttl(fast_store: Store) -> None:
    app = create_app(fast_store)
    async with client_for(app) as client:
        await post(client, "/short-ttl", "t")
        replay = await post(client, "/short-ttl", "t")
        await asyncio.sleep(0.5)
        fresh = await post(client, "/short-ttl", "t")
    assert replay.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in fresh.headers


async def test_mounted_sub_app_routes_resolve() -> None:
    from fastapi import FastAPI

    store = MemoryStore()
    inner = create_app(store)
    outer = FastAPI()
    outer.mount("/api", inner.router)  # the middleware sits on `inner`
    wrapped = IdempotencyMiddleware(outer, store=store, registry=CollectorRegistry())
    async with client_for(wrapped) as client:
        await post(client, "/api/orders/3/items", "m")
    keys = (await store.scan(0, "*", 100))[1]
    assert keys and keys[0].endswith(":POST:/api/orders/{order_id}/items:m")


async def test_non_http_traffic_passes_untouched() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    mw = IdempotencyMiddleware(app, store=MemoryStore(), registry=CollectorRegistry())
    await mw({"type": "lifespan"}, body_receiver([]), _discard)
    await mw({"type": "websocket", "path": "/ws", "headers": []}, body_receiver([]), _discard)
    assert seen == ["lifespan", "websocket"]


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError):
        IdempotencyMiddleware(_discard_app, store=MemoryStore(), ttl=0)


# helpers


def http_scope(path: str, headers: list[tuple[bytes, bytes]], method: str = "POST") -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }


def body_receiver(parts: list[bytes]) -> Receive:
    queue = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    return receive


async def call_asgi(app: Any, parts: list[bytes], key: bytes = b"chunked") -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(http_scope("/echo", [(b"idempotency-key", key)]), body_receiver(parts), send)
    return sent


async def _discard(message: Message) -> None:
    pass


async def _discard_app(scope: Scope, receive: Receive, send: Send) -> None:
    pass
