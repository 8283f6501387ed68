"""REST: facilities, a site's transfers, response times, and the hospital integration with real API keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.access.model import Role
from tests.conftest import make_principal
from tests.transfers.helpers import VEHICLE, make_facility, make_hospital, make_ward, request, to_state


def key(api_key: str) -> dict[str, str]:
    return {"X-API-Key": api_key}


async def test_hospital_confirms_arrival_twice_one_transition(client, db, settings, auth):
    ward = await make_ward(db, settings)
    facility = await make_facility(db)
    _, api_key = await make_hospital(db, facility, [ward.site_id])
    t = await to_state(db, ward.medic, await request(db, ward.staff, ward.patient.id), "departed", facility)
    incoming = (await client.get("/api/v1/hospital/transfers", headers=key(api_key))).json()
    assert [i["id"] for i in incoming["items"]] == [str(t.id)]
    url = f"/api/v1/hospital/transfers/{t.id}/arrival"
    first = await client.post(url, json={"handover_note": "ward 3"}, headers=key(api_key))
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "arrived" and first.json()["version"] == t.version + 1
    again = await client.post(url, json={"handover_note": "ward 3"}, headers=key(api_key))
    assert again.status_code == 200 and again.json() == first.json()
    # with an Idempotency-Key too
    headers = {**key(api_key), "Idempotency-Key": "arr-1"}
    assert (await client.post(url, json={}, headers=headers)).json()["version"] == t.version + 1
    transitions = (await client.get(f"/api/v1/transfers/{t.id}/transitions", headers=auth(ward.medic))).json()
    assert [x["to_state"] for x in transitions].count("arrived") == 1
    assert transitions[-1]["actor"].startswith("client:") and transitions[-1]["note"] == "ward 3"
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events WHERE type = 'transfers.arrived'") == 1


async def test_hospital_sees_only_its_own_transfers(client, db, settings, auth):
    ward = await make_ward(db, settings)
    mine, theirs = await make_facility(db), await make_facility(db)
    _, my_key = await make_hospital(db, mine, [ward.site_id])
    _, their_key = await make_hospital(db, theirs, [ward.site_id])
    t = await to_state(db, ward.medic, await request(db, ward.staff, ward.patient.id), "departed", mine)
    assert (await client.get("/api/v1/hospital/transfers", headers=key(their_key))).json()["items"] == []
    for url in (f"/api/v1/hospital/transfers/{t.id}",):
        missing = await client.get(url, headers=key(their_key))
        assert missing.status_code == 404 and missing.json()["code"] == "transfer_not_found"
    for action, body in (("arrival", {}), ("refusal", {"reason": "full"})):
        refused = await client.post(f"/api/v1/hospital/transfers/{t.id}/{action}", json=body, headers=key(their_key))
        assert refused.status_code == 404 and refused.json()["code"] == "transfer_not_found"
    # the site-wide routes are not for hospitals at all
    assert (await client.get(f"/api/v1/sites/{ward.site_id}/transfers", headers=key(their_key))).status_code == 403
    assert (await client.get(f"/api/v1/transfers/{t.id}", headers=key(my_key))).status_code == 403
    facilities = (await client.get("/api/v1/facilities", headers=key(their_key))).json()["items"]
    assert [f["id"] for f in facilities] == [str(theirs)]
    assert (await client.get(f"/api/v1/hospital/transfers/{t.id}", headers=key(my_key))).status_code == 200
    # staff may not use the hospital interface
    assert (await client.get("/api/v1/hospital/transfers", headers=auth(ward.medic))).status_code == 403


async def test_refusal_at_the_door_goes_back_to_approved(client, db, settings, auth):
    ward = await make_ward(db, settings)
    first, second = await make_facility(db), await make_facility(db)
    _, api_key = await make_hospital(db, first, [ward.site_id])
    t = await to_state(db, ward.medic, await request(db, ward.staff, ward.patient.id), "departed", first)
    empty = await client.post(f"/api/v1/hospital/transfers/{t.id}/refusal", json={"reason": ""}, headers=key(api_key))
    assert empty.status_code == 400
    refused = await client.post(f"/api/v1/hospital/transfers/{t.id}/refusal", json={"reason": "no ICU bed"}, headers=key(api_key))
    assert refused.status_code == 200, refused.text
    body = refused.json()
    assert body["state"] == "approved" and body["destination_id"] is None and body["departed_at"] is not None
    assert (await client.get("/api/v1/hospital/transfers", headers=key(api_key))).json()["items"] == []
    # a medic sends it on to another hospital; the stay is not closed a second time
    url = f"/api/v1/transfers/{t.id}/transitions"
    medic = auth(ward.medic)
    cancel = await client.post(url, json={"action": "cancel", "version": body["version"], "note": "x"}, headers=medic)
    assert cancel.status_code == 409 and cancel.json()["code"] == "transfer_departed"
    dispatched = await client.post(
        url, json={"action": "dispatch", "version": body["version"], "destination_id": str(second), "vehicle": VEHICLE}, headers=medic
    )
    assert dispatched.status_code == 200, dispatched.text
    departed = await client.post(url, json={"action": "depart", "version": dispatched.json()["version"]}, headers=medic)
    assert departed.status_code == 200 and departed.json()["state"] == "departed"
    transitions = (await client.get(f"/api/v1/transfers/{t.id}/transitions", headers=medic)).json()
    refusal = next(x for x in transitions if x["action"] == "refuse_at_door")
    assert refusal["facility_id"] == str(first) and refusal["note"] == "no ICU bed"
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events WHERE type = 'stays.transferred'") == 1


async def test_rest_moves_versions_and_roles(client, db, settings, auth):
    ward = await make_ward(db, settings)
    facility = await make_facility(db)
    created = await client.post(
        "/api/v1/transfers", json={"stay_id": str(ward.patient.id), "reason": "symptoms", "urgency": "urgent"}, headers=auth(ward.staff)
    )
    assert created.status_code == 201, created.text
    t = created.json()
    url = f"/api/v1/transfers/{t['id']}/transitions"
    by_staff = await client.post(url, json={"action": "approve", "version": 1}, headers=auth(ward.staff))
    assert by_staff.status_code == 403
    ok = await client.post(url, json={"action": "approve", "version": 1, "destination_id": str(facility)}, headers=auth(ward.medic))
    assert ok.status_code == 200 and ok.json()["state"] == "approved"
    stale = await client.post(url, json={"action": "reject", "version": 1, "note": "no"}, headers=auth(ward.medic))
    assert stale.status_code == 409 and stale.json()["code"] == "stale_version"
    assert stale.json()["extra"] == {"current_state": "approved", "current_version": 2}
    no_vehicle = await client.post(url, json={"action": "dispatch", "version": 2}, headers=auth(ward.medic))
    assert no_vehicle.status_code == 422 and no_vehicle.json()["code"] == "vehicle_required"
    bad_kind = await client.post(
        url, json={"action": "dispatch", "version": 2, "vehicle": {**VEHICLE, "kind": "bicycle"}}, headers=auth(ward.medic)
    )
    assert bad_kind.status_code == 400
    # a second open transfer for the same stay
    dup = await client.post("/api/v1/transfers", json={"stay_id": str(ward.patient.id), "reason": "other"}, headers=auth(ward.staff))
    assert dup.status_code == 409 and dup.json()["code"] == "transfer_already_open"
    # another site's staff: 404 on every read and write
    stranger = make_principal(Role.MEDIC, [])
    assert (await client.get(f"/api/v1/transfers/{t['id']}", headers=auth(stranger))).status_code == 404
    assert (await client.get(f"/api/v1/transfers/{t['id']}/transitions", headers=auth(stranger))).status_code == 404
    assert (await client.post(url, json={"action": "cancel", "version": 2, "note": "x"}, headers=auth(stranger))).status_code == 404
    assert (await client.get(f"/api/v1/sites/{ward.site_id}/transfers", headers=auth(stranger))).status_code == 404
    other_stay = await client.post("/api/v1/transfers", json={"stay_id": str(ward.neighbour.id), "reason": "other"}, headers=auth(stranger))
    assert other_stay.status_code == 404


async def test_site_list_and_times(client, db, settings, auth):
    ward = await make_ward(db, settings)
    facility = await make_facility(db)
    done = await to_state(db, ward.medic, await request(db, ward.staff, ward.patient.id), "arrived", facility)
    await request(db, ward.staff, ward.neighbour.id, reason="family_request")
    page = (await client.get(f"/api/v1/sites/{ward.site_id}/transfers", params={"limit": 1}, headers=auth(ward.staff))).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = (await client.get(f"/api/v1/sites/{ward.site_id}/transfers", params={"cursor": page["next_cursor"]}, headers=auth(ward.staff))).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    arrived = (await client.get(f"/api/v1/sites/{ward.site_id}/transfers", params={"state": "arrived"}, headers=auth(ward.staff))).json()
    assert [t["id"] for t in arrived["items"]] == [str(done.id)]
    now = datetime.now(UTC)
    params = {"since": (now - timedelta(days=1)).isoformat(), "until": (now + timedelta(hours=1)).isoformat()}
    times = await client.get(f"/api/v1/sites/{ward.site_id}/transfer-times", params=params, headers=auth(ward.medic))
    assert times.status_code == 200, times.text
    body = times.json()
    assert body["transfers"] == 2 and body["dispatched"] == 1 and body["arrived"] == 1
    assert body["median_request_to_dispatch_minutes"] == done.request_to_dispatch_minutes
    backwards = await client.get(
        f"/api/v1/sites/{ward.site_id}/transfer-times", params={"since": params["until"], "until": params["since"]}, headers=auth(ward.medic)
    )
    assert backwards.status_code == 422 and backwards.json()["code"] == "invalid_period"


async def test_facilities_crud(client, auth):
    command = make_principal(Role.COMMAND)
    body = {"code": "CQ-PHC", "name": "重庆市公共卫生医疗救治中心", "kind": "designated_hospital", "region_path": "重庆市/沙坪坝区"}
    created = await client.post("/api/v1/facilities", json=body, headers=auth(command))
    assert created.status_code == 201, created.text
    dup = await client.post("/api/v1/facilities", json=body, headers=auth(command))
    assert dup.status_code == 409 and dup.json()["code"] == "facility_code_taken"
    staff = make_principal(Role.SITE_STAFF, [])
    assert (await client.post("/api/v1/facilities", json={**body, "code": "X1"}, headers=auth(staff))).status_code == 403
    listed = (await client.get("/api/v1/facilities", params={"region": "重庆市"}, headers=auth(staff))).json()
    assert [f["code"] for f in listed["items"]] == ["CQ-PHC"]
    assert (await client.get("/api/v1/facilities", params={"region": "重庆"}, headers=auth(staff))).json()["items"] == []
    fid = created.json()["id"]
    patched = await client.patch(f"/api/v1/facilities/{fid}", json={"version": 1, "active": False}, headers=auth(command))
    assert patched.status_code == 200 and patched.json()["active"] is False
    stale = await client.patch(f"/api/v1/facilities/{fid}", json={"version": 1, "capacity_note": "20 beds"}, headers=auth(command))
    assert stale.status_code == 409 and stale.json()["code"] == "stale_version"
