"""The outbox: events written with the change, published to Redis after commit.

A domain calls ``emit(conn, ...)`` inside its transaction. The row lands in
``events`` atomically with the change it describes; ``Database.transaction``
publishes the collected events on ``<prefix>site:<site_id>`` once the commit
succeeded: ONE message per (commit, site), a JSON array of the commit's events at
that site in order (``decode_message`` reads it, and a lone event object too). Redis delivery is best effort (subscribers of a live app); the
``events`` table is the durable record that feeds, webhooks and audits read
with ``read_events``, whose cursor never skips a commit.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg
import msgspec

from service.errors import InvalidInput
from service.observability import current_request_id

if TYPE_CHECKING:
    from service.cache import Cache
    from service.db import Database

log = logging.getLogger("qsite.bus")


class Event(msgspec.Struct, frozen=True):
    id: int
    site_id: UUID | None
    type: str
    subject_id: UUID | None
    data: dict[str, Any]
    actor: str | None
    at: datetime


_pending: ContextVar[list[Event] | None] = ContextVar("pending_events", default=None)

_INSERT = """
INSERT INTO events (site_id, type, subject_id, data, actor, request_id)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, site_id, type, subject_id, data, actor, at
"""


async def emit(
    conn: asyncpg.Connection,
    type: str,
    *,
    site_id: UUID | None,
    subject_id: UUID | None = None,
    data: dict[str, Any] | None = None,
    actor: str | None = None,
) -> Event:
    """Record an event in the current transaction. ``type`` is ``<domain>.<what_happened>``."""
    row = await conn.fetchrow(_INSERT, site_id, type, subject_id, data or {}, actor, current_request_id())
    assert row is not None  # INSERT ... RETURNING answers its row
    event = Event(**dict(row))
    pending = _pending.get()
    if pending is not None:
        pending.append(event)
    return event


def track(events: list[Event]) -> None:
    """Events a domain inserted with its own set-based SQL: publish them after commit, as ``emit``'s are."""
    pending = _pending.get()
    if pending is not None:
        pending.extend(events)


def emitted() -> list[Event]:
    """The events the current transaction has emitted so far, oldest first (none outside ``Database.transaction``).

    ``syncWrites`` answers each queued write with the ids of the events it committed (the changes
    feed's ids), and a write that emitted none changed nothing: it is reported as replayed.
    """
    return list(_pending.get() or ())


@contextmanager
def collect() -> Iterator[list[Event]]:
    """Collect the events emitted in this context (used by ``Database.transaction``)."""
    pending: list[Event] = []
    token = _pending.set(pending)
    try:
        yield pending
    finally:
        _pending.reset(token)


def channel(cache: Cache, site_id: UUID | None) -> str:
    return cache.key("site", site_id or "global")


# In-process observers of committed events, called before the Redis publish: a
# domain's cache on this instance is current before the response leaves, while
# other instances learn of the change from the Redis channel.
Observer = Callable[["Cache", list[Event]], Awaitable[None]]
_observers: list[Observer] = []


def observe(observer: Observer) -> Observer:
    """Register ``observer(cache, events)`` to run after every commit that emitted events."""
    _observers.append(observer)
    return observer


async def publish(cache: Cache, events: list[Event]) -> None:
    """After a commit: its events to the observers, then to Redis, one message per site."""
    for observer in _observers:
        try:
            await observer(cache, events)
        except Exception:  # an observer is an accelerator: never fail the committed write
            log.exception("event observer failed", extra={"event": "observer_failed"})
    # One message per site of the commit (a batch of 500 check-ins is one PUBLISH, not 500: on
    # both ends the cost is per message), sent in the background with other commits' messages in
    # one pipelined round trip: the response does not wait for Redis. A failed publish is a gap.
    by_site: dict[UUID | None, list[Event]] = {}
    for event in events:
        by_site.setdefault(event.site_id, []).append(event)
    cache.publish_soon([(channel(cache, site_id), _encode_events(batch)) for site_id, batch in by_site.items()])


_encode_events = msgspec.json.Encoder().encode
_decode_message = msgspec.json.Decoder(list[Event] | Event).decode


def decode_message(data: bytes) -> list[Event]:
    """The events of one published message (raises msgspec.DecodeError for anything else)."""
    decoded = _decode_message(data)
    return decoded if isinstance(decoded, list) else [decoded]


# --- the durable feed -------------------------------------------------------
#
# Event ids come from a sequence, so a transaction that began early can commit
# an id lower than one already read. Ordering by (transaction id, event id) and
# reading only transactions below a horizon fixes that: any transaction that
# commits later has a transaction id at or above the horizon, hence after the
# cursor. The horizon (feed_horizon(), db/migrations/0009) counts only qsite's
# own transactions in this database, so a long transaction elsewhere on the
# server does not stall the feed. It is read in its own statement, BEFORE the
# feed statement takes its snapshot (read committed: one snapshot per statement).

_HORIZON = "SELECT feed_horizon()"

