"""Periodic background work that runs on exactly one instance at a time.

Every instance runs the loop; each tick a job first takes a PostgreSQL
advisory lock named after it (``pg_try_advisory_lock``) and skips the tick if
another instance holds it. Domains register jobs in ``service/api/jobs``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from service.db import Database
from service.errors import Unavailable
from service.settings import Settings

log = logging.getLogger("qsite.jobs")

JobFn = Callable[[Database, Settings], Awaitable[object]]


@dataclass(frozen=True)
class Job:
    name: str
    every_s: float
    run: JobFn


async def run_exclusive(db: Database, settings: Settings, job: Job) -> bool:
    """Run ``job`` once if no other instance is running it; True when it ran here."""
    async with db.connection() as conn:  # the lock's session, held (no deadline) for the job's length
        if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", f"job:{job.name}"):
            return False
        try:
            await job.run(db, settings)
            return True
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", f"job:{job.name}")


async def run_forever(db: Database, settings: Settings, jobs: list[Job]) -> None:
    async def loop(job: Job) -> None:
        while True:
            try:
                await run_exclusive(db, settings, job)
            except (Unavailable, asyncpg.PostgresError, OSError) as exc:  # PostgreSQL down or busy: next tick
                log.warning("job failed", extra={"event": "job_failed", "subject": f"{job.name}: {type(exc).__name__}"})
            except Exception:
                log.exception("job crashed", extra={"event": "job_failed", "subject": job.name})
            await asyncio.sleep(job.every_s)

    await asyncio.gather(*(loop(job) for job in jobs))
