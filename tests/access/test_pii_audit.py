import asyncpg
import pytest

from service.access import crypto, service
from service.access.model import Role
from service.errors import Forbidden, InvalidInput
from tests.access.helpers import make_site, make_staff
from tests.conftest import make_principal

PHONE = "13912345678"


async def test_plain_read_of_tables_shows_no_phone(client, auth, db, settings):
    site = await make_site(client, auth)
    await make_staff(db, settings, "wu", "medic", [site], phone="139-1234-5678")
    async with db.connection() as conn:
        dump = await conn.fetchval("SELECT string_agg(t::text, ' ') FROM staff t")
        events = await conn.fetchval("SELECT string_agg(e::text, ' ') FROM events e")
    assert PHONE not in dump and "1234-5678" not in dump and "12345678" not in dump
    assert PHONE not in (events or "") and "12345678" not in (events or "")


async def test_swapped_ciphertext_fails_to_decrypt(client, auth, db, settings):
    site = await make_site(client, auth)
    a = await make_staff(db, settings, "a-one", "medic", [site], phone="13900000001")
    b = await make_staff(db, settings, "b-two", "medic", [site], phone="13900000002")
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE staff SET phone_enc = CASE id WHEN $1 THEN (SELECT phone_enc FROM staff WHERE id = $2)"
            " ELSE (SELECT phone_enc FROM staff WHERE id = $1) END WHERE id IN ($1, $2)",
            a.id,
            b.id,
        )
        stored = await conn.fetchval("SELECT phone_enc FROM staff WHERE id = $1", a.id)
    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt(settings, stored, record_id=a.id.bytes)
    assert crypto.decrypt(settings, stored, record_id=b.id.bytes) == "13900000002"


async def test_blind_index_finds_exactly_the_person(client, auth, db, settings):
    site = await make_site(client, auth)
    wanted = await make_staff(db, settings, "wanted", "medic", [site], phone=PHONE)
    await make_staff(db, settings, "near", "medic", [site], phone="13912345679")
    async with db.connection() as conn:
        found = await service.find_staff_by_phone(conn, settings, make_principal(Role.COMMAND), " 139 1234 5678 ")
        other_site = await service.find_staff_by_phone(conn, settings, make_principal(Role.SITE_MANAGER, [await make_site(client, auth)]), PHONE)
    assert found == [wanted.id] and other_site == []


async def test_unmask_needs_role_and_purpose_and_is_audited(client, auth, db, settings):
    site = await make_site(client, auth)
    staff = await make_staff(db, settings, "wu", "medic", [site], phone=PHONE)
    manager = make_principal(Role.SITE_MANAGER, [site])
    url = f"/api/v1/staff/{staff.id}"
    masked = await client.get(url, headers=auth(manager))
    assert masked.json()["phone"] == "139****5678"
    unmasked = await client.get(url, params={"purpose": "call about a night shift"}, headers=auth(manager))
    assert unmasked.status_code == 200 and unmasked.json()["phone"] == PHONE
    assert (await client.get(url, params={"purpose": "x"}, headers=auth(manager))).status_code == 400
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT actor, action, subject_id, fields, purpose FROM audit_log")
    assert [(r["actor"], r["action"], r["subject_id"], r["fields"], r["purpose"]) for r in rows] == [
        (manager.ref, "staff.unmask", staff.id, ["phone"], "call about a night shift")
    ]
    # the shared helper other domains use
    async with db.transaction() as conn:
        with pytest.raises(Forbidden) as denied:
            await service.reveal(conn, make_principal(Role.SITE_STAFF, [site]), purpose="curious", site_id=site, subject_id=staff.id, fields=["phone"])
        assert denied.value.code == "unmask_not_allowed"
        with pytest.raises(InvalidInput) as blank:
            await service.reveal(conn, make_principal(Role.MEDIC, [site]), purpose="  ", site_id=site, subject_id=staff.id, fields=["phone"])
        assert blank.value.code == "invalid_purpose"
        assert await service.reveal(conn, make_principal(Role.MEDIC, [site]), purpose=None, site_id=site, subject_id=staff.id, fields=["phone"]) is False
        assert await service.reveal(conn, make_principal(Role.MEDIC, [site]), purpose="treatment", site_id=site, subject_id=staff.id, fields=["id_number"]) is True


async def test_audit_query_by_site_subject_time_paginated(client, auth, db, settings):
    a, b = await make_site(client, auth), await make_site(client, auth)
    medic = make_principal(Role.MEDIC, [a, b])
    async with db.transaction() as conn:
        for i in range(5):
            await service.reveal(conn, medic, purpose=f"treatment {i}", site_id=a if i % 2 == 0 else b, subject_id=None, fields=["phone"])
    command = make_principal(Role.COMMAND)
    seen, cursor = [], None
    while True:
        page = (await client.get("/api/v1/audit", params={"site_id": str(a), "limit": 2, **({"cursor": cursor} if cursor else {})}, headers=auth(command))).json()
        seen += [e["purpose"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["treatment 4", "treatment 2", "treatment 0"]
    future = await client.get("/api/v1/audit", params={"since": "2999-01-01T00:00:00Z"}, headers=auth(command))
    assert future.status_code == 200 and future.json()["items"] == []
    assert (await client.get("/api/v1/audit", headers=auth(make_principal(Role.SITE_MANAGER, [a])))).status_code == 403
    gql = "query($s: UUID) { auditLog(siteId: $s, first: 10) { edges { node { action purpose siteId } } } }"
    result = (await client.post("/graphql", json={"query": gql, "variables": {"s": str(b)}}, headers=auth(command))).json()
    assert [e["node"]["purpose"] for e in result["data"]["auditLog"]["edges"]] == ["treatment 3", "treatment 1"]


async def test_audit_rows_cannot_be_updated_or_deleted(db):
    principal = make_principal(Role.COMMAND)
    async with db.transaction() as conn:
        await service.reveal(conn, principal, purpose="review", site_id=None, subject_id=None, fields=["phone"])
    for statement in ("UPDATE audit_log SET purpose = 'changed'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        async with db.connection() as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT purpose FROM audit_log") == "review"