# One statement, bounded by what it returns. The events after the cursor are read in commit order
# from "lanes": index ranges that each lead with the filter (the whole feed; one site; one site and
# type; one type at every site; one type of the events of no site), each stopped by the page's
# LIMIT; the page is the first ``limit`` of their union. So a filter that matches few events never
# walks the events it does not match, and a page reads at most (lanes x limit) rows, whatever the
# history. Unused lanes get empty arrays (or a false flag) and cost nothing.
#
# The lanes are written so that only their own index can serve them (db/migrations/0022): the
# leading key is matched with ``= ANY(ARRAY[x])`` and repeated in ORDER BY. A plain ``= x`` would
# let the planner drop it from the ordering and walk (txid, id), whose perfect correlation with the
# table makes it look cheap, filtering out every other site's events on the way: the whole history
# after the cursor for a quiet site. The broad lanes' residual type filter (``type || ''``) is kept
# out of index conditions for the same reason.
_COLUMNS = "e.txid, e.id, e.site_id, e.type, e.subject_id, e.data, e.actor, e.at"
# The residual filter of a facility-scoped read (a hospital): events whose subject is the value $12, or
# whose data names it under one of the keys $13. Off ($12 NULL) for everyone else.
_AFTER = (
    "(e.txid, e.id) > ($1::xid8, $2::bigint) AND e.txid < $3::xid8"
    " AND ($12::text IS NULL OR e.subject_id::text = $12::text"
    " OR EXISTS (SELECT 1 FROM unnest($13::text[]) AS k(key) WHERE e.data ->> k.key = $12::text))"
)
_FEED = f"""
SELECT txid::text AS txid, id, site_id, type, subject_id, data, actor, at FROM (
    (SELECT {_COLUMNS} FROM events e
     WHERE $4::bool AND {_AFTER} AND ($5::text[] IS NULL OR e.type || '' = ANY($5::text[]))
     ORDER BY e.txid, e.id LIMIT $10)
    UNION ALL
    SELECT lane.* FROM unnest($6::uuid[]) AS s(site_id) CROSS JOIN LATERAL (
        SELECT {_COLUMNS} FROM events e
        WHERE e.site_id = ANY(ARRAY[s.site_id]) AND {_AFTER} AND ($5::text[] IS NULL OR e.type || '' = ANY($5::text[]))
        ORDER BY e.site_id, e.txid, e.id LIMIT $10) AS lane
    UNION ALL
    SELECT lane.* FROM unnest($7::uuid[]) AS s(site_id) CROSS JOIN unnest($8::text[]) AS t(type) CROSS JOIN LATERAL (
        SELECT {_COLUMNS} FROM events e
        WHERE e.site_id = ANY(ARRAY[s.site_id]) AND e.type = t.type AND {_AFTER}
        ORDER BY e.site_id, e.txid, e.id LIMIT $10) AS lane
    UNION ALL
    SELECT lane.* FROM unnest($9::text[]) AS t(type) CROSS JOIN LATERAL (
        SELECT {_COLUMNS} FROM events e
        WHERE e.type = ANY(ARRAY[t.type]) AND {_AFTER}
        ORDER BY e.type, e.txid, e.id LIMIT $10) AS lane
    UNION ALL
    SELECT lane.* FROM unnest($11::text[]) AS t(type) CROSS JOIN LATERAL (
        SELECT {_COLUMNS} FROM events e
        WHERE e.site_id IS NULL AND e.type = ANY(ARRAY[t.type]) AND {_AFTER}
        ORDER BY e.type, e.txid, e.id LIMIT $10) AS lane
) AS page
ORDER BY page.txid, page.id  -- qualified: the output column txid is text (and would sort as text)
LIMIT $10
"""

# A short list of types (a filter; the logistics role's, which leaves out the busy health events) is
# read one (site, type) range per type. A long one (a staff role's every type) is read one range per
# site with the types as a filter: the few types it leaves out are rare, reading past them is cheap.
NARROW_TYPES = 20


class EventPage(msgspec.Struct):
    events: list[Event]
    next_cursor: str
    more: bool = False  # more events were committed after this page


def _encode_cursor(txid: str, event_id: int) -> str:
    return base64.urlsafe_b64encode(f"{txid}:{event_id}".encode()).decode().rstrip("=")


def event_cursor(txid: str | int, event_id: int) -> str:
    """The feed cursor just after one event (what ``read_events`` hands out for it)."""
    return _encode_cursor(str(txid), event_id)


def cursor_position(cursor: str | None) -> tuple[int, int]:
    """(transaction id, event id) of a feed cursor: cursors compare by it."""
    return _decode_cursor(cursor)


def _decode_cursor(cursor: str | None) -> tuple[int, int]:
    if not cursor:
        return 0, 0
    try:
        txid, event_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":")
        txid_value, id_value = int(txid), int(event_id)
        if not (0 <= txid_value < 2**63 and 0 <= id_value < 2**63):
            raise ValueError(cursor)
        return txid_value, id_value
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("The cursor is not one this API issued.", code="invalid_cursor", field="cursor") from None


