import asyncio
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from service.cache import Cache
from service.db import Database, create_pool
from service.health import service as health
from service.health.model import CheckinCreate
from service.jobs import Job, run_exclusive
from tests.health.helpers import ward
from tests.stays.helpers import staff

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(day, hour, minute=0):
    return datetime.combine(day, time(hour, minute), SHANGHAI)


async def _missed(db):
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT stay_id, dedup_key FROM alerts WHERE kind = 'missed_checkin'")
    return {(r["stay_id"], r["dedup_key"]) for r in rows}


async def test_missed_checkin_across_the_sites_midnight(db, settings):
    site_id, (on_time, missing, after_midnight) = await ward(db, settings, residents=3, days_ago=3)
    worker = staff(site_id)
    yesterday = datetime.now(SHANGHAI).date() - timedelta(days=1)
    async with db.transaction() as conn:
        # the evening slot is 12:00-24:00 local (two check-ins a day)
        await health.record_checkin_in(conn, worker, CheckinCreate(stay_id=on_time.id, recorded_at=local(yesterday, 23, 50), temperature_c=36.5))
        await health.record_checkin_in(conn, worker, CheckinCreate(stay_id=missing.id, recorded_at=local(yesterday, 11, 50), temperature_c=36.5))
        # 00:10 the next day belongs to the next slot
        await health.record_checkin_in(
            conn, worker, CheckinCreate(stay_id=after_midnight.id, recorded_at=local(yesterday + timedelta(days=1), 0, 10), temperature_c=36.5)
        )
    # inside the grace period (60 min after midnight): nothing yet for the evening slot
    await health.sweep_missed_checkins(db, settings, now=local(yesterday + timedelta(days=1), 0, 59))
    assert not {key for _, key in await _missed(db) if key.endswith("T12:00")}
    await health.sweep_missed_checkins(db, settings, now=local(yesterday + timedelta(days=1), 1, 0))
    evening = f"{yesterday.isoformat()}T12:00"
    assert {s for s, key in await _missed(db) if key == evening} == {missing.id, after_midnight.id}
    # a second sweep of the same slot raises nothing twice
    before = await _missed(db)
    assert await health.sweep_missed_checkins(db, settings, now=local(yesterday + timedelta(days=1), 1, 30)) == 0
    assert await _missed(db) == before
    async with db.connection() as conn:
        events = await conn.fetch("SELECT site_id, data FROM events WHERE type = 'health.alert_raised'")
    assert len(events) == len(before) and all(e["site_id"] == site_id for e in events)


async def test_sweep_runs_once_with_two_runners(db, settings):
    site_id, _ = await ward(db, settings, residents=2, days_ago=2)
    started, second_done = asyncio.Event(), asyncio.Event()

    async def sweep(runner_db, runner_settings):
        started.set()
        await second_done.wait()  # hold the advisory lock while the other runner tries
        await health.sweep_missed_checkins(runner_db, runner_settings)

    job = Job("missed_checkin_sweep", 300, sweep)
    other = Database(await create_pool(settings, settings.database_url or ""), Cache(settings.redis_url or "", prefix=settings.redis_prefix, timeout_ms=250))
    try:
        first = asyncio.create_task(run_exclusive(db, settings, job))
        await started.wait()
        second = await run_exclusive(other, settings, job)
        second_done.set()
        assert await first is True and second is False
    finally:
        await other.pool.close()
        await other.cache.close()
    missed = await _missed(db)
    assert len(missed) == 2  # one per resident for the last closed slot, once
