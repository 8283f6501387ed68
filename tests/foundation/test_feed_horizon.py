"""The change feed's cut-off: not stalled by transactions it need not wait for, never skipping a late commit.

Each test holds a transaction open that has a transaction id (it wrote, or asked for its id),
the case that held back the old cluster-wide cut-off (pg_snapshot_xmin) for its whole length.
"""

from __future__ import annotations

import asyncpg

from service import bus


async def _commit_event(db, type_: str = "test.happened") -> bus.Event:
    async with db.transaction() as conn:
        return await bus.emit(conn, type_, site_id=None)


async def _read_all(db, cursor: str | None = None) -> bus.EventPage:
    async with db.connection() as conn:
        return await bus.read_events(conn, cursor=cursor, limit=100, site_ids=None)


async def _hold_xid(conn: asyncpg.Connection) -> int:
    """Open a transaction on ``conn`` that owns a transaction id, as any writer does."""
    await conn.execute("BEGIN")
    return int(await conn.fetchval("SELECT pg_current_xact_id()::text"))


async def _old_cutoff_blocked_by(db, xid: int) -> bool:
    async with db.connection() as conn:
        return int(await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")) <= xid


async def test_a_long_transaction_in_another_database_does_not_stall_the_feed(db, server_dsn):
    other = await asyncpg.connect(server_dsn)  # the server's "postgres" database
    try:
        xid = await _hold_xid(other)
        event = await _commit_event(db)
        assert await _old_cutoff_blocked_by(db, xid)  # the cluster-wide cut-off would wait for it
        assert [e.id for e in (await _read_all(db)).events] == [event.id]
    finally:
        await other.close()


async def test_an_unrelated_long_reader_in_the_same_database_does_not_stall_the_feed(db, database_url):
    # A report or a psql session (not a qsite pool connection), holding row locks and so a transaction id.
    reader = await asyncpg.connect(database_url)
    try:
        xid = await _hold_xid(reader)
        await reader.fetch("SELECT version FROM schema_migrations FOR UPDATE")
        event = await _commit_event(db)
        assert await _old_cutoff_blocked_by(db, xid)
        assert [e.id for e in (await _read_all(db)).events] == [event.id]
    finally:
        await reader.close()


async def test_an_event_writer_that_commits_late_is_not_skipped(db):
    async with db.pool.acquire() as slow:  # a qsite session: it may write events
        await _hold_xid(slow)  # its transaction id is taken before anything else commits
        early = await _commit_event(db, "test.committed_first")
        first = await _read_all(db)
        # The open writer holds the feed back: handing out `early` now would put a cursor past it.
        assert first.events == []
        late = await bus.emit(slow, "test.committed_late", site_id=None)
        await slow.execute("COMMIT")
    second = await _read_all(db, first.next_cursor)
    assert [e.id for e in second.events] == [late.id, early.id]  # transaction order, none skipped
    assert (await _read_all(db, second.next_cursor)).events == []


async def test_a_new_webhook_cursor_starts_after_committed_events(db):
    before = await _commit_event(db)
    async with db.connection() as conn:
        cursor = await bus.feed_now(conn)
    after = await _commit_event(db)
    assert [e.id for e in (await _read_all(db, cursor)).events] == [after.id]
    assert before.id < after.id
