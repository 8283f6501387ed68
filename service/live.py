"""Live updates: committed changes streamed to GraphQL subscribers over WebSocket, resumable by cursor.

Redis rings the bell, PostgreSQL says what changed. Every instance publishes the events of its
commits on ``<prefix>site:<site_id>`` (service/bus.py). An instance does not forward those
messages: for each set of sites its subscribers listen to, one *follower* reads the outbox
feed (``bus.read_feed``, the change feed's reader) whenever a message arrives for those sites,
and hands what it read to each of those subscribers. So every event a subscriber gets comes in
the feed's order with the feed's cursor, and resuming from any event's cursor, by
``siteEvents(after:)`` or ``changes(after:)``, skips nothing: a transaction that commits late
is read (and delivered) after the ones before it in the feed, never behind a cursor handed out.

- One Redis pub/sub connection per instance (``Cache.hub``), subscribed only to the channels of
  the sites its local subscribers want; one feed read per bell and set of sites, whatever the
  number of subscribers (a burst of bells while a read runs costs one more read).
- A bell whose event the feed does not show yet (an older transaction is still open: the feed's
  horizon) is retried with a short back-off until it does; a slow poll is the safety net.
- ``siteEvents(after: cursor)``: the subscriber joins its follower first (buffering), then
  replays the outbox after the cursor up to position P, then drains the buffer dropping what is
  at or before P. The follower's reads after the join cover everything past its position at the
  join, the replay (which runs later, so sees at least as far) everything up to it: no gap, no
  duplicate.
- What a follower hands out is made once per row and visibility class (``changes.to_change``), and,
  for subscriptions served as frames (service/live_frames.py), rendered once per plan and class:
  subscribers sharing both get the same text.
- The replay reads up to the horizon as it was when it began (read once), one statement per page.
- Redis unavailable, hung or lost: every subscription ends with ``live_updates_unavailable``
  (the hub pings every second); the app subscribes again with the cursor of the last event it
  applied and misses nothing. Delivery is at least once across such a resume; ``id`` is unique.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Callable, Hashable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, cast
from uuid import UUID

import msgspec
import strawberry
from graphql import GraphQLError

from service import bus, policy
from service.access.model import Principal
from service.changes import service as changes
from service.changes.model import Change
from service.db import Database
from service.errors import DomainError, Unauthorized
from service.gql import Context, Ctx
from service.live_frames import Plan, visibility_class

log = logging.getLogger("qsite.live")

_GLOB_SPECIALS = re.compile(r"([*?\[\]\\])")
MAX_SITES = changes.MAX_SITES
MAX_BACKLOG = 1000  # events queued for one live subscriber before it counts as too slow
MAX_BUFFER = 20_000  # events held for a subscriber while it replays from the outbox
REPLAY_PAGE = changes.MAX_LIMIT
READ_PAGE = 1000
SUBSCRIBE_TIMEOUT_S = 2.0
RETRY_MIN_S = 0.01  # a bell for an event the feed does not show yet: read again soon
RETRY_MAX_S = 0.2
POLL_S = 5.0  # safety net: a follower reads at least this often
AWAIT_MAX_S = 60.0  # a rung event never seen within this long (purged, or not ours) is forgotten


class LiveUnavailable(DomainError):
    status, default_code, title = 503, "live_updates_unavailable", "Live updates unavailable"


def _error(exc: DomainError) -> GraphQLError:
    # Subscriptions stream results past the schema's on_operation hook, so the
    # code the other errors get there is attached here.
    extensions = {"code": exc.code, **({"field": exc.field} if exc.field else {})}
    return GraphQLError(exc.message, original_error=exc, extensions=extensions)


async def resolve_scope(db: Database, principal: Principal, site_ids: list[UUID] | None) -> list[UUID] | None:
    """The sites to listen to (None = every site); any id not visible to the caller is refused."""
    async with db.connection() as conn:
        return await changes.resolve_sites(conn, principal, site_ids, field="siteIds")


class _Stream:
    """One subscription: what its follower read, filtered for its caller (and rendered, with a plan)."""

    def __init__(self, principal: Principal, types: frozenset[str], plan: Plan | None = None) -> None:
        self.principal = principal
        self.types = types
        self.plan = plan
        # Subscribers with the same visibility class see the same change; with the same plan too, the same frame.
        self.visibility = ("change", visibility_class(principal))
        self.show = changes.shown_to(principal)
        self.group: Hashable = self.visibility if plan is None else ("frame", plan.key, self.visibility)
        self.backlog: deque[tuple[tuple[int, int], Change | str]] = deque()
        self.limit = MAX_BUFFER  # while replaying; MAX_BACKLOG once live
        self.floor: tuple[int, int] = (-1, -1)  # delivered by the replay up to here: drop what is not after it
        self.failure: str | None = None
        self.wakeup = asyncio.Event()

    def item(self, change: Change) -> Change | str:
        return change if self.plan is None else self.plan.render(change)

    def offer(self, row: bus.FeedRow, shared: dict[Hashable, Any]) -> None:
        """``shared``: what this row became for the streams offered it so far (per visibility class and group)."""
        if self.failure is not None or row.event.type not in self.types:
            return
        if len(self.backlog) >= self.limit:  # the client does not keep up: end rather than grow or drop silently
            self.fail("subscriber too slow")
            return
        item = shared.get(self.group)
        if item is None:
            change = shared.get(self.visibility)
            if change is None:
                change = shared[self.visibility] = self.show(row)
            item = shared[self.group] = self.item(change)
        self.backlog.append((row.position, item))
        self.wakeup.set()

    def fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
            self.backlog.clear()
        self.wakeup.set()


class _Follower:
    """The outbox reader of one instance for one set of sites (None: every site), shared by its subscribers.

    The hub's listener for those sites' channels: a message only rings the bell (and names the event
    id to wait for); the events themselves are read from PostgreSQL in feed order.
    """

    def __init__(self, db: Database, key: tuple[UUID, ...] | None) -> None:
        self.db = db
        self.key = key
        self.site_ids = None if key is None else list(key)
        self.cursor: str | None = None
        self.streams: set[_Stream] = set()
        self.bell = asyncio.Event()
        self.awaited: dict[int, float] = {}  # event ids rung but not read yet -> when first rung
        self.ready_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.reads = 0

    # -- the hub's Listener --------------------------------------------------------------

    def ready(self) -> None:
        self.ready_event.set()
        self.bell.set()  # bells may have been missed while (re)subscribing: read

    def deliver(self, channel: bytes, data: bytes) -> None:
        now = time.monotonic()
        for event_id in _event_ids(data):
            self.awaited.setdefault(event_id, now)
        self.bell.set()

    def lost(self) -> None:
        self.ready_event.clear()
        for stream in list(self.streams):
            stream.fail("redis subscription lost")

    # -- reading ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Position at the feed's present, then subscribe: what commits in between is read at the first bell."""
        async with self.db.connection() as conn:
            self.cursor = await bus.feed_now(conn)
        cache = self.db.cache
        if self.site_ids is None:
            await cache.hub.join(self, patterns=[_GLOB_SPECIALS.sub(r"\\\1", cache.key("site")) + "*"])
        else:
            await cache.hub.join(self, channels=[bus.channel(cache, site_id) for site_id in self.site_ids])
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        retry = RETRY_MIN_S
        while True:
            timeout = retry if self.awaited else POLL_S
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.bell.wait()
            self.bell.clear()
            if not self.ready_event.is_set():
                continue
            try:
                progressed = await self._read()
            except asyncio.CancelledError:
                raise
            except Exception:  # PostgreSQL unavailable (or a bug): the subscribers end, the follower retries
                log.exception("live feed read failed", extra={"event": "live_read_failed"})
                for stream in list(self.streams):
                    stream.fail("feed read failed")
                await asyncio.sleep(RETRY_MAX_S)
                continue
            now = time.monotonic()
            for event_id in [i for i, t in self.awaited.items() if now - t > AWAIT_MAX_S]:
                del self.awaited[event_id]
            # Back off only while the feed holds the same bells back (a long transaction still open).
            retry = min(retry * 2, RETRY_MAX_S) if self.awaited and not progressed else RETRY_MIN_S

    async def _read(self) -> bool:
        """Read the feed to its horizon and hand the events out; whether there were any."""
        more, progressed = True, False
        while more:
            async with self.db.connection() as conn:
                rows, more = await bus.read_feed(conn, cursor=self.cursor, limit=READ_PAGE, site_ids=self.site_ids)
            self.reads += 1
            streams = list(self.streams)
            for row in rows:
                self.awaited.pop(row.event.id, None)
                shared: dict[Hashable, Any] = {}  # one change per visibility class, one frame per group
                for stream in streams:
                    stream.offer(row, shared)
            if rows:
                self.cursor = rows[-1].cursor
                progressed = True
        return progressed

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.db.cache.hub.leave(self)


