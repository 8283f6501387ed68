"""Webhooks for logistics clients: registration, SSRF refusal, signed delivery from the outbox.

Delivery is a background job (one instance at a time, see service/jobs.py):

1. fan-out: each active webhook reads the outbox feed (``bus.read_events``, which
   never skips a commit) from its own cursor and queues a delivery per matching event;
2. delivery: due deliveries are POSTed, signed; failures retry with exponential
   backoff and are marked ``failed`` after ``webhook_max_attempts``.

Signature: ``X-Qsite-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.
Each webhook's secret is derived from ``webhook_signing_secret`` and its id: it is
shown once at registration and never stored.

Targets are resolved before registering and again before every attempt; any
address that is not globally routable (loopback, private, link-local -- which
covers cloud metadata at 169.254.169.254 --, shared, reserved, multicast, and
IPv6 forms that wrap such an IPv4 address: mapped, translated, NAT64, 6to4, Teredo,
IPv4-compatible; and site-local) is refused, and the connection goes to the address that was checked (no second
DNS lookup an attacker could rebind).
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
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import asyncpg
import httpx
import msgspec

from service import bus, policy
from service.access.model import Principal
from service.db import Database, purge_in_batches, queries
from service.errors import InvalidInput, NotFound
from service.settings import Settings
from service.supplies import store
from service.supplies.model import Delivery, Webhook, WebhookCreate, WebhookCreated, WebhookEvent
from service.supplies.service import REPLENISHMENT_EVENTS, _require

WEBHOOK_ROLES = policy.roles("webhooks.manage")

log = logging.getLogger("qsite.webhooks")
Q = queries("supplies")

EVENT_TYPES = {
    WebhookEvent.LOW_STOCK: ["supplies.low_stock"],
    WebhookEvent.REPLENISHMENT: REPLENISHMENT_EVENTS,
}
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


async def register(conn: asyncpg.Connection, principal: Principal, settings: Settings, data: WebhookCreate) -> WebhookCreated:
    _require(principal, WEBHOOK_ROLES, "register webhooks")
    await resolve_target(data.url, settings)
    webhook_id = uuid.uuid4()
    webhook = await store.insert_webhook(
        conn,
        id=webhook_id,
        owner=principal.ref,
        site_ids=principal.site_scope,
        url=data.url,
        events=sorted({e.value for e in data.events}),
        feed_cursor=await bus.feed_now(conn),  # a new webhook hears what follows
    )
    await bus.emit(
        conn, "supplies.webhook_registered", site_id=None, subject_id=webhook.id, actor=principal.ref,
        data={"events": [e.value for e in webhook.events]},
    )
    return WebhookCreated(webhook=webhook, secret=signing_secret(settings, webhook.id))


async def list_webhooks(conn: asyncpg.Connection, principal: Principal) -> list[Webhook]:
    _require(principal, WEBHOOK_ROLES, "read webhooks")
    return await store.list_webhooks(conn, principal.ref)


async def delete(conn: asyncpg.Connection, principal: Principal, webhook_id: UUID) -> None:
    _require(principal, WEBHOOK_ROLES, "remove webhooks")
    if not await store.deactivate_webhook(conn, webhook_id, principal.ref):
        raise NotFound("No such webhook.", code="webhook_not_found")
    await bus.emit(conn, "supplies.webhook_removed", site_id=None, subject_id=webhook_id, actor=principal.ref)


async def deliveries(conn: asyncpg.Connection, principal: Principal, webhook_id: UUID, limit: int) -> list[Delivery]:
    _require(principal, WEBHOOK_ROLES, "read webhooks")
    rows = [msgspec.convert(dict(r), Delivery) async for r in Q.list_deliveries(conn, webhook_id=webhook_id, owner=principal.ref, limit=limit)]
    if not rows and not any(w.id == webhook_id for w in await store.list_webhooks(conn, principal.ref)):
        raise NotFound("No such webhook.", code="webhook_not_found")
    return rows


# --- the job ----------------------------------------------------------------------------


async def fan_out(db: Database) -> int:
    """Queue a delivery for each new matching event of each active webhook; returns how many."""
    queued = 0
    async with db.transaction() as conn:
        hooks = [r async for r in Q.lock_active_webhooks(conn)]
        for hook in hooks:
            types = [t for e in hook["events"] for t in EVENT_TYPES[WebhookEvent(e)]]
            page = await bus.read_events(conn, cursor=hook["feed_cursor"], limit=FAN_OUT_BATCH, site_ids=hook["site_ids"], types=types)
            for event in page.events:
                payload = {
                    "id": event.id,
                    "type": event.type,
                    "site_id": event.site_id,
                    "subject_id": event.subject_id,
                    "data": event.data,
                    "at": event.at,
                }
                await Q.insert_delivery(
                    conn, webhook_id=hook["id"], event_id=event.id, event_type=event.type, payload=msgspec.to_builtins(payload)
                )
                queued += 1
            if page.next_cursor != hook["feed_cursor"]:
                await Q.advance_webhook_cursor(conn, id=hook["id"], feed_cursor=page.next_cursor)
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
        due = [r async for r in Q.due_deliveries(conn, limit=DELIVERY_BATCH)]
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
                await Q.delivery_succeeded(conn, id=row["id"], status=status)
                ok += 1
            else:
                backoff = min(MAX_BACKOFF_S, 2 ** row["attempts"] * 5)
                await Q.delivery_failed(
                    conn, id=row["id"], status=status, error=error[:500], max_attempts=settings.webhook_max_attempts, backoff_s=backoff
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
    return await purge_in_batches(db, settings.retention_batch_size, lambda conn, n: Q.purge_deliveries(conn, days=days, batch=n))


async def oldest_cursor(conn: asyncpg.Connection) -> str | None:
    """The feed cursor of the active webhook furthest behind: events after it are still to fan out."""
    cursors = [r["feed_cursor"] async for r in Q.active_webhook_cursors(conn)]
    return min(cursors, key=bus.cursor_position) if cursors else None
