"""RedisStore: the records in Redis, every mutation one Lua script called by SHA."""

from __future__ import annotations

from collections.abc import Awaitable
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import OutOfMemoryError, ReadOnlyError

from . import layout
from .admin import AuditEntry, now_ms
from .autopipeline import AutoPipelineClient, template
from .records import Claim, Record, RequestInfo, StoredResponse
from .store import AUDIT_CAP, DEFAULT_PREFIX, Store, new_token, owner_id

AnyRedis = aioredis.Redis | AsyncRedisCluster
CLAIM = template("SET", None, None, "NX", "PX", None, "GET")  # record key, record, lease (ms)


def _script(name: str) -> str:
    return resources.files(__package__).joinpath("scripts", f"{name}.lua").read_text("utf-8")


class RedisStore(Store):
    """Records in Redis (or a Redis Cluster). The client must not decode responses (bodies are bytes)."""

    def __init__(
        self, client: AnyRedis, *, prefix: str = DEFAULT_PREFIX, hot_path: AutoPipelineClient | None = None
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("prefix must not contain '{' or '}': the record key's hash tag follows it")
        self.client = client
        self.prefix = prefix
        self.owner = owner_id()
        self._owner_field = layout.field(self.owner)  # escaped once, for every claim
        self._complete: AsyncScript = client.register_script(_script("complete"))
        # record key, owner token, '<now> <ttl> <status> <size> <stored>', headers, body (scripts/complete.lua)
        self._complete_command = template("EVALSHA", self._complete.sha, 1, None, None, None, None, None)
        self._release: AsyncScript = client.register_script(_script("release"))
        self._renew: AsyncScript = client.register_script(_script("renew"))
        self._audit: AsyncScript = client.register_script(_script("audit"))
        # claim/complete/release/renew go through one auto-pipelined connection when there is one (plain TCP)
        self.hot_path = hot_path
        self.round_trips = 0  # Redis calls made by claim/complete/release/renew (one command each)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 1.0,
        cluster: bool = False,
        pipelined: bool = True,
        **kwargs: Any,
    ) -> RedisStore:
        """A store on a new connection pool; `cluster=True` makes a Redis Cluster client seeded by this node.
        `timeout` bounds connecting and every reply, in seconds. `pipelined` (plain `redis://` URLs): the request
        path's scripts share one auto-pipelined connection (see autopipeline.py); everything else uses redis-py."""
        kwargs.setdefault("socket_timeout", timeout)
        kwargs.setdefault("socket_connect_timeout", timeout)
        kwargs.setdefault("decode_responses", False)
        if cluster:
            return cls(AsyncRedisCluster.from_url(url, **kwargs), prefix=prefix)
        kwargs.setdefault("health_check_interval", 30)
        hot_path = AutoPipelineClient.for_url(url, timeout=timeout) if pipelined else None
        return cls(aioredis.Redis.from_url(url, **kwargs), prefix=prefix, hot_path=hot_path)

    async def connect(self) -> None:
        """Connect now, and learn a cluster's topology, instead of on the first request (whose store timeout
        would have to cover it). Call it from the app's lifespan start-up."""
        if isinstance(self.client, AsyncRedisCluster):
            await self.client.initialize()
        else:
            await self.client.ping()
        if self.hot_path is not None:
            await self.hot_path.execute("PING")

    def bound_calls(self, timeout: float) -> bool:
        if self.hot_path is None:
            return False
        self.hot_path.timeout = timeout
        return True

    def _run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Awaitable[Any]:
        self.round_trips += 1
        if self.hot_path is not None:
            return self.hot_path.evalsha(script.sha, script.script, keys, args)  # type: ignore[arg-type]
        return script(keys=keys, args=args)

    async def claim(self, record_key: str, request: RequestInfo, lease_ms: int) -> Claim:
        """One atomic command, no script: SET NX (create the in-flight record) with GET (else read what is there)."""
        token = new_token()
        now = now_ms()
        record = layout.in_flight(request, token, lease_ms, now, self._owner_field)
        self.round_trips += 1
        try:
            if self.hot_path is not None:
                name, lease = record_key.encode(), b"%d" % lease_ms
                found = await self.hot_path.send(CLAIM % (len(name), name, len(record), record, len(lease), lease))
            else:
                found = await self.client.set(record_key, record, nx=True, px=lease_ms, get=True)
        except (OutOfMemoryError, ReadOnlyError):
            # A full Redis (maxmemory) or a read-only replica refuses every write, SET NX included; what it
            # already holds can still be replayed (or refused as a conflict or mismatch). A new key cannot be claimed.
            self.round_trips += 1
            found = await (self.hot_path.execute("GET", record_key) if self.hot_path else self.client.get(record_key))
            if found is None:
                raise
        if found is None:
            return Claim("claimed", token=token)
        return layout.claim_answer(found, request.fingerprint, now)

    async def complete(self, record_key: str, token: str, response: StoredResponse, ttl_ms: int) -> int | None:
        stored = response.stored
        numbers = b"%d %d %d %d %d" % (now_ms(), ttl_ms, response.status, response.size, stored)
        block, body = layout.header_block(response.headers), response.body if stored else b""
        self.round_trips += 1
        if self.hot_path is not None:
            name, owner = record_key.encode(), token.encode()
            command = self._complete_command % (
                len(name), name, len(owner), owner, len(numbers), numbers, len(block), block, len(body), body
            )  # fmt: skip
            done, held = await self.hot_path.run_script(command, self._complete.script)  # type: ignore[arg-type]
        else:
            done, held = await self._complete(keys=[record_key], args=[token, numbers, block, body])
        return int(held) if done == 1 else None

    async def release(self, record_key: str, token: str) -> bool:
        return bool(await self._run(self._release, [record_key], [token]))

    async def renew(self, record_key: str, token: str, lease_ms: int) -> bool:
        return bool(await self._run(self._renew, [record_key], [token, lease_ms, now_ms()]))

    async def get(self, record_key: str) -> Record | None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(record_key)
            pipe.pttl(record_key)
            value, pttl = await pipe.execute()
        return layout.record(record_key, value, int(pttl)) if value else None

    async def scan(self, cursor: int, match: str, count: int) -> tuple[int, list[str]]:
        if isinstance(self.client, AsyncRedisCluster):
            return await self._scan_cluster(self.client, cursor, match, count)
        next_cursor, keys = await self.client.scan(cursor=cursor, match=match, count=count)
        return int(next_cursor), _text(keys)

    @staticmethod
    async def _scan_cluster(client: AsyncRedisCluster, cursor: int, match: str, count: int) -> tuple[int, list[str]]:
        """SCAN over every primary in turn; the cursor carries the node: node_cursor * len(primaries) + node."""
        await client.initialize()  # a no-op once the client knows the cluster's nodes
        primaries = sorted(client.get_primaries(), key=lambda node: node.name)
        node_cursor, index = divmod(cursor, len(primaries))
        reply, keys = await client.scan(cursor=node_cursor, match=match, count=count, target_nodes=primaries[index])
        next_node_cursor = int(next(iter(reply.values()))) if isinstance(reply, dict) else int(reply)
        if next_node_cursor != 0:
            return next_node_cursor * len(primaries) + index, _text(keys)
        return (index + 1 if index + 1 < len(primaries) else 0), _text(keys)

    async def evict(self, record_key: str) -> bool:
        return bool(await self.client.unlink(record_key))

    async def set_ttl(self, record_key: str, ttl_ms: int) -> bool:
        return bool(await self.client.pexpire(record_key, ttl_ms))

    async def summaries(self, record_keys: list[str]) -> list[Record | None]:
        """Reads the first HEAD_BYTES of each record (not its body), and all of the rare one whose first two lines
        are longer."""
        async with self.client.pipeline(transaction=False) as pipe:
            for key in record_keys:
                pipe.getrange(key, 0, layout.HEAD_BYTES - 1)
                pipe.pttl(key)
            replies = await pipe.execute()
        heads: list[bytes] = replies[0::2]
        long = [i for i, head in enumerate(heads) if not layout.head_is_whole(head)]
        if long:
            async with self.client.pipeline(transaction=False) as pipe:
                for i in long:
                    pipe.get(record_keys[i])
                for i, value in zip(long, await pipe.execute(), strict=True):
                    heads[i] = value or b""
        return [
            layout.record(key, head, int(pttl), whole=False) if head else None
            for key, head, pttl in zip(record_keys, heads, replies[1::2], strict=True)
        ]

    async def evict_many(self, record_keys: list[str]) -> int:
        return int(await self.client.unlink(*record_keys)) if record_keys else 0

    async def audit_append(self, entry: AuditEntry, cap: int = AUDIT_CAP) -> None:
        await self._audit(keys=[self.audit_key], args=[entry.to_json(), cap])

    async def audit_read(self, limit: int = 100) -> list[AuditEntry]:
        return [AuditEntry.from_json(raw) for raw in await self.client.lrange(self.audit_key, 0, limit - 1)]

    @property
    def audit_key(self) -> str:
        return f"{self.prefix}:audit"

    async def close(self) -> None:
        if self.hot_path is not None:
            await self.hot_path.close()
        await self.client.aclose()


def _text(keys: list[bytes | str]) -> list[str]:
    return [k.decode("utf-8", "replace") if isinstance(k, bytes) else k for k in keys]
