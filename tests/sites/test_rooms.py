"""Rooms: bulk creation, the turnover state machine (every edge, allowed or not), disinfection, races."""

import asyncio

import pytest

from service.access.model import Role
from service.errors import Conflict, DomainError, InvalidInput, RuleViolated
from service.sites import service as sites
from service.sites.model import MANUAL_ACTIONS, TRANSITIONS, FloorCreate, RoomAction, RoomCreate, RoomStatus
from tests.conftest import make_principal
from tests.stays.helpers import COMMAND, make_site, staff


async def test_floor_created_in_bulk(db):
    site_id = await make_site(db)
    async with db.transaction() as conn:
        rooms = await sites.create_floor(conn, COMMAND, site_id, FloorCreate(floor=3, first=301, last=330, beds=1))
    assert [r.number for r in rooms] == [str(n) for n in range(301, 331)]
    assert {(r.floor, r.beds, r.status) for r in rooms} == {(3, 1, RoomStatus.READY)}
    with pytest.raises(Conflict) as taken:
        async with db.transaction() as conn:
            await sites.create_rooms(conn, COMMAND, site_id, [RoomCreate(number="401", floor=4), RoomCreate(number="305", floor=3)])
    assert taken.value.code == "room_number_taken"
    async with db.connection() as conn:  # all or nothing: 401 was not kept
        assert len(await sites.list_site_rooms(conn, COMMAND, site_id)) == 30
    with pytest.raises(InvalidInput):
        FloorCreate(floor=3, first=330, last=301)


async def _room_in(db, site_id, status: RoomStatus, number: str):
    async with db.transaction() as conn:
        (room,) = await sites.create_rooms(conn, COMMAND, site_id, [RoomCreate(number=number, floor=1, beds=2)])
        occupied = 1 if status is RoomStatus.OCCUPIED else 0
        await conn.execute("UPDATE rooms SET status = $2, occupied = $3 WHERE id = $1", room.id, status.value, occupied)
        # An aired room whose airing is over, so that only the graph decides.
        if status is RoomStatus.AIRING:
            await conn.execute(
                "INSERT INTO disinfection_tasks (room_id, site_id, state, airing_until) VALUES ($1, $2, 'airing', now() - interval '1 minute')",
                room.id, site_id,
            )
    return room


async def test_every_manual_transition_allowed_or_refused(db):
    site_id = await make_site(db)
    manager = staff(site_id, Role.SITE_MANAGER)
    n = 0
    for status in RoomStatus:
        for action in sorted(MANUAL_ACTIONS):
            n += 1
            room = await _room_in(db, site_id, status, f"R{n}")
            expected = TRANSITIONS.get((status, action))
            try:
                async with db.transaction() as conn:
                    after = await sites.turn_over(conn, manager, room.id, action, reason="test")
            except Conflict as exc:
                assert expected is None, (status, action, exc.code)
                assert exc.code == "invalid_room_transition", (status, action)
                continue
            if action is RoomAction.SEAL and status is RoomStatus.SEALED:
                assert after.status is RoomStatus.SEALED  # sealing again is a no-op
                continue
            assert expected is not None, (status, action, after.status)
            assert after.status is expected and after.status_by == manager.ref


async def test_admit_and_vacate_edges(db):
    site_id = await make_site(db)
    for i, status in enumerate(RoomStatus):
        room = await _room_in(db, site_id, status, f"A-{i}")
        try:
            async with db.transaction() as conn:
                locked = await sites.lock_room(conn, COMMAND, room.id)
                after = await sites.occupy_bed(conn, COMMAND, locked, may_share=True)
        except Conflict as exc:
            assert status not in (RoomStatus.READY, RoomStatus.OCCUPIED) and exc.code == "room_not_ready"
        else:
            assert status in (RoomStatus.READY, RoomStatus.OCCUPIED) and after.status is RoomStatus.OCCUPIED
    # vacate happens only through the last resident leaving an occupied room
    room = await _room_in(db, site_id, RoomStatus.OCCUPIED, "V-1")
    async with db.transaction() as conn:
        after = await sites.release_bed(conn, COMMAND, room.id)
    assert after.status is RoomStatus.VACATED and after.occupied == 0
    with pytest.raises(Conflict) as empty:
        async with db.transaction() as conn:
            await sites.release_bed(conn, COMMAND, room.id)
    assert empty.value.code == "room_empty"
    with pytest.raises(InvalidInput):
        async with db.transaction() as conn:
            await sites.turn_over(conn, COMMAND, room.id, RoomAction.VACATE)


