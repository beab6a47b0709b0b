"""A wheel built from the repo carries the templates, htmx and the Lua scripts, and serves the dashboard."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHECK = """
import asyncio, sys
import dashboard, middleware
assert dashboard.__file__.startswith(sys.argv[1]), dashboard.__file__
assert middleware.__file__.startswith(sys.argv[1]), middleware.__file__
import httpx
from dashboard import create_dashboard
from middleware import MemoryStore, RequestInfo

async def main():
    store = MemoryStore()
    req = RequestInfo("s", "POST", "/orders", "wheel-key", "/orders", "f")
    await store.claim(store.record_key(req), req, 30000)
    app = create_dashboard(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for url in ("/", "/keys", "/locks", "/audit", "/static/htmx.min.js", "/static/dashboard.css"):
            response = await client.get(url)
            print(url, response.status_code, len(response.content))
            assert response.status_code == 200, (url, response.text[:300])
        assert "wheel-key" in (await client.get("/keys")).text

asyncio.run(main())
print("wheel ok")
"""


def test_wheel_serves_the_dashboard(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        timeout=300,
    )
    wheel = next((tmp_path / "dist").glob("idemscope-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for expected in (
        "dashboard/templates/idemscope/base.html",
        "dashboard/static/htmx.min.js",
        "middleware/scripts/complete.lua",
        "middleware/py.typed",
        "dashboard/py.typed",
    ):
        assert expected in names, expected
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "idemscope = dashboard.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        timeout=300,
    )
    # Run from an empty folder with the wheel's copy first on the path, so nothing comes from the checkout.
    out = subprocess.run(
        [sys.executable, "-c", CHECK, str(site)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "wheel ok" in out.stdout
