"""Hand-over on release (issue 16): required when the regime continues at home, the receiving street checked,
the home phases' dates from the stay's regime version, the contact encrypted at rest and absent from events,
logs and errors, the release certificate and its public check, and scope (another site's staff see nothing)."""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, date, datetime, timedelta

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.access.model import Role
from service.app import create_app
from service.errors import Conflict, InvalidInput
from service.handover import service as handovers
from service.handover.model import Revocation
from service.regions import service as regions
from service.stays import service as stays
from service.stays.model import RegimeCreate, RegimePatch
from tests.conftest import make_principal
from tests.stays.helpers import COMMAND, admission, handover_to, make_site, make_street, person, staff

CONTACT_NAME, CONTACT_PHONE = "欧阳社区", "13911112222"
NAME = "赵小红"


async def admitted(db, settings, site_id, *, days_ago=8, **fields):
    async with db.transaction() as conn:
        return await stays.admit(
            conn, staff(site_id), settings, admission(site_id, admitted_at=datetime.now(UTC) - timedelta(days=days_ago), **fields)
        )


async def release(db, settings, stay, handover=None, principal=None, now=None):
    async with db.transaction() as conn:
        return await stays.release(conn, principal or staff(stay.site_id), settings, stay.id, handover=handover, now=now)


async def released_site(db, settings, *, code="LJ-01", street_code="LJ-LIJIA", street_name="礼嘉街道", site_id=None):
    """A fully seeded site: a street, a released close contact handed over to it; (site_id, stay, certificate code)."""
    site_id = site_id or await make_site(db, code=code, floors={3: (2, 1)})
    street = await make_street(db, code=street_code, name=street_name)
    stay = await admitted(db, settings, site_id, resident=person(name=NAME))
    await release(db, settings, stay, handover_to(street, contact_name=CONTACT_NAME, contact_phone=CONTACT_PHONE))
    async with db.connection() as conn:
        code = await handovers.certificate_code(conn, COMMAND, settings, stay.id)
    assert code is not None
    return site_id, stay, code


# --- the rules ---------------------------------------------------------------------------


async def test_a_home_phase_requires_a_handover_and_a_centralized_only_regime_does_not(db, settings):
    site_id = await make_site(db, floors={3: (2, 1)})
    close = await admitted(db, settings, site_id)  # close_contact: 7 days + 3 days home monitoring
    with pytest.raises(InvalidInput) as refused:
        await release(db, settings, close)
    assert (refused.value.code, refused.value.field) == ("handover_required", "handover")
    async with db.connection() as conn:  # nothing happened: still in quarantine, no record
        assert (await stays.get_stay(conn, COMMAND, close.id)).status == "active"
        assert await conn.fetchval("SELECT count(*) FROM handovers") == 0

    secondary = await admitted(db, settings, site_id, category="secondary_contact")  # 7 days, nothing at home
    closed = await release(db, settings, secondary)
    assert closed.outcome == "released"
    async with db.connection() as conn:
        record = (await handovers.get_handovers(conn, COMMAND, [secondary.id]))[secondary.id]
        types = [r["type"] for r in await conn.fetch("SELECT type FROM events WHERE subject_id = $1 ORDER BY id", secondary.id)]
        code = await handovers.certificate_code(conn, COMMAND, settings, secondary.id)
    assert record.region_id is None and record.contact_name is None and record.phases == [] and record.home_ends_on is None
    assert types[-1] == "stays.released" and "stays.handed_over" not in types  # no receiving side to tell
    assert code is not None and len(code) == 26  # every release has its certificate


async def test_the_receiving_region_must_be_an_existing_street(db, settings):
    site_id = await make_site(db, floors={3: (1, 1)})
    street = await make_street(db)
    async with db.connection() as conn:
        district = (await regions.region_by_id(conn, street)).parent_id  # type: ignore[union-attr]
    stay = await admitted(db, settings, site_id)
    for region_id, code in ((uuid.uuid4(), "unknown_region"), (district, "region_not_street")):
        with pytest.raises(InvalidInput) as refused:
            await release(db, settings, stay, handover_to(region_id))
        assert (refused.value.code, refused.value.field) == (code, "handover.region_id")
    async with db.connection() as conn:
        assert (await stays.get_stay(conn, COMMAND, stay.id)).status == "active"
    # A street outside every region the site's staff see is still a valid destination: people go home anywhere.
    elsewhere = await make_street(db, code="YL-YUELAI", name="悦来街道")
    await release(db, settings, stay, handover_to(elsewhere))
    async with db.connection() as conn:
        assert (await handovers.get_handovers(conn, COMMAND, [stay.id]))[stay.id].region_code == "YL-YUELAI"