async def test_full_turnover_cycle_with_disinfection_task(db):
    site_id = await make_site(db, floors={1: (1, 1)})
    worker = staff(site_id)
    async with db.connection() as conn:
        (room,) = await sites.list_site_rooms(conn, COMMAND, site_id)
    async with db.transaction() as conn:
        await sites.occupy_bed(conn, worker, await sites.lock_room(conn, worker, room.id), may_share=False)
    async with db.transaction() as conn:
        vacated = await sites.release_bed(conn, worker, room.id)
        task = (await sites.room_tasks(conn, worker, [room.id]))[room.id]
    assert vacated.status is RoomStatus.VACATED and task.state == "open"
    async with db.transaction() as conn:
        await sites.turn_over(conn, worker, room.id, RoomAction.START_DISINFECTION)
        airing = await sites.turn_over(conn, worker, room.id, RoomAction.FINISH_DISINFECTION, airing_minutes=30)
    assert airing.status is RoomStatus.AIRING
    with pytest.raises(RuleViolated) as early:
        async with db.transaction() as conn:
            await sites.turn_over(conn, worker, room.id, RoomAction.PASS_INSPECTION)
    assert early.value.code == "airing_not_finished"
    async with db.transaction() as conn:
        await sites.turn_over(conn, worker, room.id, RoomAction.FAIL_INSPECTION, reason="residue")
        await sites.turn_over(conn, worker, room.id, RoomAction.FINISH_DISINFECTION, airing_minutes=0)
        ready = await sites.turn_over(conn, worker, room.id, RoomAction.PASS_INSPECTION)
        task = (await sites.room_tasks(conn, worker, [room.id]))[room.id]
        history = await sites.room_history(conn, worker, room.id)
    assert ready.status is RoomStatus.READY
    assert task.state == "passed" and task.failed_inspections == 1 and task.inspected_by == worker.ref
    assert [h.to_status.value for h in history] == [
        "ready", "occupied", "vacated", "disinfecting", "airing", "disinfecting", "airing", "ready"
    ]
    assert history[0].actor == COMMAND.ref and all(h.actor == worker.ref for h in history[1:])
    async with db.connection() as conn:  # a long history is read from its end, still oldest first
        latest = await sites.room_history(conn, worker, room.id, last=3)
        with pytest.raises(InvalidInput):
            await sites.room_history(conn, worker, room.id, last=0)
    assert [h.to_status.value for h in latest] == ["disinfecting", "airing", "ready"]
    assert [h.id for h in latest] == [h.id for h in history[-3:]]
    async with db.connection() as conn:
        events = await conn.fetch("SELECT type FROM events WHERE subject_id = $1 ORDER BY id", room.id)
    assert sum(e["type"] == "sites.room_status_changed" for e in events) == 7


async def test_two_staff_turning_over_the_same_room_one_wins(db):
    site_id = await make_site(db, floors={1: (1, 1)})
    async with db.connection() as conn:
        (room,) = await sites.list_site_rooms(conn, COMMAND, site_id)
    await db.pool.execute("UPDATE rooms SET status = 'vacated' WHERE id = $1", room.id)

    async def start(who):
        try:
            async with db.transaction() as conn:
                await sites.turn_over(conn, who, room.id, RoomAction.START_DISINFECTION)
            return "ok"
        except Conflict as exc:
            return exc.code

    results = await asyncio.gather(*(start(staff(site_id)) for _ in range(6)))
    assert sorted(results) == ["invalid_room_transition"] * 5 + ["ok"]
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM disinfection_tasks WHERE room_id = $1", room.id) == 1
        assert await conn.fetchval("SELECT count(*) FROM room_status_changes WHERE room_id = $1 AND to_status = 'disinfecting'", room.id) == 1


async def test_capacity_and_status_are_database_invariants(db):
    site_id = await make_site(db, floors={1: (1, 2)})
    async with db.connection() as conn:
        (room,) = await sites.list_site_rooms(conn, COMMAND, site_id)
        with pytest.raises(Exception) as over:
            await conn.execute("UPDATE rooms SET status = 'occupied', occupied = 3 WHERE id = $1", room.id)
        assert over.value.constraint_name == "rooms_capacity"
        with pytest.raises(Exception) as ready_full:
            await conn.execute("UPDATE rooms SET occupied = 1 WHERE id = $1", room.id)
        assert ready_full.value.constraint_name == "rooms_empty_unless_occupied"


