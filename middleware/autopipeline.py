"""The hot path's Redis connection: every command issued in one event-loop turn goes out in one write.

Under load, many requests claim and complete keys at the same moment. redis-py gives each call a connection of
its own and pays a send and a receive system call per command; here concurrent commands share one connection
(Redis answers in order, so replies are matched first-in first-out) and one system call each way per batch.
Parsing is hiredis. Only what the middleware's scripts need: EVALSHA (SCRIPT LOAD after a NOSCRIPT), AUTH, SELECT.
The claim's and completion's commands are packed from templates made once (`template`), one formatting step per call.

Every command has a deadline (`timeout`), watched by one timer per connection rather than one per command; a
command past it fails with TimeoutError, and its reply, when it comes, is read and dropped, so the connection
stays in step. A lost connection fails every pending command and is opened again by the next one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from typing import Any, cast
from urllib.parse import unquote, urlparse

import hiredis
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

Arg = bytes | str | int

# Error replies as redis-py names them, so logs and the store_errors metric read the same on both paths.
ERRORS: dict[str, type[ResponseError] | type[RedisConnectionError]] = {
    "NOSCRIPT": NoScriptError,
    "OOM": OutOfMemoryError,
    "READONLY": ReadOnlyError,
    "NOPERM": NoPermissionError,
    "WRONGPASS": AuthenticationError,
    "NOAUTH": AuthenticationError,
    "LOADING": BusyLoadingError,
}


def error_for(message: str) -> Exception:
    prefix = message.split(" ", 1)[0]
    return ERRORS.get(prefix, ResponseError)(message)


def pack(args: tuple[Arg, ...]) -> bytes:
    """A command in RESP (*<n>, then $<len> <bytes> per argument; str as UTF-8, numbers in decimal), by hiredis."""
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]  # (its stub types a 1-tuple)
    return packed


def template(*words: Arg | None) -> bytes:
    """A command's RESP as a `%` format: its fixed words packed once, each None a slot taking two values, the
    argument's length and its bytes: `template("GET", None) % (len(name), name)`. For the claim's SET this is one
    formatting step instead of hiredis's conversion and sprintf per argument (0.41 against 0.94 µs, timeit)."""
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        parts.append(b"$%d\r\n%b\r\n" if word is None else pack((word,))[4:].replace(b"%", b"%%"))  # less "*1\r\n"
    return b"".join(parts)


class PipelinedProtocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()  # (reply, deadline), in sending order
        self.expired = 0  # how many entries at the head of `waiting` already timed out
        self.watchdog: asyncio.TimerHandle | None = None
        self.outgoing: list[bytes] = []
        self.flush_scheduled = False
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            waiter, _ = self.waiting.popleft()
            if self.expired:
                self.expired -= 1
            if waiter.done():  # it timed out or its caller gave up; reading the reply keeps the connection in step
                continue
            if isinstance(reply, hiredis.ReplyError):
                waiter.set_exception(error_for(str(reply)))
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}")
        if self.watchdog is not None:
            self.watchdog.cancel()
        while self.waiting:
            waiter, _ = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(self.lost)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        if self.lost is not None:
            raise self.lost
        waiter: asyncio.Future[Any] = self.loop.create_future()
        self.waiting.append((waiter, self.loop.time() + self.timeout))
        if self.watchdog is None:
            self.watchdog = self.loop.call_later(self.timeout, self.watch)
        self.outgoing.append(command)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)
        return waiter

    def watch(self) -> None:
        """Fail the commands past their deadline. One timer per connection, not one per command: deadlines
        follow the sending order, so only the head of the queue needs looking at."""
        self.watchdog = None
        now = self.loop.time()
        for i in range(self.expired, len(self.waiting)):
            waiter, deadline = self.waiting[i]
            if deadline > now:
                self.watchdog = self.loop.call_at(deadline, self.watch)
                return
            self.expired += 1
            if not waiter.done():
                waiter.set_exception(TimeoutError(f"Redis did not answer within {self.timeout} s"))

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.transport is not None and self.outgoing:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()


class AutoPipelineClient:
    """One pipelined connection to a plain TCP Redis (`redis://[user:password@]host:port/db`)."""

    def __init__(
        self, host: str, port: int, *, db: int = 0, username: str | None = None, password: str | None = None,
        timeout: float = 1.0,
    ) -> None:  # fmt: skip
        self.host, self.port, self.db = host, port, db
        self.username, self.password = username, password
        self.timeout = timeout  # bounds connecting and every command
        self._protocol: PipelinedProtocol | None = None
        self._connecting: asyncio.Lock | None = None

    @classmethod
    def for_url(cls, url: str, timeout: float = 1.0) -> AutoPipelineClient | None:
        """A client for a plain `redis://` URL; None for anything else (TLS, unix sockets), which redis-py serves."""
        parsed = urlparse(url)
        if parsed.scheme != "redis" or parsed.query:
            return None
        db = int(parsed.path.strip("/") or 0)
        return cls(
            parsed.hostname or "127.0.0.1",
            parsed.port or 6379,
            db=db,
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            timeout=timeout,
        )

    async def _connection(self) -> PipelinedProtocol:
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and self._protocol.lost is None:
                return self._protocol
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.timeout):
                    transport, protocol = await loop.create_connection(
                        lambda: PipelinedProtocol(loop, self.timeout), self.host, self.port
                    )
            except OSError as exc:
                raise RedisConnectionError(f"cannot connect to Redis at {self.host}:{self.port}: {exc}") from exc
            try:
                await self._handshake(protocol)
            except BaseException:
                transport.close()
                raise
            self._protocol = protocol
            return protocol

    async def _handshake(self, protocol: PipelinedProtocol) -> None:
        setup = []
        if self.password is not None:
            auth: tuple[Arg, ...] = ("AUTH", self.password)
            if self.username:
                auth = ("AUTH", self.username, self.password)
            setup.append(protocol.send(pack(auth)))
        if self.db:
            setup.append(protocol.send(pack(("SELECT", self.db))))
        for reply in setup:
            await reply

    def execute(self, *args: Arg) -> Awaitable[Any]:
        return self.send(pack(args))

    def send(self, command: bytes) -> Awaitable[Any]:
        """The reply to a command already in RESP (`pack`, or a `template` filled in), to await. On an open
        connection this is the connection's own future: no coroutine is made for it."""
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol.send(command)
        return self._send_on_new_connection(command)

    async def _send_on_new_connection(self, command: bytes) -> Any:
        protocol = await self._connection()
        return await protocol.send(command)

    async def evalsha(self, sha: str, script: str, keys: list[str], args: list[Arg]) -> Any:
        return await self.run_script(pack(("EVALSHA", sha, len(keys), *keys, *args)), script)

    async def run_script(self, command: bytes, script: str) -> Any:
        """An EVALSHA command, already in RESP. After a NOSCRIPT (Redis restarted, or SCRIPT FLUSH) the script is
        loaded again and the same command sent once more."""
        try:
            return await self.send(command)
        except NoScriptError:
            await self.execute("SCRIPT", "LOAD", script)
            return await self.send(command)

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
