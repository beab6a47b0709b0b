"""Instructions per request, counted by valgrind's callgrind: the stable figure beside bench/run.py's timings.

    python bench/instructions.py [--requests 800] [--redis-url URL]

Timings on a shared 2-core machine vary by ±10 % from run to run; the number of instructions the server process
executes per request does not (repeat runs agree within about 1 %). Each variant runs the benchmark's FastAPI app in
process (as bench/inprocess.py does) under callgrind, with counting switched on only around the measured requests:
bare, fresh keys and replays, with metrics on and off. Needs valgrind (Debian package `valgrind`) and a Redis (its
own redis-server on a free port unless --redis-url or REDIS_URL is given). About 20 s per variant.
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
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.redis_server import RedisServer

# name: (store, metrics on, keys)
VARIANTS = {
    "bare": ("none", True, "none"),
    "fresh key": ("redis", True, "fresh"),
    "fresh key, metrics off": ("redis", False, "fresh"),
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
        if mode == "none":
            return [None] * count
        if mode == "one":
            return [f"replay-{run}".encode()] * count
        return [f"{run}-{batch}-{i}".encode() for i in range(count)]

    await client(app, keys("first", 1))  # a replay needs its key completed first
    await asyncio.gather(*(client(app, keys(f"warm{c}", 50)) for c in range(CONCURRENCY)))
    switch = ["callgrind_control", "--instr"]
    subprocess.run([*switch, "on", str(os.getpid())], check=True, capture_output=True)
    await asyncio.gather(*(client(app, keys(f"run{c}", requests // CONCURRENCY)) for c in range(CONCURRENCY)))
    subprocess.run([*switch, "off", str(os.getpid())], check=True, capture_output=True)


def count(variant: str, requests: int, redis_url: str) -> float:
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, __file__, "--child", variant, "--requests", str(requests), "--redis-url", redis_url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run of {variant!r} failed:\n{done.stderr[-3000:]}")
    return int(found.group(1)) / (requests // CONCURRENCY * CONCURRENCY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
        counts = {variant: count(variant, args.requests, url) for variant in VARIANTS}
    finally:
        if server is not None:
            server.close()
    print(f"instructions per request (callgrind, in process, {args.requests} requests each):")
    for variant, n in counts.items():
        print(f"  {variant:<24} {n / 1000:8.1f} k  ({n / counts['bare']:.2f}x bare)")
    for kind in ("fresh key", "replay"):
        on, off = counts[kind], counts[f"{kind}, metrics off"]
        print(f"  metrics cost, {kind}: {(on - off) / 1000:.1f} k instructions, {on / off - 1:+.1%}")


if __name__ == "__main__":
    main()