async def test_other_site_room_is_not_found(db):
    a = await make_site(db, "A-1", floors={1: (1, 1)})
    b = await make_site(db, "B-1", floors={1: (1, 1)})
    async with db.connection() as conn:
        (room_a,) = await sites.list_site_rooms(conn, COMMAND, a)
    other = make_principal(Role.SITE_MANAGER, [b])
    for call in (
        lambda conn: sites.get_room(conn, other, room_a.id),
        lambda conn: sites.seal_room(conn, other, room_a.id, "x"),
        lambda conn: sites.turn_over(conn, other, room_a.id, RoomAction.TAKE_OUT_OF_SERVICE),
        lambda conn: sites.list_site_rooms(conn, other, a),
    ):
        with pytest.raises(DomainError) as exc:
            async with db.transaction() as conn:
                await call(conn)
        assert exc.value.status == 404


async def test_rest_rooms_and_graphql_floor(client, auth):
    command = make_principal(Role.COMMAND)
    site = (await client.post("/api/v1/sites", json={"code": "LJ-09", "name": "金山隔离酒店"}, headers=auth(command))).json()
    mutation = """mutation($input: CreateFloorInput!) { createFloor(input: $input) {
        rooms { id number floor beds status freeBeds } userErrors { field code message } } }"""
    body = {"query": mutation, "variables": {"input": {"siteId": site["id"], "floor": 5, "first": 501, "last": 520, "beds": 2}}}
    created = (await client.post("/graphql", json=body, headers=auth(command))).json()["data"]["createFloor"]
    assert len(created["rooms"]) == 20 and created["rooms"][0]["freeBeds"] == 2
    again = (await client.post("/graphql", json=body, headers=auth(command))).json()["data"]["createFloor"]
    assert again["userErrors"][0]["code"] == "room_number_taken"
    bad = {"query": mutation, "variables": {"input": {"siteId": site["id"], "floor": 5, "first": 520, "last": 501}}}
    assert (await client.post("/graphql", json=bad, headers=auth(command))).json()["data"]["createFloor"]["userErrors"][0]["code"] == "invalid_room_range"

    page = (await client.get(f"/api/v1/sites/{site['id']}/rooms", params={"limit": 15}, headers=auth(command))).json()
    assert len(page["items"]) == 15 and page["next_cursor"]
    rest = (await client.get(f"/api/v1/sites/{site['id']}/rooms", params={"cursor": page["next_cursor"]}, headers=auth(command))).json()
    assert [r["number"] for r in page["items"] + rest["items"]] == [str(n) for n in range(501, 521)]
    room_id = page["items"][0]["id"]
    one = await client.get(f"/api/v1/rooms/{room_id}", headers=auth(command))
    assert one.status_code == 200 and one.json()["status"] == "ready"
    outsider = make_principal(Role.SITE_STAFF, [])
    assert (await client.get(f"/api/v1/rooms/{room_id}", headers=auth(outsider))).status_code == 404
    assert (await client.get(f"/api/v1/sites/{site['id']}/rooms", headers=auth(outsider))).status_code == 404

    turn = """mutation($input: TurnOverRoomInput!) { turnOverRoom(input: $input) { room { status statusBy } userErrors { code } } }"""
    out = (await client.post("/graphql", json={"query": turn, "variables": {"input": {"roomId": room_id, "action": "TAKE_OUT_OF_SERVICE", "reason": "leak"}}}, headers=auth(command))).json()
    assert out["data"]["turnOverRoom"]["room"]["status"] == "OUT_OF_SERVICE"
    again = (await client.post("/graphql", json={"query": turn, "variables": {"input": {"roomId": room_id, "action": "TAKE_OUT_OF_SERVICE"}}}, headers=auth(command))).json()
    assert again["data"]["turnOverRoom"]["userErrors"] == [{"code": "invalid_room_transition"}]
    hidden = (await client.post("/graphql", json={"query": "query($id: UUID!) { room(id: $id) { number } }", "variables": {"id": room_id}}, headers=auth(outsider))).json()
    assert hidden["data"]["room"] is None
