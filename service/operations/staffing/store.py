"""SQL for the staff closed loop (db/queries/staffing.sql); rows come back as Structs."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service.db import queries
from service.errors import register_constraint
from service.operations.staffing.model import (
    RED_ZONE_EVERY_DAYS,
    TEST_EVERY_DAYS,
    Post,
    Shift,
    StaffCheckin,
    StaffExposure,
    StaffSample,
    StaffTestDue,
    Worker,
    test_interval,
)

Q = queries("staffing")

register_constraint("staff_samples_barcode_key", "barcode_taken", "Another swab already has this barcode.")
register_constraint("site_workers_isolation_has_end", "isolation_until_required", "Isolation needs its end date.")
register_constraint("staff_shifts_positive", "invalid_shift", "A shift ends after it starts, within 24 hours.")


def _as(struct: type[Any], row: asyncpg.Record | None) -> Any:
    return None if row is None else msgspec.convert(dict(row), struct)


async def _all(struct: type[Any], rows: Any) -> list[Any]:
    return [msgspec.convert(dict(r), struct) async for r in rows]


def _worker(row: asyncpg.Record) -> Worker:
    values = dict(row)
    values["test_every_days"] = test_interval(Post(values["post"]), values["red_zone"])
    return msgspec.convert(values, Worker)


# --- workers ----------------------------------------------------------------------


async def insert_worker(conn: asyncpg.Connection, **fields: Any) -> bool:
    return await Q.insert_worker(conn, **fields) is not None


async def get_workers(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[Worker]:
    return [_worker(r) async for r in Q.get_workers(conn, ids=ids, site_ids=site_ids)]


async def lock_worker(conn: asyncpg.Connection, worker_id: UUID, site_ids: list[UUID] | None) -> asyncpg.Record | None:
    """The worker's row (with status and version), locked."""
    return await Q.lock_worker(conn, id=worker_id, site_ids=site_ids)


async def site_workers(
    conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, *, after: tuple[str, str, UUID] | None, limit: int
) -> list[Worker]:
    post, name, worker_id = after or (None, None, None)
    rows = Q.site_workers(conn, site_id=site_id, site_ids=site_ids, after_post=post, after_name=name, after_id=worker_id, limit=limit)
    return [_worker(r) async for r in rows]


async def set_status(conn: asyncpg.Connection, worker_id: UUID, version: int, status: str, isolation_until: date | None) -> bool:
    return await Q.set_status(conn, id=worker_id, version=version, status=status, isolation_until=isolation_until) is not None


async def loops(conn: asyncpg.Connection, worker_ids: list[UUID], site_ids: list[UUID] | None) -> list[dict[str, Any]]:
    return [dict(r) async for r in Q.loops(conn, ids=worker_ids, site_ids=site_ids)]


async def tests_due(
    conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, *, today: date, time_zone: str
) -> list[StaffTestDue]:
    rows = Q.tests_due(
        conn, site_id=site_id, site_ids=site_ids, today=today, time_zone=time_zone,
        posts=[p.value for p in TEST_EVERY_DAYS], days=list(TEST_EVERY_DAYS.values()), red_zone_days=RED_ZONE_EVERY_DAYS,
    )
    return await _all(StaffTestDue, rows)


# --- shifts -----------------------------------------------------------------------


async def insert_shift(conn: asyncpg.Connection, **fields: Any) -> bool:
    return await Q.insert_shift(conn, **fields) is not None


async def get_shifts(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[Shift]:
    return await _all(Shift, Q.get_shifts(conn, ids=ids, site_ids=site_ids))


async def overlapping_shift(conn: asyncpg.Connection, worker_id: UUID, shift_id: UUID, starts_at: datetime, ends_at: datetime) -> bool:
    return await Q.overlapping_shift(conn, worker_id=worker_id, id=shift_id, starts_at=starts_at, ends_at=ends_at) is not None


async def site_shifts(
    conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, since: datetime, until: datetime
) -> list[Shift]:
    return await _all(Shift, Q.site_shifts(conn, site_id=site_id, site_ids=site_ids, since=since, until=until))


# --- check-ins and swabs ----------------------------------------------------------


async def insert_checkin(conn: asyncpg.Connection, **fields: Any) -> bool:
    return await Q.insert_checkin(conn, **fields) is not None


async def get_checkins(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[StaffCheckin]:
    return await _all(StaffCheckin, Q.get_checkins(conn, ids=ids, site_ids=site_ids))


async def worker_checkins(conn: asyncpg.Connection, worker_ids: list[UUID], site_ids: list[UUID] | None) -> list[StaffCheckin]:
    return await _all(StaffCheckin, Q.worker_checkins(conn, worker_ids=worker_ids, site_ids=site_ids))


async def insert_sample(conn: asyncpg.Connection, **fields: Any) -> bool:
    return await Q.insert_sample(conn, **fields) is not None


async def get_samples(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[StaffSample]:
    return await _all(StaffSample, Q.get_samples(conn, ids=ids, site_ids=site_ids))


async def lock_sample(conn: asyncpg.Connection, sample_id: UUID, site_ids: list[UUID] | None) -> StaffSample | None:
    return _as(StaffSample, await Q.lock_sample(conn, id=sample_id, site_ids=site_ids))


async def lock_samples_by_barcode(conn: asyncpg.Connection, barcodes: list[str], site_ids: list[UUID] | None) -> list[StaffSample]:
    return await _all(StaffSample, Q.lock_samples_by_barcode(conn, barcodes=barcodes, site_ids=site_ids))


async def set_result(conn: asyncpg.Connection, sample_id: UUID, result: str, resulted_at: datetime | None = None) -> bool:
    return await Q.set_result(conn, id=sample_id, result=result, resulted_at=resulted_at) is not None


async def worker_samples(conn: asyncpg.Connection, worker_ids: list[UUID], site_ids: list[UUID] | None) -> list[StaffSample]:
    return await _all(StaffSample, Q.worker_samples(conn, worker_ids=worker_ids, site_ids=site_ids))


# --- exposure ---------------------------------------------------------------------


async def open_exposures(
    conn: asyncpg.Connection, *, site_id: UUID, source_stay_id: UUID, floor: int, since: datetime, note: str
) -> list[UUID]:
    rows = Q.open_exposures(conn, site_id=site_id, source_stay_id=source_stay_id, floor=floor, since=since, note=note)
    return [r["id"] async for r in rows]


async def get_exposures(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[StaffExposure]:
    return await _all(StaffExposure, Q.get_exposures(conn, ids=ids, site_ids=site_ids))


async def site_exposures(conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, state: str | None) -> list[StaffExposure]:
    return await _all(StaffExposure, Q.site_exposures(conn, site_id=site_id, site_ids=site_ids, state=state))


async def lock_exposure(conn: asyncpg.Connection, exposure_id: UUID, site_ids: list[UUID] | None) -> StaffExposure | None:
    return _as(StaffExposure, await Q.lock_exposure(conn, id=exposure_id, site_ids=site_ids))


async def decide_exposure(conn: asyncpg.Connection, exposure: StaffExposure, state: str, actor: str, note: str) -> bool:
    moved = await Q.decide_exposure(conn, id=exposure.id, version=exposure.version, state=state, actor=actor, note=note)
    return moved is not None
