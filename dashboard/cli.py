"""The `idemscope` command: the dashboard standalone, the demo, and key operations from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import json
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

from middleware import MemoryStore, RecordFilter, RedisStore, Store

from . import present
from .actions import Actions
from .app import TOKEN_ENV

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class CLIError(Exception):
    """A message for the user; exit status 2."""


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redis_store(args: argparse.Namespace, required: bool = True) -> Store:
    url = args.redis_url or os.environ.get("REDIS_URL")
    if not url:
        if required:
            raise CLIError("no Redis to read: give --redis-url redis://HOST:PORT/DB or set REDIS_URL")
        return MemoryStore(prefix=args.prefix)
    try:
        return RedisStore.from_url(url, prefix=args.prefix)
    except ValueError as exc:
        raise CLIError(f"bad Redis URL {url!r}: {exc}") from None


def serve(app: Any, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")


def cmd_dashboard(args: argparse.Namespace) -> None:
    from .app import create_dashboard

    token = args.token or os.environ.get(TOKEN_ENV)
    if not is_loopback(args.host) and not token:
        raise CLIError(
            f"refusing to serve the dashboard on {args.host} without auth: set {TOKEN_ENV} (or --token), "
            "or bind 127.0.0.1 and reach it through an authenticating proxy"
        )
    store = redis_store(args)
    app = create_dashboard(store, token=token, read_only=args.read_only, prometheus_url=args.prometheus_url)
    print(f"idemscope dashboard on http://{args.host}:{args.port}/", file=sys.stderr)
    serve(app, args.host, args.port)


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import create_demo_app

    token = args.token or os.environ.get(TOKEN_ENV)
    if not is_loopback(args.host) and not token:
        raise CLIError(f"refusing to serve the demo's dashboard on {args.host} without auth: set {TOKEN_ENV}")
    store = redis_store(args, required=False)
    where = "Redis" if isinstance(store, RedisStore) else "the embedded in-memory store (no --redis-url/REDIS_URL)"
    print(
        f"idemscope demo on http://{args.host}:{args.port}/ using {where}\n"
        f"  dashboard: http://{args.host}:{args.port}/idempotency/   metrics: http://{args.host}:{args.port}/metrics",
        file=sys.stderr,
    )
    serve(create_demo_app(store, traffic=not args.no_traffic, token=token), args.host, args.port)


def actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


async def keys_main(args: argparse.Namespace) -> int:
    store = redis_store(args)
    try:
        return await run_keys(store, args)
    except (OSError, RedisError) as exc:
        raise CLIError(f"cannot reach Redis: {exc}") from None
    finally:
        await store.close()


def record_key_arg(store: Store, raw: str) -> str:
    if not raw.startswith(f"{store.prefix}:{{"):
        raise CLIError(f"{raw!r} is not a record key under the prefix {store.prefix!r} (copy it from `keys ls`)")
    return raw


async def run_keys(store: Store, args: argparse.Namespace) -> int:
    acts = Actions(store)
    if args.keys_command == "ls":
        try:
            record_filter = RecordFilter(
                args.key, args.state or "", args.method or "", args.route or "", args.status or ""
            )
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        page = await store.list_records(record_filter, args.cursor, page_size=args.limit, scan_budget=args.budget)
        now = present_now()
        if args.json:
            for r in page.records:
                print(json.dumps({
                    "record_key": r.redis_key, "key": r.key, "method": r.method, "route": r.route, "state": r.state,
                    "status": r.status or None, "age_ms": now - r.created_ms, "ttl_ms": r.pttl_ms, "size": r.size,
                }))  # fmt: skip
        else:
            for r in page.records:
                status = str(r.status) if r.state == "completed" else "-"
                age = present.duration(now - r.created_ms)
                ttl = present.duration(r.pttl_ms)
                print(
                    f"{r.state:<10} {status:>4} {r.method:<6} {r.route:<28} age {age:>12}  ttl {ttl:>12}  {r.redis_key}"
                )
        more = "" if page.done else f"; more remain: --cursor {page.cursor}"
        print(f"{len(page.records)} record(s), {page.scanned} keys scanned{more}", file=sys.stderr)
        return 0
    record_key = record_key_arg(store, args.record_key)
    if args.keys_command == "show":
        found = await store.get(record_key)
        if found is None:
            print(f"no record {record_key!r}", file=sys.stderr)
            return 1
        fields = {k: v for k, v in vars(found).items() if k not in ("body", "token")}
        fields["headers"] = present.mask_headers(found.headers)
        if args.body:
            fields["body"] = present.body_view(
                found.body, found.stored, found.size, present.content_type_of(found.headers)
            ).text
        print(json.dumps(fields, indent=2, default=str))
        return 0
    if args.keys_command == "evict":
        outcome = await acts.evict(record_key, actor())
    elif args.keys_command == "release":
        token = args.token
        if not token:
            found = await store.get(record_key)
            if found is None or found.state != "in_flight":
                print("not in flight: nothing to release", file=sys.stderr)
                return 1
            token = found.token
        outcome = await acts.release(record_key, token, actor())
    else:
        outcome = await acts.set_ttl(record_key, args.seconds, actor())
    print(outcome.text)
    return 0 if outcome.ok else 1


def present_now() -> int:
    from middleware.admin import now_ms

    return now_ms()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="idemscope", description="Idempotency keys you can see into.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--redis-url", help="redis://HOST:PORT/DB (default: $REDIS_URL)")
        sp.add_argument("--prefix", default="idemscope", help="the middleware's key prefix (default: idemscope)")

    d = sub.add_parser("dashboard", help="serve the dashboard over a Redis store")
    common(d)
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8080)
    d.add_argument("--token", help=f"auth token (default: ${TOKEN_ENV}); required off loopback")
    d.add_argument("--read-only", action="store_true", help="hide and refuse every mutation")
    d.add_argument("--prometheus-url", help="chart rates from this Prometheus server")
    d.set_defaults(func=cmd_dashboard)

    m = sub.add_parser("demo", help="an orders API with the middleware, the dashboard and traffic")
    common(m)
    m.add_argument("--host", default="127.0.0.1")
    m.add_argument("--port", type=int, default=8000)
    m.add_argument("--token", help=f"dashboard auth token (default: ${TOKEN_ENV})")
    m.add_argument("--no-traffic", action="store_true", help="do not generate traffic in the background")
    m.set_defaults(func=cmd_demo)

    k = sub.add_parser("keys", help="list, show and fix keys from a terminal")
    common(k)
    ks = k.add_subparsers(dest="keys_command", required=True)
    ls = ks.add_parser("ls", help="list records (SCAN with a budget, never KEYS)")
    ls.add_argument("--key", default="", help="key contains (literal)")
    ls.add_argument("--state", choices=["in_flight", "completed"])
    ls.add_argument("--method")
    ls.add_argument("--route", help="exact route template")
    ls.add_argument("--status", choices=["2xx", "3xx", "4xx", "5xx"])
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--budget", type=int, default=10_000, help="keys to scan at most")
    ls.add_argument("--cursor", type=int, default=0)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    show = ks.add_parser("show", help="one record")
    show.add_argument("record_key")
    show.add_argument("--body", action="store_true", help="include the response body")
    ev = ks.add_parser("evict", help="delete a record")
    ev.add_argument("record_key")
    rel = ks.add_parser("release", help="release a lock (compare-and-delete on its owner token)")
    rel.add_argument("record_key")
    rel.add_argument("--token", help="owner token (default: the current one, read first)")
    ttl = ks.add_parser("ttl", help="set a completed record's remaining TTL")
    ttl.add_argument("record_key")
    ttl.add_argument("seconds", type=int)
    k.set_defaults(func=lambda a: sys.exit(asyncio.run(keys_main(a))))
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except CLIError as exc:
        print(f"idemscope: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
