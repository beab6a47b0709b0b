"""The benchmark suite: every scenario against a freshly started uvicorn app, one after another.

    python bench/run.py [--duration 10] [--rounds 3] [--connections 32] [--only "bare|fresh key"] [--smoke]
                        [--chart docs/bench.png]

Starts a redis-server on a free port unless REDIS_URL is set, drives load with wrk (Debian package `wrk`) when it
is installed, else with a bounded async load generator, and prints a table: requests/s, p50, p99, ratio to the
bare app of the same body size in the same round, Redis round trips per request (counted by the store), Redis
commands per request (INFO commandstats deltas, commands run inside scripts included) and server CPU time per
request; each the median over the rounds. Writes bench/results/<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer  # noqa: E402
from tests.uvicorn_server import UvicornServer  # noqa: E402

BODY = json.dumps({"sku": "tea", "quantity": 2})


@dataclass(frozen=True)
class Scenario:
    name: str
    store: str  # none | redis | memory | noop | noop-wait, or a peer's PyPI name (--peers)
    key: str  # none | fresh | one
    body_size: int = 0
    metrics: bool = True
    pipelined: bool = True  # the auto-pipelined hot path (False: redis-py for every call)
    setup: str = ""  # "": none; "complete": store the key first; "hold": keep it in flight; "other": other payload


SCENARIOS = [
    Scenario("bare", "none", "none"),
    Scenario("no key", "redis", "none"),
    Scenario("fresh key", "redis", "fresh"),
    Scenario("replay", "redis", "one", setup="complete"),
    Scenario("conflict", "redis", "one", setup="hold"),
    Scenario("mismatch", "redis", "one", setup="other"),
    Scenario("fresh key, metrics off", "redis", "fresh", metrics=False),
    Scenario("replay, metrics off", "redis", "one", metrics=False, setup="complete"),
    Scenario("fresh key, redis-py path", "redis", "fresh", pipelined=False),
    Scenario("replay, redis-py path", "redis", "one", pipelined=False, setup="complete"),
    Scenario("fresh key, MemoryStore", "memory", "fresh"),
    Scenario("replay, MemoryStore", "memory", "one", setup="complete"),
    Scenario("bare 10 KB", "none", "none", body_size=10_000),
    Scenario("fresh key 10 KB", "redis", "fresh", body_size=10_000),
    Scenario("replay 10 KB", "redis", "one", body_size=10_000, setup="complete"),
    Scenario("bare 1 MB", "none", "none", body_size=1_000_000),
    Scenario("fresh key 1 MB", "redis", "fresh", body_size=1_000_000),
    Scenario("replay 1 MB", "redis", "one", body_size=1_000_000, setup="complete"),
]

# Diagnostics, run by --only (and by --smoke): the middleware over a store that does no work, claiming every key at
# once and storing nothing (its own cost without a store's), and over one that also waits a loop turn per call.
DIAGNOSTIC_SCENARIOS = [
    Scenario("fresh key, no store work", "noop", "fresh"),
    Scenario("fresh key, store waits a turn", "noop-wait", "fresh"),
]

# Other idempotency middlewares on PyPI, wired in bench/app.py with their documented defaults and Redis backends
# (pip install -e '.[bench,peers]'); --peers runs the middleware scenarios for each of them too.
PEERS = ["asgi-idempotency-header", "fastapi-idempotency-key"]
PEER_MODULES = {
    "asgi-idempotency-header": "idempotency_header_middleware",
    "fastapi-idempotency-key": "fastapi_idempotency_key",
}
PEER_SCENARIOS = [
    Scenario(f"{peer}: {name}", peer, key, setup=setup)
    for peer in PEERS
    for name, key, setup in (
        ("fresh key", "fresh", ""),
        ("replay", "one", "complete"),
        ("conflict", "one", "hold"),
        ("mismatch", "one", "other"),
    )
]

WRK_SCRIPT = """
local counter = 0
local thread_id = 0
local mode = "%(mode)s"
local key = "%(key)s"  -- fresh mode: a prefix unique to this run (wrk's math.random repeats across runs)
setup = function(thread)
  thread:set("thread_id", tostring(math.random(1, 1e9)))
end
init = function(args)
  thread_id = wrk.thread:get("thread_id")
end
request = function()
  local headers = {["Content-Type"] = "application/json"}
  if mode == "fresh" then
    counter = counter + 1
    headers["Idempotency-Key"] = key .. "-" .. thread_id .. "-" .. counter
  elseif mode == "one" then
    headers["Idempotency-Key"] = key
  end
  return wrk.format("POST", "/orders", headers, %(body)s)
end
"""


@dataclass
class Row:
    scenario: str
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    ratio: float
    round_trips: float
    redis_commands: float
    cpu_us: float
    statuses: dict[str, int]
    driver: str


def median_row(rows: list[Row]) -> Row:
    """One scenario over all rounds: the median of each figure (ratios are taken within each round, against that
    round's bare app, so machine noise between rounds cancels out), request and status counts summed."""

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    statuses: dict[str, int] = {}
    for row in rows:
        for code, count in row.statuses.items():
            statuses[code] = statuses.get(code, 0) + count
    return Row(
        rows[0].scenario, sum(r.requests for r in rows), median([r.rps for r in rows]),
        median([r.p50_ms for r in rows]), median([r.p99_ms for r in rows]), median([r.ratio for r in rows]),
        median([r.round_trips for r in rows]), median([r.redis_commands for r in rows]),
        median([r.cpu_us for r in rows]), statuses, rows[0].driver,
    )  # fmt: skip


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def commandstats(client: redis.Redis) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in client.info("commandstats").items()}


def wrk_run(
    url: str, scenario: Scenario, key: str, body: str, duration: float, connections: int
) -> tuple[int, float, float, float, dict[str, int]]:
    script = WRK_SCRIPT % {"mode": scenario.key, "key": key, "body": json.dumps(body)}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + "\n" + WRK_DONE)
    try:
        seconds = f"-d{max(1, round(duration))}s"
        command = ["wrk", "-t2", f"-c{connections}", seconds, "--latency", "-s", f.name, url + "/orders"]
        out = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60).stdout
    finally:
        os.unlink(f.name)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _latency_ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    p99 = _latency_ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    statuses = json.loads(re.search(r"STATUSES (\{.*\})", out).group(1))  # type: ignore[union-attr]
    return requests, rps, p50, p99, statuses


