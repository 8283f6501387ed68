"""SQL for regions (db/queries/regions.sql): the tree, placements, roll-ups, snapshots."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service.db import queries
from service.errors import register_constraint
from service.regions.model import DayFigures, LowStockLine, Region, SitePlacement

Q = queries("regions")

register_constraint("regions_code_key", "region_code_taken", "Another region already uses this code.")
register_constraint("regions_sibling_name_key", "region_name_taken", "A sibling region already has this name.")
register_constraint("regions_pkey", "region_exists", "A region with this id already exists.")
register_constraint("regions_path_check", "region_too_deep", "Regions nest at most three levels (city, district, street).")


@asynccontextmanager
async def _without_jit(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """The figure statements nest a lookup per site and day; planned on generic estimates their cost
    passes jit_above_cost and PostgreSQL spends seconds compiling what runs in milliseconds
    (4.4 s of a 4.6 s run measured on a 100k-stay history). Off for these statements only."""
    async with conn.transaction():
        await conn.execute("SET LOCAL jit = off")
        yield


async def list_regions(
    conn: asyncpg.Connection, site_ids: list[UUID] | None, region_ids: list[UUID], ids: list[UUID] | None = None
) -> list[Region]:
    rows = Q.list_regions(conn, site_ids=site_ids, region_ids=region_ids, ids=ids)
    return [msgspec.convert(dict(r), Region) async for r in rows]


async def lock_region(conn: asyncpg.Connection, region_id: UUID) -> dict[str, Any] | None:
    row = await Q.lock_region(conn, id=region_id)
    return None if row is None else dict(row)


async def insert_region(conn: asyncpg.Connection, **values: Any) -> UUID:
    return (await Q.insert_region(conn, **values))["id"]


async def update_region(conn: asyncpg.Connection, region_id: UUID, version: int, name: str | None, code: str | None) -> bool:
    return await Q.update_region(conn, id=region_id, version=version, name=name, code=code) is not None


async def move_region(conn: asyncpg.Connection, region_id: UUID, parent_id: UUID | None, new_parent_path: list[UUID]) -> int:
    return int(await Q.move_region(conn, id=region_id, parent_id=parent_id, new_parent_path=new_parent_path))


async def subtree_depth(conn: asyncpg.Connection, region_id: UUID) -> int:
    return int(await Q.subtree_depth(conn, id=region_id))


async def place_site(conn: asyncpg.Connection, site_id: UUID, region_id: UUID) -> SitePlacement:
    return msgspec.convert(dict(await Q.place_site(conn, site_id=site_id, region_id=region_id)), SitePlacement)


async def subtree_sites(conn: asyncpg.Connection, region_ids: list[UUID]) -> list[UUID]:
    return [r["site_id"] async for r in Q.subtree_sites(conn, region_ids=region_ids)]


async def scope_sites(conn: asyncpg.Connection, site_ids: list[UUID] | None, region_id: UUID | None) -> list[dict[str, Any]]:
    return [dict(r) async for r in Q.scope_sites(conn, site_ids=site_ids, region_id=region_id)]


async def live_figures(conn: asyncpg.Connection, site_ids: list[UUID], now: datetime) -> list[dict[str, Any]]:
    async with _without_jit(conn):
        return [dict(r) async for r in Q.live_figures(conn, site_ids=site_ids, now=now)]


async def low_stock(conn: asyncpg.Connection, site_ids: list[UUID], now: datetime, limit: int) -> list[LowStockLine]:
    return [LowStockLine(**dict(r)) async for r in Q.low_stock(conn, site_ids=site_ids, now=now, limit=limit)]


async def turnaround(
    conn: asyncpg.Connection, pairs: list[tuple[UUID, str]], since: datetime, now: datetime
) -> dict[str, dict[str, Any]]:
    async with _without_jit(conn):
        rows = Q.turnaround(conn, sites=[p[0] for p in pairs], groups=[p[1] for p in pairs], since=since, now=now)
        return {r["grp"]: dict(r) async for r in rows}


async def day_figures(
    conn: asyncpg.Connection, site_ids: list[UUID], first_day: date, last_day: date, now: datetime
) -> list[dict[str, Any]]:
    async with _without_jit(conn):
        rows = Q.day_figures(conn, site_ids=site_ids, first_day=first_day, last_day=last_day, now=now)
        return [dict(r) async for r in rows]


async def upsert_site_daily(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await Q.upsert_site_daily(conn, rows)


async def due_snapshots(conn: asyncpg.Connection, first_day: date, now: datetime, limit: int) -> list[tuple[UUID, date]]:
    return [(r["site_id"], r["day"]) async for r in Q.due_snapshots(conn, first_day=first_day, now=now, limit=limit)]


async def series(conn: asyncpg.Connection, site_ids: list[UUID], first_day: date, last_day: date) -> list[DayFigures]:
    async with _without_jit(conn):
        rows = Q.series(conn, site_ids=site_ids, first_day=first_day, last_day=last_day)
        return [DayFigures(**dict(r)) async for r in rows]


async def site_days(conn: asyncpg.Connection, site_ids: list[UUID], day: date) -> dict[UUID, dict[str, Any]]:
    """The stored snapshot rows of ``day`` by site (the same columns as ``day_figures``)."""
    return {r["site_id"]: dict(r) async for r in Q.site_days(conn, site_ids=site_ids, day=day)}
