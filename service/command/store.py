"""SQL of the command dashboard: its browser sessions (db/queries/command.sql)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import queries

Q = queries("command")


async def insert_session(conn: asyncpg.Connection, token_hash: bytes, staff_id: UUID, hours: int) -> datetime:
    """A new session; returns when it expires."""
    return (await Q.insert_session(conn, token_hash=token_hash, staff_id=staff_id, hours=hours))["expires_at"]


async def live_session(conn: asyncpg.Connection, token_hash: bytes, idle_minutes: int) -> UUID | None:
    """The staff id of a live session with this token (None: unknown, ended, expired or idle)."""
    row = await Q.live_session(conn, token_hash=token_hash, idle_minutes=idle_minutes)
    return None if row is None else row["staff_id"]


async def end_session(conn: asyncpg.Connection, token_hash: bytes) -> UUID | None:
    """End the session; the staff id it belonged to (None: unknown or already ended)."""
    row = await Q.end_session(conn, token_hash=token_hash)
    return None if row is None else row["staff_id"]


async def purge_sessions(conn: asyncpg.Connection, batch: int) -> str:
    return await Q.purge_sessions(conn, batch=batch)
