"""What every scenario needs: a fresh benchmark database, the server's environment, tokens."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from service import embedded
from service.access.model import Principal
from service.access.service import issue_access_token
from service.cache import Cache
from service.db import Database, create_pool, migrate
from service.settings import Settings, generate_secrets, load_settings

ROOT = Path(__file__).resolve().parent.parent
# Marks a database this harness created; it drops no database without it.
BENCH_MARK = "created by qsite bench"


@dataclass
class BenchContext:
    settings: Settings

    @classmethod
    async def create(cls) -> BenchContext:
        server = os.environ.get("DATABASE_URL") or embedded.start_postgres(ROOT / ".data" / "bench", database="postgres")
        redis_url = os.environ.get("REDIS_URL") or embedded.start_redis(ROOT / ".data" / "bench")
        configured = load_settings()
        name = configured.bench_database
        admin = await asyncpg.connect(server)
        try:
            await recreate_database(admin, name)
        finally:
            await admin.close()
        dsn = urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
        await migrate(dsn)
        settings = load_settings(
            {},
            database_url=dsn,
            redis_url=redis_url,
            redis_prefix=configured.bench_redis_prefix,
            data_dir=str(ROOT / ".data" / "bench"),
            bench_database=name,
            **generate_secrets(),
        )
        return cls(settings)

    @property
    def server_env(self) -> dict[str, str]:
        """Environment for the server process: same database, Redis and secrets as this context."""
        s = self.settings
        return {
            "DATABASE_URL": s.database_url or "",
            "REDIS_URL": s.redis_url or "",
            "QSITE_REDIS_PREFIX": s.redis_prefix,
            "QSITE_JWT_SECRET": s.jwt_secret,
            "QSITE_PII_KEYS": s.pii_keys,
            "QSITE_PII_INDEX_KEY": s.pii_index_key,
            "QSITE_WEBHOOK_SIGNING_SECRET": s.webhook_signing_secret,
            "QSITE_DATA_DIR": s.data_dir,
            "QSITE_POOL_MAX_SIZE": os.environ.get("QSITE_POOL_MAX_SIZE", "10"),
        }

    def token(self, principal: Principal) -> str:
        return issue_access_token(self.settings, principal)

    async def with_db(self, fn: Callable[[Database], Awaitable[Any]], *, database_url: str | None = None) -> Any:
        """Run setup code against the benchmark database (or another one the scenario built)."""
        cache = Cache(self.settings.redis_url or "", prefix=self.settings.redis_prefix, timeout_ms=250)
        pool = await create_pool(self.settings, database_url or self.settings.database_url or "")
        try:
            return await fn(Database(pool, cache))
        finally:
            await pool.close()
            await cache.close()


async def recreate_database(admin: asyncpg.Connection, name: str) -> None:
    """Drop ``name`` only if this harness created it (its comment says so), then create it afresh."""
    comment = await admin.fetchval(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", name
    )
    exists = await admin.fetchval("SELECT true FROM pg_database WHERE datname = $1", name)
    if exists and comment != BENCH_MARK:
        raise SystemExit(f"database {name!r} exists and was not created by the benchmark; set QSITE_BENCH_DATABASE")
    quoted = '"' + name.replace('"', '""') + '"'
    await admin.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {quoted}")
    await admin.execute(f"COMMENT ON DATABASE {quoted} IS '{BENCH_MARK}'")