async def test_home_phase_dates_come_from_the_stays_regime_version(db, settings):
    """Centralized 7 days, home isolation 7 (tests on its days 3 and 7), home monitoring 7: from the local release date.
    A version made after admission (monitoring 2 days) does not change an open stay's plan."""
    async with db.transaction() as conn:
        await stays.create_regime(conn, COMMAND, msgspec.convert({
            "code": "three_phase", "name": "7+7+7", "checkins_per_day": 2,
            "phases": [{"phase": "centralized", "days": 7, "test_days": [1, 4, 7]},
                       {"phase": "home_isolation", "days": 7, "test_days": [3, 7]}, {"phase": "home_monitoring", "days": 7}]}, RegimeCreate))
    site_id = await make_site(db, floors={3: (1, 1)})
    street = await make_street(db)
    stay = await admitted(db, settings, site_id, regime_code="three_phase")
    async with db.transaction() as conn:
        await stays.update_regime(conn, COMMAND, "three_phase", RegimePatch(version=1, home_monitoring_days=2))
    # 23:30 in Chongqing is 15:30 UTC the same day: the local date decides day 1 at home.
    day = (datetime.now(UTC) + timedelta(days=3)).date()  # a few days after the admission, as the test was written
    at = datetime(day.year, day.month, day.day, 15, 30, tzinfo=UTC)
    await release(db, settings, stay, handover_to(street), now=at)
    async with db.connection() as conn:
        record = (await handovers.get_handovers(conn, COMMAND, [stay.id]))[stay.id]
    assert record.released_on == day
    assert [(p.phase, p.starts_on, p.ends_on, p.test_dates) for p in record.phases] == [
        ("home_isolation", day, day + timedelta(days=6), [day + timedelta(days=2), day + timedelta(days=6)]),
        ("home_monitoring", day + timedelta(days=7), day + timedelta(days=13), []),
    ]
    assert record.home_ends_on == day + timedelta(days=13)
    # One minute later it is 3 Dec in Chongqing: everything moves by a day.
    assert handovers.home_phases(await _regime(db, stay), date(2026, 12, 3))[0].starts_on == date(2026, 12, 3)


async def _regime(db, stay):
    async with db.connection() as conn:
        return await stays.regime_of(conn, stay)


async def test_the_contact_is_encrypted_at_rest_and_never_in_events_logs_or_errors(db, settings, client, auth, caplog):
    caplog.set_level(logging.DEBUG)
    site_id, stay, code = await released_site(db, settings)
    async with db.connection() as conn:
        row = dict(await conn.fetchrow("SELECT * FROM handovers WHERE stay_id = $1", stay.id))
        events = [dict(r) for r in await conn.fetch("SELECT type, data::text AS data FROM events")]
    stored = str(row)
    assert CONTACT_NAME not in stored and CONTACT_PHONE not in stored and code not in stored
    assert row["contact_name_mask"] == "欧***" and row["contact_phone_tail"] == "2222"
    handed = [e for e in events if e["type"] == "stays.handed_over"]
    assert len(handed) == 1 and '"region_code": "LJ-LIJIA"' in handed[0]["data"]
    for e in events:
        assert CONTACT_NAME not in e["data"] and CONTACT_PHONE not in e["data"] and NAME not in e["data"] and code not in e["data"]

    manager = make_principal(Role.SITE_MANAGER, [site_id])
    masked = (await client.get(f"/api/v1/stays/{stay.id}/handover", headers=auth(manager))).json()
    assert (masked["contact_name"], masked["contact_phone"]) == ("欧***", "*******2222")
    shown = await client.get(f"/api/v1/stays/{stay.id}/handover", params={"purpose": "call the community"}, headers=auth(manager))
    assert (shown.json()["contact_name"], shown.json()["contact_phone"]) == (CONTACT_NAME, CONTACT_PHONE)
    async with db.connection() as conn:
        audit = await conn.fetch("SELECT action, purpose FROM audit_log WHERE subject_id = $1", stay.id)
    assert [(a["action"], a["purpose"]) for a in audit] == [("handover.unmask", "call the community")]
    refused = await client.get(f"/api/v1/stays/{stay.id}/handover", params={"purpose": "curious"}, headers=auth(staff(site_id)))
    assert refused.status_code == 403 and refused.json()["code"] == "unmask_not_allowed"

    # A bad phone is refused without being repeated; nothing of the contact reached the logs.
    bad = await client.post("/graphql", headers=auth(manager), json={
        "query": "mutation($id: UUID!, $h: HandoverInput) { releaseStay(stayId: $id, handover: $h) { userErrors { code field message } } }",
        "variables": {"id": str(stay.id), "h": {"regionId": masked["region_id"], "contactName": "钱某", "contactPhone": "139-not-a-phone"}}})
    (error,) = bad.json()["data"]["releaseStay"]["userErrors"]
    assert error["code"] == "invalid_input" and error["field"] == "handover.contactPhone" and "139-not-a-phone" not in error["message"]
    assert CONTACT_PHONE not in caplog.text and CONTACT_NAME not in caplog.text and "139-not-a-phone" not in caplog.text


