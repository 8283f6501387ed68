"""SQL for sites (db/queries/sites.sql); rows come back as Structs."""

from __future__ import annotations

from uuid import UUID

import asyncpg
import msgspec

from service.db import queries
from service.errors import register_constraint
from service.sites.model import Site, SiteCreate

Q = queries("sites")

register_constraint("sites_code_key", "site_code_taken", "Another site already uses this code.")


def _site(row: asyncpg.Record | None) -> Site | None:
    return None if row is None else Site(**dict(row))


async def list_sites(conn: asyncpg.Connection, site_ids: list[UUID] | None, after_code: str | None, limit: int) -> list[Site]:
    return [Site(**dict(r)) async for r in Q.list_sites(conn, site_ids=site_ids, after_code=after_code, limit=limit)]


async def get_site(conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None) -> Site | None:
    return _site(await Q.get_site(conn, id=site_id, site_ids=site_ids))


async def get_sites_by_ids(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[Site]:
    return [Site(**dict(r)) async for r in Q.get_sites_by_ids(conn, ids=ids, site_ids=site_ids)]


async def insert_site(conn: asyncpg.Connection, data: SiteCreate) -> Site:
    return _site(await Q.insert_site(conn, **msgspec.structs.asdict(data)))  # type: ignore[return-value]


async def update_site(
    conn: asyncpg.Connection, site_id: UUID, version: int, changes: dict[str, object], site_ids: list[UUID] | None
) -> Site | None:
    fields = ("name", "region_path", "kind", "status", "time_zone", "address", "contact")
    params = {f: changes.get(f) for f in fields}
    return _site(await Q.update_site(conn, id=site_id, version=version, site_ids=site_ids, **params))