class FeedRow(msgspec.Struct, frozen=True):
    """An event as the feed read it, with its cursor."""

    event: Event
    cursor: str
    position: tuple[int, int] = (0, 0)  # what ``cursor_position(cursor)`` gives, without decoding it again


async def read_feed(
    conn: asyncpg.Connection,
    *,
    cursor: str | None,
    limit: int,
    site_ids: list[UUID] | None,
    types: Collection[str] | None = None,
    global_types: Collection[str] = (),
    horizon: int | None = None,
    naming: tuple[UUID, Sequence[str]] | None = None,
) -> tuple[list[FeedRow], bool]:
    """Committed events after ``cursor`` in commit order, each with its cursor, and whether more follow.

    ``site_ids`` None: every site and the events of no site; a list: those sites, plus the events
    of no site whose type is in ``global_types``. ``types`` None: every type; else only those.
    ``horizon``: one ``read_horizon`` taken earlier, for a reader that pages to a fixed point (one
    statement per page); without it the page reads the horizon first (two statements).
    ``naming`` (an id, data keys): only the events whose subject is that id or whose data names it
    under one of the keys (a hospital's facility). Such a read walks the matching types' events
    after the cursor until it has a page of those naming the id: bounded by the types' events, not
    by what it returns.
    """
    txid, after_id = _decode_cursor(cursor)
    wanted = None if types is None else sorted(set(types))
    if wanted is not None and not wanted:
        return [], False
    everything = site_ids is None and (wanted is None or len(wanted) > NARROW_TYPES)
    by_type = wanted if site_ids is None and not everything else []
    narrow = site_ids is not None and wanted is not None and len(wanted) <= NARROW_TYPES
    by_site = [] if site_ids is None or narrow else site_ids
    by_site_type = site_ids if narrow and site_ids is not None else []
    global_lanes = sorted(set(global_types) & set(wanted if wanted is not None else global_types)) if site_ids is not None else []
    residual = wanted if not narrow else None
    if horizon is None:
        horizon = await read_horizon(conn)
    rows = await conn.fetch(
        _FEED, txid, after_id, horizon, everything, residual, by_site, by_site_type, wanted if narrow else [], by_type, limit + 1, global_lanes,
        None if naming is None else str(naming[0]), [] if naming is None else list(naming[1]),
    )
    found = [  # by position (the columns of _FEED): a page of a replay is thousands of rows
        FeedRow(Event(event_id, site_id, type_, subject_id, data, actor, at), _encode_cursor(txid, event_id), (int(txid), event_id))
        for txid, event_id, site_id, type_, subject_id, data, actor, at in rows[:limit]
    ]
    return found, len(rows) > limit


async def read_horizon(conn: asyncpg.Connection) -> int:
    """The feed's horizon now. Every page read later with it sees every event below it: a
    transaction below it had finished when it was read, and a later statement's snapshot is newer."""
    return int(await conn.fetchval(_HORIZON))


async def read_events(
    conn: asyncpg.Connection,
    *,
    cursor: str | None,
    limit: int,
    site_ids: list[UUID] | None,
    types: Collection[str] | None = None,
    global_types: Collection[str] = (),
) -> EventPage:
    """Committed events after ``cursor``, oldest first; ``next_cursor`` resumes where this page ended."""
    rows, more = await read_feed(conn, cursor=cursor, limit=limit, site_ids=site_ids, types=types, global_types=global_types)
    next_cursor = rows[-1].cursor if rows else (cursor or _encode_cursor("0", 0))
    return EventPage(events=[r.event for r in rows], next_cursor=next_cursor, more=more)


async def feed_now(conn: asyncpg.Connection) -> str:
    """A cursor at the feed's current horizon: reading from it yields what commits from now on
    (and the few events, if any, that committed above a transaction still running)."""
    horizon = await conn.fetchval("SELECT feed_horizon()::text")
    return _encode_cursor(str(int(horizon) - 1), 2**63 - 1)


# --- retention ----------------------------------------------------------------------------

_PURGE = """
DELETE FROM events WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM events
    WHERE at < now() - make_interval(days => $1)
      AND ($2::xid8 IS NULL OR (txid, id) <= ($2::xid8, $3::bigint))
    LIMIT $4 FOR UPDATE SKIP LOCKED))
"""


async def purge_events(db: Database, *, days: int, keep_after: str | None, batch: int) -> int:
    """Retention: events older than ``days`` that no webhook still has to fan out.

    ``keep_after`` is the feed cursor of the webhook furthest behind (None: no webhook):
    nothing after it goes, whatever its age. Feed clients polling over REST keep their own
    cursors; they must read at least once every ``days`` days.
    """
    from service.db import purge_in_batches  # service.db imports this module

    txid, event_id = _decode_cursor(keep_after) if keep_after else (None, None)
    return await purge_in_batches(db, batch, lambda conn, n: conn.execute(_PURGE, days, txid, event_id, n))