# --- the certificate ----------------------------------------------------------------------------


async def test_anyone_checks_a_certificate_code_and_learns_no_personal_data(db, settings, client, auth):
    site_id, stay, code = await released_site(db, settings)
    assert re.fullmatch(r"[A-Z2-7]{26}", code)
    answer = await client.get(f"/api/v1/certificates/{code}")  # no credential
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "valid" and body["site_name"] == "礼嘉隔离点 LJ-01" and body["site_code"] == "LJ-01"
    assert body["released_on"] == stays.local_date(datetime.now(UTC), "Asia/Shanghai").isoformat()
    assert [p["phase"] for p in body["phases"]] == ["home_monitoring"] and body["home_ends_on"] == body["phases"][-1]["ends_on"]
    text = answer.text
    for secret in (NAME, CONTACT_NAME, CONTACT_PHONE, str(stay.id), str(stay.resident_id), "*"):
        assert secret not in text
    assert set(body) == {"status", "site_name", "site_code", "released_on", "phases", "home_ends_on", "revoked_on"}
    # As printed (groups of four) or typed in lower case: the same certificate.
    printed = handovers.display_code(code)
    assert (await client.get(f"/api/v1/certificates/{printed.lower()}")).json() == body

    unknown = await client.get(f"/api/v1/certificates/{'A' * 26}")
    assert unknown.status_code == 404 and unknown.json()["code"] == "certificate_not_found"
    for malformed in ("short", "1" * 26, "A" * 27, "A" * 200, "%00" + "A" * 25, "ÄÖÜ" * 9):
        refused = await client.get(f"/api/v1/certificates/{malformed}")
        assert refused.status_code == 422 and refused.json()["code"] == "invalid_certificate_code", malformed
        assert malformed not in refused.text

    # Revoked: the same code now answers revoked (and revoking twice is a conflict).
    manager = make_principal(Role.SITE_MANAGER, [site_id])
    revoke = "mutation($in: RevokeReleaseCertificateInput!) { revokeReleaseCertificate(input: $in) { handover { revokedReason } userErrors { code } } }"
    variables = {"in": {"stayId": str(stay.id), "reason": "released in error"}}
    done = await client.post("/graphql", headers=auth(manager), json={"query": revoke, "variables": variables})
    assert done.json()["data"]["revokeReleaseCertificate"] == {"handover": {"revokedReason": "released in error"}, "userErrors": []}
    again = await client.post("/graphql", headers=auth(manager), json={"query": revoke, "variables": {"in": {"stayId": str(stay.id), "reason": "again"}}})
    assert again.json()["data"]["revokeReleaseCertificate"]["userErrors"] == [{"code": "certificate_revoked"}]
    revoked = (await client.get(f"/api/v1/certificates/{code}")).json()
    assert revoked["status"] == "revoked" and revoked["revoked_on"] == datetime.now(UTC).date().isoformat()


