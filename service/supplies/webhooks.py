"""Logistics webhooks (``/supplies/webhooks``): ``low_stock`` and ``replenishment`` over the shared
webhooks of service/webhooks, which register, fan out, sign and deliver. What is supply-specific
is only which outbox event types each of these names stands for."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from service import policy
from service.access.model import Principal
from service.settings import Settings
from service.supplies.model import Webhook, WebhookCreate, WebhookCreated, WebhookEvent
from service.supplies.service import REPLENISHMENT_EVENTS
from service.webhooks import service as webhooks
from service.webhooks.model import Delivery

OPERATION = "supplies.webhooks"
API = "supplies"

EVENT_TYPES = {
    WebhookEvent.LOW_STOCK: ["supplies.low_stock"],
    WebhookEvent.REPLENISHMENT: REPLENISHMENT_EVENTS,
}


def _public(webhook: webhooks.Registered) -> Webhook:
    heard = set(webhook.events)
    events = [name for name, types in EVENT_TYPES.items() if heard & set(types)]
    return Webhook(id=webhook.id, url=webhook.url, events=events, active=webhook.active, created_at=webhook.created_at)


async def register(conn: asyncpg.Connection, principal: Principal, settings: Settings, data: WebhookCreate) -> WebhookCreated:
    policy.require(principal, OPERATION)
    types = sorted({t for e in data.events for t in EVENT_TYPES[e]})
    webhook, secret = await webhooks.register_events(conn, principal, settings, url=data.url, events=types, api=API)
    return WebhookCreated(webhook=_public(webhook), secret=secret)


async def list_webhooks(conn: asyncpg.Connection, principal: Principal) -> list[Webhook]:
    policy.require(principal, OPERATION)
    return [_public(w) for w in await webhooks.list_registered(conn, principal, API)]


async def delete(conn: asyncpg.Connection, principal: Principal, webhook_id: UUID) -> None:
    policy.require(principal, OPERATION)
    await webhooks.remove(conn, principal, webhook_id, API)


async def deliveries(conn: asyncpg.Connection, principal: Principal, webhook_id: UUID, limit: int) -> list[Delivery]:
    policy.require(principal, OPERATION)
    return await webhooks.delivery_history(conn, principal, webhook_id, limit, API)
