"""Webhooks for every integration: registration, SSRF refusal, fan-out from the outbox, signed delivery.

A webhook hears the outbox event types or domains it names, limited to what its owner may read:
fan-out reads the feed as the change feed would for the owner (``service.changes.service.read_rows``:
the same ``policy.EVENT_READS`` rule, site and facility scope, and data scoping), so one rule decides
what a principal sees through the change feed, the live subscription and its webhooks. The owner is
kept as it registered (role, sites, facility). Domains offer their own registration on top of this
(``service/supplies/webhooks.py``: ``low_stock`` and ``replenishment``).

Delivery is a background job (one instance at a time, see service/jobs.py):

1. fan-out: each active webhook reads the outbox feed (``bus.read_feed``, which never skips a
   commit) from its own cursor and queues a delivery per event its owner may see;
2. delivery: due deliveries are POSTed, signed; failures retry with exponential backoff and are
   marked ``failed`` after ``webhook_max_attempts``.

Signature: ``X-Qsite-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.
Each webhook's secret is derived from ``webhook_signing_secret`` and its id: it is shown once at
registration and never stored.

Targets are resolved before registering and again before every attempt; any address that is not
globally routable (loopback, private, link-local -- which covers cloud metadata at
169.254.169.254 --, shared, reserved, multicast, and IPv6 forms that wrap such an IPv4 address:
mapped, translated, NAT64, 6to4, Teredo, IPv4-compatible; and site-local) is refused, and the
connection goes to the address that was checked (no second DNS lookup an attacker could rebind).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import asyncpg
import httpx
import msgspec

from service import bus, policy
from service.access.model import Principal, PrincipalKind, Role
from service.changes import service as changes
from service.db import Database, purge_in_batches
from service.errors import InvalidInput, NotFound
from service.settings import Settings
from service.webhooks import store
from service.webhooks.model import Delivery, EventWebhook, EventWebhookCreate, EventWebhookCreated

OPERATION = "webhooks.manage"
API = "webhooks"  # registered through /webhooks; a domain's own API names itself (``supplies``)

log = logging.getLogger("qsite.webhooks")

SIGNATURE_HEADER = "X-Qsite-Signature"
FAN_OUT_BATCH = 100
DELIVERY_BATCH = 50
MAX_BACKOFF_S = 3600
PARALLEL_DELIVERIES = 8


def signing_secret(settings: Settings, webhook_id: UUID) -> str:
    mac = hmac.new(settings.webhook_signing_secret.encode(), b"webhook:" + webhook_id.bytes, hashlib.sha256)
    return "whsec_" + base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance_s: int = 300, now: float | None = None) -> bool:
    """What a receiver does (documented for clients; used by the tests)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


# --- target checks --------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    url: str  # with the checked address in place of the host name
    host: str  # for the Host header and TLS server name
    scheme: str


def _refuse(reason: str) -> InvalidInput:
    return InvalidInput(f"The webhook URL is refused: {reason}.", code="webhook_url_refused", field="url")


