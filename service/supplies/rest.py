"""REST: supplies for logistics integrations and site tools."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.params import Body, Parameter

from service import idempotency, policy
from service.access.model import Principal
from service.access.rest import provide_principal
from service.cache import Cache
from service.db import Database
from service.http import (
    ETAG_HEADER,
    CursorParam,
    LimitParam,
    if_none_match,
    json_with_etag,
)
from service.pagination import Page
from service.settings import Settings
from service.supplies import service, versions, webhooks
from service.supplies.model import (
    Feed,
    Item,
    ItemCreate,
    LevelsUpdate,
    Movement,
    MovementCreate,
    Replenishment,
    ReplenishmentAck,
    ReplenishmentCancel,
    ReplenishmentCreate,
    ReplenishmentDispatch,
    ReplenishmentReceive,
    ReplenishmentState,
    StockLevels,
    StockRef,
    Transfer,
    TransferCreate,
    Webhook,
    WebhookCreate,
    WebhookCreated,
)
from service.webhooks.rest import webhook_controller

SiteFilter = Parameter(query="site_id", default=None, description="Sites to include (repeatable); default: all of the caller's.")


async def poll_stock(
    request: Request[Any, Any, Any], db: Database, cache: Cache, settings: Settings, principal: Principal, site_ids: list[UUID] | None
) -> Response[bytes]:
    """The logistics poll: 304 from the cached generations, 200 from the cached body, else PostgreSQL."""
    policy.require(principal, "supplies.stock.read")
    wanted = None if not site_ids else sorted({s for s in site_ids if principal.can_access_site(s)}, key=str)
    covered = principal.site_scope if wanted is None else wanted
    bucket = service.hour_bucket()
    query = "all" if wanted is None else "sites"
    # Versions first, rows after: the body is at least as new as its ETag says.
    etag = await versions.etag_for(db, covered, query=query, bucket=bucket.isoformat())
    if if_none_match(request, etag):
        return Response(b"", status_code=304, headers={ETAG_HEADER: etag})
    store = versions.bodies(db, settings)
    body = await store.get(etag)
    if body is None:
        async with db.connection() as conn:
            levels = await service.stock_levels(conn, principal, settings, site_ids=wanted, bucket=bucket)
        body = msgspec.json.encode(levels)
        store.put(etag, body)
    return Response(body, media_type="application/json", headers={ETAG_HEADER: etag})


class StockController(Controller):
    path = "/supplies"
    tags = ["supplies"]
    opt = policy.rest("supplies.stock.read")

    @get("/stock")
    async def stock_levels(self, request: Request, site_id: Annotated[list[UUID] | None, SiteFilter] = None) -> Response[StockLevels]:
        """Stock levels of one or many sites with days of cover and low-stock flags.

        Days of cover: quantity divided by the faster of the last 7 days' issues and the forecast
        (occupied beds, scheduled swabs, staff shifts, usage rules); recomputed at least hourly.
        Carries a strong ETag; send it back in ``If-None-Match`` for a 304 while nothing changed.
        """
        # The hot polling path: no dependency injection (it costs more than the answer itself).
        state = request.app.state
        principal = provide_principal(request)
        return await poll_stock(request, state.db, state.cache, state.settings, principal, site_id)  # type: ignore[return-value]

    @get("/items", opt=policy.rest("supplies.items.read"))
    async def list_items(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        limit: Annotated[int, LimitParam] = 50,
        cursor: Annotated[str | None, CursorParam] = None,
    ) -> Response[Page[Item]]:
        """The item catalogue, ordered by SKU."""
        async with db.connection() as conn:
            page = await service.list_items(conn, principal, cursor=cursor, limit=limit)
        return json_with_etag(request, page)

    @post("/items", opt=policy.rest("supplies.items.create"), status_code=201)
    async def create_item(self, request: Request, db: Database, principal: Principal, data: Annotated[ItemCreate, Body()]) -> Response[Item]:
        """Add an item to the catalogue (command centre)."""
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.create_item(conn, principal, data))

    @post("/movements", opt=policy.rest("supplies.stock.write"), status_code=201)
    async def record_movement(
        self, request: Request, db: Database, settings: Settings, principal: Principal, data: Annotated[MovementCreate, Body()]
    ) -> Response[Movement]:
        """Record a receipt, issue, adjustment or stocktake. ``id`` is the client's UUID: a replay is a no-op.

        Issuing more than is on hand answers 409 ``insufficient_stock`` with ``extra.available``.
        """
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.record_movement(conn, principal, settings, data))

    @post("/transfers", opt=policy.rest("supplies.stock.write"), status_code=201)
    async def transfer(
        self, request: Request, db: Database, settings: Settings, principal: Principal, data: Annotated[TransferCreate, Body()]
    ) -> Response[Transfer]:
        """Move stock between two of the caller's sites: both legs or neither."""
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.transfer(conn, principal, settings, data))

    @get("/sites/{site_id:uuid}/movements")
    async def list_movements(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        site_id: UUID,
        item_id: UUID | None = None,
        limit: Annotated[int, LimitParam] = 50,
        cursor: Annotated[str | None, CursorParam] = None,
    ) -> Response[Page[Movement]]:
        """The site's ledger, newest first."""
        async with db.connection() as conn:
            page = await service.list_movements(conn, principal, site_id, item_id=item_id, cursor=cursor, limit=limit)
        return json_with_etag(request, page)

    @patch("/sites/{site_id:uuid}/stock/{item_id:uuid}", opt=policy.rest("supplies.levels"))
    async def set_levels(
        self, db: Database, settings: Settings, principal: Principal, site_id: UUID, item_id: UUID, data: LevelsUpdate
    ) -> StockRef:
        """Set reorder and target levels; ``version`` is the stock version read (409 ``stale_version``)."""
        async with db.transaction() as conn:
            return await service.set_levels(conn, principal, settings, site_id, item_id, data)

    @get("/changes")
    async def changes(
        self,
        db: Database,
        principal: Principal,
        limit: Annotated[int, LimitParam] = 50,
        cursor: Annotated[str | None, CursorParam] = None,
    ) -> Feed:
        """Stock movements, level changes, low-stock crossings and replenishment state changes, oldest first.

        Resume with ``next_cursor``; the feed never skips a commit, even one that committed late.
        """
        async with db.connection() as conn:
            return await service.changes(conn, principal, cursor=cursor, limit=limit)


