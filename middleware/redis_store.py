"""RedisStore: the records in Redis, every mutation one Lua script called by SHA."""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.commands.core import AsyncScript

from .admin import AuditEntry
from .autopipeline import AutoPipelineClient
from .records import Claim, Record, RequestInfo, StoredResponse, decode_headers, encode_headers, record_from_fields
from .store import AUDIT_CAP, DEFAULT_PREFIX, Store, new_token, owner_id

AnyRedis = aioredis.Redis | AsyncRedisCluster


# Every field but the response headers and body: what a listing shows.
SUMMARY_FIELDS = [
    "state", "key", "method", "route", "path", "scope", "fp", "token", "owner", "lease", "created", "renewed",
    "renewals", "completed", "ttl", "status", "stored", "size",
]  # fmt: skip


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
        self._claim: AsyncScript = client.register_script(_script("claim"))
        self._complete: AsyncScript = client.register_script(_script("complete"))
        self._release: AsyncScript = client.register_script(_script("release"))
        self._renew: AsyncScript = client.register_script(_script("renew"))
        self._audit: AsyncScript = client.register_script(_script("audit"))
        # claim/complete/release/renew go through one auto-pipelined connection when there is one (plain TCP)
        self.hot_path = hot_path

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

    async def _run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        if self.hot_path is not None:
            return await self.hot_path.evalsha(script.sha, script.script, keys, args)  # type: ignore[arg-type]
        return await script(keys=keys, args=args)

    async def claim(self, record_key: str, request: RequestInfo, lease_ms: int) -> Claim:
        token = new_token()
        reply = await self._run(
            self._claim,
            [record_key],
            [
                token,
                request.fingerprint,
                lease_ms,
                request.method,
                request.route,
                request.key,
                request.scope,
                request.path,
                self.owner,
            ],
        )
        outcome = reply[0]
        if outcome == b"claimed":
            return Claim("claimed", token=token)
        if outcome == b"completed":
            _, status, headers, body, stored, completed, now = reply
            response = StoredResponse(
                status=int(status),
                headers=decode_headers(headers),
                body=body or b"",
                stored=stored == b"1",
                size=len(body or b""),
            )
            return Claim("completed", response=response, age_ms=max(0, int(now) - int(completed)))
        if outcome == b"in_flight":
            return Claim("in_flight", retry_after_ms=max(0, int(reply[1])))
        return Claim("mismatch")

    async def complete(self, record_key: str, token: str, response: StoredResponse, ttl_ms: int) -> int | None:
        done, held = await self._run(
            self._complete,
            [record_key],
            [
                token,
                ttl_ms,
                response.status,
                encode_headers(response.headers),
                response.body if response.stored else b"",
                "1" if response.stored else "0",
                response.size,
            ],
        )
        return int(held) if done == 1 else None

    async def release(self, record_key: str, token: str) -> bool:
        return bool(await self._run(self._release, [record_key], [token]))

    async def renew(self, record_key: str, token: str, lease_ms: int) -> bool:
        return bool(await self._run(self._renew, [record_key], [token, lease_ms]))

    async def get(self, record_key: str) -> Record | None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(record_key)
            pipe.pttl(record_key)
            fields, pttl = await pipe.execute()
        if not fields or b"state" not in fields:
            return None
        return record_from_fields(record_key, {k.decode(): v for k, v in fields.items()}, int(pttl))

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
        async with self.client.pipeline(transaction=False) as pipe:
            for key in record_keys:
                pipe.hmget(key, SUMMARY_FIELDS)
                pipe.pttl(key)
            replies = await pipe.execute()
        found: list[Record | None] = []
        for i, key in enumerate(record_keys):
            values, pttl = replies[2 * i], replies[2 * i + 1]
            fields = {name: value for name, value in zip(SUMMARY_FIELDS, values, strict=True) if value is not None}
            found.append(record_from_fields(key, fields, int(pttl)) if "state" in fields else None)
        return found

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
