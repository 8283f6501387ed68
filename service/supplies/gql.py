"""GraphQL: a site's stock with days of cover, movements, replenishment (staff apps)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import strawberry

from service import policy
from service.access.model import Principal
from service.gql import Connection, Context, Ctx, OfflineWrite, Prepared, UserError, connection_of, mutate_input, perform, prepare, to_gql
from service.pagination import Page
from service.supplies import service
from service.supplies.model import (
    Category,
    MovementCreate,
    MovementKind,
    ReplenishmentCreate,
    ReplenishmentReceive,
    ReplenishmentState,
    TransferCreate,
    UsageRule,
)
from service.supplies.model import Movement as MovementModel
from service.supplies.model import Replenishment as ReplenishmentModel
from service.supplies.model import Transfer as TransferModel

strawberry.enum(Category, name="SupplyCategory")  # registers Category itself
SupplyCategory = Category
strawberry.enum(UsageRule, name="SupplyUsageRule")  # registers UsageRule itself
SupplyUsageRule = UsageRule
strawberry.enum(MovementKind, name="StockMovementKind")  # registers MovementKind itself
StockMovementKind = MovementKind
strawberry.enum(ReplenishmentState, name="ReplenishmentState")  # registers ReplenishmentState itself
ReplenishmentStateGQL = ReplenishmentState


@strawberry.type(description="A catalogue item.")
class SupplyItem:
    id: UUID
    sku: str
    name: str
    unit: str
    category: SupplyCategory
    usage_rule: SupplyUsageRule
    usage_rate: float


async def _load_items(info: Ctx, ids: list[UUID]) -> list[SupplyItem | None]:
    async def batch(keys: list[UUID]) -> list[SupplyItem | None]:
        async with info.context.db.connection() as conn:
            found = await service.get_items(conn, list(keys))
        return [to_gql(SupplyItem, found[k]) if k in found else None for k in keys]

    loader = info.context.loader("supplies.item", batch)
    return list(await loader.load_many(ids))


@strawberry.type(description="One item's stock at a site, with days of cover (history vs forecast, whichever is sooner).")
class SupplyStockLevel:
    item_id: UUID
    sku: str
    name: str
    unit: str
    quantity: int
    reorder_level: int
    target_level: int
    version: int
    issued_last_7_days: int
    daily_usage_history: float
    daily_usage_forecast: float | None
    days_of_cover: float | None
    low: bool


@strawberry.type
class SupplySiteStock:
    site_id: UUID
    items: list[SupplyStockLevel]

    @strawberry.field(description="Items below the reorder level or under the configured days of cover.")
    def low_items(self) -> list[SupplyStockLevel]:
        return [i for i in self.items if i.low]


@strawberry.type
class StockMovement:
    id: UUID
    site_id: UUID
    item_id: UUID
    kind: StockMovementKind
    delta: int
    quantity_after: int
    reason: str
    counterpart_id: UUID | None
    replenishment_id: UUID | None
    recorded_at: datetime
    created_at: datetime

    @strawberry.field
    async def item(self, info: Ctx) -> SupplyItem | None:
        return (await _load_items(info, [self.item_id]))[0]


@strawberry.type
class ReplenishmentLine:
    item_id: UUID
    requested: int
    dispatched: int | None
    received: int | None
    short: int | None

    @strawberry.field
    async def item(self, info: Ctx) -> SupplyItem | None:
        return (await _load_items(info, [self.item_id]))[0]


@strawberry.type(description="A request for supplies: open -> acknowledged -> dispatched -> received, or cancelled.")
class Replenishment:
    id: UUID
    site_id: UUID
    state: ReplenishmentStateGQL
    origin: str
    note: str
    shipment_ref: str | None
    version: int
    created_at: datetime
    acknowledged_at: datetime | None
    dispatched_at: datetime | None
    received_at: datetime | None
    cancelled_at: datetime | None
    lines: list[ReplenishmentLine]


def _movement(m: MovementModel) -> StockMovement:
    return to_gql(StockMovement, m)


def _replenishment(r: ReplenishmentModel) -> Replenishment:
    return to_gql(Replenishment, r, lines=[to_gql(ReplenishmentLine, line) for line in r.lines])


@strawberry.input
class RecordStockMovementInput:
    id: UUID = strawberry.field(description="Client-generated: replaying the same movement is a no-op.")
    site_id: UUID
    item_id: UUID
    kind: str = strawberry.field(description="receipt, issue, adjustment or stocktake")
    quantity: int | None = None
    delta: int | None = None
    reason: str = ""
    recorded_at: datetime | None = None


@strawberry.input
class TransferStockInput:
    id: UUID
    from_site_id: UUID
    to_site_id: UUID
    item_id: UUID
    quantity: int
    reason: str = ""


@strawberry.input
class ReplenishmentLineInput:
    item_id: UUID
    quantity: int


@strawberry.input
class RaiseReplenishmentInput:
    site_id: UUID
    lines: list[ReplenishmentLineInput]
    note: str = ""
    id: UUID | None = None


@strawberry.input
class ReceiveReplenishmentInput:
    id: UUID
    version: int
    lines: list[ReplenishmentLineInput] = strawberry.field(
        default_factory=list, description="Counted quantity per item; items left out count as received in full."
    )


@strawberry.type
class StockMovementPayload:
    movement: StockMovement | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class StockTransferPayload:
    out: StockMovement | None = None
    incoming: StockMovement | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ReplenishmentPayload:
    replenishment: Replenishment | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[policy.gql("supplies.stock.read")], description="A site's stock; null when it is not one of the caller's.")
    async def site_stock(self, info: Ctx, site_id: UUID) -> SupplySiteStock | None:
        ctx = info.context
        principal = ctx.require_principal()
        if not principal.can_access_site(site_id) or principal.role not in service.READ_ROLES:
            return None
        async with ctx.db.connection() as conn:
            levels = await service.stock_levels(conn, principal, ctx.settings, site_ids=[site_id])
        if not levels.sites:
            return None
        return SupplySiteStock(site_id=site_id, items=[to_gql(SupplyStockLevel, i) for i in levels.sites[0].items])

    @strawberry.field(permission_classes=[policy.gql("supplies.items.read")], description="The item catalogue, by SKU.")
    async def supply_items(self, info: Ctx, first: int = 50, after: str | None = None) -> Connection[SupplyItem]:
        ctx = info.context
        async with ctx.db.connection() as conn:
            page = await service.list_items(conn, ctx.require_principal(), cursor=after, limit=first)
        return connection_of(page, lambda i: to_gql(SupplyItem, i), lambda i: [i.sku])

    @strawberry.field(permission_classes=[policy.gql("replenishments.read")], description="Replenishment requests of the caller's sites, newest first.")
    async def replenishments(
        self, info: Ctx, site_id: UUID | None = None, states: list[ReplenishmentStateGQL] | None = None, first: int = 50, after: str | None = None
    ) -> Connection[Replenishment]:
        ctx = info.context
        principal = ctx.require_principal()
        if principal.role not in service.READ_ROLES:
            return connection_of(Page(items=[], next_cursor=None), _replenishment, list)
        async with ctx.db.connection() as conn:
            page = await service.list_replenishments(
                conn, principal, site_id=site_id, states=[ReplenishmentState(s) for s in states] if states else None, cursor=after, limit=first
            )
        return connection_of(page, _replenishment, lambda r: [r.created_at.isoformat(), str(r.id)])

    @strawberry.field(permission_classes=[policy.gql("replenishments.read")], description="One replenishment request; null when not the caller's.")
    async def replenishment(self, info: Ctx, id: UUID) -> Replenishment | None:
        ctx = info.context
        async with ctx.db.connection() as conn:
            found = await service.get_replenishments(conn, ctx.require_principal(), [id])
        return _replenishment(found[id]) if id in found else None



@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[policy.gql("supplies.stock.write")], description="Receipt, issue, adjustment or stocktake.")
    async def record_stock_movement(self, info: Ctx, input: RecordStockMovementInput) -> StockMovementPayload:
        moved, errors = await perform(info, movement_write(info.context, info.context.require_principal(), input))
        return StockMovementPayload(movement=_movement(moved) if moved else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("supplies.stock.write")], description="Move stock between two sites atomically.")
    async def transfer_stock(self, info: Ctx, input: TransferStockInput) -> StockTransferPayload:
        ctx = info.context
        principal = ctx.require_principal()
        done, errors = await mutate_input(info, input, TransferCreate, TransferModel, lambda conn, data: service.transfer(conn, principal, ctx.settings, data))
        if done is None:
            return StockTransferPayload(user_errors=errors)
        return StockTransferPayload(out=_movement(done.out), incoming=_movement(done.in_))

    @strawberry.mutation(permission_classes=[policy.gql("replenishments.raise")], description="Ask logistics for supplies.")
    async def raise_replenishment(self, info: Ctx, input: RaiseReplenishmentInput) -> ReplenishmentPayload:
        rep, errors = await perform(info, raise_write(info.context, info.context.require_principal(), input))
        return ReplenishmentPayload(replenishment=_replenishment(rep) if rep else None, user_errors=errors)

    @strawberry.mutation(
        permission_classes=[policy.gql("replenishments.raise")],
        description="Confirm the counts of a dispatched delivery; posts the receipts.",
    )
    async def receive_replenishment(self, info: Ctx, input: ReceiveReplenishmentInput) -> ReplenishmentPayload:
        rep, errors = await perform(info, receive_write(info.context, info.context.require_principal(), input))
        return ReplenishmentPayload(replenishment=_replenishment(rep) if rep else None, user_errors=errors)


# --- writes, prepared once for their own mutation and for syncWrites (service/offline.py) ---------


def movement_write(ctx: Context, principal: Principal, input: RecordStockMovementInput) -> Prepared[MovementModel]:
    return prepare(input, MovementCreate, MovementModel, lambda conn, data: service.record_movement(conn, principal, ctx.settings, data))


def raise_write(ctx: Context, principal: Principal, input: RaiseReplenishmentInput) -> Prepared[ReplenishmentModel]:
    return prepare(input, ReplenishmentCreate, ReplenishmentModel, lambda conn, data: service.raise_replenishment(conn, principal, data))


def receive_write(ctx: Context, principal: Principal, input: ReceiveReplenishmentInput) -> Prepared[ReplenishmentModel]:
    return prepare(
        input, ReplenishmentReceive, ReplenishmentModel,
        lambda conn, data: service.receive_replenishment(conn, principal, ctx.settings, input.id, data), leave_out=("id",),
    )


async def _level_now(conn: asyncpg.Connection, ctx: Context, principal: Principal, input: RecordStockMovementInput) -> SupplyStockLevel | None:
    """What a movement conflicts with (too little on hand, its id taken): the item's stock level at the site now."""
    if not principal.can_access_site(input.site_id):
        return None
    levels = await service.stock_levels(conn, principal, ctx.settings, site_ids=[input.site_id], item_ids=[input.item_id])
    found = [i for site in levels.sites for i in site.items if i.item_id == input.item_id]
    return to_gql(SupplyStockLevel, found[0]) if found else None


async def _replenishment_now(conn: asyncpg.Connection, ctx: Context, principal: Principal, input: Any) -> Replenishment | None:
    if input.id is None:
        return None
    found = await service.get_replenishments(conn, principal, [input.id])
    return _replenishment(found[input.id]) if input.id in found else None


OFFLINE_WRITES = {
    "record_stock_movement": OfflineWrite("supplies.stock.write", movement_write, _movement, _level_now),
    "raise_replenishment": OfflineWrite("replenishments.raise", raise_write, _replenishment, _replenishment_now),
    "receive_replenishment": OfflineWrite("replenishments.raise", receive_write, _replenishment, _replenishment_now),
}
