"""Regions: the tree, region-scoped staff, roll-ups, snapshots and reports, on the demo data."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.access import service as access
from service.access.model import Role
from service.api import demo
from service.errors import Conflict, Forbidden, InvalidInput, NotFound
from service.regions import service
from service.regions.model import RegionCreate, RegionLevel, RegionPatch
from tests.conftest import make_principal
from tests.stays.helpers import make_site

CMD = access.SYSTEM_PRINCIPAL


@pytest.fixture
async def seeded(db, settings) -> dict[str, Any]:
    seeded: dict[str, Any] = {"settings": settings}
    async with db.transaction() as conn:
        for step in demo.STEPS:
            await step(conn, seeded)
    return seeded


def district_officer(seeded: dict[str, Any], role: Role = Role.COMMAND, region: str = "CQ-LJ", sites: list[uuid.UUID] | None = None):
    """A principal as a token would carry it: region grants and their sites expanded."""
    return make_principal(role, sites if sites is not None else [], region_ids=frozenset([seeded["regions"][region]]))


async def test_demo_tree_places_each_site_under_its_street(db, seeded):
    own, other = seeded["sites"][:2]
    async with db.connection() as conn:
        regions = {r.code: r for r in await service.list_regions(conn, CMD)}
        assert [regions[c].level for c in ("CQ", "CQ-LJ", "LJ-LIJIA")] == [RegionLevel.CITY, RegionLevel.DISTRICT, RegionLevel.STREET]
        assert regions["LJ-LIJIA"].site_ids == [own] and regions["LJ-YUELAI"].site_ids == [other]
        assert regions["LJ-LIJIA"].path == [regions["CQ"].id, regions["CQ-LJ"].id, regions["LJ-LIJIA"].id]
        assert sorted(await service.sites_under(conn, [regions["CQ-LJ"].id])) == sorted([own, other])
        assert await service.sites_under(conn, [regions["LJ-YUELAI"].id]) == [other]


async def test_site_staff_see_the_regions_above_their_site_only(db, seeded):
    own, other = seeded["sites"][:2]
    manager = make_principal(Role.SITE_MANAGER, [own])
    async with db.connection() as conn:
        seen = {r.code: r for r in await service.list_regions(conn, manager)}
        assert set(seen) == {"CQ", "CQ-LJ", "LJ-LIJIA"}
        assert seen["CQ-LJ"].site_ids == [] and seen["LJ-LIJIA"].site_ids == [own]
        with pytest.raises(NotFound):
            await service.get_region(conn, manager, seeded["regions"]["LJ-YUELAI"])
        # a roll-up of the district holds the manager's site only; the other street is unknown
        rolled = await service.rollup(conn, manager, seeded["regions"]["CQ-LJ"])
        assert [s.site_id for s in rolled.sites] == [own]
        with pytest.raises(NotFound):
            await service.rollup(conn, manager, seeded["regions"]["LJ-YUELAI"])


async def test_region_scoped_login_reaches_exactly_the_subtree_sites(db, seeded, settings):
    """A street officer's token carries that street's sites: every domain's site scope follows."""
    own, other = seeded["sites"][:2]
    street = seeded["regions"]["LJ-YUELAI"]
    async with db.transaction() as conn:
        data = {"username": "yuelai-officer", "display_name": "悦来街道", "password": "long-enough-1",
                "role": "site_manager", "region_ids": [street]}
        import msgspec

        from service.access.model import StaffCreate

        created = await access.create_staff(conn, settings, CMD, msgspec.convert(data, StaffCreate, strict=False))
    assert created.region_ids == [street] and created.site_ids == []
    pair = await access.login(db, settings, username="yuelai-officer", password="long-enough-1", address="127.0.0.1")
    principal = access.principal_from_access_token(settings, pair.access_token)
    assert principal.site_scope == [other] and principal.region_ids == frozenset([street])
    assert principal.can_access_site(other) and not principal.can_access_site(own)
    # the district command account: both demo sites, not every site
    pair = await access.login(db, settings, username="district-lj", password="qsite-demo", address="127.0.0.2")
    district = access.principal_from_access_token(settings, pair.access_token)
    assert district.role is Role.COMMAND and sorted(district.site_scope or []) == sorted([own, other])
    # a new site placed in the street reaches the officer at the next refresh
    async with db.transaction() as conn:
        from service.sites import service as sites
        from service.sites.model import SiteCreate

        site = await sites.create_site(conn, CMD, SiteCreate(code="LJ-NEW", name="新隔离点"))
        await service.place_site(conn, CMD, street, site.id)
    pair = await access.refresh(db, settings, pair.refresh_token)
    assert site.id in (access.principal_from_access_token(settings, pair.access_token).site_scope or [])


