"""PostgreSQL: pool lifecycle, the transaction helper, named queries, migrations.

All SQL lives under ``db/``: ``db/migrations/NNNN_name.sql`` (forward only,
applied in order under an advisory lock) and ``db/queries/<domain>.sql`` (named
blocks loaded with aiosql; each domain's ``store.py`` is their only caller).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any, Literal, cast

import aiosql
import asyncpg
import msgspec

from service import bus
from service.cache import Cache
from service.settings import Settings
from service.versions import SiteVersions

log = logging.getLogger("qsite.db")

SQL_DIR = Path(__file__).resolve().parent.parent / "db"
MIGRATIONS_DIR = SQL_DIR / "migrations"
# Arbitrary constant: the advisory lock every migrating process takes first.
MIGRATION_LOCK_ID = 7_140_001
Isolation = Literal["read_committed", "repeatable_read", "serializable"]

Connection = asyncpg.Connection


@cache
def queries(domain: str) -> Any:
    """The named queries of ``db/queries/<domain>.sql`` (aiosql, asyncpg driver)."""
    return aiosql.from_path(SQL_DIR / "queries" / f"{domain}.sql", "asyncpg", mandatory_parameters=False)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=lambda v: msgspec.json.encode(v).decode(), decoder=msgspec.json.decode
    )
    await conn.set_type_codec(
        "json", schema="pg_catalog", encoder=lambda v: msgspec.json.encode(v).decode(), decoder=msgspec.json.decode
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection without asyncpg's default reset query.

    The default costs a second round trip per request (``RESET ALL; UNLISTEN *;
    ...``). qsite never changes session state: settings are per pool, locks are
    per transaction (the job runner unlocks its own), nothing LISTENs. asyncpg
    still rolls back a transaction left open.
    """


async def create_pool(settings: Settings, dsn: str) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        command_timeout=settings.command_timeout_s,
        init=_init_connection,
        reset=_keep_session,
        server_settings={
            "application_name": "qsite",
            "timezone": "UTC",
            "statement_timeout": str(settings.statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(settings.statement_timeout_ms * 6),
        },
    )


class Database:
    """The pool plus what must happen around a transaction (publishing its events)."""

    def __init__(self, pool: asyncpg.Pool, cache: Cache, versions: SiteVersions | None = None) -> None:
        self.pool = pool
        self.cache = cache
        # The instance's copy of the site data versions (None: always read from PostgreSQL).
        self.versions = versions
        # asyncpg's pool hands a freed connection to whoever asks next, so under
        # saturation an early waiter can lose it again and again (long tails).
        # A FIFO gate in front of it serves requests in arrival order.
        self._gate = asyncio.Semaphore(pool.get_max_size())

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._gate, self.pool.acquire() as conn:
            # The pool hands out a proxy that forwards every Connection method.
            yield cast(asyncpg.Connection, conn)

    @asynccontextmanager
    async def transaction(self, *, isolation: Isolation = "read_committed") -> AsyncIterator[asyncpg.Connection]:
        """One unit of work: commit on success, roll back on error, then publish its events.

        Events emitted with ``bus.emit`` inside are published to Redis only after
        the commit; a rollback discards them with the rows they describe.
        """
        with bus.collect() as pending:
            async with self._acquire() as conn, conn.transaction(isolation=isolation):
                yield conn
        if self.versions is not None:
            self.versions.committed()
        if pending:
            await bus.publish(self.cache, pending)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for reads (autocommit)."""
        async with self._acquire() as conn:
            yield conn


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; returns the versions applied. Safe to run from several processes at once."""
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for path in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql")):
            version, name = path.stem.split("_", 1)
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            applied_now.append(version)
            log.info("migration applied", extra={"event": "migration", "subject": path.name})
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
        finally:
            await conn.close()
    return applied_now
