import asyncio
import uuid

import msgspec
import pytest

from service import bus


async def _subscribe(db, site_id):
    pubsub = db.cache.client.pubsub()
    await pubsub.subscribe(bus.channel(db.cache, site_id))
    await pubsub.get_message(timeout=1)  # subscription confirmation
    return pubsub


async def test_event_published_after_commit(db):
    site_id = uuid.uuid4()
    pubsub = await _subscribe(db, site_id)
    try:
        async with db.transaction() as conn:
            event = await bus.emit(conn, "test.happened", site_id=site_id, data={"n": 1})
            assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2) is None  # not before commit
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert message is not None
        assert [e["id"] for e in msgspec.json.decode(message["data"])] == [event.id]
    finally:
        await pubsub.aclose()


async def test_a_commit_is_one_message_per_site_carrying_its_events_in_order(db):
    here, there = uuid.uuid4(), uuid.uuid4()
    pubsub = await _subscribe(db, here)
    await pubsub.subscribe(bus.channel(db.cache, there))
    await pubsub.get_message(timeout=1)
    try:
        async with db.transaction() as conn:
            emitted = [await bus.emit(conn, "test.happened", site_id=site, data={"n": n}) for n, site in enumerate([here, there, here, here])]
        messages = []
        while (message := await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)) is not None:
            messages.append(message)
        by_channel = {m["channel"].decode(): bus.decode_message(m["data"]) for m in messages}
        assert len(messages) == 2
        assert by_channel[bus.channel(db.cache, here)] == [emitted[0], emitted[2], emitted[3]]
        assert by_channel[bus.channel(db.cache, there)] == [emitted[1]]
        # a lone event object (what an instance of an earlier release publishes) reads as well
        assert bus.decode_message(msgspec.json.encode(emitted[1])) == [emitted[1]]
    finally:
        await pubsub.aclose()


async def test_rolled_back_event_is_neither_stored_nor_published(db):
    site_id = uuid.uuid4()
    pubsub = await _subscribe(db, site_id)
    try:
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await bus.emit(conn, "test.happened", site_id=site_id)
                raise RuntimeError("boom")
        assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5) is None
        async with db.connection() as conn:
            assert await conn.fetchval("SELECT count(*) FROM events WHERE site_id = $1", site_id) == 0
    finally:
        await pubsub.aclose()


async def test_feed_does_not_skip_a_transaction_that_commits_late(db):
    site_id = uuid.uuid4()
    async with db.connection() as conn:
        first_page = await bus.read_events(conn, cursor=None, limit=100, site_ids=[site_id])
    assert first_page.events == []

    early_started = asyncio.Event()
    release_early = asyncio.Event()

    async def early_writer():
        async with db.transaction() as conn:
            await bus.emit(conn, "test.early", site_id=site_id)
            early_started.set()
            await release_early.wait()

    early = asyncio.create_task(early_writer())
    await early_started.wait()
    async with db.transaction() as conn:  # a later transaction commits first
        await bus.emit(conn, "test.late", site_id=site_id)
    async with db.connection() as conn:
        page = await bus.read_events(conn, cursor=first_page.next_cursor, limit=100, site_ids=[site_id])
    # The early transaction is still open: the feed waits rather than skipping past it.
    assert [e.type for e in page.events] == []
    release_early.set()
    await early
    seen: list[str] = []
    cursor = page.next_cursor
    # The horizon is cluster-wide: another client's open transaction may hold it
    # back for a moment, so poll (bounded) as a real consumer would.
    for _ in range(100):
        async with db.connection() as conn:
            page = await bus.read_events(conn, cursor=cursor, limit=100, site_ids=[site_id])
        seen += [e.type for e in page.events]
        cursor = page.next_cursor
        if len(seen) >= 2:
            break
        await asyncio.sleep(0.05)
    assert sorted(seen) == ["test.early", "test.late"]
    async with db.connection() as conn:
        again = await bus.read_events(conn, cursor=cursor, limit=100, site_ids=[site_id])
    assert again.events == []


async def test_feed_rejects_a_forged_cursor(db):
    from service.errors import InvalidInput

    async with db.connection() as conn:
        with pytest.raises(InvalidInput):
            await bus.read_events(conn, cursor="not-a-cursor", limit=10, site_ids=None)
