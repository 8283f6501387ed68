"""The command dashboard in a real browser: Debian's Chromium driven by Playwright (`make e2e`).

qsite serves the demo data on a loopback port; the test logs in as the demo command account,
reads the demo's numbers off the page and checks them against the API, writes through the API
(a feverish check-in), watches the page's own polling bring the new count in, and logs out.
Screenshots of each step go to .artifacts/e2e/ (CI keeps them as artefacts).
"""

from __future__ import annotations

import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from playwright.async_api import Page, async_playwright, expect

from service.access.demo import DEMO_PASSWORD
from service.api.demo import seed_demo
from tests.conftest import ROOT, served

ARTIFACTS = ROOT / ".artifacts" / "e2e"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Anything not on loopback would go to a dead proxy: the page must need nothing from elsewhere.
OFFLINE = ["--no-sandbox", "--proxy-server=127.0.0.1:9", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture
async def base_url(settings):
    # Poll every second so that a change shows within the test's patience.
    settings = msgspec.structs.replace(settings, command_refresh_seconds=1.0)
    assert await seed_demo(settings, only_if_empty=False)
    async with served(settings) as base:
        yield base


async def _api_token(http: httpx.AsyncClient) -> dict[str, str]:
    login = await http.post("/api/v1/auth/login", json={"username": "command", "password": DEMO_PASSWORD})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _figure(page: Page, name: str) -> int:
    return int(await page.locator(f'[data-figure="{name}"]').inner_text())


async def _shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a drawn page, not a blank one
    return path


async def test_log_in_read_the_figures_see_a_write_arrive_and_log_out(base_url, settings):
    assert CHROMIUM, "Chromium is missing: apt-get install chromium (`make e2e` does)"
    async with httpx.AsyncClient(base_url=base_url) as http, async_playwright() as pw:
        headers = await _api_token(http)
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=OFFLINE)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))

            # 1. The dashboard sends a browser without a session to the login form.
            await page.goto(f"{base_url}/command")
            await expect(page).to_have_url(re.compile(r"/command/login$"))
            await page.fill('input[name="username"]', "command")
            await page.fill('input[name="password"]', "not-the-password")
            await page.click('button[type="submit"]')
            await expect(page.get_by_test_id("login-message")).to_have_text("Unknown username or wrong password.")
            await _shot(page, "01-login-refused")
            await page.fill('input[name="password"]', DEMO_PASSWORD)
            await page.click('button[type="submit"]')
            await expect(page).to_have_url(re.compile(r"/command$"))

            # 2. The demo's numbers, as the API tells them (the same roll-up and daily series).
            rollup = (await http.get("/api/v1/command/rollup", headers=headers)).json()
            daily = (await http.get("/api/v1/command/daily", params={"days": 14}, headers=headers)).json()
            assert await _figure(page, "in_quarantine") == rollup["totals"]["occupied_beds"] > 0
            assert await _figure(page, "beds_free") == rollup["totals"]["free_beds"]
            bars = page.locator('svg[data-chart="sites"] g.bar')
            assert await bars.count() == len(rollup["sites"]) == 2
            for site in rollup["sites"]:
                bar = page.locator(f'svg[data-chart="sites"] g.bar[data-label="{site["name"]}"]')
                await expect(bar.locator("text.figure")).to_have_text(f'{site["figures"]["occupied_beds"]} / {site["figures"]["capacity_beds"]}')
            regions = page.locator('svg[data-chart="regions"] g.bar')
            assert await regions.count() >= 3  # the demo tree: city, district, streets
            city = regions.first  # the root holds every site
            assert await city.get_attribute("data-value") == str(rollup["totals"]["occupied_beds"])
            for series in ("admitted", "released", "positives"):
                drawn = await page.locator(f'svg[data-chart="days"] g[data-series="{series}"]').get_attribute("data-values")
                assert drawn == ",".join(str(d[series]) for d in daily["days"])
            assert len(daily["days"]) == 14 and sum(d["admitted"] for d in daily["days"]) > 0  # two weeks of history
            await _shot(page, "02-dashboard")

            # 3. A write through the API reaches the open page by its own polling.
            before = await _figure(page, "open_alerts")
            stay_id = await _active_stay_without_alerts(settings.database_url)
            checkin = {"stay_id": str(stay_id), "recorded_at": datetime.now(UTC).isoformat(), "temperature_c": 39.2, "id": str(uuid.uuid4())}
            made = await http.post("/api/v1/checkins", json=checkin, headers={**headers, "Idempotency-Key": str(uuid.uuid4())})
            assert made.status_code == 201, made.text
            await expect(page.locator('[data-figure="open_alerts"]')).to_have_text(str(before + 1), timeout=15_000)
            await expect(page.get_by_test_id("refresh-status")).to_contain_text("updated")
            await _shot(page, "03-after-a-write")

            # 4. Logging out ends the session: the dashboard is the login form again.
            await page.get_by_test_id("logout").click()
            await expect(page).to_have_url(re.compile(r"/command/login\?m=out$"))
            await expect(page.get_by_test_id("login-message")).to_have_text("You are logged out.")
            await page.goto(f"{base_url}/command")
            await expect(page).to_have_url(re.compile(r"/command/login$"))
            await _shot(page, "04-logged-out")

            elsewhere = [u for u in requested if not u.startswith(base_url)]
            assert elsewhere == [], "the page asked another host"
        finally:
            await browser.close()


async def _active_stay_without_alerts(database_url: str | None) -> uuid.UUID:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(
            "SELECT s.id FROM stays s WHERE s.status = 'active'"
            " AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.stay_id = s.id) ORDER BY s.admitted_at LIMIT 1"
        )
    finally:
        await conn.close()
