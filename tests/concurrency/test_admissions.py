"""Concurrent admissions: replays of one admission answer the stored stay; concurrent batches
fill every bed (rooms are locked in id order and waited for, never skipped)."""

import uuid
from collections import Counter

import msgspec

from service.stays import service as stays
from service.stays.model import BatchAdmission, BatchMember
from tests.concurrency.test_beds import wide_db  # noqa: F401  (fixture)
from tests.stays.helpers import admission, make_site, person, staff
from tests.stays.race import race


async def test_twenty_concurrent_replays_answer_the_one_stored_stay(wide_db, settings):  # noqa: F811
    db = wide_db
    site_id = await make_site(db, floors={3: (5, 1)})
    worker = staff(site_id)
    entry = admission(site_id, id=uuid.uuid4(), arrival_batch="bus-1")
    answers: list[bytes] = []

    async def admit(conn):
        answers.append(msgspec.json.encode(await stays.admit(conn, worker, settings, entry)))

    results = await race(db, [admit] * 20)
    assert results == [(200, "ok")] * 20
    assert len(answers) == 20 and len(set(answers)) == 1
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM stays") == 1
        assert await conn.fetchval("SELECT count(*) FROM residents") == 1
        assert await conn.fetchval("SELECT sum(occupied) FROM rooms") == 1


async def test_concurrent_batches_fill_every_bed_and_are_refused_only_when_full(wide_db, settings):  # noqa: F811
    db = wide_db
    for round_ in range(5):
        site_id = await make_site(db, code=f"RACE-{round_}", floors={3: (20, 1)})
        worker = staff(site_id)
        batches = [
            BatchAdmission(
                site_id=site_id,
                category="close_contact",  # type: ignore[arg-type]
                arrival_batch=f"bus-{round_}-{n}",
                members=[BatchMember(resident=person()) for _ in range(5)],
            )
            for n in range(40)
        ]
        results = await race(db, [lambda conn, b=b: stays.admit_batch(conn, worker, settings, b) for b in batches])
        assert Counter(results) == {(200, "ok"): 4, (409, "no_room_available"): 36}, round_
        async with db.connection() as conn:
            filled = await conn.fetchval("SELECT count(*) FROM stays WHERE site_id = $1 AND status = 'active'", site_id)
            assert filled == 20, round_  # no batch was refused while five beds were still free
