"""The transfer state machine through the service: every edge, per role, versions, departure's consequences."""

from __future__ import annotations

import pytest

from service.access.model import Role
from service.errors import DomainError
from service.health import service as health
from service.sites import service as sites
from service.sites.model import RoomStatus
from service.stays import service as stays
from service.transfers import service as transfers
from service.transfers.model import TRANSITIONS, TransferAction, TransferState
from tests.conftest import make_principal
from tests.stays.helpers import admission, person
from tests.transfers.helpers import VEHICLE, make_facility, make_ward, move, request, to_state


async def events_of(db, types):
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT type, subject_id, data FROM events WHERE type = ANY($1::text[]) ORDER BY id", types)
    return [dict(r) for r in rows]


async def test_main_path_records_every_transition(db, settings):
    ward = await make_ward(db, settings)
    hospital = await make_facility(db)
    t = await request(db, ward.staff, ward.patient.id, urgency="emergency", reason_note="fever 39.5")
    assert t.state is TransferState.REQUESTED and t.version == 1 and t.infectious and t.requested_by == ward.staff.ref
    t = await to_state(db, ward.medic, t, "arrived", hospital)
    assert t.state is TransferState.ARRIVED and t.version == 5 and t.handover_note == "handed over"
    assert t.vehicle_plate == VEHICLE['plate'] and t.vehicle_kind == "negative_pressure_ambulance" and t.driver and t.escort
    assert t.request_to_dispatch_minutes is not None and t.request_to_arrival_minutes is not None
    async with db.connection() as conn:
        history = (await transfers.transitions(conn, ward.medic, [t.id]))[t.id]
    assert [(h.from_state, h.to_state, h.action) for h in history] == [
        (None, "requested", "request"),
        ("requested", "approved", "approve"),
        ("approved", "dispatched", "dispatch"),
        ("dispatched", "departed", "depart"),
        ("departed", "arrived", "arrive"),
    ]
    assert {h.actor for h in history[1:]} == {ward.medic.ref}
    types = [e["type"] for e in await events_of(db, ["transfers.requested", "transfers.approved", "transfers.dispatched", "transfers.departed", "transfers.arrived"])]
    assert types == ["transfers.requested", "transfers.approved", "transfers.dispatched", "transfers.departed", "transfers.arrived"]
    # no personal data in events: names, plates, notes stay out
    for e in await events_of(db, ["transfers.dispatched", "transfers.requested", "transfers.arrived"]):
        text = str(e["data"])
        assert VEHICLE['driver'] not in text and VEHICLE['plate'] not in text and "fever" not in text and "handed" not in text


async def test_departure_closes_stay_seals_room_and_opens_exposure_review(db, settings):
    ward = await make_ward(db, settings)
    t = await to_state(db, ward.medic, await request(db, ward.staff, ward.patient.id), "dispatched", await make_facility(db))
    t = await move(db, ward.medic, t, "depart")
    assert t.state is TransferState.DEPARTED and t.consequences_at is not None
    async with db.connection() as conn:
        stay = await stays.get_stay(conn, ward.medic, ward.patient.id)
        room = await sites.get_room(conn, ward.medic, ward.rooms["201"])
    assert stay.outcome == "transferred" and room.status is RoomStatus.SEALED and room.occupied == 1
    async with db.connection() as conn:
        reviews = await health.list_exposure_reviews(conn, ward.medic, ward.site_id)
    assert {(r.stay_id, r.relation.value) for r in reviews} == {(ward.roommate.id, "roommate"), (ward.neighbour.id, "floor_neighbour")}
    assert {(r.source_stay_id, r.source.value) for r in reviews} == {(ward.patient.id, "transfer")}
    # an outbox event for each consequence, all in the departure's transaction
    types = ["transfers.departed", "stays.transferred", "sites.room_status_changed", "health.exposure_review_opened"]
    async with db.connection() as conn:
        txids = await conn.fetch(
            "SELECT type, txid::text AS txid FROM events WHERE type = ANY($1::text[]) AND at >= $2", types, t.departed_at
        )
    assert {r["type"] for r in txids} == set(types) and len({r["txid"] for r in txids}) == 1


async def test_non_infectious_departure_vacates_room(db, settings):
    ward = await make_ward(db, settings)
    t = await request(db, ward.staff, ward.neighbour.id, reason="family_request", urgency="routine")
    assert not t.infectious
    await to_state(db, ward.medic, t, "departed", await make_facility(db))
    async with db.connection() as conn:
        room = await sites.get_room(conn, ward.medic, ward.rooms["202"])
    assert room.status is RoomStatus.VACATED and room.occupied == 0


