"""IdempotencyMiddleware: a pure ASGI middleware implementing the Idempotency-Key header.

A request with a key is claimed in the store in one round trip before the app sees it. The first request runs the
app with its response held back; the response is stored (owner-token checked) and only then sent. Retries with the
same key and payload get the stored response back; concurrent ones get 409; other payloads get 422.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from time import perf_counter
from typing import TypeVar

from prometheus_client import CollectorRegistry

from .errors import StoreError
from .fingerprint import Fingerprint
from .keys import InvalidKey, authorization_scope, parse_key
from .metrics import IdempotencyMetrics
from .problems import send_problem
from .records import Claim, RequestInfo, StoredResponse
from .routes import UNMATCHED, ResolvedRoute, RouteOptions, RouteResolver, StarletteRouteResolver
from .store import Store
from .types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_OPTIONS = RouteOptions()
logger = logging.getLogger("idemscope")
T = TypeVar("T")

# Never replayed: hop-by-hop headers (RFC 9110 section 7.6.1) and those the server sets per response.
SKIPPED_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"date",
        b"server",
    }
)
UNSUPPORTED_EXTENSIONS = ("http.response.pathsend", "http.response.zerocopysend")


def store_below_500(status: int) -> bool:
    """The default: store every response but server errors, which a retry should run again."""
    return status < 500


class IdempotencyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        store: Store,
        methods: Iterable[str] = ("POST", "PATCH"),
        header: str = "Idempotency-Key",
        ttl: float = 24 * 3600,
        lease: float = 30.0,
        required: bool = False,
        scope: Callable[[Scope], str] = authorization_scope,
        fingerprint_headers: Iterable[str] = (),
        store_status: Callable[[int], bool] | Collection[int] = store_below_500,
        max_body_size: int = 1024 * 1024,
        fail_open: bool = False,
        store_timeout: float = 1.0,
        replay_header: str | None = "Idempotent-Replayed",
        replay_set_cookie: bool = False,
        route_resolver: RouteResolver | None = None,
        metrics: bool = True,
        registry: CollectorRegistry | None = None,
        metrics_prefix: str = "idempotency",
    ) -> None:
        if ttl <= 0 or lease <= 0 or store_timeout <= 0:
            raise ValueError("ttl, lease and store_timeout must be positive (seconds)")
        self.app = app
        self.store = store
        self.methods = frozenset(m.upper() for m in methods)
        self.header = header.lower().encode("latin-1")
        self.ttl_ms = int(ttl * 1000)
        self.lease_ms = int(lease * 1000)
        self.required = required
        self.scope_of = scope
        self.fingerprint_headers = tuple(h.lower().encode("latin-1") for h in fingerprint_headers)
        self.store_status = store_status if callable(store_status) else frozenset(store_status).__contains__
        self.max_body_size = max_body_size
        self.fail_open = fail_open
        self.store_timeout = store_timeout
        self.store_bounds_calls = store.bound_calls(store_timeout)
        self.replay_header = replay_header.lower().encode("latin-1") if replay_header else None
        self.skipped_headers = SKIPPED_HEADERS if replay_set_cookie else SKIPPED_HEADERS | {b"set-cookie"}
        self.resolve_route: RouteResolver = route_resolver or StarletteRouteResolver(app)
        self.metrics = IdempotencyMetrics.for_registry(registry, metrics_prefix) if metrics else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in self.methods:
            await self.app(scope, receive, send)
            return
        route = self.resolve_route(scope)
        options = route.options
        if options is not None and not options.enabled:
            await self.app(scope, receive, send)
            return
        raw_keys = [value for name, value in scope["headers"] if name == self.header]
        if not raw_keys:
            await self._missing_key(scope, receive, send, route)
            return
        try:
            if len(raw_keys) > 1:
                raise InvalidKey("the request has more than one Idempotency-Key header")
            key = parse_key(raw_keys[0])
        except InvalidKey as exc:
            self._count("invalid_key", scope, route)
            await send_problem(send, 400, "invalid-key", "Invalid idempotency key", str(exc))
            return
        await IdempotentRequest(self, scope, receive, send, route, key).run()

    async def _missing_key(self, scope: Scope, receive: Receive, send: Send, route: ResolvedRoute) -> None:
        options = route.options
        self._count("missing_key", scope, route)
        required = options.required if options is not None and options.required is not None else self.required
        if required:
            await send_problem(
                send,
                400,
                "missing-key",
                "Idempotency key required",
                "This endpoint requires an Idempotency-Key header.",
            )
            return
        await self.app(scope, receive, send)

    def _count(self, outcome: str, scope: Scope, route: ResolvedRoute) -> None:
        if self.metrics is not None:
            self.metrics.count(outcome, scope["method"], route.template)

    async def call_store(self, operation: str, call: Awaitable[T]) -> T:
        """Run one store operation with the timeout, timing it; any failure becomes a StoreError."""
        metrics = self.metrics
        started = perf_counter() if metrics is not None else 0.0
        try:
            if self.store_bounds_calls:
                return await call
            async with asyncio.timeout(self.store_timeout):
                return await call
        except Exception as exc:
            if metrics is not None:
                metrics.store_errors.labels(operation, type(exc).__name__).inc()
            raise StoreError(operation, exc) from exc
        finally:
            if metrics is not None:
                metrics.operation_duration[operation].add(perf_counter() - started)


class IdempotentRequest:
    """The state of one request that carries a valid key (like starlette's GZipResponder)."""

    __slots__ = (
        "chunks", "finished", "held", "key", "lease", "lease_ms", "loop", "max_body_size", "messages", "mw", "passing",
        "receive", "record_key", "route", "scope", "send", "sending", "size", "start", "storable", "token", "ttl_ms",
        "watch",
    )  # fmt: skip

    def __init__(
        self, mw: IdempotencyMiddleware, scope: Scope, receive: Receive, send: Send, route: ResolvedRoute, key: str
    ) -> None:
        self.mw = mw
        self.scope = scope
        self.receive = receive
        self.send = send
        self.route = route
        self.key = key
        options = route.options or DEFAULT_OPTIONS
        self.ttl_ms = int(options.ttl * 1000) if options.ttl is not None else mw.ttl_ms
        self.lease_ms = int(options.lease * 1000) if options.lease is not None else mw.lease_ms
        self.max_body_size = options.max_body_size if options.max_body_size is not None else mw.max_body_size
        self.messages: list[Message] = []
        self.record_key = ""
        self.token = ""
        self.lease: Lease | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # set by execute(), looked up once per request
        # response state
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.passing = False  # the response goes straight to the client (not stored, or too large to store)
        self.storable = True
        self.finished = False  # the record is settled: completed, released or given up
        self.held: StoredResponse | None = None  # the whole response, captured: stored, then sent, by execute()
        self.watch: asyncio.Handle | None = None  # sends `held` from a task if the app goes on after its response
        self.sending: asyncio.Task[None] | None = None  # that task

    async def run(self) -> None:
        mw = self.mw
        fingerprint = Fingerprint(self.scope, mw.fingerprint_headers)
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                return  # the client left before anything was claimed
            self.messages.append(message)
            fingerprint.update(message.get("body", b""))
            if not message.get("more_body", False):
                break
        method = self.scope["method"]
        template = self.route.template
        request = RequestInfo(
            scope=mw.scope_of(self.scope),
            method=method,
            route=template if template != UNMATCHED else self.scope["path"],
            key=self.key,
            path=self.scope["path"],
            fingerprint=fingerprint.hexdigest(),
        )
        self.record_key = mw.store.record_key(request)
        try:
            claim = await mw.call_store("claim", mw.store.claim(self.record_key, request, self.lease_ms))
        except StoreError as exc:
            mw._count("store_error", self.scope, self.route)
            if mw.fail_open:
                logger.warning("%s; running the request without idempotency (fail_open)", exc)
                await mw.app(self.app_scope(), self.replay_receive, self.send)
                return
            logger.error("%s; answering 503", exc)
            await send_problem(
                self.send,
                503,
                "store-unavailable",
                "Idempotency store unavailable",
                "The request was not run. Retry it with the same Idempotency-Key.",
                retry_after_ms=1000,
            )
            return
        if claim.outcome == "claimed":
            await self.execute(claim.token)
        elif claim.outcome == "completed":
            await self.replay(claim)
        elif claim.outcome == "in_flight":
            mw._count("conflict", self.scope, self.route)
            await send_problem(
                self.send,
                409,
                "key-in-flight",
                "Request in progress",
                "A request with this Idempotency-Key is still being processed. Retry after it completes.",
                retry_after_ms=claim.retry_after_ms,
            )
        else:
            mw._count("mismatch", self.scope, self.route)
            await send_problem(
                self.send,
                422,
                "key-reused",
                "Idempotency key reused",
                "This Idempotency-Key was used for a request with a different method, path, query or body.",
            )

    # -- the first request: run the app, hold the response back, store it, send it --

    async def execute(self, token: str) -> None:
        mw = self.mw
        self.token = token
        self.loop = asyncio.get_running_loop()  # (Python 3.11 makes a getpid system call for each lookup)
        self.lease = Lease(self, token, self.loop)
        if mw.metrics is not None:
            mw.metrics.in_flight.add(1)
        try:
            try:
                await mw.app(self.app_scope(), self.replay_receive, self.capture)
            finally:
                if self.watch is not None:
                    self.watch.cancel()
                    self.watch = None
                if self.held is not None:  # the usual case: the app returned right after its response
                    response, self.held = self.held, None
                    await self.store_and_send(response)
                elif self.sending is not None:  # the app went on after its response, which a task stored and sent
                    sending, self.sending = self.sending, None
                    await sending
        except BaseException:
            if not self.finished:
                await self.settle_unfinished()
            raise
        finally:
            self.lease.stop()
            self.lease = None  # the lease points back at this request: no cycle left for the GC to find
            if mw.metrics is not None:
                mw.metrics.in_flight.add(-1)
        if not self.finished:  # the app returned without finishing its response
            await self.settle_unfinished()

    def app_scope(self) -> Scope:
        extensions = self.scope.get("extensions")
        if extensions and any(name in extensions for name in UNSUPPORTED_EXTENSIONS):
            extensions = {k: v for k, v in extensions.items() if k not in UNSUPPORTED_EXTENSIONS}
            return {**self.scope, "extensions": extensions}
        return self.scope

    async def replay_receive(self) -> Message:
        if self.messages:
            return self.messages.pop(0)
        return await self.receive()

    async def capture(self, message: Message) -> None:
        kind = message["type"]
        if self.passing:
            if kind == "http.response.body":
                body = message.get("body", b"")
                self.size += len(body) if type(body) is bytes else memoryview(body).nbytes  # (bytes-like: in bytes)
                if not message.get("more_body", False):
                    await self.finish_passing()  # the record first, then the last chunk
            await self.send(message)
            return
        if kind == "http.response.start":
            self.start = message
            if not self.mw.store_status(message["status"]):
                self.storable = False
                self.passing = True
                await self.send(message)
            return
        if kind != "http.response.body":  # trailers or an extension: cannot be stored faithfully
            await self.overflow()
            await self.send(message)
            return
        body = message.get("body", b"")
        if type(body) is not bytes:  # bytes-like (ASGI asks for bytes): copied, so that len() counts its bytes
            body = bytes(body)
        more = message.get("more_body", False)
        self.chunks.append(body)
        self.size += len(body)
        if self.size > self.max_body_size:
            await self.overflow()
            if not more:
                await self.finish_passing()
            return
        if more:
            return
        body = b"".join(self.chunks) if len(self.chunks) > 1 else body
        # The app's send returns at once, holding the response: execute() stores, then sends it when the app
        # returns, which it usually does within this same step of the event loop. So the app's deep coroutine stack
        # is never suspended around Redis, and no task is needed. Should the app go on instead (background tasks,
        # work after the response), `watch` runs at the loop's next step and stores and sends from a task, so the
        # response never waits for that work.
        self.finished = True
        self.held = StoredResponse(self.start_status(), self.stored_headers(), body, True, len(body))
        assert self.loop is not None
        self.watch = self.loop.call_soon(self.app_went_on)

    def app_went_on(self) -> None:
        self.watch = None
        if self.held is not None:
            response, self.held = self.held, None
            assert self.loop is not None
            self.sending = self.loop.create_task(self.store_and_send(response))

    async def store_and_send(self, response: StoredResponse) -> None:
        await self.complete(response)
        await self.send(self.start_message())
        await self.send({"type": "http.response.body", "body": response.body})

    async def overflow(self) -> None:
        """Switch to passing the response through: send what was held back, store no body."""
        self.passing = True
        await self.send(self.start_message())
        if self.chunks:
            await self.send({"type": "http.response.body", "body": b"".join(self.chunks), "more_body": True})
            self.chunks = []

    async def finish_passing(self) -> None:
        if self.storable:  # too large: the key remembers that it completed, so a retry does not run it again
            await self.complete(StoredResponse(self.start_status(), self.stored_headers(), b"", False, self.size))
        else:
            self.mw._count("not_stored", self.scope, self.route)
            await self.release()

    async def settle_unfinished(self) -> None:
        """The app raised or returned before its response ended."""
        if self.storable and self.passing:
            # Part of the response already reached the client: the request ran. Never run it again.
            await self.complete(StoredResponse(self.start_status(), self.stored_headers(), b"", False, self.size))
            return
        self.mw._count("not_stored", self.scope, self.route)
        await self.release()

    def start_status(self) -> int:
        return int(self.start["status"]) if self.start is not None else 500

    def start_message(self) -> Message:
        assert self.start is not None, "the app sent a body before http.response.start"
        return self.start

    def stored_headers(self) -> list[tuple[bytes, bytes]]:
        if self.start is None:
            return []
        skipped = self.mw.skipped_headers
        kept = []
        for name, value in self.start.get("headers", ()):
            if type(name) is not bytes or type(value) is not bytes:  # bytes-like (ASGI asks for bytes): copied
                name, value = bytes(name), bytes(value)
            if name.lower() not in skipped:
                kept.append((name, value))
        return kept

    async def complete(self, response: StoredResponse) -> None:
        mw = self.mw
        self.finished = True
        if self.lease is not None:
            self.lease.stop()
        try:
            held_ms = await mw.call_store(
                "complete", mw.store.complete(self.record_key, self.token, response, self.ttl_ms)
            )
        except StoreError as exc:
            # The app has run: send its response anyway. The in-flight record expires after its lease.
            logger.error("%s; sending the response without storing it", exc)
            mw._count("store_error", self.scope, self.route)
            return
        if held_ms is None:
            logger.warning("lease lost for %r: the response was not stored", self.record_key)
            if mw.metrics is not None:
                mw.metrics.leases_lost.inc()
            mw._count("not_stored", self.scope, self.route)
            return
        mw._count("processed", self.scope, self.route)
        if mw.metrics is not None:
            mw.metrics.lock_held.add(held_ms / 1000)
            if response.stored:
                mw.metrics.stored_bytes.add(response.size)

    async def release(self) -> None:
        self.finished = True
        if self.lease is not None:
            self.lease.stop()
        try:
            await self.mw.call_store("release", self.mw.store.release(self.record_key, self.token))
        except StoreError as exc:
            logger.error("%s; the key frees itself when its lease ends", exc)

    # -- a retry of a completed request --

    async def replay(self, claim: Claim) -> None:
        mw = self.mw
        response = claim.response
        assert response is not None
        if not response.stored:
            mw._count("replayed", self.scope, self.route)
            await send_problem(
                self.send,
                409,
                "response-not-stored",
                "Response not stored",
                f"The request with this Idempotency-Key completed with status {response.status}, but its response "
                "was too large to store or was cut short. It will not be run again.",
            )
            return
        headers = response.headers
        if mw.replay_header is not None:
            headers = [*headers, (mw.replay_header, b"true")]
        mw._count("replayed", self.scope, self.route)
        if mw.metrics is not None:
            mw.metrics.replay_age.add(claim.age_ms / 1000)
        await self.send({"type": "http.response.start", "status": response.status, "headers": headers})
        await self.send({"type": "http.response.body", "body": response.body})


class Lease:
    """Renews the in-flight record every third of the lease while the app runs (a timer, not a task per request)."""

    __slots__ = ("_handle", "_loop", "_task", "interval", "lost", "request", "stopped", "token")

    def __init__(self, request: IdempotentRequest, token: str, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.token = token
        self.stopped = False
        self.lost = False
        self.interval = request.lease_ms / 3000
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(self.interval, self._beat)
        self._task: asyncio.Task[None] | None = None

    def _beat(self) -> None:
        if not self.stopped:
            self._task = self._loop.create_task(self._renew())

    async def _renew(self) -> None:
        request = self.request
        mw = request.mw
        try:
            renewed: bool | None = await mw.call_store(
                "renew", mw.store.renew(request.record_key, self.token, request.lease_ms)
            )
        except StoreError as exc:
            logger.warning("%s; will try again", exc)
            renewed = None
        if renewed is False:
            self.lost = True
            logger.warning("lease lost for %r while its request was running", request.record_key)
            return
        if renewed and mw.metrics is not None:
            mw.metrics.lease_renewals.inc()
        if not self.stopped:
            self._handle = self._loop.call_later(self.interval, self._beat)

    def stop(self) -> None:
        self.stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
