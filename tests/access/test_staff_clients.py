import asyncio
import uuid

import msgspec
import pytest

from service.access import service
from service.access.model import Role
from service.errors import Unauthorized
from tests.access.helpers import make_client, make_site, make_staff
from tests.conftest import make_principal


def staff_body(username, role="site_staff", site_ids=(), **extra):
    return {"username": username, "display_name": username, "password": "a-long-password", "role": role, "site_ids": [str(s) for s in site_ids], **extra}


async def test_site_manager_manages_only_own_sites(client, auth, db, settings):
    a, b = await make_site(client, auth), await make_site(client, auth)
    manager = make_principal(Role.SITE_MANAGER, [a])
    ok = await client.post("/api/v1/staff", json=staff_body("zhao", site_ids=[a]), headers=auth(manager))
    assert ok.status_code == 201, ok.text
    assert ok.json()["site_ids"] == [str(a)]
    other_site = await client.post("/api/v1/staff", json=staff_body("qian", site_ids=[b]), headers=auth(manager))
    assert other_site.status_code == 404 and other_site.json()["code"] == "site_not_found"
    command = await client.post("/api/v1/staff", json=staff_body("sun", role="command"), headers=auth(manager))
    assert command.status_code == 403 and command.json()["code"] == "cannot_grant_command"
    # staff of site b (made by command) is invisible to a's manager, and cannot be changed
    other = await make_staff(db, settings, "li", "medic", [b])
    assert (await client.get(f"/api/v1/staff/{other.id}", headers=auth(manager))).status_code == 404
    patched = await client.patch(f"/api/v1/staff/{other.id}", json={"version": 1, "site_ids": [str(a)]}, headers=auth(manager))
    assert patched.status_code == 404
    listed = (await client.get("/api/v1/staff", headers=auth(manager))).json()
    assert [s["username"] for s in listed["items"]] == ["zhao"]
    # a staff member of both sites is visible but not changeable by a's manager
    both = await make_staff(db, settings, "zhou", "site_staff", [a, b])
    shared = await client.patch(f"/api/v1/staff/{both.id}", json={"version": 1, "active": False}, headers=auth(manager))
    assert shared.status_code == 403 and shared.json()["code"] == "staff_outside_scope"
    # site staff may not manage staff at all
    denied = await client.get("/api/v1/staff", headers=auth(make_principal(Role.SITE_STAFF, [a])))
    assert denied.status_code == 403


async def test_staff_bad_input_and_conflicts(client, auth):
    a = await make_site(client, auth)
    command = make_principal(Role.COMMAND)
    bad = await client.post("/api/v1/staff", json=staff_body("X Y", site_ids=[a]), headers=auth(command))
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"
    no_sites = await client.post("/api/v1/staff", json=staff_body("nosite"), headers=auth(command))
    assert no_sites.status_code == 422 and no_sites.json()["code"] == "sites_required"
    unknown_site = await client.post("/api/v1/staff", json=staff_body("ghost", site_ids=[uuid.uuid4()]), headers=auth(command))
    assert unknown_site.status_code == 422 and unknown_site.json()["code"] == "unknown_reference"
    results = await asyncio.gather(*(client.post("/api/v1/staff", json=staff_body("twin", site_ids=[a]), headers=auth(command)) for _ in range(3)))
    assert sorted(r.status_code for r in results) == [201, 409, 409]
    assert {r.json()["code"] for r in results if r.status_code == 409} == {"username_taken"}
    created = next(r.json() for r in results if r.status_code == 201)
    url = f"/api/v1/staff/{created['id']}"
    first = await client.patch(url, json={"version": 1, "display_name": "A"}, headers=auth(command))
    stale = await client.patch(url, json={"version": 1, "display_name": "B"}, headers=auth(command))
    assert first.status_code == 200 and stale.status_code == 409 and stale.json()["code"] == "stale_version"


async def test_offline_replay_with_client_id_is_not_a_second_account(client, auth):
    a = await make_site(client, auth)
    command = make_principal(Role.COMMAND)
    staff_id = str(uuid.uuid4())
    headers = {**auth(command), "Idempotency-Key": "create-zhang"}
    first = await client.post("/api/v1/staff", json=staff_body("zhang", site_ids=[a], id=staff_id), headers=headers)
    replay = await client.post("/api/v1/staff", json=staff_body("zhang", site_ids=[a], id=staff_id), headers=headers)
    assert first.status_code == replay.status_code == 201 and first.json() == replay.json()
    assert first.json()["id"] == staff_id


async def test_api_key_shown_once_hashed_cached_and_revocable(client, auth, db, settings):
    a, b = await make_site(client, auth), await make_site(client, auth)
    manager = make_principal(Role.SITE_MANAGER, [a])
    headers = {**auth(manager), "Idempotency-Key": "lab-1"}
    body = {"name": "Logistics", "role": "logistics", "site_ids": [str(a)]}
    created = await client.post("/api/v1/clients", json=body, headers=headers)
    assert created.status_code == 201, created.text
    key = created.json()["api_key"]
    assert key.startswith("qsk_") and len(key) > 40
    replay = await client.post("/api/v1/clients", json=body, headers=headers)
    assert replay.status_code == 201 and replay.json()["api_key"] is None and replay.json()["id"] == created.json()["id"]
    async with db.connection() as conn:
        stored = await conn.fetch("SELECT key_hash::text AS h FROM api_clients UNION ALL SELECT convert_from(response, 'UTF8') FROM idempotency_keys")
    assert all(key not in r["h"] for r in stored)
    # a lab or logistics key always names its sites (a key without any would see nothing);
    # a manager may not create clients for another site
    everywhere = await client.post("/api/v1/clients", json={**body, "site_ids": None}, headers=auth(manager))
    assert everywhere.status_code == 422 and everywhere.json()["code"] == "sites_required"
    elsewhere = await client.post("/api/v1/clients", json={**body, "site_ids": [str(b)]}, headers=auth(manager))
    assert elsewhere.status_code == 404

    as_client = {"X-API-Key": key}
    listed = await client.get("/api/v1/sites", headers=as_client)
    assert listed.status_code == 200 and [s["id"] for s in listed.json()["items"]] == [str(a)]
    revoked = await client.post(f"/api/v1/clients/{created.json()['id']}/revoke", headers=auth(manager))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    after = await client.get("/api/v1/sites", headers=as_client)
    assert after.status_code == 401 and after.json()["code"] == "invalid_api_key"


