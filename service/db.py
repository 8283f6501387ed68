"""PostgreSQL: pool lifecycle, the transaction helper, named queries, migrations.

All SQL lives under ``db/``: ``db/migrations/NNNN_name.sql`` (forward only,
applied in order under an advisory lock) and ``db/queries/<domain>.sql`` (named
blocks loaded with aiosql; each domain's ``store.py`` is their only caller).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Any, Literal, cast

import aiosql
import asyncpg
import msgspec
import sqlparse
from asyncpg.pool import PoolConnectionProxy
from litestar.types import ASGIApp, Receive, Scope, Send

from service import bus
from service.cache import Cache
from service.errors import Unavailable, connection_lost, log_outage, unavailable
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


# Every qsite session holds this advisory lock (shared, for its whole life) so that the change
# feed can tell qsite's transactions, which may write events, from everyone else's on the
# server (see feed_horizon() in db/migrations/0009_resilience.sql). Two int4 keys: never
# equal to a job's bigint lock.
FEED_WRITER_LOCK = (7_140_009, 1)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=lambda v: msgspec.json.encode(v).decode(), decoder=msgspec.json.decode
    )
    await conn.set_type_codec(
        "json", schema="pg_catalog", encoder=lambda v: msgspec.json.encode(v).decode(), decoder=msgspec.json.decode
    )
    await conn.execute("SELECT pg_catalog.pg_advisory_lock_shared({}, {})".format(*FEED_WRITER_LOCK))


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection without asyncpg's default reset query.

    The default costs a second round trip per request (``RESET ALL; UNLISTEN *;
    ...``) and would drop the session's feed-writer lock. qsite never changes
    session state: settings are per pool, locks are per transaction (the job
    runner unlocks its own), nothing LISTENs. asyncpg still rolls back a
    transaction left open.
    """


async def create_pool(settings: Settings, dsn: str) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        command_timeout=settings.command_timeout_s,
        init=_init_connection,
        reset=_keep_session,
        # A new connection's handshake: a hung server must not hold it for asyncpg's default 60 s.
        timeout=settings.db_acquire_timeout_s,
        server_settings={
            "application_name": "qsite",
            "timezone": "UTC",
            "statement_timeout": str(settings.statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(settings.statement_timeout_ms * 6),
            # A statement whose client gave up (deadline, terminated connection) stops within a second.
            "client_connection_check_interval": "1000",
        },
    )


# --- deadlines ------------------------------------------------------------------------------
#
# Each HTTP request notes when it started; everything it does on PostgreSQL (waiting for a
# connection, statements, commit) ends by started + db_deadline_s. Past it the connection is
# terminated, not returned: on a hung server a polite cancel or ROLLBACK would hang as well.

_request_started: ContextVar[float | None] = ContextVar("request_started", default=None)


class DeadlineMiddleware:
    """Starts the database deadline of each HTTP request (see ``Database``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _request_started.set(asyncio.get_running_loop().time())
        try:
            await self.app(scope, receive, send)
        finally:
            _request_started.reset(token)


def _outage(exc: BaseException) -> Unavailable | None:
    if isinstance(exc, Unavailable):
        return None  # already translated (and logged) further in
    if isinstance(exc, TimeoutError):
        return Unavailable("The database did not answer in time; retry shortly.")
    return unavailable(exc)


def _discard(conn: asyncpg.Connection | PoolConnectionProxy) -> None:
    """Close a connection at once, no goodbye to the server (which may be dead or hung)."""
    with contextlib.suppress(asyncpg.InterfaceError):  # one the server ended has already left the pool
        conn.terminate()


class _Lease:
    """One pooled connection held through the gate, replaceable by a fresh one."""

    def __init__(self, db: Database, conn: PoolConnectionProxy) -> None:
        self.db = db
        self.conn: PoolConnectionProxy | None = conn

    @property
    def live(self) -> asyncpg.Connection:
        """The connection (None only inside ``replace``); the pool's proxy forwards every Connection method."""
        assert self.conn is not None
        return cast(asyncpg.Connection, self.conn)

    async def replace(self) -> None:
        """Drop a connection the server ended (and any idle ones it ended with it); take a fresh one."""
        dead, self.conn = self.conn, None
        assert dead is not None
        _discard(dead)
        await self.db.pool.release(dead)
        await self.db.pool.expire_connections()
        async with asyncio.timeout(self.db.acquire_timeout_s):
            self.conn = await self.db.pool.acquire()


