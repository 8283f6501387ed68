"""Transfers end to end over the hospital's REST interface (issue 17): acceptance before dispatch,
declines and redirects, a masked identity with the sending site's contact, outcomes after arrival,
and a return that opens a new stay at the receiving site."""

from __future__ import annotations

import uuid

import pytest

from service.errors import DomainError
from service.sites import service as sites
from service.sites.model import SitePatch
from service.stays import service as stays
from tests.conftest import make_principal
from tests.stays.helpers import COMMAND, make_site
from tests.transfers.helpers import VEHICLE, make_facility, make_hospital, make_ward, move, request, to_state

# What a hospital must never see: the sites' internal ids and people.
SITE_INTERNAL = {"stay_id", "resident_id", "room_id", "alert_id", "sample_id", "requested_by", "site_id", "driver"}


def key(api_key: str, idem: str | None = None) -> dict[str, str]:
    return {"X-API-Key": api_key} | ({"Idempotency-Key": idem} if idem else {})


async def events(db, type_: str) -> int:
    async with db.connection() as conn:
        return await conn.fetchval("SELECT count(*) FROM events WHERE type = $1", type_)


async def test_a_facility_that_accepts_first_blocks_dispatch_until_it_has(client, db, settings, auth):
    ward = await make_ward(db, settings)
    async with db.transaction() as conn:
        await sites.update_site(conn, COMMAND, ward.site_id, SitePatch(version=1, contact="值班电话 023-6000 0001", address="礼嘉大道 1 号"))
    facility = await make_facility(db, requires_acceptance=True)
    _, api_key = await make_hospital(db, facility, [ward.site_id])
    t = await to_state(db, ward.medic, await request(db, ward.staff, ward.patient.id), "approved", facility)
    with pytest.raises(DomainError) as early:
        await move(db, ward.medic, t, "dispatch", vehicle=VEHICLE)
    assert early.value.status == 409 and early.value.code == "destination_not_accepted"

    listed = (await client.get("/api/v1/hospital/transfers", headers=key(api_key))).json()["items"]
    assert [i["id"] for i in listed] == [str(t.id)]
    seen = listed[0]
    assert not SITE_INTERNAL & set(seen), "the hospital sees site-internal ids"
    assert seen["patient"]["name"] == "张*" and seen["patient"]["sex"] in ("male", "female", "unknown")
    assert seen["sending_site"] == {
        "id": str(ward.site_id), "code": "LJ-01", "name": "礼嘉隔离点 LJ-01", "contact": "值班电话 023-6000 0001", "address": "礼嘉大道 1 号"
    }
    url = f"/api/v1/hospital/transfers/{t.id}/acceptance"
    accepted = await client.post(url, json={"note": "负压病房已备"}, headers=key(api_key))
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["state"] == "destination_approved" and body["destination_approved_at"] and body["version"] == t.version + 1
    again = await client.post(url, json={}, headers=key(api_key))
    assert again.status_code == 200 and again.json()["version"] == body["version"]
    assert await events(db, "transfers.destination_accepted") == 1

    dispatched = await client.post(
        f"/api/v1/transfers/{t.id}/transitions", json={"action": "dispatch", "version": body["version"], "vehicle": VEHICLE},
        headers=auth(ward.medic),
    )
    assert dispatched.status_code == 200, dispatched.text
    assert dispatched.json()["state"] == "dispatched"
    transitions = (await client.get(f"/api/v1/transfers/{t.id}/transitions", headers=auth(ward.medic))).json()
    accept = next(x for x in transitions if x["action"] == "accept")
    assert accept["actor"].startswith("client:") and accept["facility_id"] == str(facility) and accept["note"] == "负压病房已备"


