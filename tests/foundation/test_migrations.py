import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from service.db import MIGRATIONS_DIR, MigrationError, check_database, migrate, migration_files
from service.settings import env_name, generate_secrets
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


def _copy_migrations(tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        (folder / path.name).write_text(path.read_text())
    return folder


async def test_an_edited_applied_migration_stops_migrate_and_serve(server_dsn, tmp_path, settings):
    name = f"qsite_mig3_{os.getpid()}"
    dsn = await _fresh_database(server_dsn, name)
    folder = _copy_migrations(tmp_path)
    try:
        await migrate(dsn, directory=folder)
        first = sorted(folder.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- a harmless-looking edit\n")
        with pytest.raises(MigrationError, match=rf"{first.name} was edited after it was applied"):
            await migrate(dsn, directory=folder)
        with pytest.raises(MigrationError, match="edited"):
            await check_database(dsn, settings, directory=folder)
    finally:
        await _drop(server_dsn, name)


async def test_databases_migrated_before_checksums_get_them(server_dsn, tmp_path):
    name = f"qsite_mig4_{os.getpid()}"
    dsn = await _fresh_database(server_dsn, name)
    try:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("ALTER TABLE schema_migrations DROP COLUMN checksum")  # as an older release left it
            assert await migrate(dsn) == []
            recorded = dict(await conn.fetch("SELECT version, checksum FROM schema_migrations"))
        finally:
            await conn.close()
        assert recorded == {m.version: m.checksum for m in migration_files()}
    finally:
        await _drop(server_dsn, name)


CONCURRENT_INDEX = """{marker}
-- Built without locking writes out of the table: impossible inside a transaction.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sites_name_test_idx ON sites (name);
CREATE INDEX CONCURRENTLY IF NOT EXISTS sites_kind_test_idx ON sites (kind);
"""


@pytest.mark.parametrize("marker", ["-- qsite: no-transaction", "-- (no marker)"])
async def test_a_migration_may_run_outside_a_transaction(server_dsn, tmp_path, marker):
    name = f"qsite_mig5_{os.getpid()}"
    dsn = await _fresh_database(server_dsn, name)
    folder = _copy_migrations(tmp_path)
    (folder / "9999_concurrent_index.sql").write_text(CONCURRENT_INDEX.format(marker=marker))
    try:
        if marker.endswith("no-transaction"):
            assert (await migrate(dsn, directory=folder))[-1] == "9999"
            conn = await asyncpg.connect(dsn)
            try:
                indexes = await conn.fetch("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'sites_%_test_idx'")
            finally:
                await conn.close()
            assert len(indexes) == 2
        else:
            with pytest.raises(asyncpg.ActiveSQLTransactionError):
                await migrate(dsn, directory=folder)
    finally:
        await _drop(server_dsn, name)


def test_production_serve_does_not_migrate_and_refuses_pending_migrations(server_dsn, tmp_path):
    name = f"qsite_mig6_{os.getpid()}"
    dsn = asyncio.run(_fresh_database(server_dsn, name))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("QSITE_")},
        **{env_name(f): v for f, v in generate_secrets().items()},
        "QSITE_ENV": "production", "DATABASE_URL": dsn, "REDIS_URL": "redis://127.0.0.1:6379/0",
        "QSITE_DATA_DIR": str(tmp_path), "QSITE_PORT": "0",
    }
    try:
        done = subprocess.run([sys.executable, "-m", "service", "serve"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert "pending (0001_foundation.sql" in done.stderr and "run `qsite migrate`" in done.stderr

        async def tables():
            conn = await asyncpg.connect(dsn)
            try:
                return await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            finally:
                await conn.close()

        assert asyncio.run(tables()) == 0  # nothing was migrated
    finally:
        asyncio.run(_drop(server_dsn, name))
