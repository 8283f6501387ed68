"""Swagger UI and GraphiQL work with no internet: headless Chromium, every request outside
loopback sent to a dead proxy, and the pages must still render (DOM and screenshot).

Chromium is Debian's package (`chromium`); .ci/run installs it when it is missing.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import httpx
import msgspec
import pytest

from service.api.docs import ASSETS_PATH, GRAPHIQL_DOCUMENT, graphiql_html
from tests.conftest import served

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Loopback bypasses a proxy by default; everything else goes to port 9 (discard) and fails.
OFFLINE = ["--proxy-server=127.0.0.1:9", "--disable-quic", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run", "--no-default-browser-check", "--disable-domain-reliability"]


async def _chromium(tmp: Path, url: str, *args: str) -> str:
    assert CHROMIUM, "Chromium is missing: apt-get install chromium (.ci/run does)"
    process = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}",
        *OFFLINE, "--virtual-time-budget=20000", "--window-size=1280,900", *args, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()[-2000:]
    return out.decode()


async def _render(tmp_path: Path, url: str, name: str) -> tuple[str, Path, set[str]]:
    """The page's DOM after its scripts ran, a screenshot, and every URL the browser asked for."""
    net_log = tmp_path / f"{name}-net.json"
    dom = await _chromium(tmp_path, url, "--dump-dom", f"--log-net-log={net_log}")
    shot = tmp_path / f"{name}.png"
    await _chromium(tmp_path, url, f"--screenshot={shot}")
    return dom, shot, _page_requests(json.loads(net_log.read_text()))


# Network traffic annotations (Chromium's tags for why a request is made) of what a page loads:
# its navigation, its subresources and fetch() calls, its favicon. The browser's own background
# traffic (update checks, account probes) carries other tags and is not the page's doing.
PAGE_TRAFFIC = {63171670: "navigation_url_loader", 101845102: "blink_resource_loader", 112189210: "favicon_loader"}


def _page_requests(net_log: dict) -> set[tuple[str, str]]:
    """(why, url) of every request the page made."""
    requests = set()
    for event in net_log["events"]:
        params = event.get("params") or {}
        if "url" in params and params.get("traffic_annotation") in PAGE_TRAFFIC:
            requests.add((PAGE_TRAFFIC[params["traffic_annotation"]], params["url"]))
    return requests


def _external(requests: set[tuple[str, str]]) -> set[str]:
    return {u for _, u in requests if not re.match(r"^(https?|wss?)://127\.0\.0\.1[:/]|^(data|blob|chrome|about):", u)}


@pytest.fixture
async def base_url(settings):
    async with served(msgspec.structs.replace(settings, env="development")) as base:
        yield base


async def test_swagger_ui_renders_offline(base_url, tmp_path):
    dom, shot, requested = await _render(tmp_path, f"{base_url}/docs", "swagger")
    assert 'class="swagger-ui"' in dom and "opblock" in dom  # the operations were drawn from openapi.json
    assert "/api/v1/auth/login" in dom
    assert _external(requested) == set()
    assert ("blink_resource_loader", f"{base_url}{ASSETS_PATH}/swagger-ui/swagger-ui-bundle.js") in requested
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one


async def test_graphiql_renders_offline_with_the_auth_hint(base_url, tmp_path):
    dom, shot, requested = await _render(tmp_path, f"{base_url}/graphql", "graphiql")
    assert "graphiql-container" in dom and "graphiql-editor" in dom
    assert "Authorization" in dom and "Login" in dom  # the default document, drawn by the editor
    assert _external(requested) == set()
    assert ("blink_resource_loader", f"{base_url}/graphql") in requested  # the page's fetcher asked for the schema
    assert shot.stat().st_size > 20_000


async def test_pages_name_no_other_host(base_url):
    async with httpx.AsyncClient(base_url=base_url) as http:
        pages = [(await http.get("/docs")).text, (await http.get("/graphql", headers={"Accept": "text/html"})).text]
        assets = re.findall(r'(?:src|href)=["\'](/[^"\']+)["\']', "".join(pages))
        assert assets and [(await http.get(a)).status_code for a in assets] == [200] * len(assets)
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", "".join(pages))
    assert "Authorization" in GRAPHIQL_DOCUMENT and GRAPHIQL_DOCUMENT.splitlines()[0] in graphiql_html().replace("\\n", "\n")
