"""Site data versions: writers at one site do not queue behind each other, and every copy sums right."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from service.versions import SiteVersions, read_versions
from tests.stays.helpers import make_site


async def _connections_on_two_stripes(dsn: str) -> tuple[asyncpg.Connection, asyncpg.Connection]:
    """Two connections whose backends bump different stripes (pid mod 16)."""
    first = await asyncpg.connect(dsn)
    spare: list[asyncpg.Connection] = []
    try:
        while True:
            other = await asyncpg.connect(dsn)
            if other.get_server_pid() % 16 != first.get_server_pid() % 16:
                return first, other
            spare.append(other)
    finally:
        for conn in spare:
            await conn.close()


async def test_two_writers_at_one_site_do_not_wait_for_each_other(db, database_url):
    site_id = await make_site(db, floors={1: (2, 1)})
    async with db.connection() as conn:
        room_a, room_b = [r["id"] for r in await conn.fetch("SELECT id FROM rooms WHERE site_id = $1 ORDER BY number", site_id)]
    before = (await read_versions(db, [site_id], ["rooms"]))[(site_id, "rooms")]
    copy = SiteVersions(database_url)
    copy.start()
    first, second = await _connections_on_two_stripes(database_url)
    try:
        for _ in range(50):  # the copy is loaded and listening
            if copy.trusted:
                break
            await asyncio.sleep(0.1)
        assert copy.trusted
        async with first.transaction():
            await first.execute("UPDATE rooms SET notes = 'first' WHERE id = $1", room_a)
            # With one version row per (site, topic) this waited for the first writer's commit.
            await second.execute("SET lock_timeout = '2s'")
            await second.execute("UPDATE rooms SET notes = 'second' WHERE id = $1", room_b)
        after = (await read_versions(db, [site_id], ["rooms"]))[(site_id, "rooms")]
        assert after == before + 2
        for _ in range(50):
            if copy.memory.get((site_id, "rooms")) == after:
                break
            await asyncio.sleep(0.05)
        assert copy.memory[(site_id, "rooms")] == after
    finally:
        await first.close()
        await second.close()
        await copy.close()


@pytest.mark.parametrize("writers", [8])
async def test_concurrent_writers_move_the_version_once_each(db, database_url, writers):
    site_id = await make_site(db, floors={1: (writers, 1)})
    async with db.connection() as conn:
        rooms = [r["id"] for r in await conn.fetch("SELECT id FROM rooms WHERE site_id = $1", site_id)]
    before = (await read_versions(db, [site_id], ["rooms"]))[(site_id, "rooms")]

    async def write(room_id):
        conn = await asyncpg.connect(database_url)
        try:
            for n in range(5):
                await conn.execute("UPDATE rooms SET notes = $2 WHERE id = $1", room_id, f"w{n}")
        finally:
            await conn.close()

    await asyncio.gather(*(write(r) for r in rooms))
    assert (await read_versions(db, [site_id], ["rooms"]))[(site_id, "rooms")] == before + 5 * writers
