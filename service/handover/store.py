"""SQL for hand-overs and release certificates (db/queries/handover.sql); rows come back as Structs."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service.db import queries
from service.errors import register_constraint
from service.handover.model import Handover, HomePhase
from service.stays.model import mask_name, mask_phone

Q = queries("handover")

register_constraint("handovers_pkey", "handover_exists", "The stay already has a hand-over.")
register_constraint("handovers_region_id_fkey", "unknown_region", "No such region.")


def _handover(row: asyncpg.Record) -> Handover:
    data = dict(row)
    mask = data.pop("contact_name_mask")
    data["contact_name"] = mask
    data["contact_phone"] = mask_phone(data.pop("contact_phone_tail"))
    return msgspec.convert(data, Handover)


async def insert_handover(
    conn: asyncpg.Connection,
    *,
    stay_id: UUID,
    site_id: UUID,
    resident_id: UUID,
    regime_id: UUID,
    released_at: datetime,
    released_on: date,
    region_id: UUID | None,
    contact_name_enc: str | None,
    contact_name: str | None,
    contact_phone_enc: str | None,
    contact_phone_tail: str | None,
    note: str,
    phases: list[HomePhase],
    home_ends_on: date | None,
    certificate_hash: bytes,
    certificate_enc: str,
    actor: str,
) -> None:
    await Q.insert_handover(
        conn, stay_id=stay_id, site_id=site_id, resident_id=resident_id, regime_id=regime_id, released_at=released_at,
        released_on=released_on, region_id=region_id, contact_name_enc=contact_name_enc,
        contact_name_mask=mask_name(contact_name) if contact_name else None, contact_phone_enc=contact_phone_enc,
        contact_phone_tail=contact_phone_tail, note=note, phases=msgspec.to_builtins(phases), home_ends_on=home_ends_on,
        certificate_hash=certificate_hash, certificate_enc=certificate_enc, actor=actor,
    )


async def get_handovers(conn: asyncpg.Connection, stay_ids: list[UUID], site_ids: list[UUID] | None) -> list[Handover]:
    return [_handover(r) async for r in Q.get_handovers(conn, stay_ids=stay_ids, site_ids=site_ids)]


async def get_secrets(conn: asyncpg.Connection, stay_id: UUID, site_ids: list[UUID] | None) -> asyncpg.Record | None:
    return await Q.get_secrets(conn, stay_id=stay_id, site_ids=site_ids)


async def revoke(conn: asyncpg.Connection, stay_id: UUID, site_ids: list[UUID] | None, *, reason: str, actor: str) -> bool:
    return await Q.revoke(conn, stay_id=stay_id, site_ids=site_ids, reason=reason, actor=actor) is not None


async def verify(conn: asyncpg.Connection, certificate_hash: bytes) -> dict[str, Any] | None:
    row = await Q.verify(conn, certificate_hash=certificate_hash)
    return None if row is None else dict(row)
