import asyncio
import os

import asyncpg

from service.db import MIGRATIONS_DIR, migrate
from tests.conftest import with_database


async def _fresh_database(server_dsn: str, name: str) -> str:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return with_database(server_dsn, name)


async def _drop(server_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_migrate_twice_applies_once(server_dsn):
    name = f"qsite_mig_{os.getpid()}"
    dsn = await _fresh_database(server_dsn, name)
    try:
        expected = sorted(p.stem.split("_", 1)[0] for p in MIGRATIONS_DIR.glob("[0-9]*.sql"))
        assert await migrate(dsn) == expected
        assert await migrate(dsn) == []
    finally:
        await _drop(server_dsn, name)


async def test_two_processes_migrating_at_once_do_not_collide(server_dsn):
    name = f"qsite_mig2_{os.getpid()}"
    dsn = await _fresh_database(server_dsn, name)
    try:
        first, second = await asyncio.gather(migrate(dsn), migrate(dsn))
        expected = sorted(p.stem.split("_", 1)[0] for p in MIGRATIONS_DIR.glob("[0-9]*.sql"))
        # One runner applied everything, the other found nothing left to do.
        assert sorted([first, second], key=len) == [[], expected]
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(expected)
        finally:
            await conn.close()
    finally:
        await _drop(server_dsn, name)
