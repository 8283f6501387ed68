"""The room board (constant statements), GraphQL admission flows, occupancy over REST and GraphQL."""

from datetime import UTC, datetime, timedelta

import pytest

from service import db as dbmod
from service.access.model import Role
from service.api.graphql import build_schema
from service.cache import Cache
from service.db import Database, create_pool
from service.gql import Context
from service.stays import service as stays
from service.stays.model import BatchAdmission, BatchMember
from tests.conftest import make_principal
from tests.stays.helpers import COMMAND, id_number, make_site, make_street, person, without_health_blockers

BOARD = """query($site: UUID!, $floor: Int) { roomBoard(siteId: $site, floor: $floor) {
    room { number floor status beds freeBeds disinfection { state } }
    occupants { bed quarantineDay plannedReleaseAt category resident { name documentNumber phone } regime { code testDays } }
} }"""


@pytest.fixture
async def counted(settings, monkeypatch):
    """A Database whose pooled connections log every statement they run into ``statements``."""
    statements: list[str] = []

    async def init(conn):
        await original(conn)
        conn.add_query_logger(lambda q: statements.append(q.query))

    original = dbmod._init_connection
    monkeypatch.setattr(dbmod, "_init_connection", init)
    cache = Cache(settings.redis_url or "", prefix=settings.redis_prefix, timeout_ms=settings.redis_timeout_ms)
    pool = await create_pool(settings, settings.database_url or "")
    try:
        yield Database(pool, cache), statements, cache
    finally:
        await pool.close()
        await cache.close()


def _driver_statement(sql: str) -> bool:
    """asyncpg's own statements: the pool's reset on release, type introspection on a fresh connection."""
    return sql.startswith("SELECT pg_advisory_unlock_all()") or any(t in sql for t in ("pg_catalog", "pg_type", "typeinfo_tree", "set_config"))


async def _fill(db, settings, site_id, count):
    for start in range(0, count, 150):
        members = [BatchMember(resident=person(f"H{start + i // 2}")) for i in range(min(150, count - start))]
        async with db.transaction() as conn:
            await stays.admit_batch(conn, COMMAND, settings, BatchAdmission(site_id=site_id, category="close_contact", arrival_batch=f"b{start}", members=members))


async def test_board_statement_count_does_not_grow_with_rooms(counted, settings):
    db, statements, cache = counted
    small = await make_site(db, "S-10", floors={3: (10, 1)})
    large = await make_site(db, "L-300", floors={f: (30, 1) for f in range(2, 12)})
    await _fill(db, settings, small, 8)
    await _fill(db, settings, large, 290)
    await db.pool.execute("UPDATE rooms SET status = 'vacated' WHERE occupied = 0")
    await db.pool.execute("INSERT INTO disinfection_tasks (room_id, site_id) SELECT id, site_id FROM rooms WHERE status = 'vacated'")
    schema = build_schema(settings)

    async def run(site_id):
        context = Context(db=db, cache=cache, settings=settings, principal=COMMAND)
        statements.clear()
        result = await schema.execute(BOARD, variable_values={"site": str(site_id)}, context_value=context)
        assert result.errors is None, result.errors
        return result.data["roomBoard"], len([q for q in statements if not _driver_statement(q)])

    board_small, n_small = await run(small)
    board_large, n_large = await run(large)
    assert len(board_small) == 10 and len(board_large) == 300
    assert sum(len(r["occupants"]) for r in board_large) == 290
    # site, rooms, stays with residents, disinfection tasks, regimes
    assert n_small == n_large == 5, (n_small, n_large)
    first = next(r for r in board_large if r["occupants"])
    occupant = first["occupants"][0]
    assert occupant["quarantineDay"] == 1 and occupant["regime"] == {"code": "close_contact", "testDays": [1, 2, 3, 5, 7]}
    assert occupant["resident"]["name"] == "张*" and occupant["resident"]["documentNumber"].startswith("**************")
    assert {r["room"]["disinfection"]["state"] for r in board_large if not r["occupants"]} == {"OPEN"}


async def gql(client, auth, principal, query, **variables):
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=auth(principal))
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


ADMIT = """mutation($input: AdmitInput!) { admitResident(input: $input) {
    stay { id roomNumber bed quarantineDay plannedReleaseAt resident { id name documentNumber } room { number status } }
    userErrors { field code message } } }"""


