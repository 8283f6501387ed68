"""Least privilege on a real PostgreSQL: a migration role owns the schema, the app role only uses it.

Roles are cluster-wide, so this module's names carry the pid (helpers and CI runs share
the server) and are dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service import db_roles
from service.access.demo import DEMO_PASSWORD
from service.api.demo import seed_demo
from service.api.jobs import JOBS
from service.app import create_app
from service.cache import Cache
from service.db import Database, MigrationError, check_database, create_pool, migrate
from service.jobs import run_exclusive
from tests.conftest import with_database

PID = os.getpid()
OWNER, APP = f"qsite_owner_t{PID}", f"qsite_app_t{PID}"


def _as(dsn: str, user: str, password: str) -> str:
    parts = urlsplit(dsn)
    # The embedded server is reached by socket (?host=/dir, no host in the netloc): keep it that way.
    where = f"{parts.hostname}:{parts.port or 5432}" if parts.hostname else ""
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{where}"))


@pytest.fixture(scope="module")
async def roles_db(server_dsn: str) -> AsyncIterator[dict[str, str]]:
    """A database set up as production would be: `qsite db-roles`, then `qsite migrate` as the owner."""
    name = f"qsite_roles_{PID}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        owner_url, app_url = _as(with_database(server_dsn, name), OWNER, "owner-pw"), _as(with_database(server_dsn, name), APP, "app-pw")
        statements = db_roles.role_setup_sql(name, OWNER, "owner-pw", APP, "app-pw")
        await db_roles.apply(server_dsn, name, statements)
        await db_roles.apply(server_dsn, name, statements)  # idempotent: a second run changes nothing
        assert await migrate(owner_url, app_role=APP)
        yield {"owner": owner_url, "app": app_url}
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in (APP, OWNER):
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def test_roles_are_plain_and_the_owner_owns_the_schema(roles_db, server_dsn):
    admin = await asyncpg.connect(server_dsn)
    try:
        rows = await admin.fetch(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = ANY($1)", [OWNER, APP]
        )
    finally:
        await admin.close()
    assert len(rows) == 2 and not any(r["rolsuper"] or r["rolcreatedb"] or r["rolcreaterole"] or r["rolbypassrls"] for r in rows)
    owner = await asyncpg.connect(roles_db["owner"])
    try:
        owners = await owner.fetch("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await owner.close()
    assert [r["tableowner"] for r in owners] == [OWNER]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET purpose = 'rewritten'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update",
        "CREATE TABLE sneaky (id int)",
        "DROP TABLE stays",
        "INSERT INTO schema_migrations (version, name) VALUES ('9999', 'forged')",
        "DELETE FROM schema_migrations",
    ],
)
async def test_app_role_cannot_rewrite_history_or_change_the_schema(roles_db, statement):
    conn = await asyncpg.connect(roles_db["app"])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
            await conn.execute(statement)
        # Refused by the grants themselves, not only by the audit trigger (which an owner could disable).
        assert "permission denied" in str(refused.value) or "must be owner" in str(refused.value)
    finally:
        await conn.close()


async def test_the_app_works_as_the_app_role(roles_db, settings, redis_url):
    app_settings = msgspec.structs.replace(settings, database_url=roles_db["app"], redis_url=redis_url)
    await check_database(roles_db["app"], msgspec.structs.replace(app_settings, env="production", refuse_superuser=True))
    assert await seed_demo(app_settings, only_if_empty=True)  # inserts across every domain, under its grants

    async with AsyncTestClient(app=create_app(app_settings)) as client:
        login = await client.post("/api/v1/auth/login", json={"username": "command", "password": DEMO_PASSWORD})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        staff = (await client.get("/api/v1/staff", headers=headers)).json()["items"]
        revealed = await client.get(f"/api/v1/staff/{staff[0]['id']}", params={"purpose": "role check"}, headers=headers)
        assert revealed.status_code == 200, revealed.text
        site = await client.post(
            "/api/v1/sites",
            json={"code": f"R{uuid.uuid4().hex[:6]}", "name": "Roles Hotel", "region_path": "两江新区/礼嘉街道"},
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert site.status_code == 201, site.text
        refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]})
        assert refreshed.status_code == 200

    # Background jobs (advisory locks, sweeps, deletes of expired keys) under the same grants.
    cache = Cache(redis_url, prefix=app_settings.redis_prefix, timeout_ms=app_settings.redis_timeout_ms)
    pool = await create_pool(app_settings, roles_db["app"])
    try:
        for job in JOBS:
            assert await run_exclusive(Database(pool, cache), app_settings, job)
        async with pool.acquire() as conn:
            audited = await conn.fetchval("SELECT count(*) FROM audit_log WHERE purpose = 'role check'")
    finally:
        await pool.close()
        await cache.close()
    assert audited == 1


async def test_superuser_is_warned_about_or_refused(roles_db, settings, server_dsn, caplog):
    production = msgspec.structs.replace(settings, env="production")
    owner_db = with_database(server_dsn, urlsplit(roles_db["app"]).path.lstrip("/"))
    with caplog.at_level("WARNING", logger="qsite.db"):
        await check_database(owner_db, production)
    assert any("superuser" in r.getMessage() for r in caplog.records)
    with pytest.raises(MigrationError, match="QSITE_REFUSE_SUPERUSER"):
        await check_database(owner_db, msgspec.structs.replace(production, refuse_superuser=True))
