"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real uvicorn server and a
real Redis: filter, open, evict, change a TTL, release a running request's lock, and hostile data stays text.

IDEMSCOPE_SCREENSHOT=docs/dashboard.png makes the keys test save the README's screenshot there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.conftest import need_tool
from tests.redis_server import RedisServer
from tests.uvicorn_server import UvicornServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture
def server(own_redis: RedisServer) -> Iterator[UvicornServer]:
    srv = UvicornServer("tests.orders_app:app_from_env", env={"REDIS_URL": own_redis.url})
    yield srv
    srv.stop()


@pytest.fixture
async def page(server: UvicornServer) -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:  # pragma: no cover - the test extras install it
        need_tool(exc)
    if not os.path.exists(CHROMIUM) and not shutil.which("chromium"):
        need_tool(FileNotFoundError("chromium is not installed (Debian/Ubuntu: apt-get install chromium)"))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(viewport={"width": 1280, "height": 800}, base_url=server.url)
        pg = await context.new_page()
        pg.set_default_timeout(10_000)
        errors: list[str] = []
        dialogs: list[str] = []

        def page_error(exc: Any) -> None:
            errors.append(str(exc))

        async def accept(dialog: Any) -> None:
            dialogs.append(dialog.message)
            await dialog.accept()

        pg.on("pageerror", page_error)
        pg.on("dialog", accept)
        pg.dialogs = dialogs  # type: ignore[attr-defined]
        yield pg
        assert errors == []  # no JavaScript error on any page
        await browser.close()


