"""REST: webhooks for any integration, for the event types or domains the caller may read."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Body

from service import idempotency, policy
from service.access.model import Principal
from service.db import Database
from service.http import LimitParam
from service.settings import Settings
from service.webhooks import service
from service.webhooks.model import Delivery, EventWebhook, EventWebhookCreate, EventWebhookCreated


class EventWebhookController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]
    opt = policy.rest(service.OPERATION)

    @post("/", status_code=201)
    async def register(
        self, request: Request, db: Database, settings: Settings, principal: Principal, data: Annotated[EventWebhookCreate, Body()]
    ) -> Response[EventWebhookCreated]:
        """Register an HTTPS URL for outbox event types (`transfers.dispatched`) or domains (`transfers`).

        Each must name an event the caller may read (422 ``webhook_event_not_allowed``); the webhook
        then hears what the caller's change feed (``GET /changes``) shows, with the same scoping of
        sites, facility and data. The answer holds the signing secret, shown this once. Deliveries
        carry ``X-Qsite-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``. URLs
        resolving to private, loopback, link-local or metadata addresses are refused (422).
        """
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.register(conn, principal, settings, data))

    @get("/")
    async def list_webhooks(self, db: Database, principal: Principal) -> list[EventWebhook]:
        """The caller's active webhooks, whichever API registered them (events as outbox types)."""
        async with db.connection() as conn:
            return await service.list_webhooks(conn, principal)

    @get("/{webhook_id:uuid}/deliveries")
    async def deliveries(self, db: Database, principal: Principal, webhook_id: UUID, limit: Annotated[int, LimitParam] = 50) -> list[Delivery]:
        """The latest deliveries of one of the caller's webhooks, newest first."""
        async with db.connection() as conn:
            return await service.deliveries(conn, principal, webhook_id, limit)

    @delete("/{webhook_id:uuid}", status_code=204)
    async def remove(self, db: Database, principal: Principal, webhook_id: UUID) -> None:
        async with db.transaction() as conn:
            await service.delete(conn, principal, webhook_id)


ROUTES = [EventWebhookController]
