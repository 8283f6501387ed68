"""SQL for infection control (db/queries/infection.sql); rows come back as Structs."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service.db import queries
from service.errors import register_constraint
from service.operations.infection.model import EnvironmentalSample, Finding, Inspection, WasteBatch

Q = queries("infection")

register_constraint("environmental_samples_barcode_key", "barcode_taken", "Another swab already has this barcode.")


async def _all(struct: type[Any], rows: Any) -> list[Any]:
    return [msgspec.convert(dict(r), struct) async for r in rows]


async def insert(conn: asyncpg.Connection, what: str, **fields: Any) -> bool:
    """Insert a client-identified record (``what``: inspection, finding, env_sample, waste); False on a replay."""
    return await getattr(Q, f"insert_{what}")(conn, **fields) is not None


async def get_inspections(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[Inspection]:
    return await _all(Inspection, Q.get_inspections(conn, ids=ids, site_ids=site_ids))


async def site_inspections(
    conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, *, after: tuple[datetime, UUID] | None, limit: int
) -> list[Inspection]:
    after_at, after_id = after or (None, None)
    return await _all(Inspection, Q.site_inspections(conn, site_id=site_id, site_ids=site_ids, after_at=after_at, after_id=after_id, limit=limit))


async def get_findings(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None, today: date) -> list[Finding]:
    return await _all(Finding, Q.get_findings(conn, ids=ids, site_ids=site_ids, today=today))


async def findings_of(conn: asyncpg.Connection, inspection_ids: list[UUID], site_ids: list[UUID] | None, today: date) -> list[Finding]:
    return await _all(Finding, Q.findings_of(conn, inspection_ids=inspection_ids, site_ids=site_ids, today=today))


async def open_findings(conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, today: date) -> list[Finding]:
    return await _all(Finding, Q.open_findings(conn, site_id=site_id, site_ids=site_ids, today=today))


async def lock(conn: asyncpg.Connection, what: str, record_id: UUID, site_ids: list[UUID] | None) -> asyncpg.Record | None:
    """Lock a finding, env_sample or waste row of the caller's sites (None: not found there)."""
    return await getattr(Q, f"lock_{what}")(conn, id=record_id, site_ids=site_ids)


async def resolve_finding(conn: asyncpg.Connection, finding_id: UUID, version: int, resolution: str, actor: str) -> bool:
    return await Q.resolve_finding(conn, id=finding_id, version=version, resolution=resolution, actor=actor) is not None


async def get_env_samples(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[EnvironmentalSample]:
    return await _all(EnvironmentalSample, Q.get_env_samples(conn, ids=ids, site_ids=site_ids))


async def site_env_samples(
    conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, since: datetime, until: datetime
) -> list[EnvironmentalSample]:
    return await _all(EnvironmentalSample, Q.site_env_samples(conn, site_id=site_id, site_ids=site_ids, since=since, until=until))


async def set_env_result(conn: asyncpg.Connection, sample_id: UUID, result: str) -> bool:
    return await Q.set_env_result(conn, id=sample_id, result=result) is not None


async def get_waste(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[WasteBatch]:
    return await _all(WasteBatch, Q.get_waste(conn, ids=ids, site_ids=site_ids))


async def site_waste(conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, since: datetime, until: datetime) -> list[WasteBatch]:
    return await _all(WasteBatch, Q.site_waste(conn, site_id=site_id, site_ids=site_ids, since=since, until=until))


async def hand_over_waste(conn: asyncpg.Connection, waste_id: UUID, version: int, **fields: Any) -> bool:
    return await Q.hand_over_waste(conn, id=waste_id, version=version, **fields) is not None
