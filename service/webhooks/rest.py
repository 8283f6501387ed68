"""REST: webhooks for any integration, for the event types or domains the caller may read.

``webhook_controller`` builds the routes of a webhook API (register, list, deliveries, remove) over
its service functions, for this API and for a domain's façade over it (``/supplies/webhooks``):
one piece of code, each API with its own path, policy, types and descriptions in the contract.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol
from uuid import UUID

import asyncpg
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Body

from service import idempotency, policy
from service.access.model import Principal
from service.db import Database
from service.http import LimitParam
from service.settings import Settings
from service.webhooks import service
from service.webhooks.model import Delivery, EventWebhook, EventWebhookCreate, EventWebhookCreated


class WebhookApi(Protocol):
    """What a webhook API's service module offers (service/webhooks/service.py, service/supplies/webhooks.py)."""

    OPERATION: str

    async def register(self, conn: asyncpg.Connection, principal: Principal, settings: Settings, data: Any) -> Any: ...

    async def list_webhooks(self, conn: asyncpg.Connection, principal: Principal) -> Any: ...

    async def deliveries(self, conn: asyncpg.Connection, principal: Principal, webhook_id: UUID, limit: int) -> list[Delivery]: ...

    async def delete(self, conn: asyncpg.Connection, principal: Principal, webhook_id: UUID) -> None: ...


def webhook_controller(
    name: str,
    api: WebhookApi,
    *,
    path: str,
    tag: str,
    create: type,
    webhook: type,
    created: type,
    register_doc: str,
    list_doc: str | None = None,
) -> type[Controller]:
    """A controller ``name`` at ``path`` serving ``api``: ``create`` registers, answering ``created`` (the
    secret shown once); the list answers ``webhook`` items; deliveries and remove are the same for every API."""

    async def register(self: Controller, request: Request, db: Database, settings: Settings, principal: Principal, data: Any) -> Any:
        return await idempotency.respond(request, db, principal.ref, lambda conn: api.register(conn, principal, settings, data))

    async def list_webhooks(self: Controller, db: Database, principal: Principal) -> Any:
        async with db.connection() as conn:
            return await api.list_webhooks(conn, principal)

    async def deliveries(self: Controller, db: Database, principal: Principal, webhook_id: UUID, limit: Annotated[int, LimitParam] = 50) -> list[Delivery]:
        """The latest deliveries of one of the caller's webhooks, newest first."""
        async with db.connection() as conn:
            return await api.deliveries(conn, principal, webhook_id, limit)

    async def remove(self: Controller, db: Database, principal: Principal, webhook_id: UUID) -> None:
        async with db.transaction() as conn:
            await api.delete(conn, principal, webhook_id)

    # The contract shows each API's own input, answers and descriptions: set on the handlers before
    # Litestar reads their signatures (the other annotations resolve from this module).
    register.__doc__, list_webhooks.__doc__ = register_doc, list_doc
    register.__annotations__ |= {"data": Annotated[create, Body()], "return": Response[created]}  # type: ignore[valid-type]
    list_webhooks.__annotations__ |= {"return": list[webhook]}  # type: ignore[valid-type]
    handlers = {
        "register": post("/", status_code=201)(register),
        "list_webhooks": get("/")(list_webhooks),
        "deliveries": get("/{webhook_id:uuid}/deliveries")(deliveries),
        "remove": delete("/{webhook_id:uuid}", status_code=204)(remove),
    }
    return type(name, (Controller,), {"path": path, "tags": [tag], "opt": policy.rest(api.OPERATION), **handlers})


EventWebhookController = webhook_controller(
    "EventWebhookController",
    service,
    path="/webhooks",
    tag="webhooks",
    create=EventWebhookCreate,
    webhook=EventWebhook,
    created=EventWebhookCreated,
    register_doc="""Register an HTTPS URL for outbox event types (`transfers.dispatched`) or domains (`transfers`).

        Each must name an event the caller may read (422 ``webhook_event_not_allowed``); the webhook
        then hears what the caller's change feed (``GET /changes``) shows, with the same scoping of
        sites, facility and data. The answer holds the signing secret, shown this once. Deliveries
        carry ``X-Qsite-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``. URLs
        resolving to private, loopback, link-local or metadata addresses are refused (422).
        """,
    list_doc="""The caller's active webhooks, whichever API registered them (events as outbox types).""",
)

ROUTES: list[type[Controller]] = [EventWebhookController]