async def test_departure_is_atomic(db, settings):
    """The stay is closed by someone else meanwhile: close_for_transfer fails -> nothing of the departure persists."""
    ward = await make_ward(db, settings)
    t = await to_state(db, ward.medic, await request(db, ward.staff, ward.patient.id), "dispatched", await make_facility(db))
    async with db.connection() as conn:
        before_events = await conn.fetchval("SELECT count(*) FROM events")
    # The last step fails after it wrote its reviews: the whole departure must roll back.
    original = transfers.open_exposure_review

    async def failing(*args, **kwargs):
        await original(*args, **kwargs)
        raise RuntimeError("exposure review down")

    transfers.open_exposure_review = failing
    try:
        with pytest.raises(RuntimeError):
            await move(db, ward.medic, t, "depart")
    finally:
        transfers.open_exposure_review = original
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events") == before_events
        stay = await stays.get_stay(conn, ward.medic, ward.patient.id)
        room = await sites.get_room(conn, ward.medic, ward.rooms["201"])
        assert await health.list_exposure_reviews(conn, ward.medic, ward.site_id) == []
        current = await transfers.get_transfer(conn, ward.medic, t.id)
        history = (await transfers.transitions(conn, ward.medic, [t.id]))[t.id]
    assert stay.status == "active" and room.status is RoomStatus.OCCUPIED and room.occupied == 2
    assert current.state is TransferState.DISPATCHED and current.version == t.version and current.consequences_at is None
    assert history[-1].to_state == "dispatched"
    # and the departure succeeds afterwards
    assert (await move(db, ward.medic, t, "depart")).state is TransferState.DEPARTED


async def test_departure_fails_when_the_stay_already_closed(db, settings):
    ward = await make_ward(db, settings)
    t = await to_state(db, ward.medic, await request(db, ward.staff, ward.patient.id), "dispatched", await make_facility(db))
    async with db.transaction() as conn:
        await stays.close_for_transfer(conn, ward.medic, ward.patient.id, infectious=False)
    with pytest.raises(DomainError) as failed:
        await move(db, ward.medic, t, "depart")
    assert failed.value.code == "stay_closed"
    async with db.connection() as conn:
        assert (await transfers.get_transfer(conn, ward.medic, t.id)).state is TransferState.DISPATCHED


ALL_STATES = ["requested", "approved", "destination_approved", "dispatched", "departed", "arrived", "rejected", "cancelled"]
MEDIC_ACTIONS = [a for a in TransferAction]


@pytest.mark.parametrize("state", ALL_STATES)
async def test_every_action_from_every_state(db, settings, state):
    """Each (state, action): allowed edges lead where TRANSITIONS says; every other answers 409 and changes nothing."""
    ward = await make_ward(db, settings)
    facility = await make_facility(db)
    other = await make_facility(db)
    for action in MEDIC_ACTIONS:
        # a fresh transfer per action (one open transfer per stay: use a new resident each time)
        async with db.transaction() as conn:
            stay = await stays.admit(conn, ward.staff, settings, admission(ward.site_id, resident=person()))
        t = await to_state(db, ward.medic, await request(db, ward.staff, stay.id), state, facility)
        sources, target = TRANSITIONS[action]
        fields = {"note": "because"}
        if action is TransferAction.DISPATCH:
            fields["vehicle"] = VEHICLE
        if action in (TransferAction.APPROVE, TransferAction.DISPATCH, TransferAction.REDIRECT):
            fields["destination_id"] = other
        if TransferState(state) in sources:
            after = await move(db, ward.medic, t, action, **fields)
            assert after.state is target and after.version == t.version + 1, (state, action)
        else:
            with pytest.raises(DomainError) as refused:
                await move(db, ward.medic, t, action, **fields)
            assert refused.value.status == 409 and refused.value.code == "invalid_transfer_transition", (state, action)
            assert refused.value.extra["current_state"] == state
            async with db.connection() as conn:
                assert (await transfers.get_transfer(conn, ward.medic, t.id)).version == t.version


ALL_ROLES = list(Role)
# For each action, the state it starts from on the main path.
SOURCE = {
    TransferAction.APPROVE: "requested",
    TransferAction.REJECT: "requested",
    TransferAction.CANCEL: "approved",
    TransferAction.DISPATCH: "approved",
    TransferAction.DEPART: "dispatched",
    TransferAction.ARRIVE: "departed",
    TransferAction.REFUSE_AT_DOOR: "departed",
    TransferAction.ACCEPT: "approved",
    TransferAction.DECLINE: "destination_approved",
    TransferAction.REDIRECT: "approved",
}