class _Bell(msgspec.Struct):
    id: int


_decode_bells = msgspec.json.Decoder(list[_Bell] | _Bell).decode  # bus.publish: a commit's events at one site


def _event_ids(data: bytes) -> list[int]:
    """The ids of the events a message announces (only the ids: the events are read from the outbox)."""
    try:
        bells = _decode_bells(data)
    except msgspec.DecodeError:  # not one of ours: a bell all the same
        return []
    return [b.id for b in bells] if isinstance(bells, list) else [bells.id]


# Followers of each instance (one Database per app), by set of sites.
_followers: weakref.WeakKeyDictionary[Database, dict[tuple[UUID, ...] | None, _Follower]] = weakref.WeakKeyDictionary()
_starting: weakref.WeakKeyDictionary[Database, dict[tuple[UUID, ...] | None, asyncio.Future[_Follower]]] = weakref.WeakKeyDictionary()


async def _attach(db: Database, key: tuple[UUID, ...] | None, stream: _Stream) -> _Follower:
    followers = _followers.setdefault(db, {})
    follower = followers.get(key)
    if follower is None:
        starting = _starting.setdefault(db, {})
        pending = starting.get(key)
        if pending is None:  # the first subscriber of these sites starts their follower; others wait for it
            pending = starting[key] = asyncio.get_running_loop().create_future()
            follower = _Follower(db, key)
            try:
                await follower.start()
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await follower.stop()
                if isinstance(exc, Exception):
                    pending.set_exception(exc)
                    pending.exception()  # retrieved here: the waiters, if any, raise it too
                else:
                    pending.cancel()
                raise
            finally:
                starting.pop(key, None)
            followers[key] = follower
            pending.set_result(follower)
        else:
            follower = await asyncio.shield(pending)
    follower.streams.add(stream)
    return follower


