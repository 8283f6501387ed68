"""SQL for regimes, residents and stays (db/queries/stays.sql); rows come back as Structs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service.db import queries
from service.errors import register_constraint
from service.stays.model import (
    BedEntity,
    BedOccupancy,
    Regime,
    RegimeRule,
    Reservation,
    Resident,
    Stay,
    masked_person,
)

Q = queries("stays")

register_constraint("stays_bed_active_key", "bed_taken", "The bed already holds an active stay.")
register_constraint("stays_resident_active_key", "resident_has_active_stay", "The resident already has an active stay.")
register_constraint("stays_pkey", "stay_exists", "A stay with this id already exists.")
register_constraint("residents_pkey", "resident_exists", "A resident with this id already exists.")
register_constraint("residents_document_key", "resident_exists", "A resident with this document is already registered.")

def resident_of(row: Any, prefix: str = "") -> Resident:
    """A masked Resident from a row (``prefix`` for joined columns such as ``r_``)."""
    return msgspec.convert(dict(
        id=row["resident_id" if prefix else "id"],
        site_id=row[f"{prefix}site_id"],
        **masked_person(row, prefix),
        created_at=row[f"{prefix}created_at"],
    ), Resident)


_STAY_FIELDS = tuple(Stay.__struct_fields__)


def stay_of(row: Any) -> Stay:
    return msgspec.convert({f: row[f] for f in _STAY_FIELDS}, Stay)


def _regime_of(row: asyncpg.Record) -> Regime:
    return msgspec.convert(dict(row), Regime)


def _regime(row: asyncpg.Record | None) -> Regime | None:
    return None if row is None else _regime_of(row)


# --- regimes ----------------------------------------------------------------


async def list_regimes(conn: asyncpg.Connection, at: datetime | None = None) -> list[Regime]:
    """Every regime code in its version in force at ``at`` (None: now)."""
    return [_regime_of(r) async for r in Q.list_regimes(conn, at=at)]


async def regime_versions(conn: asyncpg.Connection, code: str) -> list[Regime]:
    return [_regime_of(r) async for r in Q.regime_versions(conn, code=code)]


async def get_regime_by_code(conn: asyncpg.Connection, code: str, at: datetime | None = None) -> Regime | None:
    """The version of ``code`` in force at ``at`` (None: now)."""
    return _regime(await Q.get_regime_by_code(conn, code=code, at=at))


async def latest_regime_version(conn: asyncpg.Connection, code: str) -> Regime | None:
    return _regime(await Q.latest_regime_version(conn, code=code))


async def get_regime_for_category(conn: asyncpg.Connection, category: str, at: datetime | None = None) -> Regime | None:
    return _regime(await Q.get_regime_for_category(conn, category=category, at=at))


async def category_codes(conn: asyncpg.Connection, category: str) -> set[str]:
    return {r["code"] async for r in Q.category_codes(conn, category=category)}


async def get_regimes_by_ids(conn: asyncpg.Connection, ids: list[UUID]) -> list[Regime]:
    return [_regime_of(r) async for r in Q.get_regimes_by_ids(conn, ids=ids)]


async def lock_regimes(conn: asyncpg.Connection) -> None:
    await Q.lock_regime_code(conn)


async def insert_regime(conn: asyncpg.Connection, **values: Any) -> Regime:
    return _regime_of(await Q.insert_regime(conn, **values))


async def replan_regime_stays(conn: asyncpg.Connection, code: str, regime_id: UUID, centralized_days: int) -> list[tuple[UUID, UUID]]:
    """(stay id, site id) of every open stay moved onto version ``regime_id`` of ``code``."""
    rows = Q.replan_regime_stays(conn, code=code, regime_id=regime_id, centralized_days=centralized_days)
    return [(r["id"], r["site_id"]) async for r in rows]


async def list_regime_rules(conn: asyncpg.Connection) -> list[RegimeRule]:
    return [msgspec.convert(dict(r), RegimeRule) async for r in Q.list_regime_rules(conn)]


async def regime_by_rule(conn: asyncpg.Connection, category: str, risk_level: str | None, at: datetime | None = None) -> Regime | None:
    return _regime(await Q.regime_by_rule(conn, category=category, risk_level=risk_level, at=at))


async def set_regime_rule(conn: asyncpg.Connection, category: str, risk_level: str | None, regime_code: str, actor: str) -> None:
    await Q.set_regime_rule(conn, category=category, risk_level=risk_level, regime_code=regime_code, actor=actor)


# --- residents --------------------------------------------------------------


async def insert_resident(conn: asyncpg.Connection, **values: Any) -> Resident:
    return resident_of(await Q.insert_resident(conn, **values))


async def get_residents(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[Resident]:
    return [resident_of(r) async for r in Q.get_residents(conn, ids=ids, site_ids=site_ids)]


async def find_resident_by_index(conn: asyncpg.Connection, index: bytes, document_type: str | None) -> Resident | None:
    """Unscoped and row-locked: for admission only (never returned to a caller of another site)."""
    rows = [resident_of(r) async for r in Q.find_resident_by_index(conn, document_index=index, document_type=document_type)]
    return rows[0] if rows else None


async def has_active_stay(conn: asyncpg.Connection, index: bytes, document_type: str) -> bool:
    """Unscoped: whether the person with this document is in isolation anywhere now (a yes/no, no ids)."""
    return bool(await Q.has_active_stay(conn, document_index=index, document_type=document_type))


async def search_residents_by_index(conn: asyncpg.Connection, index: bytes, site_ids: list[UUID] | None) -> list[Resident]:
    return [resident_of(r) async for r in Q.search_residents_by_index(conn, document_index=index, site_ids=site_ids)]


async def get_resident_secrets(conn: asyncpg.Connection, resident_id: UUID, site_ids: list[UUID] | None) -> asyncpg.Record | None:
    return await Q.get_resident_secrets(conn, id=resident_id, site_ids=site_ids)


async def set_resident_site(conn: asyncpg.Connection, resident_id: UUID, site_id: UUID) -> None:
    await Q.set_resident_site(conn, id=resident_id, site_id=site_id)


# --- stays ------------------------------------------------------------------


async def insert_stay(conn: asyncpg.Connection, **values: Any) -> UUID:
    row = await Q.insert_stay(conn, **values)
    return row["id"]


async def get_stays(conn: asyncpg.Connection, ids: Iterable[UUID], site_ids: list[UUID] | None) -> list[Stay]:
    return [stay_of(r) async for r in Q.get_stays(conn, ids=list(ids), site_ids=site_ids)]


async def lock_admissions(conn: asyncpg.Connection, ids: list[UUID]) -> None:
    await Q.lock_admissions(conn, ids=sorted(ids))


async def lock_stay(conn: asyncpg.Connection, stay_id: UUID, site_ids: list[UUID] | None) -> bool:
    return await Q.lock_stay(conn, id=stay_id, site_ids=site_ids) is not None


async def close_stay(conn: asyncpg.Connection, stay_id: UUID, outcome: str, moved_to: UUID | None = None) -> bool:
    return await Q.close_stay(conn, id=stay_id, outcome=outcome, moved_to=moved_to) is not None


async def set_period(conn: asyncpg.Connection, stay_id: UUID, period_start: date, planned_release_at: datetime) -> None:
    await Q.set_period(conn, id=stay_id, period_start=period_start, planned_release_at=planned_release_at)


async def taken_beds(conn: asyncpg.Connection, room_id: UUID, except_reservation: UUID | None = None) -> set[int]:
    """Beds held by an active stay or a reservation in force (but the one being consumed)."""
    return {r["bed"] async for r in Q.taken_beds(conn, room_id=room_id, except_reservation=except_reservation)}


# --- reservations ---------------------------------------------------------------


async def reserved_beds(conn: asyncpg.Connection, room_ids: list[UUID], site_ids: list[UUID] | None) -> list[asyncpg.Record]:
    return [r async for r in Q.reserved_beds(conn, room_ids=room_ids, site_ids=site_ids)]


async def expire_reservations(conn: asyncpg.Connection, site_id: UUID) -> None:
    await Q.expire_reservations(conn, site_id=site_id)


async def insert_reservations(
    conn: asyncpg.Connection, *, site_id: UUID, holder_id: UUID, expires_at: datetime, rows: list[dict[str, Any]]
) -> list[UUID]:
    names = {"room_id": "room_ids", "bed": "beds", "subject_id": "subject_ids", "household_key": "household_keys",
             "category": "categories", "arrival_batch": "batches"}
    found = Q.insert_reservations(conn, site_id=site_id, holder_id=holder_id, expires_at=expires_at, **_columns(rows, names))
    return [r["id"] async for r in found]


async def get_reservations(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[Reservation]:
    return [msgspec.convert(dict(r), Reservation) async for r in Q.get_reservations(conn, ids=ids, site_ids=site_ids)]


async def lock_reservation(conn: asyncpg.Connection, reservation_id: UUID) -> asyncpg.Record | None:
    return await Q.lock_reservation(conn, id=reservation_id)


async def consume_reservation(conn: asyncpg.Connection, reservation_id: UUID, stay_id: UUID) -> None:
    await Q.consume_reservation(conn, id=reservation_id, stay_id=stay_id)


async def release_reservations(conn: asyncpg.Connection, ids: list[UUID]) -> None:
    await Q.release_reservations(conn, ids=ids)


async def room_households(conn: asyncpg.Connection, room_ids: list[UUID]) -> dict[UUID, set[str | None]]:
    found: dict[UUID, set[str | None]] = {}
    async for r in Q.room_households(conn, room_ids=room_ids):
        found.setdefault(r["room_id"], set()).add(r["household_key"])
    return found


async def floor_mix(conn: asyncpg.Connection, site_id: UUID) -> dict[int, set[tuple[str, str]]]:
    """floor -> {(category, arrival batch)} of the people living there now."""
    mix: dict[int, set[tuple[str, str]]] = {}
    async for r in Q.floor_mix(conn, site_id=site_id):
        mix.setdefault(r["floor"], set()).add((r["category"], r["arrival_batch"]))
    return mix


async def board_rows(conn: asyncpg.Connection, room_ids: list[UUID], site_ids: list[UUID] | None) -> list[tuple[Stay, Resident]]:
    return [(stay_of(r), resident_of(r, "r_")) async for r in Q.board_rows(conn, room_ids=room_ids, site_ids=site_ids)]


async def list_stays(
    conn: asyncpg.Connection,
    site_id: UUID,
    site_ids: list[UUID] | None,
    *,
    status: str | None,
    arrival_batch: str | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[Stay]:
    after_at, after_id = after if after else (None, None)
    rows = Q.list_stays(
        conn, site_id=site_id, site_ids=site_ids, status=status, arrival_batch=arrival_batch, after_at=after_at, after_id=after_id, limit=limit
    )
    return [stay_of(r) async for r in rows]


async def roommates(conn: asyncpg.Connection, stay: Stay, site_ids: list[UUID] | None) -> list[UUID]:
    return [r["id"] async for r in Q.roommates(conn, room_id=stay.room_id, stay_id=stay.id, site_ids=site_ids)]


async def household(conn: asyncpg.Connection, stay: Stay, household_key: str, site_ids: list[UUID] | None) -> list[UUID]:
    return [r["id"] async for r in Q.household(conn, household_key=household_key, stay_id=stay.id, site_ids=site_ids)]


async def floor_neighbours(conn: asyncpg.Connection, stay: Stay, site_ids: list[UUID] | None) -> list[UUID]:
    rows = Q.floor_neighbours(conn, site_id=stay.site_id, floor=stay.floor, room_id=stay.room_id, site_ids=site_ids)
    return [r["id"] async for r in rows]


async def occupied_beds(conn: asyncpg.Connection, site_ids: list[UUID] | None) -> dict[UUID, int]:
    return {r["site_id"]: r["n"] async for r in Q.occupied_beds(conn, site_ids=site_ids)}


async def releases_due(conn: asyncpg.Connection, site_ids: list[UUID] | None) -> dict[UUID, tuple[int, int]]:
    return {r["site_id"]: (r["today"], r["tomorrow"]) async for r in Q.releases_due(conn, site_ids=site_ids)}


async def close_stay_link(conn: asyncpg.Connection, stay_id: UUID, moved_to: UUID) -> None:
    await Q.link_move(conn, id=stay_id, moved_to=moved_to)


def _columns(rows: list[dict[str, Any]], names: dict[str, str]) -> dict[str, list[Any]]:
    return {plural: [r[single] for r in rows] for single, plural in names.items()}


async def bulk_insert_residents(conn: asyncpg.Connection, rows: list[dict[str, Any]], actor: str) -> None:
    names = {
        "id": "ids", "site_id": "site_ids", "name": "names", "sex": "sexes", "birth_date": "birth_dates",
        "document_type": "document_types", "document_enc": "document_encs", "document_index": "document_indexes",
        "document_tail": "document_tails", "phone_enc": "phone_encs", "phone_tail": "phone_tails", "household_key": "household_keys",
    }
    await Q.bulk_insert_residents(conn, actor=actor, **_columns(rows, names))


async def bulk_insert_stays(conn: asyncpg.Connection, rows: list[dict[str, Any]], actor: str) -> None:
    names = {
        "id": "ids", "resident_id": "resident_ids", "site_id": "site_ids", "room_id": "room_ids", "room_number": "room_numbers",
        "floor": "floors", "bed": "beds", "category": "categories", "origin_area": "origin_areas", "risk_level": "risk_levels",
        "arrival_batch": "arrival_batches", "regime_id": "regime_ids", "time_zone": "time_zones", "admitted_at": "admitted_ats",
        "day_one": "day_ones", "planned_release_at": "planned_release_ats",
    }
    # Closed stays (demo history) carry outcome and ended_at; without them a stay is active.
    past = {"outcomes": [r.get("outcome") for r in rows], "ended_ats": [r.get("ended_at") for r in rows]}
    await Q.bulk_insert_stays(conn, actor=actor, **_columns(rows, names), **past)


# --- beds -------------------------------------------------------------------------

ATTRIBUTES = ("accessible", "cot", "oxygen")


def _attributes(row: Any) -> frozenset[str]:
    return frozenset(a for a in ATTRIBUTES if row[a])


async def site_beds(conn: asyncpg.Connection, site_id: UUID) -> list[tuple[UUID, int, frozenset[str], bool]]:
    """(room, number, attributes, occupied) of every bed of a site."""
    return [(r["room_id"], r["number"], _attributes(r), r["occupied"]) async for r in Q.site_beds(conn, site_id=site_id)]


async def room_bed_attributes(conn: asyncpg.Connection, room_id: UUID) -> dict[int, frozenset[str]]:
    return {r["number"]: _attributes(r) async for r in Q.room_bed_attributes(conn, room_id=room_id)}


async def room_beds(conn: asyncpg.Connection, room_ids: list[UUID], site_ids: list[UUID] | None) -> list[BedEntity]:
    return [msgspec.convert(dict(r), BedEntity) async for r in Q.room_beds(conn, room_ids=room_ids, site_ids=site_ids)]


async def get_beds(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[BedEntity]:
    return [msgspec.convert(dict(r), BedEntity) async for r in Q.get_beds(conn, ids=ids, site_ids=site_ids)]


async def update_bed(conn: asyncpg.Connection, bed_id: UUID, version: int, changes: dict[str, Any], site_ids: list[UUID] | None, actor: str) -> bool:
    row = await Q.update_bed(conn, id=bed_id, version=version, site_ids=site_ids, actor=actor, **{a: changes.get(a) for a in ATTRIBUTES})
    return row is not None


async def bed_history(conn: asyncpg.Connection, bed_id: UUID, site_ids: list[UUID] | None, limit: int) -> list[BedOccupancy]:
    return [msgspec.convert(dict(r), BedOccupancy) async for r in Q.bed_history(conn, id=bed_id, site_ids=site_ids, limit=limit)]
