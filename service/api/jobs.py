"""Every periodic job, run on one instance at a time (see service/jobs.py)."""

from __future__ import annotations

import logging

from service import bus, idempotency
from service.access import service as access
from service.command import service as command
from service.db import Database
from service.health import service as health
from service.jobs import Job
from service.regions import service as regions
from service.settings import Settings
from service.webhooks import service as webhooks

log = logging.getLogger("qsite.jobs")


async def retention(db: Database, settings: Settings) -> dict[str, int]:
    """Delete what has outlived its use, in short batches; returns rows deleted per table.

    Events go last, and only those every active webhook has already fanned out (a delivery
    carries its own copy of the event, so pending deliveries need no event row).
    """
    batch = settings.retention_batch_size
    deleted = {
        "idempotency_keys": await idempotency.purge_expired(db, settings.idempotency_ttl_days, batch),
        "refresh_tokens": await access.purge_refresh_tokens(db, settings),
        "command_sessions": await command.purge_sessions(db, settings),
        "webhook_deliveries": await webhooks.purge_deliveries(db, settings),
    }
    async with db.connection() as conn:
        keep_after = await webhooks.oldest_cursor(conn)
    deleted["events"] = await bus.purge_events(db, days=settings.event_retention_days, keep_after=keep_after, batch=batch)
    if any(deleted.values()):
        log.info("retention", extra={"event": "retention", "subject": ", ".join(f"{t}={n}" for t, n in deleted.items())})
    return deleted


JOBS: list[Job] = [
    Job("retention", 3600, retention),
    Job("webhooks", 2, webhooks.run),
    Job("missed_checkin_sweep", 300, health.sweep_missed_checkins),
    # Cheap when nothing is due (one indexed probe); writes each site's day soon after its local midnight.
    Job("daily_snapshots", 300, regions.snapshot_due),
]
