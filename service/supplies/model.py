"""Supplies: read models, inputs and enums."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import msgspec

from service.fields import Int32, Version


class Category(StrEnum):
    PPE = "ppe"
    TESTING = "testing"
    DISINFECTION = "disinfection"
    MEDICINE = "medicine"
    FOOD = "food"
    DAILY_NECESSITIES = "daily_necessities"


class UsageRule(StrEnum):
    """How the forecast turns site activity into daily usage of an item."""

    PER_OCCUPIED_BED_DAY = "per_occupied_bed_day"
    PER_SWAB = "per_swab"
    PER_STAFF_SHIFT = "per_staff_shift"
    FIXED_PER_DAY = "fixed_per_day"


class MovementKind(StrEnum):
    RECEIPT = "receipt"
    ISSUE = "issue"
    ADJUSTMENT = "adjustment"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    STOCKTAKE = "stocktake"


class ReplenishmentState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    RECEIVED = "received"
    CANCELLED = "cancelled"


class WebhookEvent(StrEnum):
    LOW_STOCK = "low_stock"
    REPLENISHMENT = "replenishment"


Sku = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{2,40}$", description="Stock-keeping unit, e.g. PPE-N95")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Unit = Annotated[str, msgspec.Meta(min_length=1, max_length=32, description="e.g. piece, box, litre")]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
Level = Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
Reason = Annotated[str, msgspec.Meta(max_length=500)]
Note = Annotated[str, msgspec.Meta(max_length=1000)]
ShipmentRef = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Rate = Annotated[float, msgspec.Meta(ge=0, le=1_000_000)]


class Item(msgspec.Struct, kw_only=True):
    id: UUID
    sku: str
    name: str
    unit: str
    category: Category
    usage_rule: UsageRule
    usage_rate: float
    created_at: datetime


class ItemCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sku: Sku
    name: Name
    unit: Unit
    category: Category
    usage_rule: UsageRule
    usage_rate: Rate = 0.0
    id: UUID | None = None


class Movement(msgspec.Struct, kw_only=True):
    id: UUID
    site_id: UUID
    item_id: UUID
    kind: MovementKind
    delta: int
    quantity_after: int
    generation: int
    reason: str
    counterpart_id: UUID | None
    replenishment_id: UUID | None
    actor: str
    recorded_at: datetime
    created_at: datetime


class MovementCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One change of stock at one site.

    ``quantity`` is always positive: received, issued, or (stocktake) the counted
    quantity; an adjustment takes a signed ``delta`` and a ``reason`` instead.
    ``id`` is the client's UUID: replaying the same movement is a no-op.
    """

    id: UUID
    site_id: UUID
    item_id: UUID
    kind: Annotated[str, msgspec.Meta(pattern=r"^(receipt|issue|adjustment|stocktake)$",
                                      description="receipt, issue, adjustment or stocktake (transfers have their own route)")]
    # Ranges checked in the service (422, naming the field); the type only keeps them in int32.
    quantity: Int32 | None = None
    delta: Int32 | None = None
    reason: Reason = ""
    recorded_at: datetime | None = None


class TransferCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Move stock between two sites as one atomic pair; ``id`` (client UUID) names the outgoing leg."""

    id: UUID
    from_site_id: UUID
    to_site_id: UUID
    item_id: UUID
    quantity: Quantity
    reason: Reason = ""


class Transfer(msgspec.Struct, kw_only=True):
    out: Movement
    in_: Movement = msgspec.field(name="in")


class StockLevel(msgspec.Struct, kw_only=True):
    site_id: UUID
    item_id: UUID
    sku: str
    name: str
    unit: str
    category: Category
    quantity: int
    reorder_level: int
    target_level: int
    version: int
    issued_last_7_days: int
    daily_usage_history: float
    daily_usage_forecast: float | None
    days_of_cover: float | None
    low: bool


class SiteStock(msgspec.Struct, kw_only=True):
    site_id: UUID
    generation: int
    items: list[StockLevel]


class StockLevels(msgspec.Struct, kw_only=True):
    sites: list[SiteStock]


class LevelsUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    version: Version
    reorder_level: Level
    target_level: Level


class StockRef(msgspec.Struct, kw_only=True):
    site_id: UUID
    item_id: UUID
    version: int


class ReplenishmentLine(msgspec.Struct, kw_only=True):
    item_id: UUID
    requested: int
    dispatched: int | None = None
    received: int | None = None
    short: int | None = None


class Replenishment(msgspec.Struct, kw_only=True):
    id: UUID
    site_id: UUID
    state: ReplenishmentState
    origin: str
    note: str
    shipment_ref: str | None
    requested_by: str
    version: int
    created_at: datetime
    acknowledged_at: datetime | None
    dispatched_at: datetime | None
    received_at: datetime | None
    cancelled_at: datetime | None
    updated_at: datetime
    lines: list[ReplenishmentLine]


class LineRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    item_id: UUID
    quantity: Quantity


class LineCount(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    item_id: UUID
    quantity: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]


Lines = Annotated[list[LineRequest], msgspec.Meta(min_length=1, max_length=200)]
Counts = Annotated[list[LineCount], msgspec.Meta(min_length=1, max_length=200)]


class ReplenishmentCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    site_id: UUID
    lines: Lines
    note: Note = ""
    id: UUID | None = None


class ReplenishmentAck(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    version: Version


class ReplenishmentDispatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``lines`` gives the quantity shipped per item; items left out ship what was requested."""

    version: Version
    shipment_ref: ShipmentRef
    lines: Annotated[list[LineCount], msgspec.Meta(max_length=200)] = []


class ReplenishmentReceive(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Counts the site received per item; items left out count as received in full."""

    version: Version
    lines: Annotated[list[LineCount], msgspec.Meta(max_length=200)] = []


class ReplenishmentCancel(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    version: Version


class WebhookCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=8, max_length=2000)]
    events: Annotated[list[WebhookEvent], msgspec.Meta(min_length=1, max_length=2)]


class Webhook(msgspec.Struct, kw_only=True):
    id: UUID
    url: str
    events: list[WebhookEvent]
    active: bool
    created_at: datetime


class WebhookCreated(msgspec.Struct, kw_only=True):
    """The new webhook and its signing secret: shown this once, never again."""

    webhook: Webhook
    secret: str


class FeedEvent(msgspec.Struct, kw_only=True):
    id: int
    type: str
    site_id: UUID | None
    subject_id: UUID | None
    data: dict[str, Any]
    at: datetime


class Feed(msgspec.Struct, kw_only=True):
    events: list[FeedEvent]
    next_cursor: str