async def test_region_grants_are_checked(db, seeded, settings):
    import msgspec

    from service.access.model import StaffCreate

    officer = district_officer(seeded, sites=list(seeded["sites"][:2]))
    manager = make_principal(Role.SITE_MANAGER, [seeded["sites"][0]])
    async with db.transaction() as conn:
        body = {"username": "x-officer", "display_name": "x", "password": "long-enough-1", "role": "command", "region_ids": []}
        with pytest.raises(Forbidden) as refused:  # a district command centre cannot make a city-wide one
            await access.create_staff(conn, settings, officer, msgspec.convert(body, StaffCreate))
        assert refused.value.code == "cannot_grant_command"
        body["region_ids"] = [str(seeded["regions"]["LJ-LIJIA"])]
        assert (await access.create_staff(conn, settings, officer, msgspec.convert(body, StaffCreate))).region_ids
        body |= {"username": "y-officer", "role": "site_staff", "region_ids": [str(seeded["regions"]["CQ-LJ"])]}
        with pytest.raises(Forbidden) as refused:  # a manager sees the district but does not manage it
            await access.create_staff(conn, settings, manager, msgspec.convert(body, StaffCreate))
        assert refused.value.code == "region_outside_scope"
        body["region_ids"] = [str(uuid.uuid4())]
        with pytest.raises(NotFound):
            await access.create_staff(conn, settings, CMD, msgspec.convert(body, StaffCreate))


async def test_create_rename_move_and_their_refusals(db, seeded):
    r = seeded["regions"]
    officer = district_officer(seeded, sites=list(seeded["sites"][:2]))
    async with db.transaction() as conn:
        town = await service.create_region(conn, officer, RegionCreate(code="LJ-TOWN", name="某镇", level=RegionLevel.STREET, parent_id=r["CQ-LJ"]))
        assert town.path == [r["CQ"], r["CQ-LJ"], town.id]
        with pytest.raises(Forbidden):  # top level: only an unlimited command centre
            await service.create_region(conn, officer, RegionCreate(code="OTHER", name="成都市", level=RegionLevel.CITY))
        with pytest.raises(InvalidInput) as bad:
            await service.create_region(conn, CMD, RegionCreate(code="BAD", name="x", level=RegionLevel.DISTRICT, parent_id=town.id))
        assert bad.value.code == "region_level_order"
        renamed = await service.update_region(conn, officer, town.id, RegionPatch(version=1, name="某某镇"))
        assert renamed.name == "某某镇" and renamed.version == 2
        with pytest.raises(Conflict):
            await service.update_region(conn, officer, town.id, RegionPatch(version=1, name="again"))
        # move the district (with its streets and sites) under a new city
        city = await service.create_region(conn, CMD, RegionCreate(code="CQ2", name="新城", level=RegionLevel.CITY))
        moved = await service.update_region(conn, CMD, r["CQ-LJ"], RegionPatch(version=1, parent_id=city.id))
        assert moved.path == [city.id, r["CQ-LJ"]]
        street = await service.get_region(conn, CMD, r["LJ-LIJIA"])
        assert street.path == [city.id, r["CQ-LJ"], r["LJ-LIJIA"]]
        with pytest.raises(InvalidInput) as bad:
            await service.update_region(conn, CMD, city.id, RegionPatch(version=1, parent_id=r["LJ-LIJIA"]))
        assert bad.value.code in ("region_cycle", "region_level_order")
        with pytest.raises(Forbidden):  # the officer's own grant cannot be moved by the officer
            await service.update_region(conn, officer, r["CQ-LJ"], RegionPatch(version=2, parent_id=r["CQ"]))
        with pytest.raises(InvalidInput) as bad:  # a district with streets cannot go under a street's level
            await service.update_region(conn, CMD, r["CQ-LJ"], RegionPatch(version=2, parent_id=None))
            await service.update_region(conn, CMD, city.id, RegionPatch(version=1, parent_id=r["LJ-LIJIA"]))
        assert bad.value.code in ("region_cycle", "region_level_order", "region_too_deep")


