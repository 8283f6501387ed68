"""SQL for access (db/queries/access.sql). Staff rows keep ``phone_enc``: only service.py decrypts."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from service.access.model import ApiClient, AuditEntry
from service.db import queries
from service.errors import register_constraint

Q = queries("access")

register_constraint("staff_username_key", "username_taken", "Another account already uses this username.")
register_constraint("staff_pkey", "staff_exists", "A staff account with this id already exists.")
register_constraint("api_clients_pkey", "client_exists", "An API client with this id already exists.")


async def get_staff_by_username(conn: asyncpg.Connection, username: str) -> dict[str, Any] | None:
    row = await Q.get_staff_by_username(conn, username=username)
    return None if row is None else dict(row)


async def get_staff_for_token(conn: asyncpg.Connection, staff_id: UUID) -> dict[str, Any] | None:
    row = await Q.get_staff_for_token(conn, id=staff_id)
    return None if row is None else dict(row)


async def list_staff(
    conn: asyncpg.Connection, site_ids: list[UUID] | None, site_id: UUID | None, after_username: str | None, limit: int
) -> list[dict[str, Any]]:
    return [
        dict(r)
        async for r in Q.list_staff(conn, site_ids=site_ids, site_id=site_id, after_username=after_username, limit=limit)
    ]


async def get_staff_by_ids(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[dict[str, Any]]:
    return [dict(r) async for r in Q.get_staff_by_ids(conn, ids=ids, site_ids=site_ids)]


async def find_staff_by_phone_index(conn: asyncpg.Connection, phone_index: bytes, site_ids: list[UUID] | None) -> list[UUID]:
    return [r["id"] async for r in Q.find_staff_by_phone_index(conn, phone_index=phone_index, site_ids=site_ids)]


async def lock_staff(conn: asyncpg.Connection, staff_id: UUID) -> int | None:
    row = await Q.lock_staff(conn, id=staff_id)
    return None if row is None else row["version"]


async def insert_staff(conn: asyncpg.Connection, **values: Any) -> UUID:
    return (await Q.insert_staff(conn, **values))["id"]


async def update_staff(conn: asyncpg.Connection, **values: Any) -> bool:
    return await Q.update_staff(conn, **values) is not None


async def set_staff_sites(conn: asyncpg.Connection, staff_id: UUID, site_ids: list[UUID]) -> None:
    await Q.set_staff_sites(conn, staff_id=staff_id, site_ids=site_ids)


async def set_staff_regions(conn: asyncpg.Connection, staff_id: UUID, region_ids: list[UUID]) -> None:
    await Q.set_staff_regions(conn, staff_id=staff_id, region_ids=region_ids)


async def insert_refresh_token(conn: asyncpg.Connection, family_id: UUID, staff_id: UUID, token_hash: bytes, days: int) -> None:
    await Q.insert_refresh_token(conn, family_id=family_id, staff_id=staff_id, token_hash=token_hash, days=days)


async def lock_refresh_token(conn: asyncpg.Connection, token_hash: bytes) -> dict[str, Any] | None:
    row = await Q.lock_refresh_token(conn, token_hash=token_hash)
    return None if row is None else dict(row)


async def mark_refresh_token_rotated(conn: asyncpg.Connection, token_id: UUID) -> bool:
    return await Q.mark_refresh_token_rotated(conn, id=token_id) is not None


async def revoke_refresh_family(conn: asyncpg.Connection, family_id: UUID) -> int:
    return await Q.revoke_refresh_family(conn, family_id=family_id)


async def revoke_staff_refresh_tokens(conn: asyncpg.Connection, staff_id: UUID) -> int:
    return await Q.revoke_staff_refresh_tokens(conn, staff_id=staff_id)


async def get_client_by_key_hash(conn: asyncpg.Connection, key_hash: bytes) -> dict[str, Any] | None:
    row = await Q.get_client_by_key_hash(conn, key_hash=key_hash)
    return None if row is None else dict(row)


async def insert_client(conn: asyncpg.Connection, site_ids: list[UUID] | None, **values: Any) -> UUID:
    client_id = (await Q.insert_client(conn, all_sites=site_ids is None, **values))["id"]
    if site_ids:
        await Q.insert_client_sites(conn, client_id=client_id, site_ids=site_ids)
    return client_id


def _client(row: asyncpg.Record) -> ApiClient:
    values = dict(row)
    all_sites = values.pop("all_sites")
    if all_sites:
        values["site_ids"] = None
    return ApiClient(**values)


async def list_clients(
    conn: asyncpg.Connection, site_ids: list[UUID] | None, *, ids: list[UUID] | None, after_id: UUID | None, limit: int
) -> list[ApiClient]:
    return [_client(r) async for r in Q.list_clients(conn, site_ids=site_ids, ids=ids, after_id=after_id, limit=limit)]


async def revoke_client(conn: asyncpg.Connection, client_id: UUID) -> bytes | None:
    row = await Q.revoke_client(conn, id=client_id)
    return None if row is None else bytes(row["key_hash"])


async def list_audit(
    conn: asyncpg.Connection,
    site_ids: list[UUID] | None,
    *,
    site_id: UUID | None,
    subject_id: UUID | None,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[AuditEntry]:
    rows = Q.list_audit(
        conn,
        site_ids=site_ids,
        site_id=site_id,
        subject_id=subject_id,
        actor=actor,
        since=since,
        until=until,
        before_id=before_id,
        limit=limit,
    )
    return [AuditEntry(**dict(r)) async for r in rows]


async def purge_refresh_tokens(conn: asyncpg.Connection, days: int, batch: int) -> str:
    return await Q.purge_refresh_tokens(conn, days=days, batch=batch)
