"""SQL for referrals and risk areas (db/queries/intake.sql); rows come back as Structs."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service.db import queries
from service.errors import register_constraint
from service.intake.model import IsolationTimes, Manifest, ManifestMember, ManifestState, Person, Referral, RiskArea
from service.stays.model import masked_person

Q = queries("intake")

register_constraint("referrals_pkey", "referral_exists", "A referral with this id already exists.")
register_constraint("arrival_manifests_pkey", "manifest_exists", "A manifest with this id already exists.")
register_constraint("manifest_members_expected_key", "referral_on_manifest", "A referral is on another announced manifest.")


def referral_of(row: Any) -> Referral:
    person = Person(**masked_person(row))
    values = {f: row[f] for f in Referral.__struct_fields__ if f not in ("person", "hours_to_isolation")}
    arrived = row["arrived_at"]
    hours = round((arrived - row["identified_at"]).total_seconds() / 3600, 2) if arrived else None
    return msgspec.convert({**values, "person": person, "hours_to_isolation": hours}, Referral, from_attributes=True)


# --- risk areas -------------------------------------------------------------------


async def lock_risk_area_code(conn: asyncpg.Connection, code: str) -> None:
    await Q.lock_risk_area_code(conn, code=code)


async def overlapping_risk_area(conn: asyncpg.Connection, code: str, valid_from: datetime, valid_to: datetime | None) -> bool:
    return bool(await Q.overlapping_risk_area(conn, code=code, valid_from=valid_from, valid_to=valid_to))


async def insert_risk_area(conn: asyncpg.Connection, **values: Any) -> RiskArea:
    return msgspec.convert(dict(await Q.insert_risk_area(conn, **values)), RiskArea)


async def list_risk_areas(conn: asyncpg.Connection, code: str | None, at: datetime | None) -> list[RiskArea]:
    return [msgspec.convert(dict(r), RiskArea) async for r in Q.list_risk_areas(conn, code=code, at=at)]


async def risk_level_at(conn: asyncpg.Connection, code: str, at: datetime) -> str | None:
    level: str | None = await Q.risk_level_at(conn, code=code, at=at)
    return level


# --- referrals --------------------------------------------------------------------


async def insert_referral(conn: asyncpg.Connection, **values: Any) -> UUID | None:
    row = await Q.insert_referral(conn, **values)
    return None if row is None else row["id"]


async def open_referral_of_person(conn: asyncpg.Connection, document_type: str, index: bytes) -> asyncpg.Record | None:
    return await Q.open_referral_of_person(conn, document_type=document_type, document_index=index)


async def merge_referral(conn: asyncpg.Connection, **values: Any) -> asyncpg.Record | None:
    return await Q.merge_referral(conn, **values)


async def referral_site(conn: asyncpg.Connection, referral_id: UUID) -> asyncpg.Record | None:
    return await Q.referral_site(conn, id=referral_id)


async def insert_submission(conn: asyncpg.Connection, **values: Any) -> None:
    await Q.insert_submission(conn, **values)


async def get_referrals(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[Referral]:
    return [referral_of(r) async for r in Q.get_referrals(conn, ids=ids, site_ids=site_ids)]


async def lock_referral(conn: asyncpg.Connection, referral_id: UUID, site_ids: list[UUID] | None) -> bool:
    return await Q.lock_referral(conn, id=referral_id, site_ids=site_ids) is not None


async def referral_secrets(conn: asyncpg.Connection, referral_id: UUID) -> asyncpg.Record:
    return await Q.referral_secrets(conn, id=referral_id)


async def list_queue(
    conn: asyncpg.Connection,
    *,
    site_id: UUID | None,
    region: str | None,
    site_ids: list[UUID] | None,
    states: list[str],
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[Referral]:
    after_at, after_id = after if after else (None, None)
    rows = Q.list_queue(
        conn, site_id=site_id, region=region, site_ids=site_ids, states=states, after_at=after_at, after_id=after_id, limit=limit
    )
    return [referral_of(r) async for r in rows]


async def set_state(conn: asyncpg.Connection, **values: Any) -> bool:
    values.setdefault("site_id", None)
    values.setdefault("reason", "")
    values.setdefault("stay_id", None)
    values.setdefault("arrived_at", None)
    return await Q.set_state(conn, **values) is not None


async def isolation_times(
    conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, since: datetime, until: datetime
) -> list[IsolationTimes]:
    rows = Q.isolation_times(conn, site_id=site_id, site_ids=site_ids, since=since, until=until)
    return [msgspec.convert(dict(r), IsolationTimes) async for r in rows]


# --- arrival manifests -------------------------------------------------------------


async def insert_manifest(conn: asyncpg.Connection, **values: Any) -> None:
    await Q.insert_manifest(conn, **values)


async def insert_members(
    conn: asyncpg.Connection, manifest_id: UUID, site_id: UUID, referral_ids: list[UUID], reservation_ids: list[UUID]
) -> None:
    await Q.insert_members(conn, manifest_id=manifest_id, site_id=site_id, referral_ids=referral_ids, reservation_ids=reservation_ids)


async def manifest_site(conn: asyncpg.Connection, manifest_id: UUID) -> UUID | None:
    row = await Q.manifest_site(conn, id=manifest_id)
    return None if row is None else row["site_id"]


async def get_manifests(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[Manifest]:
    heads = [dict(r) async for r in Q.get_manifests(conn, ids=ids, site_ids=site_ids)]
    members: dict[UUID, list[ManifestMember]] = {}
    if heads:
        async for r in Q.manifest_members(conn, ids=[h["id"] for h in heads]):
            members.setdefault(r["manifest_id"], []).append(msgspec.convert(dict(r), ManifestMember))
    order = {i: n for n, i in enumerate(ids)}
    heads.sort(key=lambda h: order.get(h["id"], 0))
    return [msgspec.convert({**h, "members": members.get(h["id"], [])}, Manifest) for h in heads]


async def list_manifests(
    conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, *, states: list[ManifestState],
    after: tuple[datetime, UUID] | None, limit: int,
) -> list[UUID]:
    after_at, after_id = after if after else (None, None)
    rows = Q.list_manifests(conn, site_id=site_id, site_ids=site_ids, states=[str(s) for s in states], after_at=after_at, after_id=after_id, limit=limit)
    return [r["id"] async for r in rows]


async def lock_manifest(conn: asyncpg.Connection, manifest_id: UUID, site_ids: list[UUID] | None) -> bool:
    return await Q.lock_manifest(conn, id=manifest_id, site_ids=site_ids) is not None


async def close_manifest(conn: asyncpg.Connection, manifest_id: UUID, version: int, state: ManifestState, actor: str) -> bool:
    return await Q.close_manifest(conn, id=manifest_id, version=version, state=state, actor=actor) is not None


async def set_member(conn: asyncpg.Connection, manifest_id: UUID, referral_id: UUID, state: str, stay_id: UUID | None = None) -> tuple[bool, UUID | None]:
    """(whether an expected member changed, its reservation)."""
    row = await Q.set_member(conn, manifest_id=manifest_id, referral_id=referral_id, state=state, stay_id=stay_id)
    return (row is not None, row["reservation_id"] if row else None)


async def touch_manifest(conn: asyncpg.Connection, manifest_id: UUID) -> None:
    await Q.touch_manifest(conn, id=manifest_id)


async def referrals_on_manifests(conn: asyncpg.Connection, referral_ids: list[UUID]) -> set[UUID]:
    return {r["referral_id"] async for r in Q.referrals_on_manifests(conn, ids=referral_ids)}


async def expected_member(conn: asyncpg.Connection, referral_id: UUID) -> asyncpg.Record | None:
    return await Q.expected_member(conn, referral_id=referral_id)
