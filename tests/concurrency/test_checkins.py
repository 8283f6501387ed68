"""Replays of one check-in racing each other, through the app and on several connections."""

import asyncio
import uuid

from service.health import service as health
from tests.health.helpers import checkin, ward
from tests.stays.helpers import staff


async def test_twenty_concurrent_replays_store_one_row(client, auth, db, settings):
    site_id, (stay, _) = await ward(db, settings)
    headers = auth(staff(site_id))
    body = checkin(stay.id, temperature_c=38.0)
    responses = await asyncio.gather(*(client.post("/api/v1/checkins", json=body, headers=headers) for _ in range(20)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checkins") == 1
        assert await conn.fetchval("SELECT count(*) FROM alerts") == 1
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'checkin.record'") == 1
        assert await conn.fetchval("SELECT count(*) FROM events WHERE type LIKE 'health.%'") == 2


async def test_overlapping_batches_on_separate_connections(db, settings):
    """Two phones resend overlapping batches at once: every check-in is stored once."""
    site_id, (a, b) = await ward(db, settings)
    worker = staff(site_id)
    items = [checkin(a.id if i % 2 else b.id) for i in range(60)]

    async def send(part):
        async with db.transaction() as conn:
            return await health.record_checkin_batch(conn, worker, part)

    results = await asyncio.gather(send(items[:40]), send(items[20:]), send(items[10:50]))
    assert all(r.failed == 0 for r in results)
    assert sum(r.created for r in results) == 60
    assert sum(r.created + r.replayed for r in results) == 40 + 40 + 40
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checkins") == 60
        ids = {r["id"] for r in await conn.fetch("SELECT id FROM checkins")}
    assert ids == {uuid.UUID(i["id"]) for i in items}
