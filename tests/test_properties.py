"""Property-based tests (hypothesis) over header bytes, keys, methods, paths, bodies and response kinds.

For every drawn request and app behaviour: the middleware answers nothing 5xx on its own account, never runs a
key twice once its response is stored, and a replay is byte-identical to the first answer.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from middleware import IdempotencyMiddleware, InvalidKey, MemoryStore, RedisStore, Store, parse_key
from middleware.types import Message, Receive, Scope, Send

MIDDLEWARE_STATUSES = {400, 409, 422, 503}


class AppError(Exception):
    """Raised by the test app on purpose; anything else escaping the middleware is a bug."""


@dataclass(frozen=True)
class Behaviour:
    status: int
    chunks: tuple[bytes, ...]  # response body as sent, possibly streamed in several messages
    headers: tuple[tuple[bytes, bytes], ...]
    raises: bool


behaviours = st.builds(
    Behaviour,
    status=st.sampled_from([200, 201, 204, 302, 400, 404, 409, 422, 500, 503]),
    chunks=st.lists(st.binary(max_size=3000), max_size=4).map(tuple),
    headers=st.lists(
        st.tuples(
            st.sampled_from([b"content-type", b"x-trace", b"set-cookie", b"cache-control", b"date"]),
            st.binary(min_size=1, max_size=30).filter(lambda v: b"\r" not in v and b"\n" not in v),
        ),
        max_size=4,
    ).map(tuple),
    raises=st.booleans(),
)
header_values = st.one_of(
    st.binary(max_size=300),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=260).map(str.encode),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(lambda s: f'"{s}"'.encode()),
)
bodies = st.lists(st.binary(max_size=5000), max_size=5)  # request body in chunks (empty list: no body at all)
methods = st.sampled_from(["POST", "PATCH", "PUT", "GET", "DELETE"])
paths = st.one_of(st.sampled_from(["/", "/orders", "/orders/1"]), st.text(max_size=30).map(lambda s: "/" + s))


def make_app(behaviour: Behaviour, runs: list[int]) -> object:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if not message.get("more_body"):
                break
        runs.append(1)
        if behaviour.raises:
            raise AppError("the app failed")
        await send({"type": "http.response.start", "status": behaviour.status, "headers": list(behaviour.headers)})
        for i, chunk in enumerate(behaviour.chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(behaviour.chunks) - 1})
        if not behaviour.chunks:
            await send({"type": "http.response.body", "body": b""})

    return app


async def call(mw: IdempotencyMiddleware, method: str, path: str, key: bytes, chunks: list[bytes]) -> list[Message]:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    if not messages:
        messages = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": method, "path": path, "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": b"", "headers": [(b"idempotency-key", key), (b"content-type", b"application/json")],
    }  # fmt: skip
    await mw(scope, receive, send)
    return sent


def answer(sent: list[Message]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = [(bytes(k), bytes(v)) for k, v in start["headers"] if bytes(k) != b"idempotent-replayed"]
    return start["status"], headers, body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(behaviour=behaviours, key=header_values, method=methods, path=paths, chunks=bodies)
def test_never_500_never_twice_replay_identical(
    behaviour: Behaviour, key: bytes, method: str, path: str, chunks: list[bytes]
) -> None:
    asyncio.run(_check(behaviour, key, method, path, chunks))


@pytest.mark.redis
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(behaviour=behaviours, key=header_values, method=methods, chunks=bodies)
def test_the_same_on_a_real_redis(
    redis_url: str, behaviour: Behaviour, key: bytes, method: str, chunks: list[bytes]
) -> None:
    async def run() -> None:
        store = RedisStore.from_url(redis_url, prefix=f"prop-{uuid.uuid4().hex}")
        try:
            await _check(behaviour, key, method, "/orders", chunks, store)
        finally:
            async for k in store.client.scan_iter(match=f"{store.prefix}:*"):
                await store.client.unlink(k)
            await store.close()

    asyncio.run(run())


async def _check(
    behaviour: Behaviour, key: bytes, method: str, path: str, chunks: list[bytes], store: Store | None = None
) -> None:
    runs: list[int] = []
    mw = IdempotencyMiddleware(
        make_app(behaviour, runs),  # type: ignore[arg-type]
        store=store or MemoryStore(),
        registry=CollectorRegistry(),
        max_body_size=4000,
    )
    answers: list[tuple[int, list[tuple[bytes, bytes]], bytes] | None] = []
    for _ in range(3):
        runs_before = len(runs)
        try:
            sent = await call(mw, method, path, key, chunks)
        except AppError:
            answers.append(None)
            continue
        status, headers, body = answer(sent)
        if len(runs) == runs_before:  # the app did not run: the middleware answered (an error, or a replay)
            assert status in MIDDLEWARE_STATUSES or status == behaviour.status < 500, status
        answers.append((status, headers, body))
    ran = len(runs)
    guarded = method in ("POST", "PATCH")
    if not guarded:
        assert ran == 3
        return
    try:
        parse_key(key)
    except InvalidKey:  # never reaches the app
        assert ran == 0 and all(a is not None and a[0] == 400 for a in answers)
        return
    stored = not behaviour.raises and behaviour.status < 500
    if stored:
        assert ran == 1  # never twice
        first = answers[0]
        assert first is not None
        too_large = sum(len(c) for c in behaviour.chunks) > 4000
        for later in answers[1:]:
            assert later is not None
            if too_large:
                assert later[0] == 409
            else:
                assert later == (first[0], [h for h in first[1] if h[0] not in (b"date", b"set-cookie")], first[2])
    else:
        assert ran == 3  # not stored: every retry runs again
