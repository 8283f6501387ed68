"""SQL for resident care (db/queries/care.sql); rows come back as Structs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service.db import queries
from service.errors import register_constraint
from service.operations.care.model import CareIssue, CareProfile, CareRequest

Q = queries("care")

register_constraint("care_requests_transition_valid", "invalid_care_transition", "The request cannot make this move from its state.")
register_constraint("care_requests_version_advances", "stale_version", "The request changed meanwhile.")
register_constraint("care_requests_stay_id_fkey", "stay_not_found", "No such stay.")
register_constraint("care_profiles_stay_id_fkey", "stay_not_found", "No such stay.")
register_constraint("care_issues_request_id_fkey", "care_request_not_found", "No such care request.")


def _as(struct: type[Any], row: asyncpg.Record | None) -> Any:
    return None if row is None else msgspec.convert(dict(row), struct)


async def _all(struct: type[Any], rows: Any) -> list[Any]:
    return [msgspec.convert(dict(r), struct) async for r in rows]


# --- profiles ---------------------------------------------------------------------


async def get_profiles(conn: asyncpg.Connection, stay_ids: list[UUID], site_ids: list[UUID] | None) -> list[CareProfile]:
    return await _all(CareProfile, Q.get_profiles(conn, stay_ids=stay_ids, site_ids=site_ids))


async def flagged_stays(conn: asyncpg.Connection, stay_ids: list[UUID], site_ids: list[UUID] | None) -> set[UUID]:
    return {r["stay_id"] async for r in Q.flagged_stays(conn, stay_ids=stay_ids, site_ids=site_ids)}


async def upsert_profile(
    conn: asyncpg.Connection, *, stay_id: UUID, site_id: UUID, flags: list[str], note: str, actor: str, version: int | None
) -> CareProfile | None:
    row = await Q.upsert_profile(conn, stay_id=stay_id, site_id=site_id, flags=flags, note=note, actor=actor, version=version)
    return _as(CareProfile, row)


# --- requests ---------------------------------------------------------------------


async def insert_request(
    conn: asyncpg.Connection, *, id: UUID, site_id: UUID, stay_id: UUID, kind: str, detail: str, actor: str, sla: timedelta
) -> bool:
    """False when a request with this id already exists (a replay)."""
    inserted = await Q.insert_request(
        conn, id=id, site_id=site_id, stay_id=stay_id, kind=kind, detail=detail, actor=actor, sla_seconds=sla.total_seconds()
    )
    return inserted is not None


async def get_requests(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[CareRequest]:
    return await _all(CareRequest, Q.get_requests(conn, ids=ids, site_ids=site_ids))


async def lock_request(conn: asyncpg.Connection, request_id: UUID, site_ids: list[UUID] | None) -> CareRequest | None:
    return _as(CareRequest, await Q.lock_request(conn, id=request_id, site_ids=site_ids))


async def move_request(conn: asyncpg.Connection, request: CareRequest, to_state: str, *, actor: str, resolution: str) -> bool:
    moved = await Q.move_request(conn, id=request.id, version=request.version, to_state=to_state, actor=actor, resolution=resolution)
    return moved is not None


async def site_requests(
    conn: asyncpg.Connection,
    site_id: UUID,
    site_ids: list[UUID] | None,
    *,
    states: list[str],
    kind: str | None,
    overdue_only: bool,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[CareRequest]:
    after_at, after_id = after or (None, None)
    rows = Q.site_requests(
        conn, site_id=site_id, site_ids=site_ids, states=states, kind=kind, overdue_only=overdue_only,
        after_at=after_at, after_id=after_id, limit=limit,
    )
    return await _all(CareRequest, rows)


async def stay_requests(conn: asyncpg.Connection, stay_ids: list[UUID], site_ids: list[UUID] | None) -> list[CareRequest]:
    return await _all(CareRequest, Q.stay_requests(conn, stay_ids=stay_ids, site_ids=site_ids))


# --- stock issued -----------------------------------------------------------------


async def insert_issue(
    conn: asyncpg.Connection, *, movement_id: UUID, request_id: UUID, site_id: UUID, item_id: UUID, quantity: int, actor: str
) -> None:
    await Q.insert_issue(
        conn, movement_id=movement_id, request_id=request_id, site_id=site_id, item_id=item_id, quantity=quantity, actor=actor
    )


async def get_issue(conn: asyncpg.Connection, movement_id: UUID) -> CareIssue | None:
    return _as(CareIssue, await Q.get_issue(conn, movement_id=movement_id))


async def issues_of(conn: asyncpg.Connection, request_ids: list[UUID], site_ids: list[UUID] | None) -> list[CareIssue]:
    return await _all(CareIssue, Q.issues_of(conn, request_ids=request_ids, site_ids=site_ids))


async def demo_backdate(conn: asyncpg.Connection, request_id: UUID, times: dict[str, datetime]) -> None:
    """Demo seed only: move a request's times into the past."""
    await Q.demo_backdate(conn, id=request_id, **times)