class ReplenishmentController(Controller):
    path = "/supplies/replenishments"
    tags = ["supplies"]
    opt = policy.rest("replenishments.read")

    @get("/")
    async def list_replenishments(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        site_id: UUID | None = None,
        states: Annotated[list[ReplenishmentState] | None, Parameter(query="state", default=None)] = None,
        limit: Annotated[int, LimitParam] = 50,
        cursor: Annotated[str | None, CursorParam] = None,
    ) -> Response[Page[Replenishment]]:
        """Replenishment requests of the caller's sites, newest first."""
        async with db.connection() as conn:
            page = await service.list_replenishments(conn, principal, site_id=site_id, states=states, cursor=cursor, limit=limit)
        return json_with_etag(request, page)

    @get("/{rep_id:uuid}")
    async def get_replenishment(self, request: Request, db: Database, principal: Principal, rep_id: UUID) -> Response[Replenishment]:
        async with db.connection() as conn:
            return json_with_etag(request, await service.get_replenishment(conn, principal, rep_id))

    @post("/", opt=policy.rest("replenishments.raise"), status_code=201)
    async def raise_replenishment(
        self, request: Request, db: Database, principal: Principal, data: Annotated[ReplenishmentCreate, Body()]
    ) -> Response[Replenishment]:
        """Site staff ask for supplies."""
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.raise_replenishment(conn, principal, data))

    @post("/{rep_id:uuid}/acknowledge", opt=policy.rest("replenishments.ship"), status_code=200)
    async def acknowledge(
        self, request: Request, db: Database, principal: Principal, rep_id: UUID, data: Annotated[ReplenishmentAck, Body()]
    ) -> Response[Replenishment]:
        return await idempotency.respond(
            request, db, principal.ref, lambda conn: service.acknowledge_replenishment(conn, principal, rep_id, data), status_code=200
        )

    @post("/{rep_id:uuid}/dispatch", opt=policy.rest("replenishments.ship"), status_code=200)
    async def dispatch(
        self, request: Request, db: Database, principal: Principal, rep_id: UUID, data: Annotated[ReplenishmentDispatch, Body()]
    ) -> Response[Replenishment]:
        """Ship it: a shipment reference and the quantity per item (default: as requested)."""
        return await idempotency.respond(
            request, db, principal.ref, lambda conn: service.dispatch_replenishment(conn, principal, rep_id, data), status_code=200
        )

    @post("/{rep_id:uuid}/receive", opt=policy.rest("replenishments.raise"), status_code=200)
    async def receive(
        self,
        request: Request,
        db: Database,
        settings: Settings,
        principal: Principal,
        rep_id: UUID,
        data: Annotated[ReplenishmentReceive, Body()],
    ) -> Response[Replenishment]:
        """Confirm the counts received: posts the receipts; short deliveries stay on the lines."""
        return await idempotency.respond(
            request, db, principal.ref, lambda conn: service.receive_replenishment(conn, principal, settings, rep_id, data), status_code=200
        )

    @post("/{rep_id:uuid}/cancel", opt=policy.rest("replenishments.cancel"), status_code=200)
    async def cancel(
        self, request: Request, db: Database, principal: Principal, rep_id: UUID, data: Annotated[ReplenishmentCancel, Body()]
    ) -> Response[Replenishment]:
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.cancel_replenishment(conn, principal, rep_id, data), status_code=200)


WebhookController = webhook_controller(
    "WebhookController",
    webhooks,
    path="/supplies/webhooks",
    tag="supplies",
    create=WebhookCreate,
    webhook=Webhook,
    created=WebhookCreated,
    register_doc="""Register an HTTPS URL for ``low_stock`` and/or ``replenishment`` events.

        The answer holds the signing secret, shown this once. Deliveries carry
        ``X-Qsite-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.
        URLs resolving to private, loopback, link-local or metadata addresses are refused (422).
        """,
)


ROUTES: list[type[Controller]] = [StockController, ReplenishmentController, WebhookController]
