"""syncWrites: every queued write replays safely, in any order; outcomes say what happened to each."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from service.access.model import Role
from service.health import service as health
from service.sites.model import RoomStatus
from tests.conftest import make_principal
from tests.offline.helpers import queued, sync
from tests.supplies.helpers import make_item
from tests.transfers.helpers import make_facility, make_ward, request


def _now(minutes: int = 0) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


async def _alert(db, ward):
    async with db.transaction() as conn:
        alert_id = await health.raise_alert(conn, ward.medic, ward.patient, "fever", dedup_key=str(uuid.uuid4()), detail={"temperature_c": 38.2})
        return await health.get_alert(conn, ward.medic, alert_id)


async def test_same_batch_twice_creates_once_then_replays_the_first_answers(client, db, settings, auth):
    ward = await make_ward(db, settings)
    alert = await _alert(db, ward)
    item = await make_item(client, auth)
    manager = make_principal(Role.SITE_MANAGER, [ward.site_id])
    writes = [
        queued("recordCheckin", stayId=str(ward.patient.id), id=str(uuid.uuid4()), recordedAt=_now(1), temperatureC=36.8),
        queued("recordSample", stayId=str(ward.roommate.id), id=str(uuid.uuid4()), barcode="SYNC-0001", collectedAt=_now(1)),
        queued("acknowledgeAlert", id=str(alert.id), version=alert.version, note="seen"),
        queued("recordStockMovement", id=str(uuid.uuid4()), siteId=str(ward.site_id), itemId=item, kind="receipt", quantity=50),
        queued("requestTransfer", id=str(uuid.uuid4()), stayId=str(ward.neighbour.id), reason="POSITIVE_TEST"),
    ]
    first = await sync(client, auth(manager), writes)
    assert [i["status"] for i in first["items"]] == ["CREATED"] * 5, first
    assert (first["created"], first["replayed"], first["conflicts"], first["failed"]) == (5, 0, 0, 0)
    assert first["items"][2]["record"] == {"__typename": "HealthAlert", "id": str(alert.id), "alertState": "ACKNOWLEDGED", "version": alert.version + 1}
    assert first["items"][2]["version"] == alert.version + 1
    async with db.connection() as conn:
        before = await conn.fetchval("SELECT count(*) FROM events")
    again = await sync(client, auth(manager), list(reversed(writes)))
    assert [i["status"] for i in again["items"]] == ["REPLAYED"] * 5, again
    assert [i["record"] for i in again["items"]] == [i["record"] for i in reversed(first["items"])]
    # The changes each write committed, answered again with the replay (the app skips them when catching up).
    assert all(i["changeIds"] for i in first["items"])
    assert [i["changeIds"] for i in again["items"]] == [i["changeIds"] for i in reversed(first["items"])]
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events") == before  # nothing written twice
        assert await conn.fetchval("SELECT count(*) FROM checkins") == 1
        assert await conn.fetchval("SELECT count(*) FROM supply_movements") == 1
        assert await conn.fetchval("SELECT count(*) FROM transfers") == 1


async def test_same_key_with_other_arguments_is_a_conflict(client, db, settings, auth):
    ward = await make_ward(db, settings)
    alert = await _alert(db, ward)
    headers = auth(ward.staff)
    first = await sync(client, headers, [queued("acknowledgeAlert", key="k1", id=str(alert.id), version=alert.version, note="a")])
    assert first["items"][0]["status"] == "CREATED"
    other = await sync(client, headers, [queued("acknowledgeAlert", key="k1", id=str(alert.id), version=alert.version, note="b")])
    out = other["items"][0]
    assert out["status"] == "CONFLICT"
    assert out["error"]["code"] == "idempotency_key_reused"
    assert out["error"]["field"] == "input.writes.0.key"
    assert out["version"] == alert.version + 1 and out["record"]["alertState"] == "ACKNOWLEDGED"
    # Another principal's same key is its own key: no replay across callers.
    medic = await sync(client, auth(ward.medic), [queued("resolveAlert", key="k1", id=str(alert.id), version=alert.version + 1, note="checked, fine")])
    assert medic["items"][0]["status"] == "CREATED", medic


async def test_a_step_replayed_after_a_later_one_is_a_conflict_with_the_version_now(client, db, settings, auth):
    ward = await make_ward(db, settings)
    alert = await _alert(db, ward)
    medic = auth(ward.medic)
    # The medic resolves online meanwhile; the phone's queued acknowledgement (as of the first version) arrives later.
    ack = await sync(client, medic, [queued("acknowledgeAlert", id=str(alert.id), version=alert.version)])
    resolved = await sync(client, medic, [queued("resolveAlert", id=str(alert.id), version=ack["items"][0]["version"], note="fine")])
    late = await sync(client, auth(ward.staff), [queued("acknowledgeAlert", id=str(alert.id), version=alert.version)])
    out = late["items"][0]
    assert out["status"] == "CONFLICT" and out["error"]["code"] in ("stale_version", "alert_state_conflict"), out
    assert out["version"] == resolved["items"][0]["version"] == alert.version + 2
    assert out["record"]["alertState"] == "RESOLVED"
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT state FROM alerts WHERE id = $1", alert.id) == "resolved"

    # A room step queued as of an old version: refused with the room's status and version now, nothing applied.
    room_id = ward.rooms["501"]
    async with db.connection() as conn:
        version = await conn.fetchval("SELECT version FROM rooms WHERE id = $1", room_id)
    out_of_service = await sync(client, auth(make_principal(Role.SITE_MANAGER, [ward.site_id])), [
        queued("turnOverRoom", roomId=str(room_id), action="TAKE_OUT_OF_SERVICE", version=version),
        queued("turnOverRoom", roomId=str(room_id), action="RETURN_TO_SERVICE", version=version + 1),
        queued("turnOverRoom", roomId=str(room_id), action="TAKE_OUT_OF_SERVICE", version=version),  # the first step, queued twice
    ])
    assert [i["status"] for i in out_of_service["items"]] == ["CREATED", "CREATED", "CONFLICT"]
    stale = out_of_service["items"][2]
    assert stale["error"]["code"] == "stale_version" and stale["error"]["field"] == "input.writes.2.write.turnOverRoom.version"
    assert stale["record"] == {"__typename": "Room", "id": str(room_id), "roomStatus": RoomStatus.VACATED.name, "version": version + 2}
    assert stale["version"] == version + 2
    assert stale["error"]["extra"] == {"current_state": "vacated", "current_version": version + 2}

    # A transfer moved on by another medic: the queued move reports where it is now.
    facility = await make_facility(db)
    transfer = await request(db, ward.medic, ward.neighbour.id)
    moves = await sync(client, medic, [
        queued("moveTransfer", id=str(transfer.id), action="APPROVE", version=transfer.version, destinationId=str(facility)),
        queued("moveTransfer", id=str(transfer.id), action="REJECT", version=transfer.version, note="no"),
    ])
    assert [i["status"] for i in moves["items"]] == ["CREATED", "CONFLICT"]
    assert moves["items"][1]["record"]["transferState"] == "APPROVED" and moves["items"][1]["version"] == transfer.version + 1


async def test_each_item_stands_alone_and_failures_name_their_field(client, db, settings, auth):
    ward = await make_ward(db, settings)
    alert = await _alert(db, ward)
    out = await sync(client, auth(ward.staff), [
        queued("recordCheckin", stayId=str(ward.patient.id), recordedAt=_now(5), temperatureC=36.5),
        queued("recordCheckin", stayId=str(uuid.uuid4()), recordedAt=_now(5)),  # no such stay
        queued("recordCheckin", stayId=str(ward.patient.id), recordedAt=_now(5), spo2=300),  # out of range
        queued("resolveAlert", id=str(alert.id), version=alert.version),  # site staff may not resolve
        queued("recordCheckin", key="", stayId=str(ward.patient.id), recordedAt=_now(5)),  # no key
        queued("recordCheckin", stayId=str(ward.roommate.id), recordedAt=_now(4), temperatureC=36.6),
    ])
    statuses = [(i["status"], (i["error"] or {}).get("code"), (i["error"] or {}).get("field")) for i in out["items"]]
    assert statuses == [
        ("CREATED", None, None),
        ("FAILED", "stay_not_found", "input.writes.1.write.recordCheckin.stayId"),
        ("FAILED", "implausible_value", "input.writes.2.write.recordCheckin.spo2"),
        ("FAILED", "role_not_allowed", None),
        ("FAILED", "invalid_idempotency_key", "input.writes.4.key"),
        ("CREATED", None, None),
    ], statuses
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checkins") == 2
        assert await conn.fetchval("SELECT state FROM alerts WHERE id = $1", alert.id) == "open"
    too_many = await sync(client, auth(ward.staff), [queued("releaseStay", stayId=str(ward.patient.id))] * 101)
    assert too_many["userErrors"][0]["code"] == "invalid_batch_size" and too_many["items"] == []


async def test_a_record_sent_before_by_its_client_id_answers_replayed(client, db, settings, auth):
    """The phone sent a check-in through recordCheckin (no key), lost the answer, and queued it again."""
    ward = await make_ward(db, settings)
    checkin = {"id": str(uuid.uuid4()), "stayId": str(ward.patient.id), "recordedAt": _now(10), "temperatureC": 36.7}
    single = await client.post("/graphql", headers=auth(ward.staff), json={
        "query": "mutation($i: RecordCheckinInput!) { recordCheckin(input: $i) { checkin { id } userErrors { code } } }",
        "variables": {"i": checkin},
    })
    assert single.json()["data"]["recordCheckin"]["checkin"]["id"] == checkin["id"]
    out = await sync(client, auth(ward.staff), [queued("recordCheckin", **checkin)])
    assert out["items"][0]["status"] == "REPLAYED" and out["items"][0]["record"]["id"] == checkin["id"]
    assert out["items"][0]["changeIds"] == []  # nothing new was written
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checkins") == 1


async def test_a_closed_stay_is_a_conflict_carrying_the_stay_and_its_version(client, db, settings, auth):
    ward = await make_ward(db, settings)
    manager = auth(make_principal(Role.SITE_MANAGER, [ward.site_id]))
    moved = await sync(client, manager, [queued("moveStay", stayId=str(ward.neighbour.id), roomId=str(ward.rooms["501"]))])
    assert moved["items"][0]["status"] == "CREATED"
    late = await sync(client, auth(ward.staff), [
        queued("recordCheckin", stayId=str(ward.neighbour.id), recordedAt=_now(0), temperatureC=36.6),
        queued("moveStay", stayId=str(ward.neighbour.id), roomId=str(ward.rooms["502"])),
    ])
    for out in late["items"]:
        assert out["status"] == "CONFLICT", out
        assert out["record"]["__typename"] == "Stay" and out["record"]["stayStatus"] == "CLOSED" and out["record"]["outcome"] == "MOVED"
        assert out["version"] == out["record"]["version"] >= 2


async def test_every_kind_refuses_its_key_reused_with_other_arguments(client, db, auth, settings):
    """Over EVERY kind of SyncWrite (read from the schema): the same item key sent with other arguments
    answers conflict idempotency_key_reused, whether the first attempt was written or refused by a rule."""
    from service.api.graphql import build_schema
    from tests.contract.test_idempotency_keys import Inputs

    kinds = build_schema(settings)._schema.type_map["SyncWrite"].fields
    assert len(kinds) >= 16
    ward = await make_ward(db, settings)
    callers = {role: auth(make_principal(role, [ward.site_id])) for role in (Role.SITE_MANAGER, Role.MEDIC)}
    answers = {}
    for name, field in kinds.items():
        first, other = (Inputs(v).graphql(name, field.type) for v in (0, 1))
        assert first != other
        for headers in callers.values():
            a = await sync(client, headers, [queued(name, key=f"gen-{name}", **first)])
            if a["items"][0]["error"] and a["items"][0]["error"]["code"] == "role_not_allowed":
                continue
            b = await sync(client, headers, [queued(name, key=f"gen-{name}", **other)])
            answers[name] = (b["items"][0]["status"], b["items"][0]["error"]["code"] if b["items"][0]["error"] else None)
            break
    assert answers == dict.fromkeys(kinds, ("CONFLICT", "idempotency_key_reused"))


async def test_care_requests_queued_offline(client, db, settings, auth):
    """A care request taken offline, started and completed in the queue; a late decline conflicts with the request now."""
    ward = await make_ward(db, settings)
    request_id = str(uuid.uuid4())
    writes = [
        queued("createCareRequest", id=request_id, stayId=str(ward.patient.id), kind="MEAL", detail="vegetarian"),
        queued("moveCareRequest", id=request_id, action="START", version=1),
        queued("moveCareRequest", id=request_id, action="COMPLETE", version=2, resolution="served"),
    ]
    out = await sync(client, auth(ward.staff), writes)
    assert [i["status"] for i in out["items"]] == ["CREATED"] * 3, out
    again = await sync(client, auth(ward.staff), writes[::-1])
    assert [i["status"] for i in again["items"]] == ["REPLAYED"] * 3
    late = await sync(client, auth(ward.staff), [queued("moveCareRequest", id=request_id, action="DECLINE", version=1, resolution="no")])
    assert late["items"][0]["status"] == "CONFLICT" and late["items"][0]["version"] == 3, late
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT state FROM care_requests WHERE id = $1", uuid.UUID(request_id)) == "done"
        assert await conn.fetchval("SELECT count(*) FROM care_requests") == 1