async def test_graphql_admission_board_release_and_reveal(client, auth, db, settings, monkeypatch):
    without_health_blockers(monkeypatch)
    site_id = await make_site(db, floors={3: (3, 1)})
    manager = make_principal(Role.SITE_MANAGER, [site_id])
    number = id_number()
    resident = {"name": "李四", "documentType": "MAINLAND_ID", "documentNumber": number, "phone": "13900001111"}
    bad = await gql(client, auth, manager, ADMIT, input={"siteId": str(site_id), "category": "CLOSE_CONTACT",
                                                         "resident": {**resident, "documentNumber": number[:-1] + ("0" if number[-1] != "0" else "1")}})
    assert bad["admitResident"]["userErrors"][0]["code"] == "invalid_id_number"
    assert bad["admitResident"]["userErrors"][0]["field"] == "input.resident.documentNumber"
    admitted_at = (datetime.now(UTC) - timedelta(days=8)).isoformat()
    data = await gql(client, auth, manager, ADMIT, input={"siteId": str(site_id), "category": "CLOSE_CONTACT", "resident": resident, "admittedAt": admitted_at})
    stay = data["admitResident"]["stay"]
    assert data["admitResident"]["userErrors"] == [] and stay["roomNumber"] == "301" and stay["quarantineDay"] == 9
    assert stay["resident"]["name"] == "李*" and number not in str(stay) and stay["room"]["status"] == "OCCUPIED"

    board = await gql(client, auth, manager, BOARD, site=str(site_id), floor=3)
    assert [len(r["occupants"]) for r in board["roomBoard"]] == [1, 0, 0]
    outsider = make_principal(Role.SITE_STAFF, [])
    assert (await gql(client, auth, outsider, BOARD, site=str(site_id)))["roomBoard"] is None
    assert (await gql(client, auth, outsider, "query($id: UUID!) { stay(id: $id) { id } }", id=stay["id"]))["stay"] is None

    reveal = """mutation($input: RevealResidentInput!) { revealResident(input: $input) { resident { name documentNumber phone } userErrors { code } } }"""
    staffer = make_principal(Role.SITE_STAFF, [site_id])
    denied = await client.post("/graphql", json={"query": reveal, "variables": {"input": {"residentId": stay["resident"]["id"], "purpose": "call"}}}, headers=auth(staffer))
    assert denied.json()["data"] is None or denied.json()["data"]["revealResident"] is None
    shown = await gql(client, auth, manager, reveal, input={"residentId": stay["resident"]["id"], "purpose": "call family"})
    assert shown["revealResident"]["resident"] == {"name": "李四", "documentNumber": number, "phone": "13900001111"}

    release = """mutation($id: UUID!, $handover: HandoverInput) { releaseStay(stayId: $id, handover: $handover) {
        stay { status outcome room { status } } userErrors { code field message } } }"""
    # A close contact continues at home: the receiving street and contact are required.
    required = await gql(client, auth, manager, release, id=stay["id"])
    assert [(e["code"], e["field"]) for e in required["releaseStay"]["userErrors"]] == [("handover_required", "handover")]
    street = str(await make_street(db))
    handover = {"regionId": street, "contactName": "李社区", "contactPhone": "13900002222"}
    released = await gql(client, auth, manager, release, id=stay["id"], handover=handover)
    assert released["releaseStay"]["stay"] == {"status": "CLOSED", "outcome": "RELEASED", "room": {"status": "VACATED"}}
    again = await gql(client, auth, manager, release, id=stay["id"], handover=handover)
    assert again["releaseStay"]["userErrors"][0]["code"] == "stay_closed"

    occupancy = await client.get("/api/v1/occupancy", headers=auth(manager))
    assert occupancy.status_code == 200 and occupancy.json()["total"]["beds_in_turnover"] == 1
    etag = occupancy.headers["etag"]
    assert (await client.get("/api/v1/occupancy", headers={**auth(manager), "If-None-Match": etag})).status_code == 304
    one = await client.get(f"/api/v1/sites/{site_id}/occupancy", headers=auth(manager))
    assert one.json()["beds_total"] == 3 and one.json()["beds_ready"] == 2
    assert (await client.get(f"/api/v1/sites/{site_id}/occupancy", headers=auth(outsider))).status_code == 404
    gql_occ = await gql(client, auth, manager, "{ occupancy { total { bedsTotal bedsOccupied releasesDueToday } sites { siteId } } }")
    assert gql_occ["occupancy"]["total"]["bedsTotal"] == 3 and gql_occ["occupancy"]["sites"] == [{"siteId": str(site_id)}]