# response() counts statuses in each thread's own Lua state; done() collects them from every thread.
WRK_DONE = """
local threads = {}
local base_setup = setup
setup = function(thread)
  base_setup(thread)
  table.insert(threads, thread)
end
statuses = {}  -- a global: done() reads it from each thread
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then for code, n in pairs(s) do all[code] = (all[code] or 0) + n end end
  end
  local parts = {}
  for code, n in pairs(all) do table.insert(parts, '"' .. code .. '":' .. n) end
  io.write("STATUSES {" .. table.concat(parts, ",") .. "}\\n")
end
"""


def _latency_ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


async def async_run(
    url: str, scenario: Scenario, key: str, body: str, duration: float, connections: int
) -> tuple[int, float, float, float, dict[str, int]]:
    """The fallback driver: `connections` workers in one process, bounded by time and by count."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    deadline = time.monotonic() + duration
    limit = 200_000
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker(w: int) -> None:
            n = 0
            while time.monotonic() < deadline and len(latencies) < limit:
                n += 1
                headers = {"content-type": "application/json"}
                if scenario.key == "fresh":
                    headers["idempotency-key"] = f"a-{w}-{n}-{uuid.uuid4().hex[:6]}"
                elif scenario.key == "one":
                    headers["idempotency-key"] = key
                started = time.perf_counter()
                reply = await client.post("/orders", content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                statuses[str(reply.status_code)] = statuses.get(str(reply.status_code), 0) + 1

        started = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(connections)))
        elapsed = time.monotonic() - started
    latencies.sort()

    def pick(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return len(latencies), len(latencies) / elapsed, pick(0.50), pick(0.99), statuses


def store_round_trips(url: str) -> int:
    """The app's RedisStore.round_trips (0 without one), from bench/app.py."""
    return int(httpx.get(url + "/bench/round-trips", timeout=30).json()["round_trips"])  # -1: a peer (not counted)


def prepare(url: str, scenario: Scenario, key: str) -> None:
    headers = {"content-type": "application/json", "idempotency-key": key}
    with httpx.Client(base_url=url, timeout=30) as client:
        if scenario.setup == "complete":
            assert client.post("/orders", content=BODY, headers=headers).status_code == 201
        elif scenario.setup == "other":
            other = json.dumps({"sku": "other", "quantity": 9})
            assert client.post("/orders", content=other, headers=headers).status_code == 201
        elif scenario.setup == "hold":
            # leave it running in the server: the key stays in flight for the whole run
            with contextlib.suppress(httpx.TimeoutException):
                client.post("/orders", content=BODY, headers={**headers, "x-hold": "600"}, timeout=0.5)


