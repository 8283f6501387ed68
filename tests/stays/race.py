"""Run service work concurrently, each in its own transaction on its own pooled connection."""

from __future__ import annotations

import asyncio

import asyncpg

from service.errors import DomainError, from_database


async def outcome(db, work) -> tuple[int, str]:
    """(status, code) the edge would answer: 200/'ok', a DomainError's, or a mapped constraint's."""
    try:
        async with db.transaction() as conn:
            await work(conn)
        return 200, "ok"
    except DomainError as exc:
        return exc.status, exc.code
    except asyncpg.PostgresError as exc:
        mapped = from_database(exc)
        if mapped is None:
            raise
        return mapped.status, mapped.code


async def race(db, works) -> list[tuple[int, str]]:
    return await asyncio.gather(*(outcome(db, w) for w in works))