async def _detach(db: Database, follower: _Follower, stream: _Stream) -> None:
    follower.streams.discard(stream)
    if not follower.streams and _followers.get(db, {}).get(follower.key) is follower:
        del _followers[db][follower.key]
        await follower.stop()


def follower_count(db: Database) -> int:
    """Followers (distinct sets of sites) this instance runs."""
    return len(_followers.get(db, {}))


async def changes_after(
    db: Database,
    principal: Principal,
    site_ids: list[UUID] | None,
    types: frozenset[str],
    after: str | None,
) -> AsyncGenerator[Change, None]:
    """Changes at ``site_ids`` (every site when None) after the cursor ``after`` (None: from now on), then live.

    Raises LiveUnavailable when Redis is unavailable, or when the subscription breaks, hangs or
    falls behind; the app subscribes again with the cursor of the last change it applied.
    """
    async with contextlib.aclosing(_follow(db, _Stream(principal, types), site_ids, after)) as items:
        async for item in items:
            yield cast(Change, item)


async def frames_after(
    db: Database, principal: Principal, site_ids: list[UUID] | None, types: frozenset[str], after: str | None, plan: Plan
) -> AsyncGenerator[str, None]:
    """As ``changes_after``, each change rendered by ``plan`` (the JSON text of a ``next`` payload), shared
    with every subscriber of this instance's follower that has the same plan and visibility class."""
    async with contextlib.aclosing(_follow(db, _Stream(principal, types, plan), site_ids, after)) as items:
        async for item in items:
            yield cast(str, item)