async def post(
    server: UvicornServer, key: str, body: Any = None, path: str = "/orders", **headers: str
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        return await client.post(
            path, json=body if body is not None else {"n": 1}, headers={"Idempotency-Key": key, **headers}
        )


async def test_keys_filter_and_record(server: UvicornServer, page: Any) -> None:
    for key in ("alpha-1", "alpha-2", "beta-1"):
        await post(server, key, {"item": key, "nested": {"qty": 2}})
    await post(server, "missing-1", path="/conflict-404")
    await page.goto("/idempotency/keys")
    from playwright.async_api import expect

    rows = page.locator("#keys-tbody tr")
    await rows.first.wait_for()
    assert await rows.count() == 4
    await page.fill("input[name=key]", "alpha")
    await page.wait_for_url("**key=alpha**")
    await expect(rows).to_have_count(2)
    await page.fill("input[name=key]", "")
    await page.select_option("select[name=status]", "4xx")
    await page.wait_for_url("**status=4xx**")
    await expect(rows).to_have_count(1)
    assert "missing-1" in await page.locator("#keys-tbody").inner_text()
    await page.select_option("select[name=status]", "")
    await expect(rows).to_have_count(4)
    await page.click("text=beta-1")
    await page.wait_for_url("**/record?k=**")
    text = await page.locator("main").inner_text()
    assert "POST" in text and "/orders" in text and "200" in text
    body = await page.locator("[data-testid=body]").inner_text()
    assert '"nested": {\n' in body and '"item": "beta-1"' in body  # pretty-printed JSON


async def test_evict_by_clicking(server: UvicornServer, page: Any, own_redis: RedisServer) -> None:
    await post(server, "doomed")
    await post(server, "kept")
    await page.goto("/idempotency/keys?key=doomed")
    row = page.locator("#keys-tbody tr", has_text="doomed")
    await row.get_by_role("button", name="Evict").click()
    await page.locator("#keys-tbody tr.gone", has_text="Evicted").wait_for()
    assert page.dialogs and "Evict" in page.dialogs[0]
    again = await post(server, "doomed")
    assert "idempotent-replayed" not in again.headers and again.json()["execution"] == 2
    assert (await post(server, "kept")).headers["idempotent-replayed"] == "true"


async def test_change_a_ttl(server: UvicornServer, page: Any, own_redis: RedisServer) -> None:
    await post(server, "ttl-key")
    await page.goto("/idempotency/keys?key=ttl-key")
    await page.click("text=ttl-key")
    await page.fill("input[name=ttl]", "120")
    await page.click("button:has-text('Set TTL')")
    await page.locator("#action-result", has_text="TTL set to 2 min").wait_for()
    client = aioredis.Redis.from_url(own_redis.url)
    keys = [k async for k in client.scan_iter(match="idemscope:*:ttl-key")]
    assert len(keys) == 1 and 100_000 < await client.pttl(keys[0]) <= 120_000
    await client.aclose()


async def test_release_the_lock_of_a_running_request(server: UvicornServer, page: Any) -> None:
    running = asyncio.create_task(post(server, "stuck-one", **{"X-Sleep": "20"}))
    await asyncio.sleep(0.5)
    assert (await post(server, "stuck-one")).status_code == 409
    await page.goto("/idempotency/locks")
    row = page.locator("#locks tr", has_text="stuck-one")
    await row.get_by_role("button", name="Release").click()
    await page.locator("#locks", has_text="Lock released").wait_for()
    retry = await post(server, "stuck-one")  # runs again: the lock is gone
    assert retry.status_code == 200 and "idempotent-replayed" not in retry.headers
    running.cancel()


async def test_hostile_keys_and_bodies_render_as_text(server: UvicornServer, page: Any) -> None:
    script_key = "<script>window.__pwned=1</script>"
    img_key = "<img/src=x/onerror=window.__pwned=2>"
    await post(server, script_key, {"x": "<script>window.__pwned=3</script>"})
    await post(
        server, img_key, {"x": '<img src=x onerror="window.__pwned=4">', "y": "</pre><script>window.__pwned=5</script>"}
    )
    await page.goto("/idempotency/keys")
    await page.locator("#keys-tbody tr").first.wait_for()
    table = await page.locator("#keys-tbody").inner_text()
    assert script_key in table and img_key in table  # shown as text
    for key in (script_key, img_key):
        await page.goto("/idempotency/keys")
        await page.click(f"a:text-is('{key}')")
        await page.wait_for_url("**/record?k=**")
        assert key in await page.locator("h1").inner_text()
        assert "window.__pwned" in await page.locator("[data-testid=body]").inner_text()
    await page.goto("/idempotency/audit")
    await page.goto("/idempotency/")
    assert await page.evaluate("window.__pwned === undefined")
    assert page.dialogs == []


async def test_overview_counts(server: UvicornServer, page: Any) -> None:
    await post(server, "o-1")
    await post(server, "o-2")
    running = asyncio.create_task(post(server, "o-3", **{"X-Sleep": "5"}))
    await asyncio.sleep(0.5)
    await page.goto("/idempotency/")
    assert await page.locator("[data-testid=count-records]").inner_text() == "3"
    assert await page.locator("[data-testid=count-locks]").inner_text() == "1"
    assert await page.locator("[data-testid=count-completed]").inner_text() == "2"
    running.cancel()


async def test_readme_screenshot(server: UvicornServer, page: Any, tmp_path: Any) -> None:
    """The README's picture: a populated keys page (saved to $IDEMSCOPE_SCREENSHOT when set)."""
    for i, sku in enumerate(["tea", "coffee", "cocoa", "matcha", "chai", "mate", "rooibos", "sencha"]):
        await post(server, f"order-7f3a-{i}", {"sku": sku, "quantity": i + 1})
    await post(server, "order-7f3a-2", {"sku": "cocoa", "quantity": 3})  # a replay
    await post(server, "refund-19c2", path="/conflict-404")
    await post(server, "bulk-import-01", path="/text")
    running = asyncio.create_task(post(server, "payout-88e1", **{"X-Sleep": "10"}))
    await asyncio.sleep(0.4)
    await page.goto("/idempotency/keys")
    await page.locator("#keys-tbody tr").first.wait_for()
    await page.wait_for_timeout(1200)  # one TTL countdown tick
    path = os.environ.get("IDEMSCOPE_SCREENSHOT") or str(tmp_path / "dashboard.png")
    await page.screenshot(path=path)
    assert os.path.getsize(path) > 10_000
    running.cancel()
