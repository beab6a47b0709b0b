"""Instructions per request, counted by valgrind's callgrind: the stable figure beside bench/run.py's timings.

    python bench/instructions.py [--served] [--requests 800] [--redis-url URL]

Timings on a shared 2-core machine vary by ±10 % from run to run; the number of instructions the server process
executes per request does not (repeat runs agree within about 1 %). Each variant runs the benchmark's FastAPI app
under callgrind, with counting switched on only around the measured requests: bare, fresh keys and replays, with
metrics on and off, and the middleware over a store that does no work. By default the app runs in process (as
bench/inprocess.py does; about 20 s per variant). With --served it runs in uvicorn, as bench/run.py serves it, and
gets its requests over HTTP from a bounded client in this process (about a minute per variant): the server's whole
count per request, HTTP included, whose ratio to the bare app's is what throughput would be if every instruction
cost the same (system calls and the kernel's share are not counted). Needs valgrind (Debian package `valgrind`) and
a Redis (its own redis-server on a free port unless --redis-url or REDIS_URL is given).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent

# name: (store, metrics on, keys)
VARIANTS = {
    "bare": ("none", True, "none"),
    "fresh key": ("redis", True, "fresh"),
    "fresh key, metrics off": ("redis", False, "fresh"),
    "fresh key, no store work": ("noop", True, "fresh"),  # the middleware's own cost (NoopStore in bench/app.py)
    "replay": ("redis", True, "one"),
    "replay, metrics off": ("redis", False, "one"),
}
CONCURRENCY = 16


async def measure(variant: str, requests: int, redis_url: str) -> None:
    """The child: warm up, then count only the measured requests (callgrind_control switches counting)."""
    store, metrics, mode = VARIANTS[variant]
    os.environ.update(BENCH_STORE=store, REDIS_URL=redis_url, BENCH_METRICS="1" if metrics else "0")
    app = importlib.import_module("bench.app").create_app()  # (by name: mypy checks bench/ as loose files)
    client = importlib.import_module("bench.inprocess").client
    run = uuid.uuid4().hex

    def keys(batch: str, count: int) -> list[bytes | None]:
        return [key.encode() if key else None for key in keys_for(mode, run, batch, count)]

    await client(app, keys("first", 1))  # a replay needs its key completed first
    await asyncio.gather(*(client(app, keys(f"warm{c}", 50)) for c in range(CONCURRENCY)))
    switch = ["callgrind_control", "--instr"]
    subprocess.run([*switch, "on", str(os.getpid())], check=True, capture_output=True)
    await asyncio.gather(*(client(app, keys(f"run{c}", requests // CONCURRENCY)) for c in range(CONCURRENCY)))
    subprocess.run([*switch, "off", str(os.getpid())], check=True, capture_output=True)


def keys_for(mode: str, run: str, batch: str, count: int) -> list[str | None]:
    """No key, one key for the whole run (replays), or a fresh key per request."""
    if mode == "none":
        return [None] * count
    if mode == "one":
        return [f"replay-{run}"] * count
    return [f"{run}-{batch}-{i}" for i in range(count)]


def collected(output: str, what: str) -> int:
    found = re.search(r"Collected : (\d+)", output)
    if found is None:
        raise RuntimeError(f"callgrind run of {what!r} failed:\n{output[-3000:]}")
    return int(found.group(1))


def count(variant: str, requests: int, redis_url: str) -> float:
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, __file__, "--child", variant, "--requests", str(requests), "--redis-url", redis_url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"callgrind run of {variant!r} failed:\n{done.stderr[-3000:]}")
    return collected(done.stderr, variant) / (requests // CONCURRENCY * CONCURRENCY)


async def drive(url: str, keys: list[str | None]) -> None:
    """Send one request per key, CONCURRENCY at a time, each checked for its 201."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker(share: list[str | None]) -> None:
            for key in share:
                headers = {"content-type": "application/json"} | ({"idempotency-key": key} if key else {})
                reply = await client.post("/orders", content=b'{"sku": "tea", "quantity": 2}', headers=headers)
                if reply.status_code != 201:
                    raise RuntimeError(f"{reply.status_code} from the served app: {reply.text[:300]}")

        await asyncio.gather(*(worker(keys[c::CONCURRENCY]) for c in range(CONCURRENCY)))


def served_count(variant: str, requests: int, redis_url: str) -> float:
    """The app in uvicorn under callgrind, counting only while the measured requests are served."""
    store, metrics, mode = VARIANTS[variant]
    env = {**os.environ, "BENCH_STORE": store, "BENCH_METRICS": "1" if metrics else "0", "REDIS_URL": redis_url}
    port = free_port()
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, "-m", "uvicorn", "bench.app:create_app", "--factory", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    url, run = f"http://127.0.0.1:{port}", uuid.uuid4().hex
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300  # starting FastAPI under valgrind takes a while
            while True:
                try:
                    httpx.get(url + "/bench/round-trips", timeout=30)
                    break
                except httpx.TransportError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"uvicorn under valgrind did not start ({variant!r})") from None
                    time.sleep(0.5)
            asyncio.run(drive(url, keys_for(mode, run, "first", 1)))  # a replay needs its key completed first
            asyncio.run(drive(url, keys_for(mode, run, "warm", 4 * CONCURRENCY)))
            switch = ["callgrind_control", "--instr"]
            subprocess.run([*switch, "on", str(server.pid)], check=True, capture_output=True)
            asyncio.run(drive(url, keys_for(mode, run, "run", requests)))
            subprocess.run([*switch, "off", str(server.pid)], check=True, capture_output=True)
        finally:
            server.terminate()
            server.wait(120)
        log.seek(0)
        return collected(log.read(), variant) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--served", action="store_true", help="count the app served by uvicorn over HTTP")
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop

        uvloop.run(measure(args.child, args.requests, args.redis_url))
        return
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"{', '.join(missing)} not found: install valgrind (Debian/Ubuntu: apt-get install valgrind)")
    server = None if args.redis_url else RedisServer()
    url = args.redis_url or (server.url if server else "")
    try:
        measure_one = served_count if args.served else count
        counts = {variant: measure_one(variant, args.requests, url) for variant in VARIANTS}
    finally:
        if server is not None:
            server.close()
    where = "served by uvicorn over HTTP" if args.served else "in process"
    print(f"instructions per request (callgrind, {where}, {args.requests} requests each):")
    for variant, n in counts.items():
        bare = counts["bare"]
        print(f"  {variant:<26} {n / 1000:8.1f} k  ({n / bare:.2f}x bare; bare/this {bare / n:.2f})")
    for kind in ("fresh key", "replay"):
        on, off = counts[kind], counts[f"{kind}, metrics off"]
        print(f"  metrics cost, {kind}: {(on - off) / 1000:.1f} k instructions, {on / off - 1:+.1%}")


if __name__ == "__main__":
    main()
