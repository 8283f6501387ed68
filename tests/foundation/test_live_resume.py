"""Resumable live updates (service/live.py ``changes_after``): replay since a cursor, then live, in feed order.

Service level, real PostgreSQL and Redis: writers commit through ``Database.transaction`` (which
publishes after commit, as every write does), the subscriber is the generator the GraphQL
subscription wraps. Waits are bounded; the assertions are about what arrives, never about time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator

from service import bus, live
from service.access.model import Role
from service.changes.model import Change
from tests.conftest import make_principal

TYPE = "sites.site_updated"
WAIT_S = 20.0


class Collector:
    """Runs ``changes_after`` in a task and keeps what it yields."""

    def __init__(self, db, site: uuid.UUID, after: str | None) -> None:
        principal = make_principal(Role.SITE_STAFF, [site])
        self.seen: list[Change] = []
        self.error: BaseException | None = None
        self.task = asyncio.create_task(self._run(live.changes_after(db, principal, [site], frozenset({TYPE}), after)))

    async def _run(self, stream: AsyncIterator[Change]) -> None:
        try:
            async for change in stream:
                self.seen.append(change)
        except Exception as exc:
            self.error = exc

    async def until(self, count: int) -> list[Change]:
        async with asyncio.timeout(WAIT_S):
            while len(self.seen) < count and self.error is None:
                await asyncio.sleep(0.01)
        assert self.error is None, self.error
        return self.seen

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def commit(db, site: uuid.UUID, n: int = 0) -> bus.Event:
    async with db.transaction() as conn:
        return await bus.emit(conn, TYPE, site_id=site, subject_id=site, data={"n": n})


async def feed_ids(db, site: uuid.UUID, after: str | None) -> list[int]:
    ids, cursor, more = [], after, True
    while more:
        async with db.connection() as conn:
            rows, more = await bus.read_feed(conn, cursor=cursor, limit=1000, site_ids=[site])
        ids += [r.event.id for r in rows]
        cursor = rows[-1].cursor if rows else cursor
    return ids


async def wait_live(db, site: uuid.UUID, collector: Collector) -> None:
    """Commit until the collector hears one: its subscription is up. Then wait for the last probe too, so no
    probe still in flight lands in the caller's counts (delivery is in feed order: the last one comes last)."""
    for _ in range(200):
        before = len(collector.seen)
        probe = await commit(db, site, -1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.1):
                while len(collector.seen) == before:
                    await asyncio.sleep(0.005)
        if len(collector.seen) > before:
            await _eventually(collector, probe.id)
            return
    raise AssertionError("never live")


async def test_replay_then_live_under_concurrent_writers_has_no_gap_and_no_duplicate(db):
    """Three writers commit 240 changes in interleaved transactions; a subscriber joins mid-way with a cursor
    from before the first: it receives exactly the feed after its cursor, once each, in feed order."""
    site = uuid.uuid4()
    async with db.connection() as conn:
        start = await bus.feed_now(conn)
    rng = random.Random(14)

    async def writer(w: int) -> None:
        for i in range(80):
            await commit(db, site, w * 1000 + i)
            if rng.random() < 0.3:
                await asyncio.sleep(0.001)

    writers = [asyncio.create_task(writer(w)) for w in range(3)]
    while len(await feed_ids(db, site, start)) < 60:  # the subscriber joins while the writers are at it
        await asyncio.sleep(0.01)
    collector = Collector(db, site, start)
    try:
        await asyncio.gather(*writers)
        seen = await collector.until(240)
        await asyncio.sleep(0.3)  # anything extra (a duplicate) would arrive now
        expected = await feed_ids(db, site, start)
        assert len(expected) == 240
        assert [c.id for c in collector.seen] == expected
        assert all(c.cursor == bus.event_cursor(*_position(c)) for c in seen)
    finally:
        await collector.close()


def _position(change: Change) -> tuple[int, int]:
    return bus.cursor_position(change.cursor)


async def test_resuming_from_a_live_events_cursor_misses_nothing(db):
    site = uuid.uuid4()
    first = Collector(db, site, None)
    try:
        await wait_live(db, site, first)
        # Probes committed by wait_live may still be on their way: one more, heard, comes after all of them.
        last = await commit(db, site, -2)
        await _eventually(first, last.id)
        mark = next(c for c in first.seen if c.id == last.id)
    finally:
        await first.close()
    missed = [await commit(db, site, n) for n in range(5)]  # while the app was away
    again = Collector(db, site, mark.cursor)
    try:
        got = await again.until(5)
        assert [c.id for c in got] == [e.id for e in missed]
        later = await commit(db, site, 99)
        assert [c.id for c in await again.until(6)][5] == later.id
    finally:
        await again.close()


async def test_a_late_commit_is_delivered_in_feed_order_not_skipped(db):
    """A transaction that began first but commits last is held back, then delivered before the later ones:
    a cursor taken from any delivered event never jumps over it."""
    site = uuid.uuid4()
    collector = Collector(db, site, None)
    try:
        await wait_live(db, site, collector)
        count = len(collector.seen)
        async with db.pool.acquire() as slow:  # a qsite session: the feed waits for it
            await slow.execute("BEGIN")
            await slow.fetchval("SELECT pg_current_xact_id()")
            early = await commit(db, site, 1)  # committed and published while the slow one is open
            await asyncio.sleep(0.3)
            assert len(collector.seen) == count, "delivered past an open transaction"
            late = await bus.emit(slow, TYPE, site_id=site, subject_id=site, data={"n": 2})
            await slow.execute("COMMIT")
        await bus.publish(db.cache, [late])
        got = await collector.until(count + 2)
        assert [c.id for c in got[count:]] == [late.id, early.id]
    finally:
        await collector.close()


async def test_subscribers_of_a_site_share_one_follower(db):
    site, other = uuid.uuid4(), uuid.uuid4()
    collectors = [Collector(db, site, None) for _ in range(20)]
    elsewhere = Collector(db, other, None)
    try:
        await wait_live(db, site, collectors[0])
        await wait_live(db, other, elsewhere)
        assert live.follower_count(db) == 2  # one outbox reader per set of sites, whatever the subscribers
        event = await commit(db, site, 7)
        for c in collectors:
            await _eventually(c, event.id)
        assert event.id not in [x.id for x in elsewhere.seen]
    finally:
        for c in [*collectors, elsewhere]:
            await c.close()
    assert live.follower_count(db) == 0


async def _eventually(collector: Collector, event_id: int) -> None:
    async with asyncio.timeout(WAIT_S):
        while event_id not in [c.id for c in collector.seen]:
            await asyncio.sleep(0.01)