async def test_certificate_checks_are_limited_per_address(settings, db):
    _, _, code = await released_site(db, settings)
    limited = msgspec.structs.replace(settings, certificate_checks_per_address_per_minute=3)
    async with AsyncTestClient(app=create_app(limited)) as client:
        answers = [await client.get(f"/api/v1/certificates/{code}") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        over = await client.get(f"/api/v1/certificates/{'B' * 26}")
    assert over.status_code == 429 and over.json()["code"] == "rate_limited" and int(over.headers["retry-after"]) >= 1


async def test_the_printable_certificate(db, settings, client, auth):
    site_id, stay, code = await released_site(db, settings)
    worker = make_principal(Role.SITE_STAFF, [site_id])
    page = await client.get(f"/api/v1/stays/{stay.id}/certificate", headers=auth(worker))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html = page.text
    assert handovers.display_code(code) in html and "赵**" in html and NAME not in html and CONTACT_PHONE not in html
    assert "礼嘉街道" in html and "<script" not in html and "http://" not in html and "https://" not in html and "<link" not in html
    assert (await client.get(f"/api/v1/stays/{stay.id}/certificate", params={"purpose": "print"}, headers=auth(worker))).status_code == 403
    medic = make_principal(Role.MEDIC, [site_id])
    full = await client.get(f"/api/v1/stays/{stay.id}/certificate", params={"purpose": "print for the resident"}, headers=auth(medic))
    assert NAME in full.text
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'resident.unmask' AND purpose = 'print for the resident'") == 1


# --- scope ------------------------------------------------------------------------------------------


async def test_another_sites_staff_cannot_read_or_revoke_the_handover(db, settings, client, auth):
    site_a, stay_a, _ = await released_site(db, settings)
    site_b, stay_b, _ = await released_site(db, settings, code="YL-02", street_code="YL-YUELAI", street_name="悦来街道")
    for role in (Role.SITE_MANAGER, Role.MEDIC, Role.SITE_STAFF, Role.TRACING):
        outsider = auth(make_principal(role, [site_b]))
        own = await client.get(f"/api/v1/stays/{stay_b.id}/handover", headers=outsider)
        assert own.status_code == 200 and own.json()["region_code"] == "YL-YUELAI"
        for path in ("handover", "certificate"):
            foreign = await client.get(f"/api/v1/stays/{stay_a.id}/{path}", headers=outsider)
            unknown = await client.get(f"/api/v1/stays/{uuid.uuid4()}/{path}", headers=outsider)
            assert foreign.status_code == unknown.status_code == 404
            assert foreign.json()["code"] == unknown.json()["code"]
    manager_b = make_principal(Role.SITE_MANAGER, [site_b])
    query = "query($id: UUID!) { stay(id: $id) { handover { regionCode contactName } } }"
    foreign = (await client.post("/graphql", headers=auth(manager_b), json={"query": query, "variables": {"id": str(stay_a.id)}})).json()
    assert foreign["data"]["stay"] is None
    own = (await client.post("/graphql", headers=auth(manager_b), json={"query": query, "variables": {"id": str(stay_b.id)}})).json()
    assert own["data"]["stay"]["handover"] == {"regionCode": "YL-YUELAI", "contactName": "欧***"}
    async with db.connection() as conn:
        assert await handovers.get_handovers(conn, manager_b, [stay_a.id]) == {}
    with pytest.raises(Exception) as refused:
        async with db.transaction() as conn:
            await handovers.revoke(conn, manager_b, stay_a.id, Revocation(reason="not mine"))
    assert getattr(refused.value, "code", None) == "handover_not_found"
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT revoked_at FROM handovers WHERE stay_id = $1", stay_a.id) is None
    # The change feed shows site B's hand-over to site B's staff, never site A's.
    feed = (await client.get("/api/v1/changes", params={"types": "stays.handed_over"}, headers=auth(manager_b))).json()
    assert [c["entity_id"] for c in feed["changes"]] == [str(stay_b.id)] and feed["changes"][0]["entity"] == "handover"


async def test_revoking_needs_a_manager_and_a_reason(db, settings):
    site_id, stay, _ = await released_site(db, settings)
    with pytest.raises(Exception) as refused:
        async with db.transaction() as conn:
            await handovers.revoke(conn, staff(site_id), stay.id, Revocation(reason="not allowed"))
    assert getattr(refused.value, "code", None) == "role_not_allowed"
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"reason": "x"}, Revocation)
    async with db.transaction() as conn:
        await handovers.revoke(conn, make_principal(Role.SITE_MANAGER, [site_id]), stay.id, Revocation(reason="issued in error"))
    with pytest.raises(Conflict):
        async with db.transaction() as conn:
            await handovers.revoke(conn, COMMAND, stay.id, Revocation(reason="twice"))