async def _follow(db: Database, stream: _Stream, site_ids: list[UUID] | None, after: str | None) -> AsyncGenerator[Change | str, None]:
    if not db.cache.available:
        raise LiveUnavailable("Live updates are unavailable right now; refresh to see changes.")
    key = None if site_ids is None else tuple(sorted(site_ids))
    follower = await _attach(db, key, stream)
    try:
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                await follower.ready_event.wait()
        except TimeoutError:
            stream.fail("redis subscription not confirmed")
        if stream.failure is not None:
            log.warning("live subscribe failed", extra={"event": "live_unavailable", "subject": stream.failure})
            raise LiveUnavailable("Live updates are unavailable right now; refresh to see changes.")
        if after is not None:
            async for position, item in _replay(db, stream, site_ids, after):
                stream.floor = position
                yield item
        stream.limit = MAX_BACKLOG
        while True:
            while stream.backlog:
                position, item = stream.backlog.popleft()
                if position > stream.floor:
                    yield item
            if stream.failure is not None:
                log.warning("live stream lost", extra={"event": "live_lost", "subject": stream.failure})
                raise LiveUnavailable("Live updates were interrupted; subscribe again with the last cursor you applied.")
            stream.wakeup.clear()
            await stream.wakeup.wait()
    finally:
        await _detach(db, follower, stream)


async def _replay(db: Database, stream: _Stream, site_ids: list[UUID] | None, after: str) -> AsyncGenerator[tuple[tuple[int, int], Change | str], None]:
    """The outbox after ``after`` up to the feed's horizon when the replay starts, page by page: one
    statement per page, each page rendered before it is handed out, the next read while it is sent.

    The horizon is read after the stream joined its follower, so it is at or past every position
    the follower had read: what the replay does not reach, the follower delivers.
    """
    async with db.connection() as conn:
        horizon = await bus.read_horizon(conn)

    async def page(cursor: str) -> tuple[list[bus.FeedRow], bool]:
        async with db.connection() as conn:
            return await bus.read_feed(conn, cursor=cursor, limit=REPLAY_PAGE, site_ids=site_ids, types=stream.types, horizon=horizon)

    loop = asyncio.get_running_loop()
    rows, more = await page(after)
    while rows:
        following = loop.create_task(page(rows[-1].cursor)) if more else None
        try:
            show, item = stream.show, stream.item
            for row in rows:
                yield row.position, item(show(row))
        except BaseException:
            if following is not None:
                following.cancel()
                with contextlib.suppress(BaseException):
                    await following
            raise
        rows, more = await following if following is not None else ([], False)


# --- GraphQL ----------------------------------------------------------------------


@strawberry.type(description="A committed change at a site, as recorded in the outbox, with its cursor.")
class SiteEvent:
    cursor: str = strawberry.field(description="Resumes just after this event: `siteEvents(after:)` or `changes(after:)`.")
    id: int = strawberry.field(description="The outbox event id: unique; skip an event whose id was already applied.")
    site_id: UUID | None = strawberry.field(description="Null for events that concern no one site.")
    type: str = strawberry.field(description="`<domain>.<what_happened>`, e.g. `sites.room_updated`.")
    subject_id: UUID | None
    entity: str = strawberry.field(description="The kind of record changed (as in `changes`).")
    entity_ids: list[UUID] = strawberry.field(description="Every record this event names.")
    version: int | None = strawberry.field(description="The record's version after the change, when it has one.")
    tombstone: bool = strawberry.field(description="The record is gone: drop it.")
    data: strawberry.scalars.JSON = strawberry.field(description="Event details; never personal data.")
    at: datetime


