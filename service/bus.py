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
from collections.abc import Awaitable, Callable, Iterator
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
    by_channel: dict[str, list[Event]] = {}
    for event in events:
        by_channel.setdefault(channel(cache, event.site_id), []).append(event)
    cache.publish_soon([(name, _encode_events(batch)) for name, batch in by_channel.items()])


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

_FEED = """
SELECT txid::text AS txid, id, site_id, type, subject_id, data, actor, at
FROM events
WHERE (txid, id) > ($1::xid8, $2::bigint)
  AND txid < $6::xid8
  AND ($3::uuid[] IS NULL OR site_id = ANY($3::uuid[]))
  AND ($4::text[] IS NULL OR type = ANY($4::text[]))
ORDER BY txid, id
LIMIT $5
"""


class EventPage(msgspec.Struct):
    events: list[Event]
    next_cursor: str


def _encode_cursor(txid: str, event_id: int) -> str:
    return base64.urlsafe_b64encode(f"{txid}:{event_id}".encode()).decode().rstrip("=")


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


async def read_events(
    conn: asyncpg.Connection,
    *,
    cursor: str | None,
    limit: int,
    site_ids: list[UUID] | None,
    types: list[str] | None = None,
) -> EventPage:
    """Committed events after ``cursor``, oldest first; ``next_cursor`` resumes where this page ended."""
    txid, after_id = _decode_cursor(cursor)
    horizon = await conn.fetchval(_HORIZON)
    rows = await conn.fetch(_FEED, txid, after_id, site_ids, types, limit, horizon)
    events = [Event(**{k: v for k, v in row.items() if k != "txid"}) for row in rows]
    next_cursor = _encode_cursor(rows[-1]["txid"], rows[-1]["id"]) if rows else (cursor or _encode_cursor("0", 0))
    return EventPage(events=events, next_cursor=next_cursor)


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
