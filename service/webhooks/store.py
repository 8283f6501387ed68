"""SQL for webhooks (db/queries/webhooks.sql)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service.db import queries
from service.webhooks.model import Delivery

Q = queries("webhooks")


async def insert_webhook(conn: asyncpg.Connection, **fields: Any) -> asyncpg.Record:
    row: asyncpg.Record = await Q.insert_webhook(conn, **fields)
    return row


async def list_webhooks(conn: asyncpg.Connection, owner: str, api: str | None) -> list[asyncpg.Record]:
    return [r async for r in Q.list_webhooks(conn, owner=owner, api=api)]


async def deactivate_webhook(conn: asyncpg.Connection, webhook_id: UUID, owner: str, api: str | None) -> str | None:
    """The api the removed webhook was registered through; None when the owner has no such active webhook."""
    row = await Q.deactivate_webhook(conn, id=webhook_id, owner=owner, api=api)
    return None if row is None else str(row["api"])


async def owns_webhook(conn: asyncpg.Connection, webhook_id: UUID, owner: str, api: str | None) -> bool:
    return bool(await Q.owns_webhook(conn, id=webhook_id, owner=owner, api=api))


async def list_deliveries(conn: asyncpg.Connection, webhook_id: UUID, owner: str, api: str | None, limit: int) -> list[Delivery]:
    return [
        msgspec.convert(dict(r), Delivery)
        async for r in Q.list_deliveries(conn, webhook_id=webhook_id, owner=owner, api=api, limit=limit)
    ]


async def deactivate_ownerless(conn: asyncpg.Connection) -> None:
    await Q.deactivate_ownerless(conn)


def lock_active_webhooks(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Record]:
    result: AsyncIterator[asyncpg.Record] = Q.lock_active_webhooks(conn)
    return result


async def advance_cursor(conn: asyncpg.Connection, webhook_id: UUID, feed_cursor: str) -> None:
    await Q.advance_webhook_cursor(conn, id=webhook_id, feed_cursor=feed_cursor)


async def insert_delivery(conn: asyncpg.Connection, *, webhook_id: UUID, event_id: int, event_type: str, payload: dict[str, Any]) -> None:
    await Q.insert_delivery(conn, webhook_id=webhook_id, event_id=event_id, event_type=event_type, payload=payload)


async def due_deliveries(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return [r async for r in Q.due_deliveries(conn, limit=limit)]


async def delivery_succeeded(conn: asyncpg.Connection, delivery_id: int, status: int | None) -> None:
    await Q.delivery_succeeded(conn, id=delivery_id, status=status)


async def delivery_failed(
    conn: asyncpg.Connection, delivery_id: int, *, status: int | None, error: str, max_attempts: int, backoff_s: float
) -> None:
    await Q.delivery_failed(conn, id=delivery_id, status=status, error=error, max_attempts=max_attempts, backoff_s=backoff_s)


async def purge_deliveries(conn: asyncpg.Connection, *, days: int, batch: int) -> Any:
    return await Q.purge_deliveries(conn, days=days, batch=batch)


async def active_cursors(conn: asyncpg.Connection) -> list[str]:
    return [r["feed_cursor"] async for r in Q.active_webhook_cursors(conn)]
