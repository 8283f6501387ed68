"""Changes by cursor: scope, visibility, commit order, resumption, and a read bounded by what it returns."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from service import bus, policy
from service.access.model import Role
from service.changes import service as changes
from service.supplies import service as supplies
from tests.conftest import make_principal
from tests.health.helpers import checkin, ward
from tests.supplies.helpers import make_item, move

URL = "/api/v1/changes"
QUERY = """
query Changes($siteIds: [UUID!], $after: String, $types: [String!], $first: Int!) {
  changes(siteIds: $siteIds, after: $after, types: $types, first: $first) {
    edges { cursor node { cursor id type entity entityId entityIds siteId version tombstone data at } }
    pageInfo { endCursor hasNextPage }
  }
}
"""


async def read_all(client, headers, after: str | None = None, **params: Any) -> tuple[list[dict[str, Any]], str]:
    """Every page from ``after`` on (REST), and the cursor to resume from."""
    seen: list[dict[str, Any]] = []
    while True:
        response = await client.get(URL, params={"limit": 7, **params, **({"after": after} if after else {})}, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += page["changes"]
        assert page["next_cursor"] == (page["changes"][-1]["cursor"] if page["changes"] else after or page["next_cursor"])
        after = page["next_cursor"]
        if not page["has_more"]:
            return seen, after


async def gql_changes(client, headers, **variables: Any) -> dict[str, Any]:
    answer = await client.post("/graphql", json={"query": QUERY, "variables": {"first": 100, **variables}}, headers=headers)
    body = answer.json()
    assert "errors" not in body, body
    return body["data"]["changes"]


async def test_writes_of_every_kind_come_back_in_commit_order_with_their_records(client, auth, db, settings):
    site_id, stays = await ward(db, settings, residents=2)
    other_id, _ = await ward(db, settings, residents=1, code="LJ-02")
    site = str(site_id)
    medic = make_principal(Role.MEDIC, [site_id])
    command = make_principal(Role.COMMAND)
    item = await make_item(client, auth)
    _, cursor = await read_all(client, auth(medic))
    # Writes at the site: a check-in, a stock receipt, a site rename; and one at another site.
    body = checkin(stays[0].id)
    assert (await client.post("/api/v1/checkins", json=body, headers=auth(medic))).status_code == 201
    moved = await move(client, auth, make_principal(Role.SITE_MANAGER, [site_id]), site, item, "receipt", 10)
    assert moved.status_code == 201, moved.text
    current = (await client.get(f"/api/v1/sites/{site}", headers=auth(command))).json()
    renamed = await client.patch(f"/api/v1/sites/{site}", json={"version": current["version"], "name": "Renamed"}, headers=auth(command))
    assert renamed.status_code == 200
    await move(client, auth, make_principal(Role.SITE_MANAGER, [other_id]), str(other_id), item, "receipt", 3)

    seen, end = await read_all(client, auth(medic), cursor)
    assert [(c["type"], c["entity"], c["entity_id"]) for c in seen] == [
        ("health.checkin_recorded", "checkin", body["id"]),
        ("supplies.stock_moved", "movement", moved.json()["id"]),
        ("sites.site_updated", "site", site),
    ]
    assert all(c["site_id"] == site for c in seen)
    assert len({c["id"] for c in seen}) == 3
    assert seen[0]["version"] is None and seen[0]["data"] == {"stay_id": str(stays[0].id)}  # no health values in a change
    assert seen[2]["version"] == renamed.json()["version"]  # the record's version after the change
    # Resuming from the end gives nothing; from a change's own cursor, what follows it.
    assert (await read_all(client, auth(medic), end))[0] == []
    assert [c["id"] for c in (await read_all(client, auth(medic), seen[0]["cursor"]))[0]] == [c["id"] for c in seen[1:]]
    # GraphQL answers the same changes; `types` narrows to a domain or a type.
    page = await gql_changes(client, auth(medic), after=cursor)
    assert [e["node"]["id"] for e in page["edges"]] == [c["id"] for c in seen]
    assert page["pageInfo"] == {"endCursor": end, "hasNextPage": False}
    assert page["edges"][2]["node"]["entityIds"] == [site]
    supplies_only = await gql_changes(client, auth(medic), after=cursor, types=["supplies", "sites.room_updated"])
    assert [e["node"]["type"] for e in supplies_only["edges"]] == ["supplies.stock_moved"]
    # The command role without siteIds hears both sites.
    everywhere, _ = await read_all(client, auth(command), cursor)
    assert {c["site_id"] for c in everywhere} == {site, str(other_id)}


async def test_roles_see_only_what_they_may_read(client, auth, db, settings):
    site_id, stays = await ward(db, settings, residents=1)
    item = await make_item(client, auth)
    await client.post("/api/v1/checkins", json=checkin(stays[0].id), headers=auth(make_principal(Role.SITE_STAFF, [site_id])))
    await move(client, auth, make_principal(Role.SITE_MANAGER, [site_id]), str(site_id), item, "receipt", 10)
    staff_seen, _ = await read_all(client, auth(make_principal(Role.SITE_STAFF, [site_id])))
    logistics_seen, _ = await read_all(client, auth(make_principal(Role.LOGISTICS, [site_id])))
    staff_types = {c["type"] for c in staff_seen}
    assert {"stays.admitted", "health.checkin_recorded", "supplies.stock_moved", "supplies.item_created"} <= staff_types
    assert {c["type"] for c in logistics_seen} == {"sites.site_created", "supplies.stock_moved", "supplies.item_created"}
    for role in (Role.LAB, Role.TRACING):
        refused = await client.get(URL, headers=auth(make_principal(role, [site_id])))
        assert refused.status_code == 403 and refused.json()["code"] == "role_not_allowed"
    # A hospital reads only transfers naming its facility (tests/webhooks/test_hospital.py): none here.
    for facility_id in (None, uuid.uuid4()):
        hospital = await client.get(URL, headers=auth(make_principal(Role.HOSPITAL, [site_id], facility_id=facility_id)))
        assert hospital.status_code == 200 and hospital.json()["changes"] == []


async def test_another_sites_id_answers_like_an_unknown_one(client, auth, db, settings):
    site_id, _ = await ward(db, settings, residents=1)
    other_id, _ = await ward(db, settings, residents=1, code="LJ-02")
    staff = auth(make_principal(Role.SITE_STAFF, [site_id]))
    answers = [await client.get(URL, params={"site_id": str(s)}, headers=staff) for s in (other_id, uuid.uuid4())]
    assert [a.status_code for a in answers] == [404, 404]
    assert answers[0].json()["code"] == answers[1].json()["code"] == "site_not_found"
    assert str(other_id) not in answers[0].text
    bad = await client.get(URL, params={"after": "not-a-cursor"}, headers=staff)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_cursor"
    bad_types = await client.get(URL, params={"types": "Health!"}, headers=staff)
    assert bad_types.status_code == 422 and bad_types.json()["code"] == "invalid_input"
    too_many = await client.get(URL, params={"limit": changes.MAX_LIMIT + 1}, headers=staff)
    assert too_many.status_code == 400


async def _emit(db, site_id: uuid.UUID | None, event_type: str) -> bus.Event:
    async with db.transaction() as conn:
        return await bus.emit(conn, event_type, site_id=site_id)


async def test_a_late_commit_is_never_skipped_whatever_the_lanes(db):
    """Every way a page is read (a site, a site and few types, one type everywhere) holds a late commit back."""
    site = uuid.uuid4()
    ways = [
        {"site_ids": [site]},
        {"site_ids": [site], "types": ["sites.site_updated"]},
        {"site_ids": None, "types": ["sites.site_updated"]},
        {"site_ids": None},
    ]
    for way in ways:
        async with db.connection() as conn:
            start = (await bus.read_events(conn, cursor=None, limit=1000, **way)).next_cursor
        async with db.pool.acquire() as slow:
            await slow.execute("BEGIN")
            await slow.fetchval("SELECT pg_current_xact_id()")
            early = await _emit(db, site, "sites.site_updated")
            async with db.connection() as conn:
                during = await bus.read_events(conn, cursor=start, limit=1000, **way)
            assert during.events == [], way
            late = await bus.emit(slow, "sites.site_updated", site_id=site)
            await slow.execute("COMMIT")
        async with db.connection() as conn:
            after = await bus.read_events(conn, cursor=during.next_cursor, limit=1000, **way)
        assert [e.id for e in after.events] == [late.id, early.id], way


# --- bounded by what it returns ------------------------------------------------------------


class _Recording:
    """A connection that keeps the feed statement and its arguments (to EXPLAIN them)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.conn.fetchval(query, *args)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        self.calls.append((query, args))
        return await self.conn.fetch(query, *args)


