"""Live updates: committed outbox events streamed to GraphQL subscribers over WebSocket.

Every instance publishes the events of its commits on ``<prefix>site:<site_id>``
(service/bus.py), so a subscriber connected to any instance sees the writes
made on all of them. All subscriptions of an instance share its one Redis
pub/sub connection (``Cache.hub``): a site's channel is subscribed once while
any local subscriber wants it, each message is decoded once and fanned out in
process. The hub pings Redis every second; a hung, dead or paused Redis ends
every subscription with ``live_updates_unavailable`` within about two seconds.

Pub/sub delivers at most once: events published while a client is not
subscribed are not replayed. An app that (re)subscribes re-reads what it shows
after the subscription is up; integrations use the durable feeds instead.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import AsyncGenerator
from datetime import datetime
from uuid import UUID

import msgspec
import strawberry
from graphql import GraphQLError

from service import bus, policy
from service.access.model import Principal
from service.cache import Cache
from service.db import Database
from service.errors import DomainError, InvalidInput, NotFound, Unauthorized
from service.gql import Ctx
from service.sites import service as sites

log = logging.getLogger("qsite.live")

_GLOB_SPECIALS = re.compile(r"([*?\[\]\\])")
MAX_SITES = 200
MAX_TYPES = 50
MAX_BACKLOG = 1000  # events queued for one subscriber before it counts as too slow
SUBSCRIBE_TIMEOUT_S = 2.0


class LiveUnavailable(DomainError):
    status, default_code, title = 503, "live_updates_unavailable", "Live updates unavailable"


def _error(exc: DomainError) -> GraphQLError:
    # Subscriptions stream results past the schema's on_operation hook, so the
    # code the other errors get there is attached here.
    extensions = {"code": exc.code, **({"field": exc.field} if exc.field else {})}
    return GraphQLError(exc.message, original_error=exc, extensions=extensions)


async def resolve_scope(db: Database, principal: Principal, site_ids: list[UUID] | None) -> list[UUID] | None:
    """The sites to listen to (None = every site, by pattern); any id not visible to the caller is refused."""
    if site_ids is None:
        scope = principal.site_scope
        if scope is None:
            return None
        if not scope:
            raise InvalidInput("The caller is assigned to no site.", code="no_sites", field="siteIds")
        return sorted(scope)
    wanted = list(dict.fromkeys(site_ids))
    if not wanted:
        raise InvalidInput("siteIds, when given, names at least one site.", code="invalid_input", field="siteIds")
    if len(wanted) > MAX_SITES:
        raise InvalidInput(f"At most {MAX_SITES} sites per subscription.", code="invalid_input", field="siteIds")
    # Foreign and unknown ids look alike, as everywhere else; one query checks them all.
    async with db.connection() as conn:
        visible = await sites.get_sites(conn, principal, wanted)
    if any(site_id not in visible for site_id in wanted):
        raise NotFound("No such site.", code="site_not_found", field="siteIds")
    return wanted


class _Stream:
    """One subscription's share of the instance's pub/sub connection (a ``cache.Listener``)."""

    def __init__(self, types: frozenset[str] | None) -> None:
        self.types = types
        self.backlog: deque[bus.Event] = deque()
        self.failure: str | None = None
        self.up = asyncio.Event()
        self.wakeup = asyncio.Event()

    def ready(self) -> None:
        self.up.set()

    def deliver(self, channel: bytes, data: bytes) -> None:
        if self.failure is not None:
            return
        for event in _decode(data):
            if self.types is not None and event.type not in self.types:
                continue
            if len(self.backlog) >= MAX_BACKLOG:  # the client does not keep up: end rather than grow or drop silently
                self.failure = "subscriber too slow"
                self.backlog.clear()
                break
            self.backlog.append(event)
        self.wakeup.set()

    def lost(self) -> None:
        self.failure = "redis subscription lost"
        self.up.set()
        self.wakeup.set()


_last_decoded: tuple[bytes | None, list[bus.Event]] = (None, [])


def _decode(data: bytes) -> list[bus.Event]:
    """The hub hands one message (a commit's events at one site) to every interested stream in a
    row: decode it once for all of them."""
    global _last_decoded
    if _last_decoded[0] is data:
        return _last_decoded[1]
    try:
        events = bus.decode_message(data)
    except msgspec.DecodeError:  # not one of ours: skip rather than end the stream
        log.warning("undecodable live message skipped", extra={"event": "live_bad_message"})
        events = []
    _last_decoded = (data, events)
    return events


async def events(cache: Cache, site_ids: list[UUID] | None, types: frozenset[str] | None) -> AsyncGenerator[bus.Event, None]:
    """Committed events of ``site_ids`` (every site when None) as Redis delivers them.

    The stream shares the instance's one pub/sub connection (``cache.hub``). It
    raises LiveUnavailable when Redis is unavailable, or when the subscription
    breaks, hangs or falls behind (events may have been missed: the app re-reads).
    """
    if not cache.available:
        raise LiveUnavailable("Live updates are unavailable right now; refresh to see changes.")
    stream = _Stream(types)
    if site_ids is None:
        await cache.hub.join(stream, patterns=[_GLOB_SPECIALS.sub(r"\\\1", cache.key("site")) + "*"])
    else:
        await cache.hub.join(stream, channels=[bus.channel(cache, site_id) for site_id in site_ids])
    try:
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                await stream.up.wait()
        except TimeoutError:
            stream.lost()
        if stream.failure is not None:
            log.warning("live subscribe failed", extra={"event": "live_unavailable", "subject": stream.failure})
            raise LiveUnavailable("Live updates are unavailable right now; refresh to see changes.")
        while True:
            while stream.backlog:
                yield stream.backlog.popleft()
            if stream.failure is not None:
                log.warning("live stream lost", extra={"event": "live_lost", "subject": stream.failure})
                raise LiveUnavailable("Live updates were interrupted; refresh and subscribe again.")
            stream.wakeup.clear()
            await stream.wakeup.wait()
    finally:
        await cache.hub.leave(stream)


# --- GraphQL ----------------------------------------------------------------------


@strawberry.type(description="A committed change at a site, as recorded in the outbox.")
class SiteEvent:
    id: int = strawberry.field(description="The outbox event id (unique; not a resumable cursor).")
    site_id: UUID | None = strawberry.field(description="Null for events that concern no one site.")
    type: str = strawberry.field(description="`<domain>.<what_happened>`, e.g. `sites.room_updated`.")
    subject_id: UUID | None
    data: strawberry.scalars.JSON = strawberry.field(description="Event details; never personal data.")
    at: datetime


def site_event(event: bus.Event) -> SiteEvent:
    return SiteEvent(id=event.id, site_id=event.site_id, type=event.type, subject_id=event.subject_id, data=strawberry.scalars.JSON(event.data), at=event.at)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        permission_classes=[policy.gql("events.subscribe")],
        description=(
            "Events committed at the given sites (default: all of the caller's sites), on any instance, "
            "as they happen. `types` keeps only those event types. A site the caller may not see is an "
            "error before anything streams; if Redis is unreachable the stream ends with code "
            "`live_updates_unavailable`. Events are not replayed: re-read after (re)subscribing."
        ),
    )
    async def site_events(
        self, info: Ctx, site_ids: list[UUID] | None = None, types: list[str] | None = None
    ) -> AsyncGenerator[SiteEvent, None]:
        ctx = info.context
        principal = ctx.require_principal()
        try:
            if types is not None and (not types or len(types) > MAX_TYPES or not all(0 < len(t) <= 100 for t in types)):
                raise InvalidInput(f"types: 1 to {MAX_TYPES} names of at most 100 characters.", code="invalid_input", field="types")
            scope = await resolve_scope(ctx.db, principal, site_ids)
            # The stream ends when the caller's token does: the app subscribes again with a fresh one.
            deadline = None if ctx.expires_at is None else asyncio.get_running_loop().time() + ctx.expires_at - time.time()
            async with asyncio.timeout_at(deadline):
                async for event in events(ctx.cache, scope, frozenset(types) if types is not None else None):
                    yield site_event(event)
        except TimeoutError:
            raise _error(Unauthorized("The access token expired; subscribe again with a fresh one.", code="token_expired")) from None
        except DomainError as exc:
            raise _error(exc) from None
