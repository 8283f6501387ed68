"""Demo seed step of health (after stays): check-ins of the last days, past swabs, a few alerts.

Set-based: one statement (db/queries/health.sql ``demo_history``) plus one summary event per site.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from service import bus
from service.access.service import SYSTEM_PRINCIPAL
from service.health import store


async def seed_demo(conn: asyncpg.Connection, demo: dict[str, Any]) -> None:
    counts = await store.Q.demo_history(conn, stay_ids=demo.get("stays", []), actor=SYSTEM_PRINCIPAL.ref)
    demo["health"] = dict(counts)
    for site_id in demo.get("sites", []):
        await bus.emit(conn, "health.demo_seeded", site_id=site_id, actor=SYSTEM_PRINCIPAL.ref, data=dict(counts))


async def seed_history(conn: asyncpg.Connection, demo: dict[str, Any]) -> None:
    """The check-ins, missed check-ins and swabs of the past stays (``demo["past_stays"]``)."""
    counts = await store.Q.demo_past_history(conn, stay_ids=demo.get("past_stays", []), actor=SYSTEM_PRINCIPAL.ref)
    demo["health_history"] = dict(counts)
