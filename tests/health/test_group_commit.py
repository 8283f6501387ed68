"""Concurrent single check-ins share statements (service/groupcommit.py): each caller still gets its own answer."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from service.access.model import Role
from service.app import create_app
from service.errors import Conflict, InvalidInput, NotFound
from service.groupcommit import GroupCommit
from service.health import service as health
from service.health.model import CheckinCreate
from tests.conftest import make_principal, parse_input
from tests.faults.server import serve
from tests.health.helpers import checkin, ward
from tests.stays.helpers import staff


def _create(stay_id, checkin_id=None, **fields) -> CheckinCreate:
    return parse_input(checkin(stay_id, id=str(checkin_id or uuid.uuid4()), **fields), CheckinCreate)


async def test_concurrent_callers_share_a_statement_and_each_gets_its_own_outcome(db, settings):
    site_a, (a1, a2) = await ward(db, settings)
    site_b, (b1, _) = await ward(db, settings, code="LJ-02")
    worker_a, worker_b, command = staff(site_a), staff(site_b), make_principal(Role.COMMAND)
    shared = uuid.uuid4()
    calls = [
        *(health.record_checkin(db, worker_a, _create(a1.id)) for _ in range(6)),
        health.record_checkin(db, worker_b, _create(b1.id)),
        health.record_checkin(db, command, _create(a2.id, temperature_c=38.5)),
        health.record_checkin(db, worker_b, _create(a1.id)),  # another site's stay
        health.record_checkin(db, worker_a, _create(a1.id, shared)),
        health.record_checkin(db, worker_a, _create(a1.id, shared)),  # the same id again, in the same group
        health.record_checkin(db, worker_a, _create(a2.id, shared)),  # the same id for another stay
        health.record_checkin(db, worker_b, _create(b1.id, shared)),  # ... and from another site
    ]
    group = health._group_of(db)
    before = group.groups
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert group.groups - before < len(calls)  # some callers shared a statement
    assert all(r.site_id == site_a for r in results[:6]) and results[6].site_id == site_b
    assert results[7].recorded_by == command.ref and results[7].temperature_c == 38.5
    assert isinstance(results[8], NotFound) and results[8].code == "stay_not_found"
    assert results[9] == results[10] and results[9].id == shared and results[9].recorded_by == worker_a.ref
    assert isinstance(results[11], Conflict) and results[11].code == "checkin_id_conflict"
    assert isinstance(results[12], Conflict) and str(a1.id) not in str(results[12].extra)
    async with db.connection() as conn:
        rows = {r["id"]: r["recorded_by"] for r in await conn.fetch("SELECT id, recorded_by FROM checkins")}
        audits = await conn.fetch("SELECT actor, site_id FROM audit_log WHERE action = 'checkin.record'")
        events = await conn.fetch("SELECT actor, site_id FROM events WHERE type = 'health.checkin_recorded'")
        alerts = await conn.fetchval("SELECT count(*) FROM alerts WHERE kind = 'fever'")
    assert len(rows) == 9 and rows[shared] == worker_a.ref
    # audit rows and events carry each check-in's own caller, not the group's first
    assert sorted((r["actor"], r["site_id"]) for r in audits) == sorted((r["actor"], r["site_id"]) for r in events)
    assert sorted(r["actor"] for r in audits) == sorted([worker_a.ref] * 7 + [worker_b.ref, command.ref])
    assert alerts == 1


async def test_replays_in_one_group_and_after_it_answer_the_same_record(db, settings):
    site_id, (stay, _) = await ward(db, settings)
    worker = staff(site_id)
    data = _create(stay.id)
    first = await asyncio.gather(*(health.record_checkin(db, worker, data) for _ in range(10)))
    assert len({msgspec.json.encode(r) for r in first}) == 1
    again = await health.record_checkin(db, worker, msgspec.structs.replace(data, note="edited offline"))
    assert again == first[0]
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checkins") == 1
        assert await conn.fetchval("SELECT count(*) FROM events WHERE type = 'health.checkin_recorded'") == 1


async def test_a_group_statement_that_fails_runs_its_items_one_by_one(db):
    """One item that breaks the statement fails alone; its neighbours are stored."""
    table = f"gc_{uuid.uuid4().hex[:8]}"
    async with db.connection() as conn:
        await conn.execute(f"CREATE TABLE {table} (n int PRIMARY KEY CHECK (n <> 13))")

    async def run(items: list[int]) -> list[int]:
        async with db.connection() as conn:
            await conn.execute(f"INSERT INTO {table} SELECT unnest($1::int[])", items)
        return items

    group: GroupCommit[int, int] = GroupCommit(run, max_items=100, flights=1)
    results = await asyncio.gather(*(group.submit(n) for n in range(10, 20)), return_exceptions=True)
    assert isinstance(results[3], asyncpg.CheckViolationError)
    assert [r for i, r in enumerate(results) if i != 3] == [n for n in range(10, 20) if n != 13]
    assert group.groups < 10 + 9  # the first ran alone, the rest together, then split one by one
    async with db.connection() as conn:
        assert sorted(await conn.fetchval(f"SELECT array_agg(n) FROM {table}")) == [n for n in range(10, 20) if n != 13]


async def test_an_outage_mid_group_answers_every_caller_503_and_loses_nothing_acknowledged(db, settings, auth, database_url):
    """Check-ins stuck behind a lock past the request deadline: every caller of every group gets
    503 and nothing of theirs is stored; sent again, each is stored once."""
    site_id, admitted = await ward(db, settings)
    stays = [s.id for s in admitted]
    headers = auth(staff(site_id))
    admin = await asyncpg.connect(database_url)
    bodies = [checkin(stays[i % 2]) for i in range(8)]
    try:
        async with serve(create_app(msgspec.structs.replace(settings, db_deadline_s=1.5, db_acquire_timeout_s=1.0))) as client:

            async def until_stored(body):  # what a phone does after a 503: send it again
                for _ in range(10):
                    response = await client.post("/api/v1/checkins", json=body, headers=headers)
                    if response.status_code != 503:
                        return response
                return response

            ok = await until_stored(checkin(stays[0]))
            assert ok.status_code == 201
            await admin.execute("BEGIN; LOCK TABLE checkins IN EXCLUSIVE MODE")
            stuck = await asyncio.gather(*(client.post("/api/v1/checkins", json=b, headers=headers) for b in bodies))
            # The server ends the abandoned statements (their connections went away) before the lock goes:
            # a 503 leaves the outcome open in general (retry: a replay answers), here it is "not stored".
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            for _ in range(50):
                if await admin.fetchval(waiting) == 0:
                    break
                await asyncio.sleep(0.1)
            await admin.execute("ROLLBACK")
            assert [r.status_code for r in stuck] == [503] * len(bodies), [r.text for r in stuck]
            assert all(r.json()["code"] == "database_unavailable" and r.headers["retry-after"] for r in stuck)
            assert await admin.fetchval("SELECT count(*) FROM checkins") == 1  # the acknowledged one, nothing else
            resent = await asyncio.gather(*(until_stored(b) for b in bodies))
            assert [r.status_code for r in resent] == [201] * len(bodies)
            assert await admin.fetchval("SELECT count(*) FROM checkins") == 1 + len(bodies)
            assert str(ok.json()["id"]) in {str(i) for i in await admin.fetchval("SELECT array_agg(id) FROM checkins")}
    finally:
        await admin.close()


async def test_a_nul_in_a_note_fails_its_batch_item_alone(client, auth, db, settings):
    site_id, (stay, _) = await ward(db, settings)
    items = [checkin(stay.id), checkin(stay.id, note="a\u0000b"), checkin(stay.id, recorded_at=(datetime.now(UTC) - timedelta(minutes=5)).isoformat())]
    response = await client.post("/api/v1/checkins/batch", json={"checkins": items}, headers=auth(staff(site_id)))
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["created"], result["failed"]) == (2, 1)
    assert result["items"][1]["error"] == {"code": "invalid_value", "message": result["items"][1]["error"]["message"], "field": "note"}
    single = await client.post("/api/v1/checkins", json=checkin(stay.id, note="\u0000"), headers=auth(staff(site_id)))
    assert single.status_code == 422 and single.json()["field"] == "note"
    with pytest.raises(InvalidInput):
        _create(stay.id, note="\u0000")

