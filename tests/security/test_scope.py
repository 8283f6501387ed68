"""Integration keys see only their job; a key or account without a scope sees nothing; unscoped keys are refused."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import uuid
from pathlib import Path

from service.access import store
from service.access.model import Role
from tests.access.helpers import make_site
from tests.conftest import make_principal

ROOT = Path(__file__).resolve().parents[2]


async def _legacy_key(db, role: str, *, facility_id=None) -> str:
    """A key stored as the old rules allowed: every site (or, for a hospital, no facility)."""
    key = f"qsk_legacy-{uuid.uuid4().hex}"
    async with db.transaction() as conn:
        await store.insert_client(
            conn, None, id=uuid.uuid4(), name=f"legacy {role}", role=role, key_hash=hashlib.sha256(key.encode()).digest(),
            key_prefix=key[:12], facility_id=facility_id, created_by="test",
        )
    return key


async def test_clients_without_a_scope_are_refused(client, auth):
    site = await make_site(client, auth)
    command = auth(make_principal(Role.COMMAND))
    for body, code in (
        ({"name": "l", "role": "logistics", "site_ids": None}, "sites_required"),
        ({"name": "l", "role": "lab", "site_ids": None}, "sites_required"),
        ({"name": "h", "role": "hospital", "site_ids": None}, "facility_required"),
        ({"name": "h", "role": "hospital", "site_ids": [str(site)]}, "facility_required"),
        ({"name": "l", "role": "logistics", "site_ids": [str(site)], "facility_id": str(uuid.uuid4())}, "facility_only_for_hospital"),
    ):
        refused = await client.post("/api/v1/clients", json=body, headers=command)
        assert refused.status_code == 422 and refused.json()["code"] == code, (body, refused.text)
    gql = await client.post(
        "/graphql",
        json={"query": 'mutation { createApiClient(input: {name: "h", role: HOSPITAL, siteIds: null}) { apiKey userErrors { code } } }'},
        headers=command,
    )
    assert gql.json()["data"]["createApiClient"] == {"apiKey": None, "userErrors": [{"code": "facility_required"}]}


async def test_cli_refuses_a_hospital_client_without_facility(settings):
    env = {
        **os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url, "QSITE_DATA_DIR": settings.data_dir,
        "QSITE_JWT_SECRET": settings.jwt_secret, "QSITE_PII_KEYS": settings.pii_keys, "QSITE_PII_INDEX_KEY": settings.pii_index_key,
        "QSITE_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "create-client", "h", "--role", "hospital",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode != 0 and b"facility_required" in err and b"qsk_" not in out


async def test_keys_without_a_scope_see_nothing(client, auth, db):
    site = await make_site(client, auth)
    logistics = {"X-API-Key": await _legacy_key(db, "logistics")}
    sites = await client.get("/api/v1/sites", headers=logistics)
    assert sites.status_code == 200 and sites.json()["items"] == []
    assert (await client.get(f"/api/v1/sites/{site}", headers=logistics)).status_code == 404
    stock = await client.get("/api/v1/supplies/stock", headers=logistics)
    assert stock.status_code == 200 and stock.json()["sites"] == []
    assert (await client.get("/api/v1/supplies/replenishments", headers=logistics)).json()["items"] == []
    assert (await client.get("/api/v1/supplies/changes", headers=logistics)).json()["events"] == []
    # a hospital key linked to no facility reads no transfer
    hospital = {"X-API-Key": await _legacy_key(db, "hospital")}
    refused = await client.get("/api/v1/hospital/transfers", headers=hospital)
    assert refused.status_code == 403 and refused.json()["code"] == "facility_required"
    # an account whose token names no sites (non-command) sees none either
    staff = make_principal(Role.SITE_STAFF, None)
    assert (await client.get("/api/v1/sites", headers=auth(staff))).json()["items"] == []


async def test_integration_keys_see_only_their_job(client, auth, db):
    """Logistics: no alerts, temperatures, exposure reviews; hospital: no stays, timelines, alerts, residents, board."""
    site = await make_site(client, auth)
    checks = {
        Role.LOGISTICS: [f"/api/v1/sites/{site}/alerts", f"/api/v1/sites/{site}/exposure-reviews", f"/api/v1/sites/{site}/rooms",
                         f"/api/v1/sites/{site}/transfers"],
        Role.HOSPITAL: [f"/api/v1/sites/{site}/alerts", f"/api/v1/sites/{site}", f"/api/v1/occupancy", f"/api/v1/sites/{site}/rooms"],
        Role.LAB: [f"/api/v1/sites/{site}/alerts", "/api/v1/sites", "/api/v1/supplies/stock"],
    }
    for role, urls in checks.items():
        headers = auth(make_principal(role, [site]))
        for url in urls:
            answer = await client.get(url, headers=headers)
            assert answer.status_code == 403 and answer.json()["code"] == "role_not_allowed", (role, url, answer.text)
    fields = ["stays(siteId: $s) { edges { node { id } } }", "healthTimeline(stayId: $s) { __typename }",
              "siteAlerts(siteId: $s) { edges { node { id } } }", 'residentsByDocument(documentNumber: "110101199003074477") { id } site(id: $s) { id }',
              "roomBoard(siteId: $s) { __typename }", "staffMember(id: $s) { id }", "exposureReviews(siteId: $s) { id }"]
    for role in (Role.LOGISTICS, Role.LAB, Role.HOSPITAL):
        for f in fields:
            answer = await client.post(
                "/graphql", json={"query": f"query($s: UUID!) {{ {f} }}", "variables": {"s": str(site)}}, headers=auth(make_principal(role, [site]))
            )
            body = answer.json()
            assert not any((body.get("data") or {}).values()), (role, f, body)
            assert "Not allowed" in body["errors"][0]["message"], (role, f, body)
