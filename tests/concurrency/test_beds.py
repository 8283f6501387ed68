"""Races on beds: capacity, one stay per bed and per resident hold under concurrent admissions."""

from collections import Counter

import msgspec
import pytest

from service.cache import Cache
from service.db import Database, create_pool
from service.sites import service as sites
from service.stays import service as stays
from tests.stays.helpers import admission, make_site, person, staff
from tests.stays.race import race


@pytest.fixture
async def wide_db(settings):
    """A pool wide enough that every racer holds its own connection at once."""
    wide = msgspec.structs.replace(settings, pool_min_size=5, pool_max_size=50)
    cache = Cache(settings.redis_url or "", prefix=settings.redis_prefix, timeout_ms=settings.redis_timeout_ms)
    pool = await create_pool(wide, settings.database_url or "")
    try:
        yield Database(pool, cache)
    finally:
        await pool.close()
        await cache.close()


async def test_fifty_admissions_for_ten_free_beds(wide_db, settings):
    db = wide_db
    site_id = await make_site(db, floors={3: (10, 1), 4: (5, 1)})
    worker = staff(site_id)
    entries = [admission(site_id, floor=3, arrival_batch="bus-1") for _ in range(50)]
    results = await race(db, [lambda conn, e=e: stays.admit(conn, worker, settings, e) for e in entries])
    assert Counter(results) == {(200, "ok"): 10, (409, "no_room_available"): 40}
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM stays WHERE status = 'active' AND floor = 3") == 10
        assert await conn.fetchval("SELECT count(DISTINCT room_id) FROM stays") == 10
        assert await conn.fetchval("SELECT count(*) FROM residents") == 10  # the losers' residents rolled back
        rooms = await sites.list_site_rooms(conn, worker, site_id, floor=3)
        assert all(r.occupied == 1 and r.status == "occupied" for r in rooms)
        assert await conn.fetchval("SELECT count(*) FROM stays WHERE floor = 4") == 0


async def test_household_racing_into_one_room(wide_db, settings):
    db = wide_db
    site_id = await make_site(db, floors={3: (1, 2)})
    worker = staff(site_id)
    async with db.connection() as conn:
        (room,) = await sites.list_site_rooms(conn, worker, site_id)
    entries = [admission(site_id, room_id=room.id, resident=person("FAM-R")) for _ in range(20)]
    results = await race(db, [lambda conn, e=e: stays.admit(conn, worker, settings, e) for e in entries])
    assert Counter(results) == {(200, "ok"): 2, (409, "room_full"): 18}
    async with db.connection() as conn:
        assert sorted(r["bed"] for r in await conn.fetch("SELECT bed FROM stays")) == [1, 2]


async def test_same_person_admitted_concurrently_once(wide_db, settings):
    db = wide_db
    site_id = await make_site(db, floors={3: (10, 1)})
    worker = staff(site_id)
    somebody = person()
    results = await race(db, [lambda conn: stays.admit(conn, worker, settings, admission(site_id, resident=somebody)) for _ in range(8)])
    assert results.count((200, "ok")) == 1
    assert all(status == 409 for status, _ in results if status != 200)
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM residents") == 1
        assert await conn.fetchval("SELECT sum(occupied) FROM rooms") == 1
