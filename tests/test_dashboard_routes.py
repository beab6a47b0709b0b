"""Every dashboard page, fragment and action, in process (httpx ASGI transport), with auth, CSRF and read-only."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, HTTPException
from prometheus_client import CollectorRegistry

from dashboard import create_dashboard
from middleware import MemoryStore, RequestInfo, Store, StoredResponse

pytestmark = pytest.mark.anyio
HOSTILE = "<script>alert(1)</script>"


async def put(
    store: Store, key: str, *, status: int | None = 201, body: bytes = b'{"id": 1}',
    headers: list[tuple[bytes, bytes]] | None = None, route: str = "/orders", lease_ms: int = 30_000,
) -> str:  # fmt: skip
    req = RequestInfo("anonymous", "POST", route, key, route, "f" * 32)
    record_key = store.record_key(req)
    claim = await store.claim(record_key, req, lease_ms)
    if status is not None:
        response = StoredResponse(status, headers or [(b"content-type", b"application/json")], body, True, len(body))
        await store.complete(record_key, claim.token, response, 3_600_000)
    return record_key


class UI:
    """A browser-like client: keeps the CSRF cookie and sends the token header like htmx does."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.csrf = ""

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        response = await self.client.get(url, **kw)
        match = re.search(r'"X-CSRF-Token": "([0-9a-f]{32})"', response.text)
        if match:
            self.csrf = match.group(1)
        return response

    async def post(self, url: str, data: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        hdrs = {"HX-Request": "true", "Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}
        hdrs["X-CSRF-Token"] = self.csrf
        hdrs.update(headers or {})
        return await self.client.post(url, data=data, headers=hdrs)


@pytest.fixture
async def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


async def ui_for(app: Any, **kw: Any) -> UI:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", **kw)
    ui = UI(client)
    await ui.get("/")
    return ui


@pytest.fixture
async def ui(store: MemoryStore, registry: CollectorRegistry) -> AsyncIterator[UI]:
    ui = await ui_for(create_dashboard(store, registry=registry))
    yield ui
    await ui.client.aclose()


# -- pages --


async def test_overview_counts(ui: UI, store: MemoryStore) -> None:
    await put(store, "a", body=b"12345")
    await put(store, "b", status=None)
    page = await ui.get("/")
    assert page.status_code == 200
    assert 'data-testid="count-records">2<' in page.text and 'data-testid="count-locks">1<' in page.text
    fragment = await ui.get("/fragments/overview", headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and "count-completed" in fragment.text


async def test_overview_says_at_least_on_a_bounded_scan(ui: UI, store: MemoryStore) -> None:
    for i in range(1500):
        await put(store, f"k{i}")
    page = await ui.get("/?budget=100")
    assert "at least" in page.text and "lower bounds" in page.text


async def test_keys_page_filters_and_fragments(ui: UI, store: MemoryStore) -> None:
    await put(store, "alpha")
    await put(store, "beta", status=404)
    await put(store, "gamma", status=None)
    full = await ui.get("/keys")
    assert all(k in full.text for k in ("alpha", "beta", "gamma")) and "<html" in full.text
    filtered = await ui.get("/keys?status=4xx", headers={"HX-Request": "true"})
    assert "beta" in filtered.text and "alpha" not in filtered.text and "<html" not in filtered.text
    restored = await ui.get("/keys?key=gam", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert "<html" in restored.text and "gamma" in restored.text and "alpha" not in restored.text
    assert (await ui.get("/keys?state=bogus")).status_code == 400
    assert (await ui.get("/keys?key=" + "x" * 300)).status_code == 400


async def test_scan_more_pages_through(ui: UI, store: MemoryStore) -> None:
    for i in range(30):
        await put(store, f"k{i:02d}")
    first = await ui.get("/keys?size=5&budget=100")
    more = re.search(r'hx-get="([^"]*fragment=rows[^"]*)"', first.text)
    assert more is not None
    url = more.group(1).replace("&amp;", "&").removeprefix("http://testserver")
    seen = set(re.findall(r">(k\d\d)</a>", first.text))
    while True:
        page = await ui.get(url, headers={"HX-Request": "true"})
        assert 'id="scan-more" hx-swap-oob=true' in page.text
        seen |= set(re.findall(r">(k\d\d)</a>", page.text))
        nxt = re.search(r'hx-get="([^"]*fragment=rows[^"]*)"', page.text)
        if nxt is None:
            break
        url = nxt.group(1).replace("&amp;", "&").removeprefix("http://testserver")
    assert seen == {f"k{i:02d}" for i in range(30)}


async def test_inputs_are_clamped(ui: UI, store: MemoryStore) -> None:
    for i in range(250):
        await put(store, f"k{i}")
    page = await ui.get("/keys?size=100000&budget=100000000")
    assert page.status_code == 200 and page.text.count('class="completed"') <= 200 + 1000
    locks = await ui.get("/fragments/locks?interval=0")
    assert 'hx-trigger="every 2s"' in locks.text
    assert 'hx-trigger="every 60s"' in (await ui.get("/fragments/locks?interval=99999")).text
    assert (await ui.get("/keys?size=abc")).status_code == 400


async def test_locks_page_marks_stuck_locks(ui: UI, store: MemoryStore) -> None:
    await put(store, "healthy", status=None)
    req = RequestInfo("anonymous", "POST", "/orders", "dead", "/orders", "f" * 32)
    record_key = store.record_key(req)
    await store.claim(record_key, req, 30_000)
    store._records[record_key]["renewed"] = b"1000"  # last heartbeat long ago: the worker is gone
    page = await ui.get("/locks")
    assert "healthy" in page.text and "dead" in page.text
    stuck_rows = re.findall(r'<tr class="stuck">.*?</tr>', page.text, re.S)
    assert len(stuck_rows) == 1 and "dead" in stuck_rows[0]
    assert 'hx-sync="this:drop"' in page.text


async def test_record_detail(ui: UI, store: MemoryStore) -> None:
    headers = [(b"content-type", b"application/json"), (b"set-cookie", b"session=SECRET"), (b"x-trace", b"t1")]
    record_key = await put(store, "detail", body=b'{"b": [1, 2], "a": "\xc3\xa9"}', headers=headers)
    page = await ui.get("/record", params={"k": record_key})
    assert page.status_code == 200
    assert "SECRET" not in page.text and "masked" in page.text and "t1" in page.text
    assert "&#34;b&#34;: [\n    1," in page.text or '"b": [\n    1,' in page.text  # pretty JSON
    assert "f" * 32 in page.text  # fingerprint
    missing = await ui.get("/record", params={"k": record_key + "x"})
    assert missing.status_code == 404 and "Key not found" in missing.text
    assert (await ui.get("/record", params={"k": "other:{x}:POST:/:k"})).status_code == 400


async def test_binary_and_large_bodies(ui: UI, store: MemoryStore) -> None:
    binary = await put(store, "bin", body=bytes(range(256)), headers=[(b"content-type", b"application/octet-stream")])
    page = await ui.get("/record", params={"k": binary})
    assert "00000000  00 01 02 03" in page.text
    big = await put(store, "big", body=b"x" * 200_000, headers=[(b"content-type", b"text/plain")])
    page = await ui.get("/record", params={"k": big})
    assert "Truncated" in page.text and "download the whole body" in page.text
    download = await ui.get("/record/body", params={"k": big})
    assert download.content == b"x" * 200_000
    assert download.headers["content-type"] == "application/octet-stream"
    assert "attachment" in download.headers["content-disposition"]


async def test_hostile_record_renders_as_text(ui: UI, store: MemoryStore) -> None:
    record_key = await put(
        store, HOSTILE, body=b'<img src=x onerror=alert(1)><script>alert(2)</script>',
        headers=[(b"content-type", b"text/html"), (b"x-evil", b"<script>alert(3)</script>")],
    )  # fmt: skip
    for url, params in (("/keys", {}), ("/record", {"k": record_key}), ("/audit", {})):
        page = await ui.get(url, params=params)
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
    page = await ui.get("/record", params={"k": record_key})
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text


async def test_security_headers_everywhere(ui: UI) -> None:
    for url in ("/", "/keys", "/locks", "/audit", "/record?k=bad", "/static/htmx.min.js"):
        response = await ui.get(url)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"


async def test_htmx_is_served_from_the_package(ui: UI) -> None:
    page = await ui.get("/")
    assert 'src="http://testserver/static/htmx.min.js"' in page.text and "cdn" not in page.text.lower()
    js = await ui.get("/static/htmx.min.js")
    assert js.status_code == 200 and b"htmx" in js.content[:200]
    assert '"allowEval":false' in page.text and '"historyCacheSize":0' in page.text


# -- actions --


async def test_evict(ui: UI, store: MemoryStore, registry: CollectorRegistry) -> None:
    record_key = await put(store, "e1")
    row = await ui.post("/actions/evict", {"k": record_key, "row": "1"})
    assert row.status_code == 200 and '<tr class="gone">' in row.text and "Evicted" in row.text
    assert await store.get(record_key) is None
    again = await ui.post("/actions/evict", {"k": record_key})
    assert "Already gone" in again.text
    assert registry.get_sample_value("idempotency_admin_actions_total", {"action": "evict", "result": "ok"}) == 1
    entries = await store.audit_read()
    assert [(e.action, e.result) for e in entries] == [("evict", "not_found"), ("evict", "ok")]
    assert entries[1].actor.startswith("anonymous@") and entries[1].ttl_before_ms


async def test_release_is_compare_and_delete(ui: UI, store: MemoryStore) -> None:
    req = RequestInfo("anonymous", "POST", "/orders", "lock", "/orders", "f" * 32)
    record_key = store.record_key(req)
    claim = await store.claim(record_key, req, 30_000)
    stale_page = await ui.get("/locks")
    assert claim.token in stale_page.text
    # the request completes between the page load and the click
    await store.complete(record_key, claim.token, StoredResponse(201, [], b"done", True, 4), 60_000)
    refused = await ui.post("/actions/release", {"k": record_key, "token": claim.token, "row": "1"})
    assert "completed a moment ago" in refused.text
    record = await store.get(record_key)
    assert record is not None and record.state == "completed"
    other = await put(store, "lock2", status=None)
    token = (await store.get(other)).token  # type: ignore[union-attr]
    released = await ui.post("/actions/release", {"k": other, "token": token})
    assert "Lock released" in released.text and await store.get(other) is None
    gone = await ui.post("/actions/release", {"k": other, "token": token})
    assert "Nothing to release" in gone.text


async def test_set_ttl(ui: UI, store: MemoryStore) -> None:
    record_key = await put(store, "t1")
    for bad in ("", "-5", "0", "abc", "99999999999", "1.5"):
        response = await ui.post("/actions/ttl", {"k": record_key, "ttl": bad})
        assert response.status_code == 400, bad
    ok = await ui.post("/actions/ttl", {"k": record_key, "ttl": "7200"})
    assert ok.status_code == 200 and "TTL set to 2 h" in ok.text
    record = await store.get(record_key)
    assert record is not None and 7_100_000 < record.pttl_ms <= 7_200_000
    in_flight = await put(store, "t2", status=None)
    assert (await ui.post("/actions/ttl", {"k": in_flight, "ttl": "60"})).status_code == 409
    await store.evict(record_key)
    assert (await ui.post("/actions/ttl", {"k": record_key, "ttl": "60"})).status_code == 404
    entries = await store.audit_read()
    assert entries[-1].ttl_after_ms == 7_200_000 and entries[-1].result == "ok"


async def test_bulk_evict_by_filter_with_preview(ui: UI, store: MemoryStore) -> None:
    for i in range(25):
        await put(store, f"old-{i}", status=404)
    keep = [await put(store, f"keep-{i}") for i in range(5)]
    preview = await ui.post("/actions/bulk-evict/preview", {"status": "4xx"})
    assert "25 key(s) match this filter" in preview.text
    assert len(await store.audit_read()) == 0  # a preview changes nothing
    done = await ui.post("/actions/bulk-evict", {"status": "4xx"})
    assert "Evicted 25 record(s)" in done.text
    assert [await store.get(k) is not None for k in keep] == [True] * 5
    assert (await store.keyspace_stats()).records == 5


async def test_bulk_evict_selected_rows(ui: UI, store: MemoryStore) -> None:
    keys = [await put(store, f"s{i}") for i in range(4)]
    preview = await ui.post("/actions/bulk-evict/preview", {"k": [keys[0], keys[1]]})
    assert "2 key(s) selected" in preview.text
    done = await ui.post("/actions/bulk-evict", {"k": [keys[0], keys[1]]})
    assert "Evicted 2 record(s)" in done.text
    assert (await store.keyspace_stats()).records == 2
    outside = await ui.post("/actions/bulk-evict", {"k": ["somebody-else:{x}:POST:/:k"]})
    assert outside.status_code == 400


# -- CSRF, read-only, auth --


@pytest.mark.parametrize(
    "headers",
    [
        {"X-CSRF-Token": ""},
        {"X-CSRF-Token": "0" * 32},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://evil.example"},
    ],
)
async def test_csrf_and_origin_checks(ui: UI, store: MemoryStore, headers: dict[str, str]) -> None:
    record_key = await put(store, "c1")
    response = await ui.post("/actions/evict", {"k": record_key}, headers)
    assert response.status_code == 403
    assert await store.get(record_key) is not None


async def test_no_mutation_on_get(ui: UI, store: MemoryStore) -> None:
    record_key = await put(store, "g1")
    for url in ("/actions/evict", "/actions/release", "/actions/ttl", "/actions/bulk-evict"):
        assert (await ui.get(url, params={"k": record_key})).status_code == 405
    assert await store.get(record_key) is not None


async def test_read_only_hides_and_refuses(store: MemoryStore) -> None:
    record_key = await put(store, "ro")
    ui = await ui_for(create_dashboard(store, read_only=True, registry=CollectorRegistry()))
    for url, params in (("/keys", {}), ("/record", {"k": record_key}), ("/locks", {})):
        page = await ui.get(url, params=params)
        assert "read-only" in page.text and "/actions/" not in page.text
    for url in ("/actions/evict", "/actions/ttl", "/actions/bulk-evict", "/actions/release"):
        response = await ui.post(url, {"k": record_key, "ttl": "60"})
        assert response.status_code == 403 and "read-only" in response.text
    assert await store.get(record_key) is not None
    await ui.client.aclose()


async def test_token_auth(store: MemoryStore) -> None:
    app = create_dashboard(store, token="s3cret-token-0123456789", registry=CollectorRegistry())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        missing = await client.get("/")
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Basic")
        assert (await client.get("/", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await client.get("/", headers={"Authorization": "Bearer s3cret-token-0123456789"})).status_code == 200
        basic = base64.b64encode(b"alice:s3cret-token-0123456789").decode()
        assert (await client.get("/keys", headers={"Authorization": f"Basic {basic}"})).status_code == 200
        assert (await client.get("/", headers={"Authorization": "Basic !!notbase64"})).status_code == 401
    with pytest.raises(ValueError):
        create_dashboard(store, token="short")


async def test_audit_names_the_basic_auth_user(store: MemoryStore) -> None:
    app = create_dashboard(store, token="s3cret-token-0123456789", registry=CollectorRegistry())
    basic = base64.b64encode(b"alice:s3cret-token-0123456789").decode()
    ui = await ui_for(app, headers={"Authorization": f"Basic {basic}"})
    record_key = await put(store, "who")
    assert (await ui.post("/actions/evict", {"k": record_key})).status_code == 200
    assert (await store.audit_read())[0].actor == "alice"
    await ui.client.aclose()


async def test_host_app_dependency_guards_every_page(store: MemoryStore) -> None:
    def host_auth() -> None:
        raise HTTPException(403, "host says no")

    app = create_dashboard(store, dependencies=[Depends(host_auth)], registry=CollectorRegistry())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        for url in ("/", "/keys", "/locks", "/audit", "/record?k=x"):
            response = await client.get(url)
            assert response.status_code == 403 and "host says no" in response.text


async def test_mounted_in_a_host_app(store: MemoryStore) -> None:
    from fastapi import FastAPI

    host = FastAPI()
    host.mount("/idempotency", create_dashboard(store, registry=CollectorRegistry()))
    record_key = await put(store, "mounted")
    ui = UI(httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url="http://testserver"))
    page = await ui.get("/idempotency/keys")
    assert page.status_code == 200 and 'href="http://testserver/idempotency/record?k=' in page.text
    assert 'src="http://testserver/idempotency/static/htmx.min.js"' in page.text
    assert (await ui.post("/idempotency/actions/evict", {"k": record_key})).status_code == 200
    await ui.client.aclose()


async def test_overview_charts_rates_from_prometheus(store: MemoryStore) -> None:
    """--prometheus-url: the chart comes from query_range (a stub Prometheus on loopback), errors stay in place."""
    import json as _json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    queries: list[str] = []

    class Stub(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            queries.append(self.path)
            values = [[1_800_000_000 + 30 * i, str(i / 10)] for i in range(5)]
            body = _json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [{"values": values}]}})
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        ui = await ui_for(create_dashboard(store, prometheus_url=url, registry=CollectorRegistry()))
        page = await ui.get("/")
        assert f"from Prometheus at {url}" in page.text
        assert page.text.count("<polyline") == 3 and "replayed 0.40/s" in page.text
        assert any("query_range" in q and "outcome%3D%22replayed%22" in q for q in queries)
        await ui.client.aclose()
    finally:
        server.shutdown()
        server.server_close()
    down = await ui_for(create_dashboard(store, prometheus_url="http://127.0.0.1:1", registry=CollectorRegistry()))
    page = await down.get("/")
    assert page.status_code == 200 and "Prometheus query failed" in page.text
    await down.client.aclose()
