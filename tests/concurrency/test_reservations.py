"""Races on reservations: concurrent manifests (and admissions) on several real connections never reserve
a bed twice, never reserve or admit beyond a room's beds, never reserve a bed someone occupies."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from service.cache import Cache
from service.db import Database, create_pool
from service.intake import service as intake
from service.intake.model import ManifestArrival, ManifestCreate
from service.stays import service as stays
from tests.intake.helpers import referral, submit, tracer
from tests.stays.helpers import COMMAND, admission, make_site, person, staff
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


async def _invariants(db, site_id) -> tuple[int, int]:
    """(beds held, beds occupied); asserts no bed is held twice, held and occupied, or over a room's beds."""
    async with db.connection() as conn:
        held = await conn.fetch("SELECT room_id, bed FROM bed_reservations WHERE site_id = $1 AND state = 'held'", site_id)
        taken = await conn.fetch("SELECT room_id, bed FROM stays WHERE site_id = $1 AND status = 'active'", site_id)
        beds = {r["id"]: r["beds"] for r in await conn.fetch("SELECT id, beds FROM rooms WHERE site_id = $1", site_id)}
    held_beds = [(r["room_id"], r["bed"]) for r in held]
    taken_beds = [(r["room_id"], r["bed"]) for r in taken]
    assert len(set(held_beds)) == len(held_beds), "a bed reserved twice"
    assert not set(held_beds) & set(taken_beds), "a bed both reserved and occupied"
    per_room = Counter(room for room, _ in held_beds + taken_beds)
    assert all(n <= beds[room] for room, n in per_room.items()), "a room over its beds"
    assert all(1 <= bed <= beds[room] for room, bed in held_beds + taken_beds)
    return len(held_beds), len(taken_beds)


async def test_concurrent_manifests_never_reserve_beyond_capacity(wide_db, settings):
    db = wide_db
    site = await make_site(db, floors={3: (6, 1), 4: (2, 2)})  # 10 beds
    groups = []
    for g in range(8):  # 8 manifests of 3 (one a household of two): 24 people for 10 beds
        people = [person(f"H{g}"), person(f"H{g}"), person()]
        groups.append([(await submit(db, settings, tracer([site]), referral(site, p))).referral.id for p in people])
    expected = datetime.now(UTC) + timedelta(hours=1)
    works = [
        lambda conn, ids=ids, n=n: intake.announce(
            conn, COMMAND, ManifestCreate(site_id=site, vehicle_plate=f"渝A{n:05d}", vehicle_kind="bus", expected_at=expected, referral_ids=ids)
        )
        for n, ids in enumerate(groups)
    ]
    results = await race(db, works)
    ok = results.count((200, "ok"))
    assert set(results) <= {(200, "ok"), (409, "no_room_available")} and 1 <= ok <= 3
    held, occupied = await _invariants(db, site)
    assert held == 3 * ok and occupied == 0


async def test_manifests_and_admissions_racing_share_the_beds(wide_db, settings):
    db = wide_db
    site = await make_site(db, floors={3: (8, 1)})  # 8 beds
    groups = []
    for g in range(4):  # 4 manifests of 2
        groups.append([(await submit(db, settings, tracer([site]), referral(site))).referral.id for _ in range(2)])
    expected = datetime.now(UTC) + timedelta(hours=1)
    manifests = [
        lambda conn, ids=ids, n=n: intake.announce(
            conn, COMMAND, ManifestCreate(site_id=site, vehicle_plate=f"渝B{n:05d}", vehicle_kind="van", expected_at=expected, referral_ids=ids)
        )
        for n, ids in enumerate(groups)
    ]
    walk_ins = [lambda conn: stays.admit(conn, staff(site), settings, admission(site)) for _ in range(6)]
    results = await race(db, [w for pair in zip(manifests + [None] * 2, walk_ins, strict=False) for w in pair if w is not None])
    assert set(results) <= {(200, "ok"), (409, "no_room_available")}
    held, occupied = await _invariants(db, site)
    assert held + occupied == 8  # 14 asked for 8 beds: every bed is taken once, none twice
    # The held beds are consumed on arrival, into exactly those beds.
    async with db.connection() as conn:
        announced = [r["id"] for r in await conn.fetch("SELECT id FROM arrival_manifests WHERE state = 'announced'")]
    arrivals = [lambda conn, m=m: intake.admit_manifest(conn, staff(site), settings, m, ManifestArrival(version=1)) for m in announced]
    assert set(await race(db, arrivals)) == {(200, "ok")}
    held, occupied = await _invariants(db, site)
    assert held == 0 and occupied == 8