@pytest.mark.parametrize("role", ALL_ROLES)
async def test_who_may_request_and_move(db, settings, role):
    """Requests: staff roles. Moves: medics and command only; every other role 403 and nothing changes."""
    ward = await make_ward(db, settings)
    facility = await make_facility(db)
    actor = make_principal(role, None if role is Role.COMMAND else [ward.site_id])
    may_request = role in transfers.REQUEST_ROLES
    try:
        t = await request(db, actor, ward.patient.id)
        assert may_request
    except DomainError as exc:
        assert not may_request and exc.status == 403 and exc.code == "role_not_allowed"
    for action, state in SOURCE.items():
        async with db.transaction() as conn:
            stay = await stays.admit(conn, ward.staff, settings, admission(ward.site_id, resident=person()))
        t = await to_state(db, ward.medic, await request(db, ward.staff, stay.id), state, facility)
        fields = {"note": "because", "vehicle": VEHICLE} if action is TransferAction.DISPATCH else {"note": "because"}
        if action is TransferAction.REDIRECT:
            fields["destination_id"] = facility
        if role in transfers.MOVE_ROLES:
            assert (await move(db, actor, t, action, **fields)).state is TRANSITIONS[action][1]
        else:
            with pytest.raises(DomainError) as refused:
                await move(db, actor, t, action, **fields)
            assert refused.value.status == 403 and refused.value.code == "role_not_allowed", (role, action)
            async with db.connection() as conn:
                assert (await transfers.get_transfer(conn, ward.medic, t.id)).version == t.version


async def test_hospital_actions_only_for_hospitals_of_the_destination(db, settings):
    from service.transfers.model import ArrivalConfirmation, DoorRefusal
    from tests.transfers.helpers import make_hospital

    ward = await make_ward(db, settings)
    facility, other = await make_facility(db), await make_facility(db)
    hospital, _ = await make_hospital(db, facility, [ward.site_id])
    stranger, _ = await make_hospital(db, other, [ward.site_id])
    t = await to_state(db, ward.medic, await request(db, ward.staff, ward.patient.id), "dispatched", facility)
    for principal, status in ((ward.medic, 403), (make_principal(Role.COMMAND), 403), (stranger, 404)):
        for call in (
            lambda conn, p: transfers.confirm_arrival(conn, p, t.id, ArrivalConfirmation()),
            lambda conn, p: transfers.refuse_at_door(conn, p, t.id, DoorRefusal(reason="full")),
        ):
            with pytest.raises(DomainError) as refused:
                async with db.transaction() as conn:
                    await call(conn, principal)
            assert refused.value.status == status
    # arrival before departure is not a valid edge; a refusal while dispatched is
    with pytest.raises(DomainError) as early:
        async with db.transaction() as conn:
            await transfers.confirm_arrival(conn, hospital, t.id, ArrivalConfirmation())
    assert early.value.code == "invalid_transfer_transition"
    with pytest.raises(DomainError) as stale:
        async with db.transaction() as conn:
            await transfers.refuse_at_door(conn, hospital, t.id, DoorRefusal(reason="full", version=1))
    assert stale.value.code == "stale_version" and stale.value.extra["current_state"] == "dispatched"
    async with db.transaction() as conn:
        back = await transfers.refuse_at_door(conn, hospital, t.id, DoorRefusal(reason="full"))
    assert back.state is TransferState.APPROVED and back.destination_id is None and back.consequences_at is None
    # re-dispatch without naming a destination is refused with a clear code
    with pytest.raises(DomainError) as no_destination:
        await move(db, ward.medic, back, "dispatch", vehicle=VEHICLE)
    assert no_destination.value.code == "destination_required"


async def test_the_database_refuses_a_skipped_edge(db, settings):
    """Even SQL that bypasses the service cannot skip an edge or rewrite a version."""
    import asyncpg

    ward = await make_ward(db, settings)
    t = await request(db, ward.staff, ward.patient.id)
    async with db.connection() as conn:
        with pytest.raises(asyncpg.CheckViolationError) as skipped:
            await conn.execute("UPDATE transfers SET state = 'arrived', version = version + 1 WHERE id = $1", t.id)
        assert skipped.value.constraint_name == "transfers_transition_valid"
        with pytest.raises(asyncpg.CheckViolationError) as version:
            await conn.execute("UPDATE transfers SET urgency = 'routine' WHERE id = $1", t.id)
        assert version.value.constraint_name == "transfers_version_advances"