async def test_rollup_matches_the_ledgers(db, seeded):
    own, other = seeded["sites"][:2]
    now = datetime.now(UTC)
    async with db.connection() as conn:
        rolled = await service.rollup(conn, CMD, seeded["regions"]["CQ-LJ"], now=now)
        by_site = {s.site_id: s.figures for s in rolled.sites}
        assert set(by_site) == {own, other}
        for site, f in by_site.items():
            occupied = await conn.fetchval("SELECT count(*) FROM stays WHERE site_id = $1 AND status = 'active'", site)
            assert f.occupied_beds == occupied == sum(c.count for c in f.occupied_by_category)
            assert f.capacity_beds == await conn.fetchval("SELECT sum(beds) FROM rooms WHERE site_id = $1", site)
            assert f.free_beds + f.unavailable_beds + f.occupied_beds == f.capacity_beds
            assert f.open_alerts == await conn.fetchval("SELECT count(*) FROM alerts WHERE site_id = $1 AND state <> 'resolved'", site)
            assert f.checkins_done <= f.checkins_due and f.swabs_done <= f.swabs_due
        t = rolled.totals
        assert t.sites == 2 and t.occupied_beds == sum(f.occupied_beds for f in by_site.values())
        assert t.open_alerts == sum(f.open_alerts for f in by_site.values())
        streets = {c.region.code: c.figures for c in rolled.children}
        assert streets["LJ-LIJIA"].occupied_beds == by_site[own].occupied_beds and streets["LJ-JINSHAN"].sites == 0
        assert t.results_7d > 0 and t.turnaround_median_h is not None and t.turnaround_p90_h >= t.turnaround_median_h
        # the caller's whole scope: the same totals, grouped under the city
        everything = await service.rollup(conn, CMD, None, now=now)
        assert everything.totals.occupied_beds >= t.occupied_beds and [c.region.code for c in everything.children] == ["CQ"]


async def test_snapshots_series_and_report_agree(db, seeded):
    own, other = seeded["sites"][:2]
    now = datetime.now(UTC)
    async with db.connection() as conn:
        series = await service.daily_series(conn, CMD, seeded["regions"]["CQ-LJ"], 14, now=now)
        assert len(series.days) == 14 and series.days[-1].final is False and all(d.final for d in series.days[:-1])
        # two weeks of demo history: admissions every day, releases once the first week has passed, positives
        assert all(d.admitted > 0 for d in series.days[:-1]) and sum(d.admitted for d in series.days) > 400
        assert sum(d.released for d in series.days) > 100 and sum(d.positives for d in series.days) > 0
        assert sum(d.missed_checkins for d in series.days) > 0 and sum(d.results for d in series.days) > 1000
        yesterday = series.days[-2]
        report = await service.daily_report(conn, CMD, seeded["regions"]["CQ-LJ"], yesterday.day, now=now)
        assert {r.site_id for r in report.sites} == {own, other}
        fields = ("in_quarantine", "admitted", "released", "positives", "checkins_done", "checkins_due", "results",
                  "turnaround_median_h", "turnaround_p90_h", "low_stock_items")
        assert {f: getattr(report.totals, f) for f in fields} == {f: getattr(yesterday, f) for f in fields}
        # a site's series is its own snapshots; the two add up to the region's
        mine = await service.daily_series(conn, CMD, None, 14, site_id=own, now=now)
        theirs = await service.daily_series(conn, CMD, None, 14, site_id=other, now=now)
        assert [a.admitted + b.admitted for a, b in zip(mine.days, theirs.days, strict=True)] == [d.admitted for d in series.days]
        # backfill again: the same rows (idempotent)
        before = await conn.fetch("SELECT site_id, day, admitted, in_quarantine, turnaround_minutes FROM site_daily ORDER BY 1, 2")
    async with db.transaction() as conn:
        result = await service.backfill(conn, None, now.date() - timedelta(days=14), now.date(), now=now)
        assert result.rows == len(before) and result.sites == 2
        after = await conn.fetch("SELECT site_id, day, admitted, in_quarantine, turnaround_minutes FROM site_daily ORDER BY 1, 2")
    assert before == after
    with pytest.raises(InvalidInput):
        async with db.connection() as conn:
            await service.daily_series(conn, CMD, None, 0)


async def test_snapshot_job_writes_ended_days_once(db, seeded, settings):
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM site_daily WHERE day >= current_date - 3")
    assert await service.snapshot_due(db, settings) >= 2
    assert await service.snapshot_due(db, settings) == 0


