"""SQL for sites (db/queries/sites.sql); rows come back as Structs."""

from __future__ import annotations

from uuid import UUID

import asyncpg
import msgspec

from service.db import queries
from service.errors import register_constraint
from service.sites.model import BedSummary, DisinfectionTask, Room, RoomCreate, RoomStatusChange, Site, SiteCreate

Q = queries("sites")
R = queries("rooms")

register_constraint("sites_code_key", "site_code_taken", "Another site already uses this code.")
register_constraint("rooms_site_number_key", "room_number_taken", "The site already has a room with this number.")
register_constraint("rooms_capacity", "room_full", "The room has no free bed (or fewer beds than residents).")
register_constraint("disinfection_tasks_open_key", "disinfection_task_open", "The room already has an open disinfection task.")


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


# --- rooms ------------------------------------------------------------------


def _room(row: asyncpg.Record | None) -> Room | None:
    return None if row is None else msgspec.convert(dict(row), Room)


def _task(row: asyncpg.Record | None) -> DisinfectionTask | None:
    return None if row is None else msgspec.convert(dict(row), DisinfectionTask)


async def insert_rooms(conn: asyncpg.Connection, site_id: UUID, rooms: list[RoomCreate], actor: str) -> list[Room]:
    created = [
        msgspec.convert(dict(r), Room)
        async for r in R.insert_rooms(
            conn,
            site_id=site_id,
            numbers=[r.number for r in rooms],
            floors=[r.floor for r in rooms],
            beds=[r.beds for r in rooms],
            notes=[r.notes for r in rooms],
        )
    ]
    if created:
        await R.insert_created_history(conn, site_id=site_id, actor=actor, room_ids=[r.id for r in created])
    return created


async def get_room(conn: asyncpg.Connection, room_id: UUID, site_ids: list[UUID] | None) -> Room | None:
    return _room(await R.get_room(conn, id=room_id, site_ids=site_ids))


async def get_rooms_by_ids(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[Room]:
    return [msgspec.convert(dict(r), Room) async for r in R.get_rooms_by_ids(conn, ids=ids, site_ids=site_ids)]


async def lock_room(conn: asyncpg.Connection, room_id: UUID, site_ids: list[UUID] | None) -> Room | None:
    return _room(await R.lock_room(conn, id=room_id, site_ids=site_ids))


async def lock_rooms_for_admission(
    conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, room_ids: list[UUID], *, allocate: bool
) -> list[UUID]:
    return [r["id"] async for r in R.lock_rooms_for_admission(conn, site_id=site_id, site_ids=site_ids, room_ids=room_ids, allocate=allocate)]


async def list_rooms(
    conn: asyncpg.Connection,
    site_id: UUID,
    site_ids: list[UUID] | None,
    *,
    floor: int | None = None,
    status: str | None = None,
    after: tuple[int, str] | None = None,
    limit: int = 100_000,
) -> list[Room]:
    after_floor, after_number = after if after else (None, None)
    rows = R.list_rooms(
        conn, site_id=site_id, site_ids=site_ids, floor=floor, status=status, after_floor=after_floor, after_number=after_number, limit=limit
    )
    return [msgspec.convert(dict(r), Room) async for r in rows]


async def set_room_state(
    conn: asyncpg.Connection, room: Room, *, status: str, occupied: int, action: str, actor: str, reason: str
) -> Room:
    updated = _room(await R.set_room_state(conn, id=room.id, status=status, occupied=occupied, actor=actor, reason=reason))
    if status != room.status:
        await R.insert_status_change(
            conn, room_id=room.id, site_id=room.site_id, from_status=room.status, to_status=status, action=action, actor=actor, reason=reason
        )
    return updated  # type: ignore[return-value]


async def update_room(
    conn: asyncpg.Connection, room_id: UUID, version: int, changes: dict[str, object], site_ids: list[UUID] | None
) -> Room | None:
    return _room(
        await R.update_room(conn, id=room_id, version=version, site_ids=site_ids, beds=changes.get("beds"), notes=changes.get("notes"))
    )


async def room_histories(
    conn: asyncpg.Connection, room_ids: list[UUID], site_ids: list[UUID] | None, *, last: int
) -> list[RoomStatusChange]:
    rows = R.room_histories(conn, room_ids=room_ids, site_ids=site_ids, last=last)
    return [msgspec.convert(dict(r), RoomStatusChange) async for r in rows]


async def open_task(conn: asyncpg.Connection, room: Room, actor: str) -> DisinfectionTask:
    return _task(await R.open_task(conn, room_id=room.id, site_id=room.site_id, actor=actor))  # type: ignore[return-value]


async def current_task(conn: asyncpg.Connection, room_id: UUID) -> DisinfectionTask | None:
    return _task(await R.current_task(conn, room_id=room_id))


async def tasks_of_rooms(conn: asyncpg.Connection, room_ids: list[UUID], site_ids: list[UUID] | None) -> list[DisinfectionTask]:
    return [msgspec.convert(dict(r), DisinfectionTask) async for r in R.tasks_of_rooms(conn, room_ids=room_ids, site_ids=site_ids)]


async def update_task(
    conn: asyncpg.Connection,
    task_id: UUID,
    *,
    state: str,
    actor: str,
    airing_minutes: int = 0,
    inspected: bool = False,
    failed: bool = False,
    notes: str = "",
) -> DisinfectionTask:
    row = await R.update_task(
        conn, id=task_id, state=state, actor=actor, airing_minutes=airing_minutes, inspected=inspected, failed=failed, notes=notes
    )
    return _task(row)  # type: ignore[return-value]


async def airing_over(conn: asyncpg.Connection, task_id: UUID) -> bool:
    return bool(await R.airing_over(conn, id=task_id))


async def bed_summary(conn: asyncpg.Connection, site_ids: list[UUID] | None) -> list[BedSummary]:
    return [msgspec.convert(dict(r), BedSummary) async for r in R.bed_summary(conn, site_ids=site_ids)]


async def bulk_set_rooms(conn: asyncpg.Connection, states: dict[UUID, tuple[str, int]], actor: str) -> None:
    ids = list(states)
    await R.bulk_set_rooms(conn, room_ids=ids, statuses=[states[i][0] for i in ids], occupied=[states[i][1] for i in ids], actor=actor)
