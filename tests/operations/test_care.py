"""Resident care (issue 17 part 2): vulnerability flags as health data, care requests with an SLA,
stock issued against a request through the supplies ledger."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from service.access.model import Role
from service.errors import DomainError
from service.operations.care import service as care
from service.operations.care import store
from service.operations.care.model import CareIssueCreate, CareProfileSet, CareRequestCreate, CareRequestMove
from service.supplies import service as supplies
from service.supplies.model import ItemCreate, MovementCreate
from tests.conftest import make_principal
from tests.stays.helpers import COMMAND
from tests.transfers.helpers import make_ward

PROFILE = "query($s: UUID!) { careProfile(stayId: $s) { flags note version } }"
REQUESTS = """query($site: UUID!, $states: [CareState!], $overdue: Boolean! = false) {
  careRequests(siteId: $site, states: $states, overdueOnly: $overdue) {
    edges { node { id kind state overdue flagged issues { quantity } } } } }"""
CREATE = """mutation($input: CreateCareRequestInput!) { createCareRequest(input: $input) {
  request { id state version dueAt requestedAt } userErrors { field code } } }"""


async def gql(client, auth, principal, query, **variables):
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=auth(principal))
    assert response.status_code == 200, response.text
    return response.json()


def new_request(stay_id, kind="meal", **fields):
    return msgspec.convert({"stay_id": stay_id, "kind": kind, **fields}, CareRequestCreate)


async def test_flags_are_health_data_for_medics_and_managers_only(client, db, settings, auth):
    ward = await make_ward(db, settings)
    manager = make_principal(Role.SITE_MANAGER, [ward.site_id])
    data = msgspec.convert({"stay_id": ward.patient.id, "flags": ["elderly", "medication_needs", "elderly"], "note": "降压药"}, CareProfileSet)
    with pytest.raises(DomainError) as refused:
        async with db.transaction() as conn:
            await care.set_profile(conn, ward.staff, data)
    assert refused.value.code == "role_not_allowed"
    async with db.transaction() as conn:
        first = await care.set_profile(conn, ward.medic, data)
    assert [f.value for f in first.flags] == ["elderly", "medication_needs"] and first.version == 1
    async with db.transaction() as conn:  # the same first setting again: a replay
        assert (await care.set_profile(conn, ward.medic, data)).version == 1
    with pytest.raises(DomainError) as stale:
        async with db.transaction() as conn:
            await care.set_profile(conn, manager, msgspec.structs.replace(data, flags=["child"]))
    assert stale.value.code == "stale_version" and stale.value.extra["current_version"] == 1
    async with db.transaction() as conn:
        changed = await care.set_profile(conn, manager, msgspec.structs.replace(data, flags=[], version=1))
    assert changed.flags == [] and changed.version == 2
    async with db.connection() as conn:
        audited = await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'care_profile.set' AND subject_id = $1", ward.patient.id)
        event = await conn.fetchval("SELECT data::text FROM events WHERE type = 'care.profile_updated' ORDER BY id LIMIT 1")
    assert audited == 2
    assert "elderly" not in event and "降压药" not in event  # events reach every subscriber of the site

    async with db.transaction() as conn:
        await care.set_profile(conn, ward.medic, msgspec.structs.replace(data, version=2))
        await care.create_request(conn, ward.staff, new_request(ward.patient.id))
    seen = await gql(client, auth, ward.medic, PROFILE, s=str(ward.patient.id))
    assert seen["data"]["careProfile"]["flags"] == ["ELDERLY", "MEDICATION_NEEDS"]
    masked = await gql(client, auth, ward.staff, PROFILE, s=str(ward.patient.id))
    assert masked["data"]["careProfile"] is None and masked["errors"][0]["extensions"]["code"] == "role_not_allowed"
    listed = await gql(client, auth, ward.staff, REQUESTS, site=str(ward.site_id))
    assert [e["node"]["flagged"] for e in listed["data"]["careRequests"]["edges"]] == [True]


async def test_a_request_moves_open_in_progress_done_with_who_and_when(db, settings):
    ward = await make_ward(db, settings)
    request_id = uuid.uuid4()
    async with db.transaction() as conn:
        opened = await care.create_request(conn, ward.staff, new_request(ward.patient.id, "medicine", detail="降压药", id=request_id))
    assert opened.state.value == "open" and opened.due_at - opened.requested_at == timedelta(hours=2) and not opened.overdue
    async with db.transaction() as conn:  # a replay of the same id: the stored request
        assert (await care.create_request(conn, ward.staff, new_request(ward.patient.id, "medicine", id=request_id))).version == 1
    with pytest.raises(DomainError) as taken:
        async with db.transaction() as conn:
            await care.create_request(conn, ward.staff, new_request(ward.roommate.id, "medicine", id=request_id))
    assert taken.value.code == "care_request_id_taken"

    async def move(action, version, principal=ward.staff, **fields):
        async with db.transaction() as conn:
            return await care.move_request(conn, principal, request_id, CareRequestMove(action=action, version=version, **fields))

    with pytest.raises(DomainError) as early:
        await move("complete", 1)
    assert early.value.code == "invalid_care_transition" and early.value.extra["current_state"] == "open"
    started = await move("start", 1)
    assert started.state.value == "in_progress" and started.started_by == ward.staff.ref
    with pytest.raises(DomainError) as stale:
        await move("complete", 1)
    assert stale.value.code == "stale_version"
    with pytest.raises(DomainError) as no_reason:
        await move("decline", 2)
    assert no_reason.value.code == "reason_required"
    done = await move("complete", 2, ward.medic, resolution="已送药")
    assert done.state.value == "done" and done.closed_by == ward.medic.ref and done.resolution == "已送药"
    with pytest.raises(DomainError):
        await move("decline", 3, resolution="x")
    async with db.connection() as conn:
        types = [r["type"] for r in await conn.fetch("SELECT type FROM events WHERE subject_id = $1 ORDER BY id", request_id)]
    assert types == ["care.request_opened", "care.request_started", "care.request_done"]


async def test_the_worklist_orders_by_deadline_and_shows_what_is_overdue(client, db, settings, auth):
    ward = await make_ward(db, settings)
    async with db.transaction() as conn:
        meal = await care.create_request(conn, ward.staff, new_request(ward.patient.id, "meal"))
        talk = await care.create_request(conn, ward.staff, new_request(ward.roommate.id, "psychological_support"))
        other = await care.create_request(conn, ward.staff, new_request(ward.neighbour.id, "other"))
        # the talk was asked for five hours ago: past its 4 h SLA
        await store.demo_backdate(conn, talk.id, {"requested_at": datetime.now(UTC) - timedelta(hours=5),
                                                  "started_at": datetime.now(UTC), "closed_at": datetime.now(UTC)})
        await care.move_request(conn, ward.staff, other.id, CareRequestMove(action="decline", version=1, resolution="无法提供"))  # type: ignore[arg-type]
    worklist = await gql(client, auth, ward.staff, REQUESTS, site=str(ward.site_id))
    nodes = [e["node"] for e in worklist["data"]["careRequests"]["edges"]]
    assert [n["id"] for n in nodes] == [str(talk.id), str(meal.id)]  # declined left the worklist; the overdue one first
    assert [n["overdue"] for n in nodes] == [True, False]
    overdue = await gql(client, auth, ward.staff, REQUESTS, site=str(ward.site_id), overdue=True)
    assert [e["node"]["id"] for e in overdue["data"]["careRequests"]["edges"]] == [str(talk.id)]
    declined = await gql(client, auth, ward.staff, REQUESTS, site=str(ward.site_id), states=["DECLINED"])
    assert [e["node"]["state"] for e in declined["data"]["careRequests"]["edges"]] == ["DECLINED"]
    # another site's medic sees nothing of it
    stranger = make_principal(Role.MEDIC, [uuid.uuid4()])
    assert (await gql(client, auth, stranger, REQUESTS, site=str(ward.site_id)))["data"]["careRequests"]["edges"] == []
    created = await gql(client, auth, ward.staff, CREATE, input={"stayId": str(ward.patient.id), "kind": "DAILY_NECESSITIES"})
    assert created["data"]["createCareRequest"]["userErrors"] == []


async def test_stock_issued_against_a_request_is_a_ledger_movement(db, settings):
    ward = await make_ward(db, settings)
    async with db.transaction() as conn:
        item = await supplies.create_item(conn, COMMAND, msgspec.convert({"sku": "DAY-TOWEL", "name": "毛巾", "unit": "piece", "category": "daily_necessities", "usage_rule": "fixed_per_day"}, ItemCreate))
        await supplies.record_movement(conn, ward.staff, settings, MovementCreate(id=uuid.uuid4(), site_id=ward.site_id, item_id=item.id, kind="receipt", quantity=5))
        request = await care.create_request(conn, ward.staff, new_request(ward.patient.id, "daily_necessities"))
    movement_id = uuid.uuid4()
    issue = CareIssueCreate(care_request_id=request.id, item_id=item.id, quantity=2, id=movement_id)
    for _ in range(2):  # the second is a replay
        async with db.transaction() as conn:
            issued = await care.issue_stock(conn, ward.staff, settings, issue)
        assert issued.movement_id == movement_id and issued.quantity == 2
    async with db.connection() as conn:
        stock = await conn.fetchval("SELECT quantity FROM supply_stock WHERE site_id = $1 AND item_id = $2", ward.site_id, item.id)
        ledger = await conn.fetchrow("SELECT kind, delta FROM supply_movements WHERE id = $1", movement_id)
        assert await conn.fetchval("SELECT count(*) FROM events WHERE type = 'care.stock_issued'") == 1
    assert stock == 3 and (ledger["kind"], ledger["delta"]) == ("issue", -2)
    for wrong, code in (
        (msgspec.structs.replace(issue, quantity=1), "movement_id_taken"),
        (msgspec.structs.replace(issue, id=uuid.uuid4(), quantity=4), "insufficient_stock"),
    ):
        with pytest.raises(DomainError) as refused:
            async with db.transaction() as conn:
                await care.issue_stock(conn, ward.staff, settings, wrong)
        assert refused.value.code == code
    # medics take requests but do not hand out stock (the supplies rule)
    with pytest.raises(DomainError) as medic:
        async with db.transaction() as conn:
            await care.issue_stock(conn, ward.medic, settings, msgspec.structs.replace(issue, id=uuid.uuid4(), quantity=1))
    assert medic.value.code == "role_not_allowed"
    async with db.transaction() as conn:
        await care.move_request(conn, ward.staff, request.id, CareRequestMove(action="decline", version=1, resolution="x"))  # type: ignore[arg-type]
    with pytest.raises(DomainError) as closed:
        async with db.transaction() as conn:
            await care.issue_stock(conn, ward.staff, settings, msgspec.structs.replace(issue, id=uuid.uuid4(), quantity=1))
    assert closed.value.code == "care_request_closed"
    async with db.connection() as conn:
        linked = await care.issues(conn, ward.staff, [request.id])
    assert [i.movement_id for i in linked[request.id]] == [movement_id]
