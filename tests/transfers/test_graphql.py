"""GraphQL: request and move from the app, the board by urgency and age, a resident's history, scoping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.access.model import Role
from tests.conftest import make_principal
from tests.stays.helpers import admission, person
from service.stays import service as stays
from tests.transfers.helpers import VEHICLE, make_facility, make_ward, request, to_state

REQUEST = """mutation($input: RequestTransferInput!) { requestTransfer(input: $input) {
    transfer { id state version urgency infectious } userErrors { field code message } } }"""
MOVE = """mutation($input: MoveTransferInput!) { moveTransfer(input: $input) {
    transfer { id state version destination { code } vehicleKind } userErrors { field code message } } }"""


async def gql(client, auth, principal, query, **variables):
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=auth(principal))
    assert response.status_code == 200, response.text
    return response.json()


async def test_request_and_move_through_graphql(client, db, settings, auth):
    ward = await make_ward(db, settings)
    facility = await make_facility(db, "CQ-PHC")
    created = await gql(client, auth, ward.staff, REQUEST, input={"stayId": str(ward.patient.id), "reason": "POSITIVE_TEST", "urgency": "EMERGENCY"})
    t = created["data"]["requestTransfer"]["transfer"]
    assert t["state"] == "REQUESTED" and t["infectious"] and t["urgency"] == "EMERGENCY"
    # site staff may request but not move
    denied = await gql(client, auth, ward.staff, MOVE, input={"id": t["id"], "action": "APPROVE", "version": 1})
    assert denied["data"] is None and denied["errors"]
    approved = await gql(client, auth, ward.medic, MOVE, input={"id": t["id"], "action": "APPROVE", "version": 1, "destinationId": str(facility)})
    assert approved["data"]["moveTransfer"]["transfer"]["destination"] == {"code": "CQ-PHC"}
    stale = await gql(client, auth, ward.medic, MOVE, input={"id": t["id"], "action": "REJECT", "version": 1, "note": "x"})
    assert stale["data"]["moveTransfer"]["userErrors"][0]["code"] == "stale_version"
    vehicle = {**VEHICLE, "kind": "NEGATIVE_PRESSURE_AMBULANCE"}
    missing = await gql(client, auth, ward.medic, MOVE, input={"id": t["id"], "action": "DISPATCH", "version": 2})
    assert missing["data"]["moveTransfer"]["userErrors"][0] == {"field": "input.vehicle", "code": "vehicle_required", "message": "Dispatch needs the vehicle, driver and escort."}
    too_long = await gql(client, auth, ward.medic, MOVE, input={"id": t["id"], "action": "DISPATCH", "version": 2, "vehicle": {**vehicle, "plate": "X" * 40}})
    assert too_long["data"]["moveTransfer"]["userErrors"][0]["code"] == "invalid_input"
    dispatched = await gql(client, auth, ward.medic, MOVE, input={"id": t["id"], "action": "DISPATCH", "version": 2, "vehicle": vehicle})
    assert dispatched["data"]["moveTransfer"]["transfer"]["vehicleKind"] == "NEGATIVE_PRESSURE_AMBULANCE"
    # replay with an Idempotency-Key: one transition
    headers = {**auth(ward.medic), "Idempotency-Key": "depart-1"}
    body = {"query": MOVE, "variables": {"input": {"id": t["id"], "action": "DEPART", "version": 3}}}
    first = (await client.post("/graphql", json=body, headers=headers)).json()
    second = (await client.post("/graphql", json=body, headers=headers)).json()
    assert first == second and first["data"]["moveTransfer"]["transfer"]["state"] == "DEPARTED"
    detail = await gql(
        client, auth, ward.medic,
        "query($id: UUID!) { transfer(id: $id) { state requestToDispatchMinutes stay { outcome } transitions { toState actor } } }",
        id=t["id"],
    )
    got = detail["data"]["transfer"]
    assert got["stay"]["outcome"] == "TRANSFERRED" and got["requestToDispatchMinutes"] is not None
    assert [x["toState"] for x in got["transitions"]] == ["REQUESTED", "APPROVED", "DISPATCHED", "DEPARTED"]
    # another site's medic: null
    hidden = await gql(client, auth, make_principal(Role.MEDIC, []), "query($id: UUID!) { transfer(id: $id) { id } }", id=t["id"])
    assert hidden["data"]["transfer"] is None


async def test_board_orders_by_urgency_then_age_and_history(client, db, settings, auth):
    ward = await make_ward(db, settings)
    facility = await make_facility(db)
    async with db.transaction() as conn:
        extra = [await stays.admit(conn, ward.staff, settings, admission(ward.site_id, resident=person())) for _ in range(3)]
    routine = await request(db, ward.staff, ward.patient.id, urgency="routine", reason="family_request")
    urgent_old = await request(db, ward.staff, ward.neighbour.id, urgency="urgent")
    emergency = await request(db, ward.staff, extra[0].id, urgency="emergency")
    urgent_new = await request(db, ward.staff, extra[1].id, urgency="urgent")
    done = await to_state(db, ward.medic, await request(db, ward.staff, extra[2].id, urgency="emergency"), "arrived", facility)
    query = """query($site: UUID!, $after: String) { transferBoard(siteId: $site, first: 2, after: $after) {
        edges { node { id urgency ageMinutes } } pageInfo { hasNextPage endCursor } } }"""
    ids, after = [], None
    while True:
        page = (await gql(client, auth, ward.medic, query, site=str(ward.site_id), after=after))["data"]["transferBoard"]
        ids += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert ids == [str(x.id) for x in (emergency, urgent_old, urgent_new, routine)]
    assert str(done.id) not in ids
    history = await gql(
        client, auth, ward.staff,
        "query($r: UUID!, $s: UUID!) { residentTransfers(residentId: $r) { id state destination { id } } "
        "siteTransfers(siteId: $s, states: [ARRIVED]) { edges { node { id } } } }",
        r=str(extra[2].resident_id), s=str(ward.site_id),
    )
    assert history["data"]["residentTransfers"] == [{"id": str(done.id), "state": "ARRIVED", "destination": {"id": str(facility)}}]
    assert [e["node"]["id"] for e in history["data"]["siteTransfers"]["edges"]] == [str(done.id)]
    stranger = make_principal(Role.SITE_STAFF, [])
    blind = await gql(
        client, auth, stranger,
        "query($r: UUID!, $s: UUID!) { residentTransfers(residentId: $r) { id } transferBoard(siteId: $s) { edges { node { id } } } "
        "transferTimes(siteId: $s, since: \"2020-01-01T00:00:00Z\", until: \"2020-02-01T00:00:00Z\") { transfers } }",
        r=str(extra[2].resident_id), s=str(ward.site_id),
    )
    assert blind["data"] == {"residentTransfers": [], "transferBoard": {"edges": []}, "transferTimes": None}
    unknown = await gql(
        client, auth, make_principal(Role.COMMAND),
        "query($s: UUID!) { transferBoard(siteId: $s) { edges { node { id } } } siteTransfers(siteId: $s) { edges { node { id } } } "
        "transferTimes(siteId: $s, since: \"2020-01-01T00:00:00Z\", until: \"2020-02-01T00:00:00Z\") { transfers } }",
        s="6f1c1f5e-6a3f-4a52-9d1b-0b3f8d3c2a11",
    )
    assert unknown == {"data": {"transferBoard": {"edges": []}, "siteTransfers": {"edges": []}, "transferTimes": None}}
    now = datetime.now(UTC)
    times = await gql(
        client, auth, ward.medic,
        "query($s: UUID!, $a: DateTime!, $b: DateTime!) { transferTimes(siteId: $s, since: $a, until: $b) { transfers arrived medianRequestToArrivalMinutes } }",
        s=str(ward.site_id), a=(now - timedelta(hours=1)).isoformat(), b=(now + timedelta(hours=1)).isoformat(),
    )
    assert times["data"]["transferTimes"]["transfers"] == 5 and times["data"]["transferTimes"]["arrived"] == 1


async def test_replayed_client_id_is_a_no_op(client, db, settings, auth):
    ward = await make_ward(db, settings)
    tid = "6f1c1f5e-6a3f-4a52-9d1b-0b3f8d3c2a11"
    body = {"stayId": str(ward.patient.id), "reason": "SYMPTOMS", "id": tid}
    first = await gql(client, auth, ward.staff, REQUEST, input=body)
    again = await gql(client, auth, ward.staff, REQUEST, input=body)
    assert first["data"]["requestTransfer"]["transfer"] == again["data"]["requestTransfer"]["transfer"]
    assert first["data"]["requestTransfer"]["transfer"]["id"] == tid
    other = await gql(client, auth, ward.staff, REQUEST, input={**body, "stayId": str(ward.neighbour.id)})
    assert other["data"]["requestTransfer"]["userErrors"][0]["code"] == "transfer_id_taken"
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM transfer_transitions") == 1


async def test_facility_mutations(client, auth):
    command = make_principal(Role.COMMAND)
    create = """mutation($input: CreateFacilityInput!) { createDestinationFacility(input: $input) {
        facility { id code kind version } userErrors { field code } } }"""
    made = await gql(client, auth, command, create, input={"code": "MK-1", "name": "方舱医院", "kind": "MAKESHIFT_HOSPITAL"})
    facility = made["data"]["createDestinationFacility"]["facility"]
    assert facility["kind"] == "MAKESHIFT_HOSPITAL"
    bad = await gql(client, auth, command, create, input={"code": "x", "name": "n", "kind": "MAKESHIFT_HOSPITAL"})
    assert bad["data"]["createDestinationFacility"]["userErrors"][0]["field"] == "input.code"
    update = """mutation($input: UpdateFacilityInput!) { updateDestinationFacility(input: $input) { facility { active version } userErrors { code } } }"""
    done = await gql(client, auth, command, update, input={"id": facility["id"], "version": 1, "active": False})
    assert done["data"]["updateDestinationFacility"]["facility"] == {"active": False, "version": 2}
    listed = await gql(client, auth, make_principal(Role.MEDIC, []), "{ destinationFacilities(active: true) { edges { node { code } } } }")
    assert listed["data"]["destinationFacilities"]["edges"] == []