async def test_graphql_admission_replays_with_idempotency_key(client, auth, db):
    site_id = await make_site(db, floors={3: (3, 1)})
    manager = make_principal(Role.SITE_MANAGER, [site_id])
    variables = {"input": {"siteId": str(site_id), "category": "CLOSE_CONTACT",
                           "resident": {"name": "赵六", "documentType": "MAINLAND_ID", "documentNumber": id_number()}}}
    headers = {**auth(manager), "Idempotency-Key": "admit-1"}
    first = (await client.post("/graphql", json={"query": ADMIT, "variables": variables}, headers=headers)).json()
    second = (await client.post("/graphql", json={"query": ADMIT, "variables": variables}, headers=headers)).json()
    assert first["data"]["admitResident"]["stay"]["id"] == second["data"]["admitResident"]["stay"]["id"]
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM stays") == 1


async def test_graphql_batch_and_regime_update(client, auth, db):
    site_id = await make_site(db, floors={3: (4, 1)})
    manager = make_principal(Role.SITE_MANAGER, [site_id])
    batch = """mutation($input: AdmitBatchInput!) { admitBatch(input: $input) { stays { roomNumber } userErrors { field code } } }"""
    members = [{"resident": {"name": f"乘客{i}", "documentType": "PASSPORT", "documentNumber": f"E1234567{i}"}} for i in range(5)]
    too_many = await gql(client, auth, manager, batch, input={"siteId": str(site_id), "category": "INBOUND_TRAVELLER", "arrivalBatch": "CA-981", "members": members})
    assert too_many["admitBatch"]["userErrors"][0]["code"] == "no_room_available"
    fits = await gql(client, auth, manager, batch, input={"siteId": str(site_id), "category": "INBOUND_TRAVELLER", "arrivalBatch": "CA-981", "members": members[:4]})
    assert sorted(s["roomNumber"] for s in fits["admitBatch"]["stays"]) == ["301", "302", "303", "304"]
    update = """mutation($input: UpdateRegimeInput!) { updateRegime(input: $input) { regime { centralizedDays version } userErrors { code } } }"""
    resp = await client.post("/graphql", json={"query": update, "variables": {"input": {"code": "inbound_traveller", "version": 1, "centralizedDays": 10}}}, headers=auth(manager))
    assert resp.json()["data"] is None or resp.json()["data"]["updateRegime"] is None  # command only
    done = await gql(client, auth, COMMAND, update, input={"code": "inbound_traveller", "version": 1, "centralizedDays": 10})
    assert done["updateRegime"]["regime"] == {"centralizedDays": 10, "version": 2}
    bad = await gql(client, auth, COMMAND, update, input={"code": "inbound_traveller", "version": 2, "testDays": [0]})
    assert bad["updateRegime"]["userErrors"][0]["code"] == "invalid_input"