def run_scenario(scenario: Scenario, redis_url: str, duration: float, connections: int, driver: str) -> Row:
    env = {
        "BENCH_STORE": scenario.store, "BENCH_METRICS": "1" if scenario.metrics else "0",
        "BENCH_BODY": str(scenario.body_size), "REDIS_URL": redis_url,
        "BENCH_PIPELINED": "1" if scenario.pipelined else "0",
    }  # fmt: skip
    server = UvicornServer("bench.app:create_app", env=env, extra_args=["--no-access-log"])
    probe = redis.Redis.from_url(redis_url)
    try:
        key = f"bench-{uuid.uuid4().hex}"
        prepare(server.url, scenario, key)
        time.sleep(0.2)
        before_cmd, before_cpu = commandstats(probe), cpu_seconds(server.process.pid)
        before_trips = store_round_trips(server.url)
        if driver == "wrk":
            requests, rps, p50, p99, statuses = wrk_run(server.url, scenario, key, BODY, duration, connections)
        else:
            requests, rps, p50, p99, statuses = asyncio.run(
                async_run(server.url, scenario, key, BODY, duration, connections)
            )
        cpu = cpu_seconds(server.process.pid) - before_cpu
        after = commandstats(probe)
        after["info"] = after.get("info", 0) - 1
        delta = {k: n - before_cmd.get(k, 0) for k, n in after.items() if n - before_cmd.get(k, 0) > 0}
        trips = store_round_trips(server.url) - before_trips if before_trips >= 0 else float("nan")
        total = sum(delta.values())
    finally:
        server.stop()
        probe.close()
    served = max(1, sum(statuses.values()))
    return Row(scenario.name, requests, rps, p50, p99, 0.0, trips / served, total / served, cpu / served * 1e6,
               statuses, driver)  # fmt: skip