async def test_verified_api_key_needs_no_postgres(db, settings, client, auth):
    a = await make_site(client, auth)
    created = await make_client(db, "logistics", [a])
    principal = await service.authenticate(db, settings, created.api_key)
    assert principal.role is Role.LOGISTICS and principal.site_ids == frozenset({a})
    await db.pool.close()  # no PostgreSQL any more: the cached key still answers
    again = await service.authenticate(db, settings, created.api_key)
    assert again == principal


async def test_revocation_reaches_another_instance_through_redis(db, settings, client, auth):
    from service.cache import Cache
    from service.db import Database, close_pool, create_pool

    a = await make_site(client, auth)
    created = await make_client(db, "lab", [a])
    other_pool = await create_pool(settings, settings.database_url)
    other = Database(other_pool, Cache(settings.redis_url, prefix=settings.redis_prefix, timeout_ms=settings.redis_timeout_ms))
    try:
        await service.authenticate(other, settings, created.api_key)  # cached on "the other instance"
        await asyncio.sleep(0.2)  # let its invalidation listener subscribe
        async with db.transaction() as conn:
            await service.revoke_client(db, conn, service.SYSTEM_PRINCIPAL, created.id)
        for _ in range(100):
            if not service.api_key_cache(other).entries:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(Unauthorized):
            await service.authenticate(other, settings, created.api_key)
    finally:
        await close_pool(other_pool)
        await other.cache.close()


async def test_graphql_staff_and_clients(client, auth):
    a = await make_site(client, auth)
    manager = make_principal(Role.SITE_MANAGER, [a])
    create = """mutation($input: CreateStaffInput!) { createStaff(input: $input) { staff { id username role siteIds phone } userErrors { code field } } }"""
    variables = {"input": {"username": "wu", "displayName": "Wu", "password": "a-long-password", "role": "MEDIC", "siteIds": [str(a)], "phone": "13912345678"}}
    made = (await client.post("/graphql", json={"query": create, "variables": variables}, headers=auth(manager))).json()
    staff = made["data"]["createStaff"]["staff"]
    assert staff["phone"] == "139****5678" and staff["role"] == "MEDIC"
    denied = (await client.post("/graphql", json={"query": create, "variables": {"input": {**variables["input"], "username": "x2", "role": "COMMAND", "siteIds": []}}}, headers=auth(manager))).json()
    assert denied["data"]["createStaff"]["userErrors"][0]["code"] == "cannot_grant_command"
    query = "query($id: UUID!) { staffMember(id: $id) { username } staffMembers(first: 5) { edges { node { username } } } }"
    seen = (await client.post("/graphql", json={"query": query, "variables": {"id": staff["id"]}}, headers=auth(manager))).json()
    assert seen["data"]["staffMember"] == {"username": "wu"}
    stranger = make_principal(Role.SITE_MANAGER, [await make_site(client, auth)])
    hidden = (await client.post("/graphql", json={"query": query, "variables": {"id": staff["id"]}}, headers=auth(stranger))).json()
    assert hidden["data"]["staffMember"] is None and hidden["data"]["staffMembers"]["edges"] == []
    mk = """mutation($input: CreateApiClientInput!) { createApiClient(input: $input) { apiKey client { id role siteIds } userErrors { code } } }"""
    made = (await client.post("/graphql", json={"query": mk, "variables": {"input": {"name": "L", "role": "LOGISTICS", "siteIds": [str(a)]}}}, headers=auth(manager))).json()
    key = made["data"]["createApiClient"]["apiKey"]
    assert key.startswith("qsk_")
    assert (await client.get("/api/v1/sites", headers={"X-API-Key": key})).status_code == 200
    revoke = "mutation($id: UUID!) { revokeApiClient(id: $id) { client { revokedAt } userErrors { code } } }"
    cid = made["data"]["createApiClient"]["client"]["id"]
    gone = (await client.post("/graphql", json={"query": revoke, "variables": {"id": cid}}, headers=auth(stranger))).json()
    assert gone["data"]["revokeApiClient"]["userErrors"][0]["code"] == "client_not_found"
    done = (await client.post("/graphql", json={"query": revoke, "variables": {"id": cid}}, headers=auth(manager))).json()
    assert done["data"]["revokeApiClient"]["client"]["revokedAt"]
    assert (await client.get("/api/v1/sites", headers={"X-API-Key": key})).status_code == 401


def test_struct_validation_of_staff_input():
    from service.access.model import StaffCreate

    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"username": "ok", "display_name": "x", "password": "short", "role": "site_staff"}, StaffCreate)