# IPv6 forms that carry an IPv4 address a gateway may deliver to: the IPv4 address decides.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use prefix, /48 layout
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 SIIT
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d (covers :: and ::1 too)
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # deprecated, but still routed inside some networks


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 address(es) an IPv6 transition form leads to, or None for a plain IPv6 address."""
    value = int(ip)
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _IPV4_TRANSLATED or ip in _NAT64 or ip in _IPV4_COMPATIBLE:
        return [ipaddress.IPv4Address(value & 0xFFFFFFFF)]
    if ip in _NAT64_LOCAL:  # bits 48-63 and 72-87 (bits 64-71 are the reserved "u" octet)
        return [ipaddress.IPv4Address(((value >> 64) & 0xFFFF) << 16 | ((value >> 40) & 0xFFFF))]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)  # server and (de-obfuscated) client
    return None


def routable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable unicast, judged on the embedded IPv4 address for IPv6 transition forms."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _SITE_LOCAL:
            return False
        inner = embedded_ipv4(ip)
        if inner is not None:
            return all(routable(address) for address in inner)
    return ip.is_global and not ip.is_multicast


async def resolve_target(url: str, settings: Settings) -> Target:
    """Check ``url`` and pin it to one vetted address; InvalidInput ``webhook_url_refused`` otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refuse("not a valid URL") from None
    allowed_schemes = ("https", "http") if settings.webhook_allow_private else ("https",)
    if parts.scheme not in allowed_schemes:
        raise _refuse("it must use https")
    if not parts.hostname or parts.username or parts.password:
        raise _refuse("it needs a host name and no credentials")
    host = parts.hostname
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except (socket.gaierror, UnicodeError):
        raise _refuse("its host does not resolve") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise _refuse("its host does not resolve")
    if not settings.webhook_allow_private and not all(routable(a) for a in addresses):
        raise _refuse("it resolves to a private, loopback, link-local or reserved address")
    pinned = addresses[0]
    netloc = (f"[{pinned}]" if pinned.version == 6 else str(pinned)) + (f":{port}" if port else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return Target(url=urlunsplit(parts._replace(netloc=netloc)), host=host_header, scheme=parts.scheme)


# --- registration -----------------------------------------------------------------------


class Registered(msgspec.Struct, kw_only=True):
    """A webhook as stored: ``events`` are outbox event types or domains, ``api`` where it was registered."""

    id: UUID
    url: str
    events: list[str]
    api: str
    active: bool
    created_at: Any


def _not_allowed(name: str) -> InvalidInput:
    return InvalidInput(
        f"{name}: no event the caller may read (see the change feed's visibility).", code="webhook_event_not_allowed", field="events"
    )


async def register_events(
    conn: asyncpg.Connection, principal: Principal, settings: Settings, *, url: str, events: Sequence[str], api: str = API
) -> tuple[Registered, str]:
    """Register ``url`` for ``events`` (types or domains); each must name an event the caller may read.

    Returns the webhook and its signing secret (shown once). The caller's operation is checked by
    the API it comes through (``webhooks.manage`` here).
    """
    names = changes.wanted_types(events, field="events") or []
    scope = policy.event_scope(principal)
    for name in names:
        if not changes.select_types(scope.site_types, [name]):
            raise _not_allowed(name)
    await resolve_target(url, settings)
    row = await store.insert_webhook(
        conn,
        id=uuid.uuid4(),
        owner=principal.ref,
        owner_role=principal.role.value,
        site_ids=None if principal.site_ids is None else sorted(principal.site_ids),
        facility_id=principal.facility_id,
        url=url,
        events=names,
        api=api,
        feed_cursor=await bus.feed_now(conn),  # a new webhook hears what follows
    )
    webhook = msgspec.convert(dict(row), Registered)
    await bus.emit(
        conn, f"{api}.webhook_registered", site_id=None, subject_id=webhook.id, actor=principal.ref, data={"events": webhook.events}
    )
    return webhook, signing_secret(settings, webhook.id)


async def list_registered(conn: asyncpg.Connection, principal: Principal, api: str | None) -> list[Registered]:
    return [msgspec.convert(dict(r), Registered) for r in await store.list_webhooks(conn, principal.ref, api)]


async def remove(conn: asyncpg.Connection, principal: Principal, webhook_id: UUID, api: str | None) -> None:
    """Deactivate one of the caller's webhooks (``api``: only one registered through it; None: any)."""
    removed_api = await store.deactivate_webhook(conn, webhook_id, principal.ref, api)
    if removed_api is None:
        raise NotFound("No such webhook.", code="webhook_not_found")
    await bus.emit(conn, f"{removed_api}.webhook_removed", site_id=None, subject_id=webhook_id, actor=principal.ref)


async def delivery_history(conn: asyncpg.Connection, principal: Principal, webhook_id: UUID, limit: int, api: str | None) -> list[Delivery]:
    rows = await store.list_deliveries(conn, webhook_id, principal.ref, api, limit)
    if not rows and not await store.owns_webhook(conn, webhook_id, principal.ref, api):
        raise NotFound("No such webhook.", code="webhook_not_found")
    return rows


def _public(webhook: Registered) -> EventWebhook:
    return EventWebhook(id=webhook.id, url=webhook.url, events=webhook.events, active=webhook.active, created_at=webhook.created_at)


# The /webhooks API: any event type or domain the caller may read.


async def register(conn: asyncpg.Connection, principal: Principal, settings: Settings, data: EventWebhookCreate) -> EventWebhookCreated:
    policy.require(principal, OPERATION)
    webhook, secret = await register_events(conn, principal, settings, url=data.url, events=data.events)
    return EventWebhookCreated(webhook=_public(webhook), secret=secret)


async def list_webhooks(conn: asyncpg.Connection, principal: Principal) -> list[EventWebhook]:
    """Every active webhook of the caller, whichever API registered it (events as stored: types or domains)."""
    policy.require(principal, OPERATION)
    return [_public(w) for w in await list_registered(conn, principal, None)]


async def delete(conn: asyncpg.Connection, principal: Principal, webhook_id: UUID) -> None:
    policy.require(principal, OPERATION)
    await remove(conn, principal, webhook_id, None)


async def deliveries(conn: asyncpg.Connection, principal: Principal, webhook_id: UUID, limit: int) -> list[Delivery]:
    policy.require(principal, OPERATION)
    return await delivery_history(conn, principal, webhook_id, limit, None)


# --- the job ----------------------------------------------------------------------------


def owner_of(hook: asyncpg.Record) -> Principal:
    """The webhook's owner as it registered: what it may read decides what the webhook hears."""
    kind, _, owner_id = str(hook["owner"]).partition(":")
    return Principal(
        kind=PrincipalKind(kind),
        id=UUID(owner_id),
        role=Role(hook["owner_role"]),
        site_ids=None if hook["site_ids"] is None else frozenset(hook["site_ids"]),
        facility_id=hook["facility_id"],
    )


def payload_of(row: bus.FeedRow, owner: Principal) -> dict[str, Any]:
    """The delivered JSON: the event as its owner's change feed shows it (data scoped to the owner)."""
    change = changes.to_change(row, owner)
    return {
        "id": change.id,
        "type": change.type,
        "site_id": change.site_id,
        "subject_id": row.event.subject_id,
        "data": change.data,
        "at": change.at,
        "cursor": change.cursor,
        "entity": change.entity,
        "entity_id": change.entity_id,
        "entity_ids": change.entity_ids,
        "version": change.version,
        "tombstone": change.tombstone,
    }


async def fan_out(db: Database) -> int:
    """Queue a delivery for each new event each active webhook's owner may see; returns how many."""
    queued = 0
    async with db.transaction() as conn:
        await store.deactivate_ownerless(conn)
        hooks = [r async for r in store.lock_active_webhooks(conn)]
        for hook in hooks:
            owner = owner_of(hook)
            rows, _ = await changes.read_rows(conn, owner, after=hook["feed_cursor"], names=hook["events"], limit=FAN_OUT_BATCH)
            for row in rows:
                payload = msgspec.to_builtins(payload_of(row, owner))
                await store.insert_delivery(conn, webhook_id=hook["id"], event_id=row.event.id, event_type=row.event.type, payload=payload)
                queued += 1
            if rows:
                await store.advance_cursor(conn, hook["id"], rows[-1].cursor)
            elif not changes.visible_types(owner, hook["events"]):
                # Nothing it may hear (its owner's role lost the reads): keep retention from waiting on it.
                await store.advance_cursor(conn, hook["id"], await bus.feed_now(conn))
    return queued


async def _attempt(client: httpx.AsyncClient, settings: Settings, row: asyncpg.Record) -> tuple[int | None, str | None]:
    """POST one delivery; (status, error). Never raises."""
    try:
        target = await resolve_target(row["url"], settings)
    except InvalidInput as exc:
        return None, exc.message
    body = msgspec.json.encode(row["payload"])
    secret = signing_secret(settings, row["webhook_id"])
    headers = {
        "Host": target.host,
        "Content-Type": "application/json",
        "User-Agent": "qsite-webhooks/1",
        "X-Qsite-Event": row["event_type"],
        "X-Qsite-Delivery": str(row["id"]),
        SIGNATURE_HEADER: sign(secret, int(time.time()), body),
    }
    extensions = {"sni_hostname": target.host.rsplit(":", 1)[0].strip("[]")} if target.scheme == "https" else {}
    try:
        response = await client.post(target.url, content=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        return None, type(exc).__name__
    return response.status_code, None if response.is_success else f"HTTP {response.status_code}"


async def deliver_due(db: Database, settings: Settings) -> int:
    """Attempt every due delivery once; returns how many succeeded."""
    async with db.connection() as conn:
        due = await store.due_deliveries(conn, DELIVERY_BATCH)
    if not due:
        return 0
    gate = asyncio.Semaphore(PARALLEL_DELIVERIES)
    # No redirects: a redirect could lead to an address that was never checked.
    async with httpx.AsyncClient(timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False) as client:

        async def one(row: asyncpg.Record) -> tuple[asyncpg.Record, int | None, str | None]:
            async with gate:
                return (row, *await _attempt(client, settings, row))

        results = await asyncio.gather(*(one(r) for r in due))
    ok = 0
    async with db.connection() as conn:
        for row, status, error in results:
            if error is None:
                await store.delivery_succeeded(conn, row["id"], status)
                ok += 1
            else:
                backoff = min(MAX_BACKOFF_S, 2 ** row["attempts"] * 5)
                await store.delivery_failed(
                    conn, row["id"], status=status, error=error[:500], max_attempts=settings.webhook_max_attempts, backoff_s=backoff
                )
    return ok


async def run(db: Database, settings: Settings) -> None:
    """The periodic job: fan out new events, then deliver what is due."""
    await fan_out(db)
    await deliver_due(db, settings)


# --- retention --------------------------------------------------------------------------


async def purge_deliveries(db: Database, settings: Settings) -> int:
    """Retention: deliveries delivered or failed more than ``webhook_delivery_retention_days`` ago."""
    days = settings.webhook_delivery_retention_days
    return await purge_in_batches(db, settings.retention_batch_size, lambda conn, n: store.purge_deliveries(conn, days=days, batch=n))


async def oldest_cursor(conn: asyncpg.Connection) -> str | None:
    """The feed cursor of the active webhook furthest behind: events after it are still to fan out."""
    cursors = await store.active_cursors(conn)
    return min(cursors, key=bus.cursor_position) if cursors else None