def _subject_id(change: Change) -> UUID | None:
    return change.entity_id if change.entity_id is not None else (change.entity_ids[0] if len(change.entity_ids) == 1 else None)


# Each SiteEvent field from its Change: ``site_event`` builds the object from all of them, a frame plan
# (service/live_frames.py) reads only the fields its subscription selects.
SITE_EVENT_FIELDS: dict[str, Callable[[Change], Any]] = {
    "cursor": attrgetter("cursor"), "id": attrgetter("id"), "site_id": attrgetter("site_id"), "type": attrgetter("type"),
    "subject_id": _subject_id, "entity": attrgetter("entity"), "entity_ids": attrgetter("entity_ids"),
    "version": attrgetter("version"), "tombstone": attrgetter("tombstone"),
    "data": lambda change: strawberry.scalars.JSON(change.data), "at": attrgetter("at"),
}


def site_event(change: Change) -> SiteEvent:
    return SiteEvent(**{name: read(change) for name, read in SITE_EVENT_FIELDS.items()})


def _types(principal: Principal, names: Sequence[str] | None, site_ids: list[UUID] | None) -> frozenset[str]:
    scope = policy.event_scope(principal)
    wanted = changes.wanted_types(names)
    # Events of no site come only with every site (the command role without siteIds).
    return changes.select_types(scope.site_types if site_ids is not None else scope.site_types | scope.global_types, wanted)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        permission_classes=[policy.gql("events.subscribe")],
        description=(
            "Changes committed at the given sites (default: all of the caller's sites), on any instance, as they "
            "happen: the events the caller may read (as `changes`), `types` keeping only those event types or domains. "
            "With `after` (a cursor from an event, or from `changes`), first every change since that cursor, then "
            "live, without a gap or a duplicate; each event carries its `cursor`. A site the caller may not see is an "
            "error before anything streams; if Redis is unreachable the stream ends with code "
            "`live_updates_unavailable`: subscribe again with the cursor of the last event applied."
        ),
    )
    async def site_events(
        self, info: Ctx, site_ids: list[UUID] | None = None, types: list[str] | None = None, after: str | None = None
    ) -> AsyncGenerator[SiteEvent, None]:
        # The per-subscriber path: documents the frame plans do not cover (service/live_frames.py).
        async with contextlib.aclosing(_open(info.context, None, site_ids, types, after)) as items:
            async for change in items:
                yield site_event(cast(Change, change))


def site_event_frames(
    ctx: Context, plan: Plan, site_ids: list[UUID] | None, types: list[str] | None, after: str | None
) -> AsyncGenerator[Change | str, None]:
    """``siteEvents`` as the JSON text of each ``next`` payload, rendered by ``plan`` (shared between subscribers)."""
    return _open(ctx, plan, site_ids, types, after)


async def _open(
    ctx: Context, plan: Plan | None, site_ids: list[UUID] | None, types: list[str] | None, after: str | None
) -> AsyncGenerator[Change | str, None]:
    """What both paths share: the caller's scope and types checked before anything streams, errors coded."""
    principal = ctx.require_principal()
    try:
        if after is not None:
            bus.cursor_position(after)
        scope = await resolve_scope(ctx.db, principal, site_ids)
        wanted = _types(principal, types, scope)
        # The stream ends when the caller's token does: the app subscribes again with a fresh one.
        deadline = None if ctx.expires_at is None else asyncio.get_running_loop().time() + ctx.expires_at - time.time()
        async with asyncio.timeout_at(deadline):
            source: AsyncGenerator[Change, None] | AsyncGenerator[str, None] = (
                changes_after(ctx.db, principal, scope, wanted, after) if plan is None
                else frames_after(ctx.db, principal, scope, wanted, after, plan)
            )
            async with contextlib.aclosing(source) as items:
                async for item in items:
                    yield item
    except TimeoutError:
        raise _error(Unauthorized("The access token expired; subscribe again with a fresh one.", code="token_expired")) from None
    except DomainError as exc:
        raise _error(exc) from None
