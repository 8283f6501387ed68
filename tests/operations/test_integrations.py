"""Issue 17 over REST for integrations: labs upload staff swab results by barcode, the medical-waste carrier
confirms receipt. Each key reaches the sites it serves only: the second site here is a fully seeded ward
(residents, workers, swabs, waste), and its real ids answer as unknown (404 / ``unknown_barcode``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from service.access import service as access
from service.access.model import ApiClientCreate, Role
from service.errors import DomainError
from service.operations.infection import service as infection
from service.operations.infection.model import WasteCreate
from service.operations.staffing import service as staffing
from service.operations.staffing.model import StaffSampleCreate, WorkerCreate
from tests.conftest import make_principal
from tests.transfers.helpers import make_ward


async def in_tx(db, fn):
    async with db.transaction() as conn:
        return await fn(conn)


async def client_key(db, role: str, site_ids: list[Any] | None, name: str = "集成") -> str:
    data = msgspec.convert({"name": name, "role": role, "site_ids": None if site_ids is None else [str(s) for s in site_ids]}, ApiClientCreate)
    return (await in_tx(db, lambda c: access.create_client(c, access.SYSTEM_PRINCIPAL, data))).api_key or ""


async def staff_swab(db, ward, barcode: str, now: datetime) -> tuple[Any, Any]:
    manager = make_principal(Role.SITE_MANAGER, [ward.site_id])
    worker = await in_tx(db, lambda c: staffing.add_worker(c, manager, WorkerCreate(site_id=ward.site_id, name="刘医生", post="medical")))  # type: ignore[arg-type]
    swab = await in_tx(db, lambda c: staffing.record_sample(c, ward.medic, StaffSampleCreate(worker_id=worker.id, barcode=barcode, collected_at=now)))
    return worker, swab


async def test_a_lab_uploads_staff_swab_results_for_the_sites_it_serves(db, settings, client):
    now = datetime.now(UTC).replace(microsecond=0)
    ward, other = await make_ward(db, settings), await make_ward(db, settings, "LJ-02")
    worker, swab = await staff_swab(db, ward, "ST-A1", now)
    _, negative = await staff_swab(db, ward, "ST-A2", now)
    other_worker, other_swab = await staff_swab(db, other, "ST-B1", now)
    key = {"X-API-Key": await client_key(db, "lab", [ward.site_id])}
    at = (now - timedelta(minutes=5)).isoformat()
    body = {"results": [{"barcode": "ST-A1", "result": "positive", "resulted_at": at}, {"barcode": "ST-B1", "result": "positive", "resulted_at": at},
                        {"barcode": "ST-A2", "result": "negative", "resulted_at": at}, {"barcode": "NO-SUCH", "result": "negative", "resulted_at": at}]}
    answer = await client.post("/api/v1/lab/staff-results", json=body, headers=key)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert [(i["barcode"], i["status"]) for i in got["items"]] == [
        ("ST-A1", "recorded"), ("ST-B1", "unknown_barcode"), ("ST-A2", "recorded"), ("NO-SUCH", "unknown_barcode")]
    assert (got["recorded"], got["unknown"], got["unchanged"], got["conflicts"]) == (2, 2, 0, 0)
    assert got["items"][0]["sample_id"] == str(swab.id) and "sample_id" not in got["items"][1]
    async with db.connection() as conn:
        loops = await staffing.loops(conn, ward.medic, [worker.id])
        other_loops = await staffing.loops(conn, other.medic, [other_worker.id])
        stored = {r["barcode"]: (r["result"], r["resulted_at"]) for r in await conn.fetch("SELECT barcode, result, resulted_at FROM staff_samples")}
        events = await conn.fetchval("SELECT count(*) FROM events WHERE type = 'staff.sample_resulted' AND site_id = $1", other.site_id)
    assert loops[worker.id].status.value == "isolating"  # positive: post-exposure isolation, as when a medic records it
    assert stored["ST-A1"] == ("positive", now - timedelta(minutes=5)) and stored["ST-A2"][0] == "negative"
    assert stored["ST-B1"] == ("pending", None) and other_loops[other_worker.id].status.value != "isolating" and events == 0
    assert negative.id != swab.id and other_swab.worker_id == other_worker.id

    again = await client.post("/api/v1/lab/staff-results", json={"results": [body["results"][0], {**body["results"][2], "result": "positive"}]}, headers=key)
    assert [i["status"] for i in again.json()["items"]] == ["unchanged", "conflict"]
    # The second site's own lab key reaches its tube; a resident's upload route does not know staff tubes.
    other_key = {"X-API-Key": await client_key(db, "lab", [other.site_id])}
    residents = await client.post("/api/v1/lab/results", json={"results": [body["results"][1]]}, headers=other_key)
    assert residents.json()["items"][0]["status"] == "unknown_barcode"
    staff = await client.post("/api/v1/lab/staff-results", json={"results": [{**body["results"][1], "result": "negative"}]}, headers=other_key)
    assert staff.json()["items"][0]["status"] == "recorded"
    # People and other integrations may not upload; bad input names its field.
    logistics = {"X-API-Key": await client_key(db, "logistics", [ward.site_id])}
    assert (await client.post("/api/v1/lab/staff-results", json=body, headers=logistics)).json()["code"] == "role_not_allowed"
    bad = await client.post("/api/v1/lab/staff-results", json={"results": [{**body["results"][0], "result": "maybe"}]}, headers=key)
    assert bad.status_code == 400 and bad.json()["field"] == "results[0].result"


async def test_the_carrier_confirms_receipt_of_the_waste_of_the_sites_it_serves(db, settings, client):
    now = datetime.now(UTC).replace(microsecond=0)
    ward, other = await make_ward(db, settings), await make_ward(db, settings, "LJ-02")

    async def seal(w, bags: int) -> uuid.UUID:
        data = WasteCreate(site_id=w.site_id, bags=bags, weight_kg=3.5 * bags, sealed_by="孙保洁", sealed_at=now - timedelta(hours=1))
        return (await in_tx(db, lambda c: infection.record_waste(c, w.staff, data))).id

    first, second, theirs = await seal(ward, 2), await seal(ward, 3), await seal(other, 4)
    key = {"X-API-Key": await client_key(db, "carrier", [ward.site_id], name="重庆市医疗废物处置中心")}
    period = {"since": (now - timedelta(days=1)).isoformat(), "until": (now + timedelta(minutes=5)).isoformat()}

    listed = await client.get(f"/api/v1/carrier/sites/{ward.site_id}/waste", params=period, headers=key)
    assert listed.status_code == 200, listed.text
    assert {b["id"] for b in listed.json()} == {str(first), str(second)}
    assert not {"sealed_by", "recorded_by"} & set(listed.json()[0])  # who sealed or logged it is not the carrier's
    assert (await client.get(f"/api/v1/carrier/sites/{other.site_id}/waste", params=period, headers=key)).json()["code"] == "site_not_found"
    assert (await client.get(f"/api/v1/carrier/waste/{theirs}", headers=key)).json()["code"] == "waste_not_found"
    receipt = {"version": 1, "carrier_receipt": "YF-0101", "received_at": now.isoformat()}
    refused = await client.post(f"/api/v1/carrier/waste/{theirs}/receipt", json=receipt, headers=key)
    assert refused.status_code == 404 and refused.json()["code"] == "waste_not_found"

    done = await client.post(f"/api/v1/carrier/waste/{first}/receipt", json=receipt, headers=key)
    assert done.status_code == 200, done.text
    assert (done.json()["state"], done.json()["carrier"], done.json()["carrier_receipt"], done.json()["version"]) == (
        "handed_over", "重庆市医疗废物处置中心", "YF-0101", 2)
    assert (await client.post(f"/api/v1/carrier/waste/{first}/receipt", json=receipt, headers=key)).json()["version"] == 2
    other_receipt = await client.post(f"/api/v1/carrier/waste/{first}/receipt", json={**receipt, "carrier_receipt": "YF-0102"}, headers=key)
    assert other_receipt.status_code == 409 and other_receipt.json()["code"] == "waste_handed_over"
    stale = await client.post(f"/api/v1/carrier/waste/{second}/receipt", json={**receipt, "version": 7}, headers=key)
    assert stale.status_code == 409 and stale.json()["code"] == "stale_version"
    future = await client.post(f"/api/v1/carrier/waste/{second}/receipt", json={**receipt, "received_at": (now + timedelta(days=1)).isoformat()}, headers=key)
    assert future.status_code == 422 and future.json()["code"] == "recorded_in_future"
    async with db.connection() as conn:
        log = {b.id: b for b in await infection.list_waste(conn, other.medic, other.site_id, since=now - timedelta(days=1), until=now + timedelta(minutes=5))}
        events = await conn.fetch("SELECT type, actor FROM events WHERE subject_id = $1 ORDER BY id", first)
    assert log[theirs].state.value == "sealed"  # the other site's batch is untouched
    assert [e["type"] for e in events] == ["inspection.waste_sealed", "inspection.waste_handed_over"] and events[1]["actor"].startswith("client:")

    # Least privilege: nothing else of the site, and a carrier key must name its sites.
    for path in (f"/api/v1/sites/{ward.site_id}", f"/api/v1/sites/{ward.site_id}/alerts", "/api/v1/supplies/stock", "/api/v1/changes"):
        assert (await client.get(path, headers=key)).status_code == 403, path
    with pytest.raises(DomainError) as no_sites:
        await client_key(db, "carrier", None)
    assert no_sites.value.code == "sites_required"
