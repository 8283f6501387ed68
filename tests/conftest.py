"""Fixtures: real PostgreSQL and Redis for every test.

Migrations run once per session into a template database; each test that
needs a database gets a fresh copy of it (cheap: CREATE DATABASE ... TEMPLATE).
Redis is shared, each test with its own key prefix. With DATABASE_URL /
REDIS_URL unset, embedded servers are started under .data/test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar
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


@pytest.fixture
async def database_url(server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test only."""
    name = f"qsite_t_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}" STRATEGY FILE_COPY')
        yield with_database(server_dsn, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return load_settings(
        {},
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=f"test:{uuid.uuid4().hex[:12]}:",
        data_dir=str(tmp_path),
        run_background_jobs=False,
        gc_freeze=False,  # a test process builds hundreds of apps: freezing each would keep them all
        **generate_secrets(),
    )


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