async def record_overhead(redis_url: str) -> dict[str, int]:
    """MEMORY USAGE of one completed record (a typical POST /orders with a 98-byte JSON body, the scope and the
    fingerprint as the middleware makes them), less the body; and the mean over bodies of 1 to 2,000 bytes, which
    averages out the allocator's size classes."""
    from middleware import RedisStore, RequestInfo, StoredResponse

    store = RedisStore.from_url(redis_url, prefix="idemscope")
    body = b'{"id":"ord_8e03978e40d543e8","sku":"tea","quantity":2,"status":"created","total":1250,"cur":"eur"}'
    request = RequestInfo(
        "auth:" + "a" * 16, "POST", "/orders", "8e03978e-40d5-43e8-bc93-6894a57f9324", "/orders", "f" * 32
    )
    key = store.record_key(request)

    async def usage(body: bytes) -> int:
        claim = await store.claim(key, request, 30_000)
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        await store.complete(key, claim.token, StoredResponse(201, headers, body, True, len(body)), 86_400_000)
        used = int(await store.client.memory_usage(key) or 0)
        await store.evict(key)
        return used

    typical = await usage(body)
    sizes = range(1, 2001, 7)
    overheads = [await usage(b"x" * size) - size for size in sizes]
    await store.close()
    return {
        "memory_usage_bytes": typical,
        "body_bytes": len(body),
        "overhead_bytes": typical - len(body),
        "mean_overhead_bytes_1_to_2000": round(sum(overheads) / len(overheads)),
        "max_overhead_bytes_1_to_2000": max(overheads),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=3, help="run every scenario this many times, in turn; report medians"
    )
    parser.add_argument("--only", help='scenario names separated by |, e.g. "bare|fresh key"')
    parser.add_argument("--smoke", action="store_true", help="a few seconds in all: 1 s per scenario, small bodies")
    parser.add_argument("--peers", action="store_true", help=f"also run {', '.join(PEERS)} (extra 'peers')")
    parser.add_argument("--driver", choices=["auto", "wrk", "async"], default="auto")
    parser.add_argument("--chart", help="write a PNG chart here (needs matplotlib)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    driver = args.driver if args.driver != "auto" else ("wrk" if shutil.which("wrk") else "async")
    scenarios = list(SCENARIOS)
    if args.peers:
        missing = [peer for peer in PEERS if importlib.util.find_spec(PEER_MODULES[peer]) is None]
        if missing:
            parser.error(f"--peers needs {', '.join(missing)}: pip install -e '.[bench,peers]'")
        scenarios = scenarios + PEER_SCENARIOS
    if args.smoke:
        args.duration, args.rounds = 1.0, 1
        scenarios = [s for s in scenarios + DIAGNOSTIC_SCENARIOS if s.body_size < 1_000_000]
    if args.only:
        wanted = {name.strip() for name in args.only.split("|")}
        scenarios = [s for s in scenarios + DIAGNOSTIC_SCENARIOS if s.name in wanted]
    redis_server = None if os.environ.get("REDIS_URL") else RedisServer()
    redis_url = os.environ.get("REDIS_URL") or (redis_server.url if redis_server else "")
    rounds: list[list[Row]] = []
    try:
        for n in range(args.rounds):
            rows = []
            for scenario in scenarios:
                rows.append(run_scenario(scenario, redis_url, args.duration, args.connections, driver))
                print(f"  round {n + 1}, {scenario.name}: {rows[-1].rps:.0f} req/s", file=sys.stderr)
            bare = {s.body_size: r.rps for s, r in zip(scenarios, rows, strict=True) if s.store == "none"}
            for scenario, row in zip(scenarios, rows, strict=True):
                row.ratio = row.rps / bare[scenario.body_size] if bare.get(scenario.body_size) else float("nan")
            rounds.append(rows)
        overhead = asyncio.run(record_overhead(redis_url))
    finally:
        if redis_server is not None:
            redis_server.close()
    rows = [median_row(list(same)) for same in zip(*rounds, strict=True)]
    print_table(rows, driver, args)
    print(
        f"stored record: MEMORY USAGE {overhead['memory_usage_bytes']} B for a {overhead['body_bytes']} B body:"
        f" {overhead['overhead_bytes']} B beyond the body (bodies of 1-2,000 B: mean"
        f" {overhead['mean_overhead_bytes_1_to_2000']} B, max {overhead['max_overhead_bytes_1_to_2000']} B)"
    )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    out = Path(args.out) / f"{stamp}{'-smoke' if args.smoke else ''}.json"
    meta = {
        "driver": driver, "duration_s": args.duration, "rounds": args.rounds, "connections": args.connections,
        "cpus": os.cpu_count(), "python": sys.version.split()[0], "record": overhead,
    }  # fmt: skip
    every_round = [[asdict(r) for r in rows] for rows in rounds]
    out.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows], "rounds": every_round}, indent=2))
    print(f"written {out}", file=sys.stderr)
    if args.chart:
        chart(rows, Path(args.chart))


def print_table(rows: list[Row], driver: str, args: argparse.Namespace) -> None:
    print(
        f"driver {driver}, {args.connections} connections, {args.duration:.0f} s per scenario and round,"
        f" medians of {args.rounds} round(s), {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    head = (
        f"{'scenario':<36} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6} {'RTT/req':>8} {'cmds/req':>9}"
        f" {'CPU us/req':>11}  statuses"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(r.statuses.items()))
        print(
            f"{r.scenario:<36} {r.rps:>8.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.ratio:>6.2f} {r.round_trips:>8.2f}"
            f" {r.redis_commands:>9.2f} {r.cpu_us:>11.0f}  {statuses}"
        )


def chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3 + 0.25 * len(rows)))
    names = [r.scenario for r in rows]
    ratios = [r.ratio for r in rows]
    peers = tuple(f"{peer}:" for peer in PEERS)
    colors = [
        "#7a8699" if r.scenario.startswith("bare") else "#c2410c" if r.scenario.startswith(peers) else "#2454c5"
        for r in rows
    ]
    ax.barh(names, ratios, color=colors)
    ax.axvline(1.0, color="#111827", linewidth=1)
    ax.set_xlabel("requests/s relative to the bare app (same body size, same run)")
    ax.invert_yaxis()
    for i, r in enumerate(rows):
        ax.text(r.ratio + 0.01, i, f"{r.rps:.0f}/s  p99 {r.p99_ms:.1f} ms", va="center", fontsize=8)
    ax.set_title("idemscope middleware overhead (uvicorn, 1 worker, Redis on loopback, wrk -t2 -c32)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