async def test_a_decline_sends_the_transfer_back_and_a_redirect_needs_a_new_acceptance(client, db, settings, auth):
    ward = await make_ward(db, settings)
    picky, open_door = await make_facility(db, requires_acceptance=True), await make_facility(db)
    _, api_key = await make_hospital(db, picky, [ward.site_id])
    t = await to_state(db, ward.medic, await request(db, ward.staff, ward.patient.id), "destination_approved", picky)
    url = f"/api/v1/hospital/transfers/{t.id}/decline"
    assert (await client.post(url, json={"reason": ""}, headers=key(api_key))).status_code == 400
    declined = await client.post(url, json={"reason": "ICU full"}, headers=key(api_key))
    assert declined.status_code == 200, declined.text
    assert declined.json()["state"] == "approved" and declined.json()["destination_id"] is None
    assert declined.json()["destination_approved_at"] is None
    # it no longer heads there: the hospital does not see it any more
    assert (await client.get("/api/v1/hospital/transfers", headers=key(api_key))).json()["items"] == []
    assert (await client.post(url, json={"reason": "again"}, headers=key(api_key))).status_code == 404
    assert await events(db, "transfers.destination_declined") == 1

    medic = auth(ward.medic)
    moves = f"/api/v1/transfers/{t.id}/transitions"
    current = (await client.get(f"/api/v1/transfers/{t.id}", headers=medic)).json()
    no_target = await client.post(moves, json={"action": "redirect", "version": current["version"]}, headers=medic)
    assert no_target.status_code == 422 and no_target.json()["code"] == "destination_required"
    back = await client.post(moves, json={"action": "redirect", "version": current["version"], "destination_id": str(picky)}, headers=medic)
    assert back.status_code == 200 and back.json()["destination_id"] == str(picky)
    # the same facility must accept again before dispatch; another that needs no acceptance may be named at dispatch
    version = back.json()["version"]
    refused = await client.post(moves, json={"action": "dispatch", "version": version, "vehicle": VEHICLE}, headers=medic)
    assert refused.status_code == 409 and refused.json()["code"] == "destination_not_accepted"
    sent = await client.post(
        moves, json={"action": "dispatch", "version": version, "vehicle": VEHICLE, "destination_id": str(open_door)}, headers=medic
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["destination_id"] == str(open_door)


async def test_outcomes_after_arrival_admitted_then_final(client, db, settings, auth):
    ward = await make_ward(db, settings)
    facility = await make_facility(db)
    _, api_key = await make_hospital(db, facility, [ward.site_id])
    t = await to_state(db, ward.medic, await request(db, ward.staff, ward.patient.id), "departed", facility)
    url = f"/api/v1/hospital/transfers/{t.id}/outcome"
    early = await client.post(url, json={"outcome": "admitted"}, headers=key(api_key))
    assert early.status_code == 409 and early.json()["code"] == "transfer_not_arrived"
    await client.post(f"/api/v1/hospital/transfers/{t.id}/arrival", json={}, headers=key(api_key))
    bad = await client.post(url, json={"outcome": "admitted", "return_site_id": str(ward.site_id)}, headers=key(api_key))
    assert bad.status_code == 422 and bad.json()["code"] == "return_fields_unexpected"
    admitted = await client.post(url, json={"outcome": "admitted", "note": "感染科 3 病区"}, headers=key(api_key))
    assert admitted.status_code == 200, admitted.text
    assert admitted.json()["outcome"] == "admitted" and admitted.json()["outcome_at"]
    same = await client.post(url, json={"outcome": "admitted"}, headers=key(api_key))
    assert same.json()["version"] == admitted.json()["version"]
    stale = await client.post(url, json={"outcome": "discharged", "version": 1}, headers=key(api_key))
    assert stale.status_code == 409 and stale.json()["code"] == "stale_version"
    discharged = await client.post(url, json={"outcome": "discharged"}, headers=key(api_key))
    assert discharged.status_code == 200 and discharged.json()["outcome"] == "discharged"
    for later in ("deceased", "admitted", "returned"):
        final = await client.post(url, json={"outcome": later}, headers=key(api_key))
        assert final.status_code == 409 and final.json()["code"] == "outcome_final", later
    assert await events(db, "transfers.outcome_reported") == 2
    # the apps see it too, and the history names each report
    seen = (await client.get(f"/api/v1/transfers/{t.id}", headers=auth(ward.medic))).json()
    assert seen["outcome"] == "discharged"
    actions = [x["action"] for x in (await client.get(f"/api/v1/transfers/{t.id}/transitions", headers=auth(ward.medic))).json()]
    assert actions[-2:] == ["outcome_admitted", "outcome_discharged"]
    # the database refuses a final outcome replaced, whatever the code does
    import asyncpg

    async with db.connection() as conn:
        with pytest.raises(asyncpg.CheckViolationError) as replaced:
            await conn.execute("UPDATE transfers SET outcome = 'deceased', version = version + 1 WHERE id = $1", t.id)
        assert replaced.value.constraint_name == "transfers_outcome_valid"


async def test_a_return_opens_a_new_stay_at_the_receiving_site(client, db, settings, auth):
    ward = await make_ward(db, settings)
    other = await make_site(db, "LJ-02", floors={2: (2, 1)})
    full = await make_site(db, "LJ-03")  # no rooms at all
    facility = await make_facility(db)
    _, both_key = await make_hospital(db, facility, [ward.site_id, other, full])
    _, one_key = await make_hospital(db, facility, [ward.site_id])
    t = await to_state(db, ward.medic, await request(db, ward.staff, ward.patient.id), "arrived", facility)
    url = f"/api/v1/hospital/transfers/{t.id}/outcome"
    # a site the key does not name answers like one that does not exist
    for site in (other, uuid.uuid4()):
        hidden = await client.post(url, json={"outcome": "returned", "return_site_id": str(site)}, headers=key(one_key))
        assert hidden.status_code == 404 and hidden.json()["code"] == "site_not_found"
    # no free bed there: nothing is recorded
    no_bed = await client.post(url, json={"outcome": "returned", "return_site_id": str(full)}, headers=key(both_key))
    assert no_bed.status_code == 409 and no_bed.json()["code"] == "no_room_available"
    stay_id = uuid.uuid4()
    body = {"outcome": "returned", "return_site_id": str(other), "return_stay_id": str(stay_id), "note": "治愈出院，返回隔离点"}
    returned = await client.post(url, json=body, headers=key(both_key, "ret-1"))
    assert returned.status_code == 200, returned.text
    assert returned.json()["return_stay_id"] == str(stay_id) and returned.json()["return_site_id"] == str(other)
    replay = await client.post(url, json=body, headers=key(both_key, "ret-1"))
    assert replay.json() == returned.json()
    again = await client.post(url, json=body, headers=key(both_key))
    assert again.status_code == 200 and again.json()["version"] == returned.json()["version"]

    receiving = make_principal(ward.staff.role, [other])
    async with db.connection() as conn:
        found = await stays.get_stay(conn, receiving, stay_id)
    assert (found.site_id, found.resident_id, found.status.value) == (other, ward.patient.resident_id, "active")
    assert found.category == ward.patient.category
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events WHERE type = 'stays.admitted' AND subject_id = $1", stay_id) == 1
    # the sending site's medic does not reach the receiving site: no id of it; the command centre sees both
    mine = (await client.get(f"/api/v1/transfers/{t.id}", headers=auth(ward.medic))).json()
    assert mine["outcome"] == "returned" and mine["return_site_id"] is None and mine["return_stay_id"] is None
    everyone = (await client.get(f"/api/v1/transfers/{t.id}", headers=auth(COMMAND))).json()
    assert everyone["return_stay_id"] == str(stay_id)
