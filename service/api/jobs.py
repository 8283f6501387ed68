"""Every periodic job, run on one instance at a time (see service/jobs.py)."""

from __future__ import annotations

from service import idempotency
from service.db import Database
from service.health import service as health
from service.jobs import Job
from service.settings import Settings
from service.supplies import webhooks as supply_webhooks


async def _purge_idempotency_keys(db: Database, settings: Settings) -> None:
    async with db.connection() as conn:
        await conn.execute(idempotency.PURGE_EXPIRED, settings.idempotency_ttl_days)


JOBS: list[Job] = [
    Job("purge_idempotency_keys", 3600, _purge_idempotency_keys),
    Job("supply_webhooks", 2, supply_webhooks.run),
    Job("missed_checkin_sweep", 300, health.sweep_missed_checkins),
]