async def test_graphql_move_extend_contacts_suggest_and_search(client, auth, db, settings):
    site_id = await make_site(db, floors={3: (3, 2)})
    manager = make_principal(Role.SITE_MANAGER, [site_id])
    number = id_number()
    admit = lambda household, doc: gql(client, auth, manager, ADMIT, input={  # noqa: E731
        "siteId": str(site_id), "category": "CLOSE_CONTACT", "arrivalBatch": "bus-3",
        "resident": {"name": "陈五", "documentType": "MAINLAND_ID", "documentNumber": doc, "householdKey": household}})
    a = (await admit("H-1", number))["admitResident"]["stay"]
    b = (await admit("H-1", id_number()))["admitResident"]["stay"]
    c = (await admit(None, id_number()))["admitResident"]["stay"]
    assert a["roomNumber"] == b["roomNumber"] == "301" and c["roomNumber"] == "302"

    contacts = await gql(client, auth, manager, """query($id: UUID!) { stayContacts(stayId: $id) {
        roommates { id } household { id } floorNeighbours { id room { number } regime { code } } } }""", id=a["id"])
    found = contacts["stayContacts"]
    assert found["roommates"] == [{"id": b["id"]}] and found["household"] == [{"id": b["id"]}]
    assert [s["id"] for s in found["floorNeighbours"]] == [c["id"]] and found["floorNeighbours"][0]["room"]["number"] == "302"

    suggest = await gql(client, auth, manager, """query($site: UUID!) { suggestRooms(siteId: $site, category: CLOSE_CONTACT, arrivalBatch: "bus-3") { number freeBeds } }""", site=str(site_id))
    assert suggest["suggestRooms"] == [{"number": "303", "freeBeds": 2}]

    search = await gql(client, auth, manager, "query($n: String!) { residentsByDocument(documentNumber: $n) { id name } }", n=number)
    assert search["residentsByDocument"] == [{"id": a["resident"]["id"], "name": "陈*"}]

    move = """mutation($input: MoveStayInput!) { moveStay(input: $input) { stay { id roomNumber movedFrom } userErrors { code } } }"""
    room_303 = (await client.get(f"/api/v1/sites/{site_id}/rooms", params={"floor": 3, "status": "ready"}, headers=auth(manager))).json()["items"][0]["id"]
    moved = (await gql(client, auth, manager, move, input={"stayId": c["id"], "roomId": room_303, "reason": "ventilation"}))["moveStay"]
    assert moved["userErrors"] == [] and moved["stay"]["roomNumber"] == "303" and moved["stay"]["movedFrom"] == c["id"]
    again = (await gql(client, auth, manager, move, input={"stayId": c["id"], "roomId": room_303}))["moveStay"]
    assert again["userErrors"] == [{"code": "stay_closed"}]

    extend = """mutation($input: ExtendStayInput!) { extendStay(input: $input) { stay { plannedReleaseAt } userErrors { code field } } }"""
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    assert (await gql(client, auth, manager, extend, input={"stayId": a["id"], "exposedAt": future}))["extendStay"]["userErrors"][0]["code"] == "exposed_in_future"
    stays_list = await gql(client, auth, manager, """query($site: UUID!) { stays(siteId: $site, status: ACTIVE, first: 2) {
        edges { node { id resident { name } } } pageInfo { hasNextPage endCursor } } }""", site=str(site_id))
    assert len(stays_list["stays"]["edges"]) == 2 and stays_list["stays"]["pageInfo"]["hasNextPage"]
    rest = await gql(client, auth, manager, """query($site: UUID!, $after: String) { stays(siteId: $site, status: ACTIVE, first: 5, after: $after) {
        edges { node { id } } pageInfo { hasNextPage } } }""", site=str(site_id), after=stays_list["stays"]["pageInfo"]["endCursor"])
    assert len(rest["stays"]["edges"]) == 1 and not rest["stays"]["pageInfo"]["hasNextPage"]


async def test_room_histories_load_in_one_statement_whatever_the_number_of_rooms(counted, settings):
    db, statements, cache = counted
    small = await make_site(db, "H-2", floors={3: (2, 1)})
    large = await make_site(db, "H-40", floors={3: (20, 1), 4: (20, 1)})
    await db.pool.execute("UPDATE rooms SET status = 'vacated' WHERE occupied = 0")
    await db.pool.execute(
        "INSERT INTO room_status_changes (room_id, site_id, from_status, to_status, action, actor)"
        " SELECT id, site_id, 'ready', 'vacated', 'vacate', 'staff:test' FROM rooms"
    )
    schema = build_schema(settings)
    query = "query($site: UUID!) { rooms(siteId: $site, first: 100) { edges { node { number history { toStatus } } } } }"

    async def run(site_id):
        context = Context(db=db, cache=cache, settings=settings, principal=COMMAND)
        statements.clear()
        result = await schema.execute(query, variable_values={"site": str(site_id)}, context_value=context)
        assert result.errors is None, result.errors
        rooms = [e["node"] for e in result.data["rooms"]["edges"]]
        return rooms, len([q for q in statements if not _driver_statement(q) and "room_status_changes" in q])

    rooms_small, n_small = await run(small)
    rooms_large, n_large = await run(large)
    assert len(rooms_small) == 2 and len(rooms_large) == 40
    assert all(r["history"][-1]["toStatus"] == "VACATED" for r in rooms_large)
    assert n_small == n_large == 1, (n_small, n_large)