async def test_rest_and_graphql(client, seeded, auth):
    own, other = seeded["sites"][:2]
    manager = make_principal(Role.SITE_MANAGER, [own])
    headers = auth(make_principal(Role.COMMAND))
    r = await client.get("/api/v1/regions", headers=headers)
    assert r.status_code == 200 and {x["code"] for x in r.json()} >= {"CQ", "CQ-LJ", "LJ-LIJIA", "LJ-YUELAI"}
    district = seeded["regions"]["CQ-LJ"]
    r = await client.get(f"/api/v1/command/rollup?region_id={district}", headers=headers)
    assert r.status_code == 200 and r.json()["totals"]["sites"] == 2
    etag = r.headers["etag"]
    r = await client.get(f"/api/v1/command/daily?region_id={district}&days=7", headers=headers)
    assert r.status_code == 200 and len(r.json()["days"]) == 7
    r = await client.get(f"/api/v1/command/daily/csv?region_id={district}&days=7", headers=headers)
    rows = list(csv.reader(io.StringIO(r.text)))
    assert r.headers["content-type"].startswith("text/csv") and rows[0][:3] == ["day", "sites", "in_quarantine"] and len(rows) == 8
    day = (datetime.now(UTC) - timedelta(days=2)).date()
    r = await client.get(f"/api/v1/command/reports/{day}/html?region_id={district}", headers=headers)
    assert r.status_code == 200 and "两江新区" in r.text and "<script" not in r.text and "http" not in r.text.split("<body>")[1]
    r = await client.get(f"/api/v1/command/reports/{day}/csv", headers=auth(manager))
    assert [row[1] for row in csv.reader(io.StringIO(r.text))][1:] == ["LJ-LIJIA", "TOTAL"]
    # the manager asking for the other street: 404, like a random id
    for region in (seeded["regions"]["LJ-YUELAI"], uuid.uuid4()):
        r = await client.get(f"/api/v1/command/rollup?region_id={region}", headers=auth(manager))
        assert r.status_code == 404 and r.json()["code"] == "region_not_found"
    r = await client.put(f"/api/v1/regions/{seeded['regions']['LJ-JINSHAN']}/sites/{own}", headers=auth(manager))
    assert r.status_code == 403
    query = """query($r: UUID) { regionRollUp(regionId: $r) { totals { sites occupiedBeds } children { region { code } figures { sites } } }
                dailySeries(regionId: $r, days: 3) { days { day admitted final } } }"""
    r = await client.post("/graphql", json={"query": query, "variables": {"r": str(district)}}, headers=headers)
    data = r.json()["data"]
    assert data["regionRollUp"]["totals"]["sites"] == 2 and len(data["dailySeries"]["days"]) == 3
    assert etag


async def test_a_street_officers_token_scopes_every_domain(client, seeded):
    """Logged in over the API, a region-scoped account reads its street's site and answers 404 for the other."""
    own, other = seeded["sites"][:2]
    headers = {"Authorization": "Bearer " + (await client.post(
        "/api/v1/auth/login", json={"username": "district-lj", "password": "qsite-demo"})).json()["access_token"]}
    r = await client.get("/api/v1/sites", headers=headers)
    assert {s["id"] for s in r.json()["items"]} == {str(own), str(other)}  # the district: both demo sites
    r = await client.post("/api/v1/staff", headers=headers, json={
        "username": "lijia-officer", "display_name": "礼嘉街道", "password": "long-enough-1", "role": "site_manager",
        "region_ids": [str(seeded["regions"]["LJ-LIJIA"])]})
    assert r.status_code == 201, r.text
    officer = r.json()
    # the district sees and manages the account it made; the other street's manager does not see it
    listed = (await client.get("/api/v1/staff?limit=100", headers=headers)).json()["items"]
    assert officer["id"] in {s["id"] for s in listed}
    r = await client.patch(f"/api/v1/staff/{officer['id']}", headers=headers, json={"version": 1, "display_name": "礼嘉街道办"})
    assert r.status_code == 200, r.text
    manager_2 = await client.post("/api/v1/auth/login", json={"username": "manager-2", "password": "qsite-demo"})
    other_manager = {"Authorization": f"Bearer {manager_2.json()['access_token']}"}
    assert (await client.get(f"/api/v1/staff/{officer['id']}", headers=other_manager)).status_code == 404
    login = await client.post("/api/v1/auth/login", json={"username": "lijia-officer", "password": "long-enough-1"})
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    r = await client.get("/api/v1/sites", headers=headers)
    assert [s["id"] for s in r.json()["items"]] == [str(own)]
    for path in (f"/api/v1/sites/{other}", f"/api/v1/sites/{other}/occupancy", f"/api/v1/sites/{other}/alerts"):
        assert (await client.get(path, headers=headers)).status_code == 404, path
    assert (await client.get(f"/api/v1/sites/{own}/alerts", headers=headers)).status_code == 200
    r = await client.get("/api/v1/command/rollup", headers=headers)
    assert [s["site_id"] for s in r.json()["sites"]] == [str(own)]


async def test_the_first_day_of_the_calendar_is_refused_not_walked_forever(client, db, auth):
    """asyncpg sends date.min as -infinity: the report's walk over days never ended (503 after the statement timeout)."""
    await make_site(db, code="LJ-01", floors={2: (1, 1)})
    headers = auth(make_principal(Role.COMMAND))
    r = await client.get("/api/v1/command/reports/0001-01-01", headers=headers)
    assert r.status_code == 422 and (r.json()["code"], r.json()["field"]) == ("invalid_day", "day"), r.text
    assert (await client.get("/api/v1/command/reports/0001-01-02", headers=headers)).status_code == 200
    query = '{ dailyReport(day: "0001-01-01") { day } }'
    body = (await client.post("/graphql", json={"query": query}, headers=headers)).json()
    assert body["data"]["dailyReport"] is None and body["errors"][0]["extensions"]["code"] == "invalid_day", body