def _rows_read(node: dict[str, Any]) -> int:
    own = 0
    if node.get("Node Type") in ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan"):
        own = int((node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * node.get("Actual Loops", 1))
    return own + sum(_rows_read(child) for child in node.get("Plans", []))


async def _worst_read(conn: asyncpg.Connection, query: str, args: tuple[Any, ...]) -> int:
    worst = 0
    for mode in ("force_custom_plan", "force_generic_plan"):  # asyncpg reuses prepared statements: both plans run
        async with conn.transaction():
            await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
            raw = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", *args)
        plan = json.loads(raw) if isinstance(raw, str) else raw  # the pool decodes json itself
        worst = max(worst, _rows_read(plan[0]["Plan"]))
    return worst


async def test_a_page_reads_what_it_returns_not_the_history(db):
    sites = [uuid.uuid4() for _ in range(4)]
    async with db.connection() as conn:
        # 40,000 check-ins at four sites, then a few rare changes: a filter for them must not walk the rest.
        await conn.execute(
            "INSERT INTO events (site_id, type, subject_id) SELECT ($1::uuid[])[1 + g % 4], 'health.checkin_recorded', gen_random_uuid()"
            " FROM generate_series(1, 40000) g",
            sites,
        )
        await conn.execute(
            "INSERT INTO events (site_id, type, subject_id) SELECT ($1::uuid[])[1 + g % 4], 'supplies.stock_moved', gen_random_uuid()"
            " FROM generate_series(1, 20) g",
            sites,
        )
        await conn.execute("INSERT INTO events (site_id, type) SELECT NULL, 'supplies.item_created' FROM generate_series(1, 5)")
        await conn.execute("ANALYZE events")
        logistics = make_principal(Role.LOGISTICS, sites[:2])
        staff = make_principal(Role.SITE_STAFF, sites[:1])
        scope = policy.event_scope(staff)
        recording = _Recording(conn)
        cases = [
            # (what, read, rows it may read besides what it returns)
            ("logistics, its types", lambda: supplies.changes(recording, logistics, cursor=None, limit=100), 18),  # 2 sites x 9 types: one probe each
            ("staff, every type", lambda: changes.read_changes(
                recording, staff, site_ids=sites[:1], after=None, types=scope.site_types, global_types=scope.global_types, limit=100), 10),
            ("staff, one domain", lambda: changes.read_changes(
                recording, staff, site_ids=sites[:1], after=None, types=frozenset({"supplies.stock_moved"}), global_types=frozenset(), limit=100), 5),
            ("every site, one type", lambda: bus.read_events(recording, cursor=None, limit=100, site_ids=None, types=["supplies.stock_moved"]), 5),
            ("every site", lambda: bus.read_events(recording, cursor=None, limit=100, site_ids=None), 5),
        ]
        for what, read, slack in cases:
            recording.calls.clear()
            page = await read()
            returned = len(page.events if hasattr(page, "events") else page.changes)
            (query, args), = recording.calls
            read_rows = await _worst_read(conn, query, args)
            assert read_rows <= returned + 1 + slack, f"{what}: read {read_rows} rows to return {returned}"
        assert returned == 100



async def test_commit_order_is_numeric_across_a_power_of_ten(db):
    """Transaction ids 99 and 100: the page is ordered by the id's value, not its text ("100" < "99")."""
    async with db.connection() as conn:
        ids = [await conn.fetchval("INSERT INTO events (txid, site_id, type) VALUES ($1::text::xid8, NULL, 'sites.site_updated') RETURNING id", str(t))
               for t in (100, 99)]
        first = await bus.read_events(conn, cursor=None, limit=1, site_ids=None)
        second = await bus.read_events(conn, cursor=first.next_cursor, limit=1, site_ids=None)
    assert [e.id for e in first.events + second.events] == [ids[1], ids[0]]


async def test_a_change_never_names_another_sites_records(client, auth, db):
    """A client of two sites, a move to another site: the change shows only what the caller's sites hold."""
    a, b = uuid.uuid4(), uuid.uuid4()
    async with db.transaction() as conn:
        await bus.emit(conn, "access.client_created", site_id=a, subject_id=uuid.uuid4(), data={"role": "lab", "site_ids": [str(a), str(b)]})
        moved = {"to_stay": str(uuid.uuid4()), "to_site": str(b), "to_room": str(uuid.uuid4()), "reason": "family"}
        await bus.emit(conn, "stays.moved", site_id=a, subject_id=uuid.uuid4(), data=moved)
    async with db.connection() as conn:
        for principal, sees_b in ((make_principal(Role.SITE_MANAGER, [a]), False), (make_principal(Role.SITE_MANAGER, [a, b]), True),
                                  (make_principal(Role.COMMAND), True)):
            scope = policy.event_scope(principal)
            page = await changes.read_changes(
                conn, principal, site_ids=[a], after=None, types=scope.site_types, global_types=scope.global_types, limit=10
            )
            client_change, move_change = page.changes
            assert client_change.data["site_ids"] == ([str(a), str(b)] if sees_b else [str(a)])
            assert move_change.data == (moved if sees_b else {"reason": "family"})
