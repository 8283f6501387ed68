import uuid
from datetime import UTC, datetime

from service.access.model import Role
from tests.conftest import make_principal
from tests.health.helpers import ward
from tests.stays.helpers import staff


async def gql(client, auth, principal, query, **variables):
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=auth(principal))
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


RECORD = """mutation($input: [RecordCheckinInput!]!) { recordCheckins(input: $input) {
    created replayed failed items { index status checkin { id temperatureC symptoms } error { field code } } userErrors { code } } }"""
ONE = """mutation($input: RecordCheckinInput!) { recordCheckin(input: $input) { checkin { id } userErrors { field code } } }"""


async def test_app_records_checkins_and_reads_worklists_timeline_and_alerts(client, auth, db, settings):
    site_id, (a, b) = await ward(db, settings, days_ago=0)
    worker = staff(site_id)
    now = datetime.now(UTC).isoformat()
    due = await gql(client, auth, worker, "query($s: UUID!) { checkinsDue(siteId: $s) { stayId roomNumber overdue stay { id roomNumber } } swabsDue(siteId: $s) { stayId quarantineDay retest } }", s=str(site_id))
    assert {d["stayId"] for d in due["checkinsDue"]} == {str(a.id), str(b.id)}
    assert all(d["stay"]["id"] == d["stayId"] for d in due["checkinsDue"])
    assert {(d["stayId"], d["quarantineDay"]) for d in due["swabsDue"]} == {(str(a.id), 1), (str(b.id), 1)}

    items = [
        {"id": str(uuid.uuid4()), "stayId": str(a.id), "recordedAt": now, "temperatureC": 38.1, "symptoms": ["COUGH", "FEVER"]},
        {"stayId": str(b.id), "recordedAt": now, "spo2": 130},
    ]
    result = (await gql(client, auth, worker, RECORD, input=items))["recordCheckins"]
    assert (result["created"], result["failed"]) == (1, 1)
    assert result["items"][0]["checkin"]["temperatureC"] == 38.1 and result["items"][1]["error"] == {"field": "input.1.spo2", "code": "implausible_value"}
    bad = (await gql(client, auth, worker, ONE, input={"stayId": str(b.id), "recordedAt": now, "temperatureC": 50}))["recordCheckin"]
    assert bad["userErrors"] == [{"field": "input.temperatureC", "code": "implausible_value"}]

    due = await gql(client, auth, worker, "query($s: UUID!) { checkinsDue(siteId: $s) { stayId } }", s=str(site_id))
    assert [d["stayId"] for d in due["checkinsDue"]] == [str(b.id)]

    timeline = (await gql(client, auth, worker, """query($id: UUID!) { healthTimeline(stayId: $id) {
        checkins { id } samples { id } alerts { kind state stay { id } } } }""", id=str(a.id)))["healthTimeline"]
    assert len(timeline["checkins"]) == 1 and {x["kind"] for x in timeline["alerts"]} == {"FEVER", "SYMPTOMS"}

    alerts = (await gql(client, auth, worker, "query($s: UUID!) { siteAlerts(siteId: $s) { edges { node { id kind version stay { roomNumber } } } } }", s=str(site_id)))
    nodes = [e["node"] for e in alerts["siteAlerts"]["edges"]]
    assert len(nodes) == 2 and all(n["stay"]["roomNumber"] == a.room_number for n in nodes)
    medic = staff(site_id, Role.MEDIC)
    resolved = (await gql(client, auth, medic, """mutation($i: AlertActionInput!) { resolveAlert(input: $i) { alert { state } userErrors { code } } }""",
                          i={"id": nodes[0]["id"], "version": nodes[0]["version"], "note": "seen by the doctor"}))["resolveAlert"]
    assert resolved["alert"]["state"] == "RESOLVED"

    outsider = make_principal(Role.SITE_STAFF, [uuid.uuid4()])
    hidden = await gql(client, auth, outsider, """query($s: UUID!, $id: UUID!) { checkinsDue(siteId: $s) { stayId } swabsDue(siteId: $s) { stayId }
        healthTimeline(stayId: $id) { stayId } siteAlerts(siteId: $s) { edges { node { id } } } exposureReviews(siteId: $s) { id } }""",
                       s=str(site_id), id=str(a.id))
    assert hidden == {"checkinsDue": None, "swabsDue": None, "healthTimeline": None, "siteAlerts": {"edges": []}, "exposureReviews": None}
    foreign = (await gql(client, auth, outsider, RECORD, input=[{"stayId": str(a.id), "recordedAt": now}]))["recordCheckins"]
    assert foreign["items"][0]["error"]["code"] == "stay_not_found"


async def test_app_records_samples_and_pools(client, auth, db, settings):
    site_id, (a, b) = await ward(db, settings, days_ago=0)
    worker = staff(site_id)
    now = datetime.now(UTC).isoformat()
    samples = (await gql(client, auth, worker, """mutation($input: [RecordSampleInput!]!) { recordSamples(input: $input) {
        created failed items { status sample { barcode scheduledDay result } error { code } } } }""",
        input=[{"stayId": str(a.id), "barcode": "GQ-0001", "collectedAt": now}, {"stayId": str(b.id), "barcode": "GQ-0001", "collectedAt": now}]))["recordSamples"]
    assert samples["items"][0]["sample"] == {"barcode": "GQ-0001", "scheduledDay": 1, "result": "PENDING"}
    assert samples["items"][1]["error"]["code"] == "barcode_taken"
    pool = (await gql(client, auth, worker, """mutation($input: RecordPoolInput!) { recordPool(input: $input) { sample { barcode members } userErrors { field code } } }""",
                      input={"siteId": str(site_id), "barcode": "GQP-0001", "collectedAt": now, "members": [{"stayId": str(b.id)}]}))["recordPool"]
    assert pool["sample"] == {"barcode": "GQP-0001", "members": 1}
    too_many = (await gql(client, auth, worker, """mutation($input: RecordPoolInput!) { recordPool(input: $input) { sample { barcode } userErrors { field code } } }""",
                          input={"siteId": str(site_id), "barcode": "GQP-0002", "collectedAt": now, "members": [{"stayId": str(b.id)}] * 11}))["recordPool"]
    assert too_many["sample"] is None and too_many["userErrors"][0]["field"] == "input.members"
