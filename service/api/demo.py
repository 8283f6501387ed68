"""Demo data: realistic sites, staff, residents and history for `make run`.

Each domain contributes one step ``seed_demo(conn, demo)``; the steps run in
order in one transaction and share the ``demo`` dict (ids of what earlier steps
made). Seeding is skipped when the database already has demo data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from service import bus
from service.access import demo as access_demo
from service.cache import Cache
from service.db import Database, create_pool
from service.handover import demo as handover_demo
from service.health import demo as health_demo
from service.intake import demo as intake_demo
from service.operations.care import demo as care_demo
from service.operations.infection import demo as infection_demo
from service.operations.staffing import demo as staffing_demo
from service.regions import demo as regions_demo
from service.settings import Settings, SettingsError
from service.stays import demo as stays_demo
from service.supplies import demo as supplies_demo
from service.transfers import demo as transfers_demo

DemoStep = Callable[[asyncpg.Connection, dict[str, Any]], Awaitable[None]]

# In order: sites/rooms and stays, access, health, transfers, supplies, care, staff, infection control, history, regions, intake,
# hand-overs.
STEPS: list[DemoStep] = [
    stays_demo.seed_demo, access_demo.seed_demo, health_demo.seed_demo, transfers_demo.seed_demo, supplies_demo.seed_demo,
    care_demo.seed_demo,  # after supplies: stock is issued against requests
    staffing_demo.seed_demo,
    infection_demo.seed_demo,
    # two weeks of past stays and their ledgers, then the regions (snapshots of all of it)
    stays_demo.seed_history, health_demo.seed_history, regions_demo.seed_demo, intake_demo.seed_demo,
    handover_demo.seed_demo,  # after regions: the receiving street
]

DEMO_LOGIN_HINT = (
    f"{access_demo.HINT}; API keys {', '.join(access_demo.DEMO_KEYS.values())}, "
    f"{transfers_demo.HOSPITAL_KEY} (hospital CQ-PHMTC)"
)


async def seed_demo(settings: Settings, *, only_if_empty: bool) -> bool:
    if settings.is_production:
        # Demo accounts have published passwords and API keys: never in production.
        raise SettingsError("seed-demo is refused with QSITE_ENV=production")
    pool = await create_pool(settings, settings.database_url or "")
    cache = Cache(settings.redis_url or "", prefix=settings.redis_prefix, timeout_ms=settings.redis_timeout_ms)
    try:
        db = Database(pool, cache)
        async with db.transaction() as conn:
            if only_if_empty and await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events WHERE type = 'system.demo_seeded')"):
                return False
            demo: dict[str, Any] = {"settings": settings}
            for step in STEPS:
                await step(conn, demo)
            await bus.emit(conn, "system.demo_seeded", site_id=None)
        return True
    finally:
        await pool.close()
        await cache.close()
