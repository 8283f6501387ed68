"""The /command pages without a browser: login, CSRF, logout, session expiry, scope and ETags.

The browser itself (the page's script, the charts as drawn) is tested by `make e2e` (tests/e2e).
"""

from __future__ import annotations

import time
import uuid

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.access.model import Role
from service.app import create_app
from service.command import service as command
from service.command import store
from service.command.rest import CSRF_COOKIE, FORM_EXPIRED, NOT_FOR_ROLE, SESSION_COOKIE
from tests.access.helpers import PASSWORD, make_staff
from tests.command.helpers import csrf_token, figure, log_in, login_form, set_cookie_headers
from tests.conftest import make_principal
from tests.supplies.helpers import make_item, make_site, move

COMMAND = make_principal(Role.COMMAND)


@pytest.fixture
async def chief(db, settings):
    return await make_staff(db, settings, "chief", "command")


async def test_pages_need_a_session(client):
    page = await client.get("/command", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/command/login"
    panels = await client.get("/command/panels")
    assert panels.status_code == 401 and panels.json()["code"] == "session_required"


async def test_login_sets_a_strict_session_cookie_and_shows_the_dashboard(client, chief):
    form = await client.get("/command/login")
    csrf = set_cookie_headers(form)[CSRF_COOKIE]
    assert "HttpOnly" in csrf and "samesite=strict" in csrf.lower() and "Path=/command" in csrf
    answer = await log_in(client, "chief", PASSWORD, token=csrf_token(form.text))
    assert answer.status_code == 303 and answer.headers["location"] == "/command"
    cookie = set_cookie_headers(answer)[SESSION_COOKIE]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/command" in cookie
    assert "Secure" not in cookie  # QSITE_ENV=test over plain HTTP; production sets it (next test)
    page = await client.get("/command")
    assert page.status_code == 200 and "Chief" in page.text and 'data-figure="in_quarantine"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # With a live session the login form sends the browser on to the dashboard.
    assert (await client.get("/command/login", follow_redirects=False)).headers["location"] == "/command"


async def test_cookies_are_secure_when_configured(settings, db, chief):
    async with AsyncTestClient(app=create_app(msgspec.structs.replace(settings, command_cookie_secure=True))) as client:
        form = await client.get("/command/login")
        assert "Secure" in set_cookie_headers(form)[CSRF_COOKIE]
        # httpx keeps a Secure cookie off plain HTTP: hand the token over as a browser on HTTPS would.
        token = csrf_token(form.text)
        answer = await client.post(
            "/command/login",
            data={"username": "chief", "password": PASSWORD, "_csrf_token": token},
            headers={"Cookie": f"{CSRF_COOKIE}={token}"},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        assert "Secure" in set_cookie_headers(answer)[SESSION_COOKIE]


async def test_wrong_credentials_get_one_answer_whatever_was_wrong(client, db, settings, chief):
    await make_staff(db, settings, "gone", "command")
    async with db.connection() as conn:
        await conn.execute("UPDATE staff SET active = false WHERE username = 'gone'")
    answers = [await log_in(client, name, password) for name, password in (("chief", "wrong-password"), ("nobody", PASSWORD), ("gone", PASSWORD))]
    assert [a.status_code for a in answers] == [401, 401, 401]
    messages = {a.text.split('data-testid="login-message">')[1].split("<")[0] for a in answers}
    assert messages == {"Unknown username or wrong password."}
    assert all(SESSION_COOKIE not in set_cookie_headers(a) for a in answers)


async def test_an_account_without_the_dashboard_role_is_refused(client, db, settings):
    site = await make_site(client, _auth(settings))
    await make_staff(db, settings, "keeper", "site_manager", [site])
    answer = await log_in(client, "keeper", PASSWORD)
    assert answer.status_code == 403 and NOT_FOR_ROLE in answer.text
    assert SESSION_COOKIE not in set_cookie_headers(answer)


async def test_login_is_rate_limited(settings, db, chief):
    limited = msgspec.structs.replace(settings, login_attempts_per_minute=2)
    async with AsyncTestClient(app=create_app(limited)) as client:
        codes = [(await log_in(client, "chief", "wrong-password")).status_code for _ in range(3)]
        assert codes == [401, 401, 429]
        refused = await log_in(client, "chief", PASSWORD)  # the right password too, until the window ends
        assert refused.status_code == 429 and "Too many login attempts" in refused.text and refused.headers["retry-after"]


async def test_posts_need_the_csrf_token(client, chief):
    await login_form(client)
    forged = await client.post("/command/login", data={"username": "chief", "password": PASSWORD}, follow_redirects=False)
    assert forged.status_code == 303 and forged.headers["location"] == "/command/login?m=expired"
    assert SESSION_COOKIE not in set_cookie_headers(forged)
    again = await client.get("/command/login?m=expired")
    assert FORM_EXPIRED in again.text
    wrong = await log_in(client, "chief", PASSWORD, token="0" * 128)
    assert wrong.status_code == 303 and wrong.headers["location"] == "/command/login?m=expired"

    assert (await log_in(client, "chief", PASSWORD)).status_code == 303
    page = await client.get("/command")
    logout = await client.post("/command/logout", follow_redirects=False)  # no token: refused, still logged in
    assert logout.status_code == 403 and logout.json()["code"] == "csrf_failed"
    assert (await client.get("/command", follow_redirects=False)).status_code == 200
    done = await client.post("/command/logout", data={"_csrf_token": csrf_token(page.text)}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/command/login?m=out"


async def test_the_api_is_untouched_by_sessions_and_csrf(client, settings, chief):
    """Bearer routes take no CSRF token, a session cookie opens no API route, a token opens no page."""
    created = await client.post("/api/v1/sites", json={"code": "API-1", "name": "API-1"}, headers=_auth(settings)(COMMAND))
    assert created.status_code == 201, created.text
    graphql = await client.post("/graphql", json={"query": "{ apiVersion }"})
    assert graphql.status_code == 200, graphql.text
    await log_in(client, "chief", PASSWORD)
    session = client.cookies.get(SESSION_COOKIE)
    assert session
    api = await client.get("/api/v1/sites", headers={"Cookie": f"{SESSION_COOKIE}={session}"})
    assert api.status_code == 401
    client.cookies.clear()
    bearer = await client.get("/command/panels", headers=_auth(settings)(COMMAND))
    assert bearer.status_code == 401 and bearer.json()["code"] == "session_required"


async def test_logout_ends_the_session_everywhere(client, chief):
    await log_in(client, "chief", PASSWORD)
    session = client.cookies.get(SESSION_COOKIE)
    page = await client.get("/command")
    await client.post("/command/logout", data={"_csrf_token": csrf_token(page.text)})
    assert client.cookies.get(SESSION_COOKIE) is None
    # A copy of the cookie kept elsewhere is worth nothing now.
    replay = await client.get("/command", headers={"Cookie": f"{SESSION_COOKIE}={session}"}, follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"] == "/command/login?m=ended"


@pytest.mark.parametrize(
    "ending",
    [
        "UPDATE command_sessions SET last_seen_at = now() - interval '61 minutes'",  # idle past QSITE_COMMAND_SESSION_IDLE_MINUTES
        "UPDATE command_sessions SET created_at = now() - interval '13 hours', expires_at = now() - interval '1 hour'",  # lifetime over
        "UPDATE staff SET active = false WHERE username = 'chief'",  # the account was disabled
        "UPDATE staff SET role = 'medic' WHERE username = 'chief'",  # or lost the role
    ],
)
async def test_sessions_end(client, db, chief, ending):
    await log_in(client, "chief", PASSWORD)
    assert (await client.get("/command/panels")).status_code == 200
    async with db.connection() as conn:
        await conn.execute(ending)
    panels = await client.get("/command/panels")
    assert panels.status_code in (401, 403)
    page = await client.get("/command", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/command/login?m=")


async def test_panels_answer_304_until_a_write_at_the_callers_sites(client, settings, chief):
    auth = _auth(settings)
    site = await make_site(client, auth)
    item = await make_item(client, auth)
    await log_in(client, "chief", PASSWORD)
    first, again = await _twice_in_one_clock_bucket(client)
    etag = first.headers["etag"]
    assert first.status_code == 200 and "no-cache" in first.headers["cache-control"]
    assert again.status_code == 304 and again.headers["etag"] == etag and again.content == b""
    await _run_low(client, auth, site, item)
    changed = await client.get("/command/panels", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert figure(first.text, "low_stock_items") == 0 and figure(changed.text, "low_stock_items") == 1


async def test_figures_and_etags_keep_to_the_callers_sites(client, db, settings):
    """A district officer's page (here: a command principal limited to site A) counts only A,
    and a write at B does not even move its ETag."""
    auth = _auth(settings)
    own, other = await make_site(client, auth), await make_site(client, auth)
    item = await make_item(client, auth)
    officer = make_principal(Role.COMMAND, [uuid.UUID(own)])
    everyone = make_principal(Role.COMMAND)
    tags = (await command.figures_tag(db, officer), await command.figures_tag(db, everyone))
    await _run_low(client, auth, other, item)
    assert await command.figures_tag(db, officer) == tags[0]
    assert await command.figures_tag(db, everyone) != tags[1]
    mine, all_ = await command.dashboard(db, settings, officer), await command.dashboard(db, settings, everyone)
    assert [str(s.site_id) for s in mine.sites] == [own] and mine.totals.low_stock_items == 0
    assert {str(s.site_id) for s in all_.sites} == {own, other} and all_.totals.low_stock_items == 1


async def _twice_in_one_clock_bucket(client):
    """The panels, then the panels again with their ETag, both within one of the ETag's clock buckets
    (it moves every CLOCK_BUCKET_S seconds: a pair straddling that instant is asked again)."""
    while True:
        bucket = time.time() // command.CLOCK_BUCKET_S
        first = await client.get("/command/panels")
        again = await client.get("/command/panels", headers={"If-None-Match": first.headers["etag"]})
        if time.time() // command.CLOCK_BUCKET_S == bucket:
            return first, again


async def _run_low(client, auth, site: str, item: str) -> None:
    """Through the API: 10 on hand at ``site``, then a reorder level of 50 (the item turns low)."""
    assert (await move(client, auth, COMMAND, site, item, "receipt", 10)).status_code == 201
    stock = (await client.get("/api/v1/supplies/stock", headers=auth(COMMAND))).json()
    version = next(i["version"] for s in stock["sites"] if s["site_id"] == site for i in s["items"] if i["item_id"] == item)
    levels = await client.patch(
        f"/api/v1/supplies/sites/{site}/stock/{item}", json={"version": version, "reorder_level": 50, "target_level": 100}, headers=auth(COMMAND)
    )
    assert levels.status_code == 200, levels.text


def _auth(settings):
    from service.access.service import issue_access_token

    return lambda principal: {"Authorization": f"Bearer {issue_access_token(settings, principal)}"}


async def test_retention_deletes_sessions_a_day_after_they_ended(client, db, settings, chief):
    async with db.transaction() as conn:
        for n in range(2):
            await store.insert_session(conn, f"old-{n}".encode(), chief.id, 12)
    await log_in(client, "chief", PASSWORD)
    async with db.connection() as conn:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM command_sessions ORDER BY created_at")]
        await conn.execute("UPDATE command_sessions SET ended_at = now() - interval '25 hours' WHERE id = $1", ids[0])
        await conn.execute(
            "UPDATE command_sessions SET created_at = now() - interval '40 hours', expires_at = now() - interval '26 hours' WHERE id = $1", ids[1]
        )
    assert await command.purge_sessions(db, settings) == 2
    async with db.connection() as conn:
        assert [r["id"] for r in await conn.fetch("SELECT id FROM command_sessions")] == [ids[2]]
    assert (await client.get("/command/panels")).status_code == 200  # the live one still works


async def test_a_district_officer_sees_only_its_district(client, db, settings):
    """A command account granted one district (service/regions) logs in and sees that district's sites only."""
    from service.access import service as access
    from service.access.model import StaffCreate
    from service.regions import service as regions
    from service.regions.model import RegionCreate, RegionLevel

    auth = _auth(settings)
    east_site, west_site = await make_site(client, auth), await make_site(client, auth)
    system = access.SYSTEM_PRINCIPAL
    async with db.transaction() as conn:
        city = await regions.create_region(conn, system, RegionCreate(code="CITY", name="City", level=RegionLevel.CITY))
        east, west = [
            await regions.create_region(conn, system, RegionCreate(code=code, name=code.title(), level=RegionLevel.DISTRICT, parent_id=city.id))
            for code in ("EAST", "WEST")
        ]
        await regions.place_site(conn, system, east.id, uuid.UUID(east_site))
        await regions.place_site(conn, system, west.id, uuid.UUID(west_site))
        officer = msgspec.convert(
            {"username": "east-chief", "display_name": "East chief", "password": PASSWORD, "role": "command", "region_ids": [str(east.id)]}, StaffCreate
        )
        await access.create_staff(conn, settings, system, officer)
    assert (await log_in(client, "east-chief", PASSWORD)).status_code == 303
    page = await client.get("/command")
    assert page.status_code == 200
    assert '<span data-testid="scope">East</span>' in page.text
    east_name, west_name = [(await client.get(f"/api/v1/sites/{s}", headers=auth(COMMAND))).json()["name"] for s in (east_site, west_site)]
    assert f'data-label="{east_name}"' in page.text and west_name not in page.text
    assert 'data-label="› West"' not in page.text and "West" not in page.text.split('data-chart="regions"')[1]


async def test_the_etag_moves_with_the_clock_only_every_few_minutes(db):
    """Figures that change with the clock alone (what is due today, days of cover) refresh within CLOCK_BUCKET_S."""
    from datetime import UTC, datetime, timedelta

    principal = make_principal(Role.COMMAND)
    start = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    same = [await command.figures_tag(db, principal, start + timedelta(seconds=s)) for s in (0, 60, command.CLOCK_BUCKET_S - 1)]
    assert len(set(same)) == 1
    assert await command.figures_tag(db, principal, start + timedelta(seconds=command.CLOCK_BUCKET_S)) != same[0]
    assert await command.figures_tag(db, make_principal(Role.COMMAND, [uuid.uuid4()]), start) != same[0]  # another scope, another tag