class _ReadConnection:
    """What ``Database.connection()`` yields: the pooled connection, except that its first
    statement runs once more on a fresh connection when the pooled one turns out to have been
    ended by the server (a restart, a failover, a proxy's idle cut). That statement is a read
    or an idempotent write (check-ins are keyed by their client id), so running it twice is safe.
    Anything else (a transaction, a prepared statement) pins the connection, with no retry."""

    __slots__ = ("_lease", "_first")

    def __init__(self, lease: _Lease) -> None:
        self._lease = lease
        self._first = True

    def __getattr__(self, name: str) -> Any:
        self._first = False
        return getattr(self._lease.conn, name)

    async def _run(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._first:
            self._first = False
            try:
                return await getattr(self._lease.conn, method)(*args, **kwargs)
            except Exception as exc:
                if isinstance(exc, TimeoutError) or not connection_lost(exc):
                    raise  # a slow or hung server: running it again would only wait twice
                log.info("retrying a read on a fresh connection", extra={"event": "database_retry", "subject": type(exc).__name__})
                await self._lease.replace()
        return await getattr(self._lease.conn, method)(*args, **kwargs)

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetch", args, kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetchrow", args, kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetchval", args, kwargs)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("execute", args, kwargs)



# Shutting down never waits forever: a connection still held (a request cut off by the server's
# grace period, a test that ended mid-statement) would otherwise keep pool.close() waiting.
CLOSE_TIMEOUT_S = 10.0


async def close_pool(pool: asyncpg.Pool, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close the pool gracefully, or terminate its connections when that takes longer than ``timeout_s``."""
    try:
        await asyncio.wait_for(pool.close(), timeout_s)
    except TimeoutError:
        log.warning("pool did not close in time; terminating its connections", extra={"event": "pool_close_timeout"})
        pool.terminate()


class Database:
    """The pool plus what must happen around a unit of work: bounded waits, outages mapped
    to 503s, publishing a transaction's events after its commit."""

    def __init__(
        self, pool: asyncpg.Pool, cache: Cache, versions: SiteVersions | None = None, *, acquire_timeout_s: float = 2.0, deadline_s: float | None = None
    ) -> None:
        self.pool = pool
        self.cache = cache
        # The instance's copy of the site data versions (None: always read from PostgreSQL).
        self.versions = versions
        self.acquire_timeout_s = acquire_timeout_s
        self.deadline_s = deadline_s
        # asyncpg's pool hands a freed connection to whoever asks next, so under
        # saturation an early waiter can lose it again and again (long tails).
        # A FIFO gate in front of it serves requests in arrival order.
        self._gate = asyncio.Semaphore(pool.get_max_size())

    @classmethod
    def for_settings(cls, pool: asyncpg.Pool, cache: Cache, settings: Settings, versions: SiteVersions | None = None) -> Database:
        return cls(pool, cache, versions, acquire_timeout_s=settings.db_acquire_timeout_s, deadline_s=settings.db_deadline_s)

    def _deadline(self) -> float | None:
        """When the current request's database time runs out (loop time); None outside a request."""
        started = _request_started.get()
        return None if started is None or self.deadline_s is None else started + self.deadline_s

    @asynccontextmanager
    async def _lease(self) -> AsyncIterator[_Lease]:
        """A connection, waited for at most acquire_timeout_s; the work done with it ends by the deadline.

        Outages leave as ``Unavailable`` (503), logged once as a warning. A connection that
        failed (dead, or stuck past a timeout on a hung server) is terminated, never reused.
        """
        loop = asyncio.get_running_loop()
        deadline = self._deadline()
        acquire_by = loop.time() + self.acquire_timeout_s
        try:
            async with asyncio.timeout_at(acquire_by if deadline is None else min(acquire_by, deadline)):
                await self._gate.acquire()
                try:
                    lease = _Lease(self, await self.pool.acquire())
                except BaseException:
                    self._gate.release()
                    raise
        except Exception as exc:
            outage = _outage(exc)
            if outage is None:
                raise
            if isinstance(exc, TimeoutError):
                outage = Unavailable("No database connection became free in time; retry shortly.")
            log_outage(outage, exc)
            raise outage from exc
        try:
            async with asyncio.timeout_at(deadline):
                yield lease
        except BaseException as exc:
            if lease.conn is not None and (connection_lost(exc) or isinstance(exc, asyncio.CancelledError)):
                _discard(lease.conn)
                if not isinstance(exc, TimeoutError):
                    await self.pool.expire_connections()  # its idle siblings were most likely ended too
            outage = _outage(exc) if isinstance(exc, Exception) else None
            if outage is None:
                raise
            log_outage(outage, exc)
            raise outage from exc
        finally:
            try:
                if lease.conn is not None:
                    # Bounded: releasing an expired connection says goodbye to the server first.
                    await self.pool.release(lease.conn, timeout=self.acquire_timeout_s)
            finally:
                self._gate.release()

    @asynccontextmanager
    async def transaction(self, *, isolation: Isolation = "read_committed") -> AsyncIterator[asyncpg.Connection]:
        """One unit of work: commit on success, roll back on error, then publish its events.

        Events emitted with ``bus.emit`` inside are published to Redis only after
        the commit; a rollback discards them with the rows they describe. A pooled
        connection found dead at BEGIN is replaced once (nothing ran on it). On a
        lost connection there is no ROLLBACK to send: the server rolls back the
        transaction of a connection that goes away.
        """
        with bus.collect() as pending:
            async with self._lease() as lease:
                tx = lease.live.transaction(isolation=isolation)
                try:
                    await tx.start()
                except Exception as exc:
                    if isinstance(exc, TimeoutError) or not connection_lost(exc):
                        raise
                    await lease.replace()
                    tx = lease.live.transaction(isolation=isolation)
                    await tx.start()
                try:
                    yield lease.live
                except BaseException as exc:
                    if not (connection_lost(exc) or isinstance(exc, asyncio.CancelledError)):
                        await tx.rollback()
                    raise
                await tx.commit()
        if self.versions is not None:
            self.versions.committed()
        if pending:
            await bus.publish(self.cache, pending)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for reads (autocommit); see ``_ReadConnection`` for its one retry."""
        async with self._lease() as lease:
            yield _ReadConnection(lease)  # type: ignore[misc]


async def purge_in_batches(db: Database, batch: int, delete: Callable[[asyncpg.Connection, int], Awaitable[str]]) -> int:
    """Retention: run ``delete(conn, batch)`` (a DELETE of at most ``batch`` rows, skipping rows
    others hold locked) until a batch comes back short; returns how many rows went.

    Each batch is its own autocommit statement: row locks for milliseconds, no long transaction
    holding back vacuum or the feed, and hot writers are never waited for.
    """
    total = 0
    while True:
        async with db.connection() as conn:
            status = await delete(conn, batch)
        deleted = int(status.rsplit(" ", 1)[-1])
        total += deleted
        if deleted < batch:
            return total


# --- migrations ----------------------------------------------------------------
#
# Each applied file is recorded with a checksum: an applied migration edited afterwards
# stops `migrate` and `serve` (its change would never reach databases that already ran
# it). A file whose first line is NO_TRANSACTION runs statement by statement outside a
# transaction (CREATE INDEX CONCURRENTLY); write such files so that a rerun after a
# failure is harmless (IF NOT EXISTS), since the statements before the failure stay done.

NO_TRANSACTION = "-- qsite: no-transaction"
# Tables the application role may read and append to, never change: an owner could
# disable the trigger that guards them, the app role is not their owner and lacks the grant.
APPEND_ONLY_TABLES = ("audit_log",)


class MigrationError(Exception):
    """The database and db/migrations/ disagree; the message says what to do."""


class Migration(msgspec.Struct, frozen=True):
    version: str
    name: str
    sql: str

    @property
    def filename(self) -> str:
        return f"{self.version}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        # Line endings normalised: a checkout with CRLF is not an edit.
        return hashlib.sha256(self.sql.replace("\r\n", "\n").encode()).hexdigest()

    @property
    def in_transaction(self) -> bool:
        return self.sql.lstrip().partition("\n")[0].strip().lower() != NO_TRANSACTION


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        version, name = path.stem.split("_", 1)
        found.append(Migration(version=version, name=name, sql=path.read_text()))
    return found


class MigrationStatus(msgspec.Struct, frozen=True):
    applied: dict[str, str | None]  # version -> recorded checksum (None: recorded before checksums)
    pending: list[Migration]
    unknown: list[str]  # applied versions with no file here: a newer release migrated this database

    def check_unchanged(self, files: list[Migration]) -> None:
        for migration in files:
            recorded = self.applied.get(migration.version)
            if recorded is not None and recorded != migration.checksum:
                raise MigrationError(
                    f"migration {migration.filename} was edited after it was applied (recorded checksum "
                    f"{recorded[:12]}, file now {migration.checksum[:12]}). Restore the file as it was "
                    "applied and put the change in a new migration."
                )


async def migration_status(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> MigrationStatus:
    files = migration_files(directory)
    applied: dict[str, str | None] = {}
    if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        # to_jsonb: also reads a table made before the checksum column existed.
        rows = await conn.fetch("SELECT version, to_jsonb(m) ->> 'checksum' AS checksum FROM schema_migrations m")
        applied = {r["version"]: r["checksum"] for r in rows}
    known = {m.version for m in files}
    status = MigrationStatus(
        applied=applied,
        pending=[m for m in files if m.version not in applied],
        unknown=sorted(v for v in applied if v not in known),
    )
    status.check_unchanged(files)
    return status


async def check_database(dsn: str, settings: Settings, directory: Path = MIGRATIONS_DIR) -> None:
    """What production ``serve`` checks instead of migrating: no pending or edited migration, and
    not a superuser (a warning, or a refusal with ``QSITE_REFUSE_SUPERUSER``)."""
    conn = await asyncpg.connect(dsn)
    try:
        status = await migration_status(conn, directory)
        superuser = await conn.fetchval("SELECT current_setting('is_superuser') = 'on'")
        user = await conn.fetchval("SELECT current_user")
    finally:
        await conn.close()
    if status.pending:
        raise MigrationError(
            f"{len(status.pending)} migration(s) pending ({', '.join(m.filename for m in status.pending)}): "
            "run `qsite migrate` (as the migration role) before starting qsite"
        )
    if status.unknown:
        log.warning(
            "database has migrations this release does not know (a newer release ran them)",
            extra={"event": "migrations_unknown", "subject": ",".join(status.unknown)},
        )
    if superuser and (settings.is_production or settings.refuse_superuser):
        message = f"connected to PostgreSQL as superuser {user!r}: use an application role (README: Deploy)"
        if settings.refuse_superuser:
            raise MigrationError(message + "; refused because QSITE_REFUSE_SUPERUSER is on")
        log.warning(message, extra={"event": "database_superuser"})


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def grant_app_role(conn: asyncpg.Connection, role: str) -> None:
    """Give the application role data access and nothing more: no DDL (it owns nothing), only
    SELECT/INSERT on append-only tables, only SELECT on schema_migrations."""
    schema = _ident(await conn.fetchval("SELECT current_schema()"))
    role = _ident(role)
    await conn.execute(
        f"""GRANT USAGE ON SCHEMA {schema} TO {role};
            GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
            GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
            REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA {schema} FROM {role};
            REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM {role};"""
        + "".join(f"REVOKE UPDATE, DELETE ON {_ident(t)} FROM {role};" for t in APPEND_ONLY_TABLES)
    )


async def migrate(dsn: str, *, directory: Path = MIGRATIONS_DIR, app_role: str | None = None) -> list[str]:
    """Apply pending migrations; returns the versions applied. Safe to run from several processes at once.

    ``app_role``: the role the application connects as (when it is not this one), granted
    access to the tables afterwards, new ones included.
    """
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now());
               ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text"""
        )
        files = migration_files(directory)
        status = await migration_status(conn, directory)
        # Recorded before checksums existed: take the files as they are now (trust on first sight).
        for migration in files:
            if migration.version in status.applied and status.applied[migration.version] is None:
                await conn.execute(
                    "UPDATE schema_migrations SET checksum = $2 WHERE version = $1", migration.version, migration.checksum
                )
        for migration in status.pending:
            await _apply(conn, migration)
            applied_now.append(migration.version)
            log.info("migration applied", extra={"event": "migration", "subject": migration.filename})
        if app_role and app_role != await conn.fetchval("SELECT current_user"):
            await grant_app_role(conn, app_role)
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
        finally:
            await conn.close()
    return applied_now


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    record = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
    if migration.in_transaction:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(record, migration.version, migration.name, migration.checksum)
        return
    # One statement at a time: several in one message would form an implicit transaction.
    for statement in sqlparse.split(migration.sql):
        if sqlparse.format(statement, strip_comments=True).strip():
            await conn.execute(statement)
    await conn.execute(record, migration.version, migration.name, migration.checksum)
