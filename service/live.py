"""Live updates: committed outbox events streamed to GraphQL subscribers over WebSocket.

Every instance publishes the events of its commits on ``<prefix>site:<site_id>``
(service/bus.py), so a subscriber connected to any instance sees the writes
made on all of them. Each subscription holds one Redis pub/sub connection,
closed when the client completes the operation or disconnects.

Pub/sub delivers at most once: events published while a client is not
subscribed are not replayed. An app that (re)subscribes re-reads what it shows
after the subscription is up; integrations use the durable feeds instead.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator
from datetime import datetime
from uuid import UUID

import msgspec
import strawberry
from graphql import GraphQLError
from redis.exceptions import RedisError

from service import bus
from service.access.model import Principal
from service.cache import Cache
from service.db import Database
from service.errors import DomainError, InvalidInput, NotFound, Unauthorized
from service import policy
from service.gql import Ctx
from service.sites import service as sites

log = logging.getLogger("qsite.live")

_REDIS_FAILURES = (RedisError, OSError, TimeoutError)
_GLOB_SPECIALS = re.compile(r"([*?\[\]\\])")
MAX_SITES = 200
MAX_TYPES = 50


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


async def events(cache: Cache, site_ids: list[UUID] | None, types: frozenset[str] | None) -> AsyncGenerator[bus.Event, None]:
    """Committed events of ``site_ids`` (every site when None) as Redis delivers them.

    Raises LiveUnavailable when Redis cannot be reached or drops the connection
    for good (redis-py reconnects and resubscribes once on its own).
    """
    pubsub = cache.client.pubsub(ignore_subscribe_messages=True)
    try:
        try:
            if site_ids is None:
                await pubsub.psubscribe(_GLOB_SPECIALS.sub(r"\\\1", cache.key("site")) + "*")
            else:
                await pubsub.subscribe(*(bus.channel(cache, site_id) for site_id in site_ids))
        except _REDIS_FAILURES as exc:
            log.warning("live subscribe failed", extra={"event": "live_unavailable", "subject": type(exc).__name__})
            raise LiveUnavailable("Live updates are unavailable right now; refresh to see changes.") from None
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except _REDIS_FAILURES as exc:
                log.warning("live stream lost", extra={"event": "live_lost", "subject": type(exc).__name__})
                raise LiveUnavailable("Live updates were interrupted; refresh and subscribe again.") from None
            if message is None or message["type"] not in ("message", "pmessage"):
                continue
            try:
                event = msgspec.json.decode(message["data"], type=bus.Event)
            except msgspec.DecodeError:  # not one of ours: skip rather than end the stream
                log.warning("undecodable live message skipped", extra={"event": "live_bad_message"})
                continue
            if types is None or event.type in types:
                yield event
    finally:
        try:
            await pubsub.aclose()
        except _REDIS_FAILURES:  # the connection is gone already
            pass


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
    return SiteEvent(id=event.id, site_id=event.site_id, type=event.type, subject_id=event.subject_id, data=event.data, at=event.at)


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
