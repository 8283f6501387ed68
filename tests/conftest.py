"""Fixtures: real PostgreSQL and Redis for every test.

Migrations run once per session into a template database; each test that
needs a database gets a fresh copy of it (CREATE DATABASE ... TEMPLATE), made
ahead of time and dropped afterwards on a thread of its own (DatabaseSupply).
Redis is shared, each test with its own key prefix. With DATABASE_URL /
REDIS_URL unset, embedded servers are started under .data/test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service import embedded
from service.access.model import CLIENT_ROLES, Principal, PrincipalKind, Role
from service.access.service import issue_access_token
from service.app import create_app
from service.cache import Cache
from service.db import Database, close_pool, create_pool, migrate
from service.errors import input_error
from service.settings import Settings, generate_secrets, load_settings

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()


def with_database(dsn: str, name: str) -> str:
    """The same server DSN pointing at database ``name`` (keeps host/socket query parameters)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def server_dsn() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return embedded.start_postgres(ROOT / ".data" / "test", database="postgres")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("REDIS_URL") or embedded.start_redis(ROOT / ".data" / "test")


@pytest.fixture(scope="session")
async def template_db(server_dsn: str) -> AsyncIterator[str]:
    name = f"qsite_tpl_{os.getpid()}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    await migrate(with_database(server_dsn, name))
    yield name
    # A fresh connection: one held for the whole session may have been ended meanwhile.
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class DatabaseSupply:
    """Copies of the template database, made ahead and dropped afterwards on a thread of their own.

    Creating and dropping a database is mostly waiting on the server's writes and fsyncs (seconds
    each on a busy disk, for a test that often takes less): done here, several at once, it overlaps
    with the tests instead of adding to each. A test still gets a copy nobody else has touched.
    """

    AHEAD = 2  # copies kept ready beyond the one being taken

    def __init__(self, server_dsn: str, template: str) -> None:
        self.server_dsn, self.template = server_dsn, template
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="database-supply", daemon=True)
        self._thread.start()
        self._ready: deque[Future[str]] = deque()
        self._drops: list[Future[None]] = []

    def _submit(self, statement: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(statement, self._loop)

    async def _execute(self, sql: str) -> None:
        # A connection per statement: they run concurrently (each mostly waits on I/O), and tests end
        # backends (faults, pool tests), so one held for the session may be gone.
        admin = await asyncpg.connect(self.server_dsn)
        try:
            await admin.execute(sql)
        finally:
            await admin.close()

    async def _create(self) -> str:
        name = f"qsite_t_{os.getpid()}_{next(_counter)}"
        # WAL_LOG: no checkpoint (FILE_COPY forces two, each flushing every dirty buffer of the server).
        await self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}" STRATEGY WAL_LOG')
        return name

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[str]:
        """A fresh copy's DSN (waits only when none is ready yet), dropped after use."""
        while len(self._ready) < self.AHEAD + 1:
            self._ready.append(self._submit(self._create()))
        name = await asyncio.wrap_future(self._ready.popleft())
        try:
            yield with_database(self.server_dsn, name)
        finally:
            self._drop(name)

    def _drop(self, name: str) -> None:
        self._drops = [d for d in self._drops if not d.done() or d.exception() is not None]  # failures: raised at close
        self._drops.append(self._submit(self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))

    def close(self) -> None:
        """Drop the copies made ahead, wait for every drop, stop the thread."""
        try:
            for made in self._ready:
                self._drop(made.result())
            for drop in self._drops:
                drop.result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()


@pytest.fixture(scope="session")
def database_supply(server_dsn: str, template_db: str) -> Iterator[DatabaseSupply]:
    supply = DatabaseSupply(server_dsn, template_db)
    try:
        yield supply
    finally:
        supply.close()


@pytest.fixture
async def database_url(database_supply: DatabaseSupply) -> AsyncIterator[str]:
    """A fresh, migrated database for this test only."""
    async with database_supply.lease() as url:
        yield url


def make_settings(database_url: str | None, redis_url: str, data_dir: Path) -> Settings:
    """A test's settings: its own Redis key prefix and fresh secrets; no database when ``database_url`` is None."""
    return load_settings(
        {},
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=f"test:{uuid.uuid4().hex[:12]}:",
        data_dir=str(data_dir),
        run_background_jobs=False,
        # The shared machine stalls a test process for longer than production's 250 ms now and then; a stall
        # must not open the Redis breaker mid-test. Fault tests that time the breaker set their own timeout.
        redis_timeout_ms=2000,
        gc_freeze=False,  # a test process builds hundreds of apps: freezing each would keep them all
        **generate_secrets(),
    )


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, redis_url, tmp_path)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    """A Database (pool + cache) on the test's database, for service-level tests."""
    cache = Cache(settings.redis_url or "", prefix=settings.redis_prefix, timeout_ms=settings.redis_timeout_ms)
    pool = await create_pool(settings, settings.database_url or "")
    try:
        yield Database(pool, cache)
    finally:
        await close_pool(pool)
        await cache.close()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    """The app in-process, lifespan run, on the test's database."""
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@contextlib.asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[str]:
    """The app behind the same uvicorn configuration as ``qsite serve``, on a free loopback port; yields its URL."""
    import uvicorn

    from service.__main__ import server_config

    settings = msgspec.structs.replace(settings, host="127.0.0.1", port=0)
    server = uvicorn.Server(server_config(settings, create_app(settings)))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "server did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


def parse_input(raw: object, struct_type: type[T]) -> T:
    """Convert client input into an input Struct, failing as the API answers it: a validator's own
    DomainError (its code, its field's path), else ``invalid_input`` (service.errors.input_error)."""
    try:
        return msgspec.convert(raw, struct_type)
    except msgspec.ValidationError as exc:
        raise input_error(exc) from None


def make_principal(role: Role, site_ids: list[uuid.UUID] | None = None, **fields: object) -> Principal:
    kind = PrincipalKind.CLIENT if role in CLIENT_ROLES else PrincipalKind.STAFF
    sites = None if role is Role.COMMAND and site_ids is None else frozenset(site_ids or [])
    return Principal(kind=kind, id=fields.pop("id", uuid.uuid4()), role=role, site_ids=sites, **fields)  # type: ignore[arg-type]


@pytest.fixture
def auth(settings: Settings):
    """``auth(principal)`` -> headers carrying a valid access token for it."""

    def headers(principal: Principal) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_access_token(settings, principal)}"}

    return headers
