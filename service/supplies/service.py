"""Supply rules: the ledger, days of cover, low-stock crossings, replenishment.

Every change of a quantity is a row in ``supply_movements`` (the database trigger
applies it to ``supply_stock``), taken under the stock row's lock, so concurrent
issues serialize per site and item and can never drive stock below zero.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service import bus, policy
from service.access.model import Principal, Role
from service.errors import Conflict, Forbidden, InvalidInput, NotFound, RuleViolated
from service.pagination import Page, check_limit, decode_cursor, page_of
from service.settings import Settings
from service.supplies import store
from service.supplies.model import (
    Feed,
    FeedEvent,
    Item,
    ItemCreate,
    LevelsUpdate,
    Movement,
    MovementCreate,
    MovementKind,
    Replenishment,
    ReplenishmentAck,
    ReplenishmentCancel,
    ReplenishmentCreate,
    ReplenishmentDispatch,
    ReplenishmentReceive,
    ReplenishmentState,
    SiteStock,
    StockLevel,
    StockLevels,
    StockRef,
    Transfer,
    TransferCreate,
    UsageRule,
)

READ_ROLES = policy.roles("supplies.stock.read")
STOCK_ROLES = policy.roles("supplies.stock.write")
LEVEL_ROLES = policy.roles("supplies.levels")
CATALOGUE_ROLES = policy.roles("supplies.items.create")
LOGISTICS_ROLES = policy.roles("replenishments.ship")
CANCEL_ROLES = policy.roles("replenishments.cancel")

SYSTEM_ACTOR = "system:supplies"
MAX_QUANTITY = 10_000_000
HISTORY_DAYS = 7
# Namespace of the derived id of a transfer's incoming leg (uuid5 of the outgoing leg's id).
TRANSFER_IN_NS = uuid.UUID("6f1c3f52-9a43-4e0c-a0c3-7d1b1a5e0c11")

# Event types of the logistics change feed; webhook subscriptions map onto them.
STOCK_EVENTS = ["supplies.stock_moved", "supplies.stock_levels_set", "supplies.low_stock", "supplies.stock_recovered"]
REPLENISHMENT_EVENTS = [f"supplies.replenishment_{s}" for s in ("requested", "acknowledged", "dispatched", "received", "cancelled")]
FEED_EVENTS = STOCK_EVENTS + REPLENISHMENT_EVENTS


def _require(principal: Principal, allowed: Iterable[Role], what: str) -> None:
    if principal.role not in allowed:
        raise Forbidden(f"The role {principal.role} may not {what}.", code="role_not_allowed")


def _require_site(principal: Principal, site_id: UUID) -> None:
    """Another site's id is simply not found (existence is not disclosed)."""
    if not principal.can_access_site(site_id):
        raise NotFound("No such site.", code="site_not_found")


# --- catalogue ----------------------------------------------------------------------


async def list_items(conn: asyncpg.Connection, principal: Principal, *, cursor: str | None, limit: int) -> Page[Item]:
    check_limit(limit)
    after = decode_cursor(cursor, [str])
    rows = await store.list_items(conn, after[0] if after else None, limit + 1)
    return page_of(rows, limit, lambda i: [i.sku])


async def get_items(conn: asyncpg.Connection, ids: list[UUID]) -> dict[UUID, Item]:
    return await store.get_items(conn, ids)


async def create_item(conn: asyncpg.Connection, principal: Principal, data: ItemCreate) -> Item:
    _require(principal, CATALOGUE_ROLES, "change the catalogue")
    item = await store.insert_item(conn, data)
    await bus.emit(conn, "supplies.item_created", site_id=None, subject_id=item.id, actor=principal.ref, data={"sku": item.sku})
    return item


# --- days of cover ------------------------------------------------------------------


@dataclass(frozen=True)
class Activity:
    """What drives forecast usage at one site, per day; None where the source is not available."""

    occupied_beds: int | None
    swabs_per_day: float | None
    staff_shifts: float


async def site_activity(conn: asyncpg.Connection, settings: Settings, site_ids: list[UUID]) -> dict[UUID, Activity]:
    """Forecast inputs from the stays and health domains, through their service functions.

    Either may be missing (not built yet, or not deployed): the forecast then uses
    what it has and the history alone decides for the rest.
    """
    beds: dict[UUID, int] | None = None
    swabs: dict[UUID, float] | None = None
    try:
        from service.stays.service import occupied_beds
    except ImportError:
        occupied_beds = None  # type: ignore[assignment]
    if occupied_beds is not None and site_ids:
        beds = await occupied_beds(conn, site_ids)
    try:
        from service.health.service import swabs_scheduled
    except ImportError:
        swabs_scheduled = None  # type: ignore[assignment]
    if swabs_scheduled is not None and site_ids:
        # The week ahead's schedule, per day: the same window as the issue history.
        week = await swabs_scheduled(conn, site_ids, HISTORY_DAYS)
        swabs = {s: n / HISTORY_DAYS for s, n in week.items()}
    return {
        s: Activity(
            occupied_beds=None if beds is None else beds.get(s, 0),
            swabs_per_day=None if swabs is None else swabs.get(s, 0.0),
            staff_shifts=settings.supply_staff_shifts_per_day,
        )
        for s in site_ids
    }


def forecast_per_day(rule: UsageRule, rate: float, activity: Activity | None) -> float | None:
    if activity is None:
        return None
    driver: float | None
    match rule:
        case UsageRule.PER_OCCUPIED_BED_DAY:
            driver = activity.occupied_beds
        case UsageRule.PER_SWAB:
            driver = activity.swabs_per_day
        case UsageRule.PER_STAFF_SHIFT:
            driver = activity.staff_shifts
        case UsageRule.FIXED_PER_DAY:
            driver = 1.0
    return None if driver is None else round(rate * driver, 3)


def stock_level(row: asyncpg.Record, activity: Activity | None, settings: Settings) -> StockLevel:
    """One row of the poll: days of cover from history and forecast, whichever runs out sooner."""
    history = round(row["issued_7d"] / HISTORY_DAYS, 3)
    forecast = forecast_per_day(UsageRule(row["usage_rule"]), row["usage_rate"], activity)
    fastest = max((r for r in (history, forecast) if r), default=0.0)
    days = round(row["quantity"] / fastest, 1) if fastest > 0 else None
    low = row["quantity"] < row["reorder_level"] or (days is not None and days < settings.supply_low_cover_days)
    return StockLevel(
        site_id=row["site_id"],
        item_id=row["item_id"],
        sku=row["sku"],
        name=row["name"],
        unit=row["unit"],
        category=row["category"],
        quantity=row["quantity"],
        reorder_level=row["reorder_level"],
        target_level=row["target_level"],
        version=row["version"],
        issued_last_7_days=row["issued_7d"],
        daily_usage_history=history,
        daily_usage_forecast=forecast,
        days_of_cover=days,
        low=low,
    )


def hour_bucket(now: datetime | None = None) -> datetime:
    """Cover is computed per hour: the history window starts at the hour, so one hour's answers agree."""
    now = now or datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0)


async def stock_levels(
    conn: asyncpg.Connection,
    principal: Principal,
    settings: Settings,
    *,
    site_ids: list[UUID] | None = None,
    item_ids: list[UUID] | None = None,
    bucket: datetime | None = None,
) -> StockLevels:
    """Stock of the requested sites (default: all of the caller's) with cover and low flags.

    Runs in one snapshot so that the generations match the rows (the ETag is derived from them).
    """
    _require(principal, READ_ROLES, "read stock")
    since = (bucket or hour_bucket()) - timedelta(days=HISTORY_DAYS)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        gens = await store.generations(conn, principal.site_scope)
        rows = await store.stock_rows(conn, site_ids=principal.site_scope, only_sites=site_ids, only_items=item_ids, since=since)
        wanted = sorted({r["site_id"] for r in rows} | {s for s in (site_ids or []) if principal.can_access_site(s)}, key=str)
        activity = await site_activity(conn, settings, wanted)
    by_site: dict[UUID, list[StockLevel]] = {s: [] for s in wanted}
    for row in rows:
        by_site[row["site_id"]].append(stock_level(row, activity.get(row["site_id"]), settings))
    return StockLevels(sites=[SiteStock(site_id=s, generation=gens.get(s, 0), items=items) for s, items in by_site.items()])


# --- movements ----------------------------------------------------------------------


async def _stock_for_change(conn: asyncpg.Connection, principal: Principal, site_id: UUID, item_id: UUID, *, create: bool) -> asyncpg.Record | None:
    """Lock (site, item) stock; with ``create``, make the row first (site and item must exist)."""
    _require_site(principal, site_id)
    row = await store.lock_stock(conn, site_id, item_id)
    if row is None and create:
        from service.sites import service as sites

        await sites.get_site(conn, principal, site_id)
        if not await store.get_items(conn, [item_id]):
            raise NotFound("No such item.", code="item_not_found", field="item_id")
        await store.create_stock(conn, site_id, item_id)
        row = await store.lock_stock(conn, site_id, item_id)
    return row


def _insufficient(available: int, wanted: int) -> Conflict:
    return Conflict(
        f"Only {available} on hand; {wanted} requested.", code="insufficient_stock", field="quantity", available=available
    )


async def _replayed(conn: asyncpg.Connection, movement_id: UUID, site_id: UUID, item_id: UUID, kind: str) -> Movement | None:
    """A movement already recorded under this client id: the replay answers it again; another use is a conflict."""
    existing = await store.get_movement(conn, movement_id)
    if existing is None:
        return None
    if (existing.site_id, existing.item_id, existing.kind) != (site_id, item_id, kind):
        raise Conflict("This movement id was already used for another movement.", code="movement_id_taken", field="id")
    return existing


async def _emit_movement(conn: asyncpg.Connection, principal: Principal, m: Movement) -> None:
    await bus.emit(
        conn,
        "supplies.stock_moved",
        site_id=m.site_id,
        subject_id=m.id,
        actor=principal.ref,
        data={
            "item_id": str(m.item_id),
            "kind": m.kind.value,
            "delta": m.delta,
            "quantity_after": m.quantity_after,
            "generation": m.generation,
            **({"replenishment_id": str(m.replenishment_id)} if m.replenishment_id else {}),
        },
    )


async def record_movement(conn: asyncpg.Connection, principal: Principal, settings: Settings, data: MovementCreate) -> Movement:
    """Receipt, issue, adjustment (signed delta + reason) or stocktake (counted quantity)."""
    _require(principal, STOCK_ROLES, "record stock movements")
    kind = MovementKind(data.kind)
    # Literal codes, so that the contracts (service/errorcodes.py) list both.
    if data.quantity is not None and not 0 <= data.quantity <= MAX_QUANTITY:
        raise InvalidInput("quantity is out of range.", code="invalid_quantity", field="quantity")
    if data.delta is not None and not -MAX_QUANTITY <= data.delta <= MAX_QUANTITY:
        raise InvalidInput("delta is out of range.", code="invalid_delta", field="delta")
    if kind is MovementKind.ADJUSTMENT:
        if not data.delta or data.quantity is not None:
            raise InvalidInput("An adjustment takes a non-zero delta (and no quantity).", code="invalid_adjustment", field="delta")
        if not data.reason.strip():
            raise InvalidInput("An adjustment needs a reason.", code="reason_required", field="reason")
    elif data.quantity is None or data.delta is not None:
        raise InvalidInput(f"A {kind} takes a quantity (and no delta).", code="quantity_required", field="quantity")
    elif kind in (MovementKind.RECEIPT, MovementKind.ISSUE) and data.quantity < 1:
        raise InvalidInput("The quantity must be at least 1.", code="invalid_quantity", field="quantity")

    inbound = kind is MovementKind.RECEIPT or kind is MovementKind.STOCKTAKE or (data.delta or 0) > 0
    row = await _stock_for_change(conn, principal, data.site_id, data.item_id, create=inbound)
    if (replay := await _replayed(conn, data.id, data.site_id, data.item_id, kind.value)) is not None:
        return replay
    on_hand = row["quantity"] if row else 0
    match kind:
        case MovementKind.RECEIPT:
            delta = data.quantity
        case MovementKind.ISSUE:
            delta = -data.quantity  # type: ignore[operator]
        case MovementKind.STOCKTAKE:
            delta = data.quantity - on_hand  # type: ignore[operator]
        case _:
            delta = data.delta
    if on_hand + delta < 0:  # type: ignore[operator]
        raise _insufficient(on_hand, -delta)  # type: ignore[operator]
    movement = await store.insert_movement(
        conn,
        id=data.id,
        site_id=data.site_id,
        item_id=data.item_id,
        kind=kind.value,
        delta=delta,
        reason=data.reason,
        actor=principal.ref,
        recorded_at=data.recorded_at,
    )
    await _emit_movement(conn, principal, movement)
    await check_low_stock(conn, settings, data.site_id, data.item_id, was_low=row["low"] if row else False)
    return movement


async def transfer(conn: asyncpg.Connection, principal: Principal, settings: Settings, data: TransferCreate) -> Transfer:
    """Both legs in this one transaction: out of one site, into the other, or neither."""
    _require(principal, STOCK_ROLES, "transfer stock")
    if data.from_site_id == data.to_site_id:
        raise InvalidInput("A transfer goes between two different sites.", code="same_site", field="to_site_id")
    in_id = uuid.uuid5(TRANSFER_IN_NS, str(data.id))
    # Both sites' scope first: which check answers must not depend on how the two ids sort.
    for site in (data.from_site_id, data.to_site_id):
        _require_site(principal, site)
    # Lock both stock rows in one global order so that opposite transfers cannot deadlock.
    rows: dict[UUID, asyncpg.Record | None] = {}
    for site in sorted((data.from_site_id, data.to_site_id), key=str):
        rows[site] = await _stock_for_change(conn, principal, site, data.item_id, create=site == data.to_site_id)
    out = await _replayed(conn, data.id, data.from_site_id, data.item_id, MovementKind.TRANSFER_OUT.value)
    if out is not None:
        return Transfer(out=out, in_=await store.get_movement(conn, in_id))  # type: ignore[arg-type]
    source = rows[data.from_site_id]
    available = source["quantity"] if source else 0
    if available < data.quantity:
        raise _insufficient(available, data.quantity)
    common = {"item_id": data.item_id, "reason": data.reason, "actor": principal.ref}
    out = await store.insert_movement(
        conn, id=data.id, site_id=data.from_site_id, kind="transfer_out", delta=-data.quantity, counterpart_id=in_id, **common
    )
    in_ = await store.insert_movement(
        conn, id=in_id, site_id=data.to_site_id, kind="transfer_in", delta=data.quantity, counterpart_id=data.id, **common
    )
    for m in (out, in_):
        await _emit_movement(conn, principal, m)
    await check_low_stock(conn, settings, data.from_site_id, data.item_id, was_low=source["low"] if source else False)
    dest = rows[data.to_site_id]
    await check_low_stock(conn, settings, data.to_site_id, data.item_id, was_low=dest["low"] if dest else False)
    return Transfer(out=out, in_=in_)


async def set_levels(
    conn: asyncpg.Connection, principal: Principal, settings: Settings, site_id: UUID, item_id: UUID, data: LevelsUpdate
) -> StockRef:
    _require(principal, LEVEL_ROLES, "set stock levels")
    if data.target_level < data.reorder_level:
        raise InvalidInput("The target level must be at least the reorder level.", code="invalid_levels", field="target_level")
    row = await _stock_for_change(conn, principal, site_id, item_id, create=True)
    assert row is not None
    updated = await store.set_levels(conn, site_id, item_id, data.version, data.reorder_level, data.target_level, principal.site_scope)
    if updated is None:
        raise Conflict(
            f"The stock changed since version {data.version}; it is now at version {row['version']}.",
            code="stale_version",
            current_version=row["version"],
        )
    generation = await conn.fetchval("SELECT generation FROM supply_stock_generations WHERE site_id = $1", site_id)
    await bus.emit(
        conn,
        "supplies.stock_levels_set",
        site_id=site_id,
        subject_id=item_id,
        actor=principal.ref,
        data={"item_id": str(item_id), "reorder_level": data.reorder_level, "target_level": data.target_level, "generation": generation},
    )
    await check_low_stock(conn, settings, site_id, item_id, was_low=row["low"])
    return StockRef(site_id=site_id, item_id=item_id, version=updated["version"])


async def list_movements(
    conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, item_id: UUID | None, cursor: str | None, limit: int
) -> Page[Movement]:
    _require(principal, READ_ROLES, "read the ledger")
    _require_site(principal, site_id)
    check_limit(limit)
    after = decode_cursor(cursor, [datetime, UUID])
    rows = await store.list_movements(conn, site_id, item_id, after, limit + 1, principal.site_scope)
    return page_of(rows, limit, lambda m: [m.created_at.isoformat(), str(m.id)])


# --- low stock ----------------------------------------------------------------------


async def check_low_stock(conn: asyncpg.Connection, settings: Settings, site_id: UUID, item_id: UUID, *, was_low: bool) -> None:
    """Emit an event when (site, item) crosses the low-stock line, once per crossing.

    Called under the stock row's lock, so two concurrent movements cannot both see
    the same crossing. On the way down, a replenishment up to the target level is
    raised unless the item is already on order.
    """
    rows = await store.stock_rows(conn, site_ids=None, only_sites=[site_id], only_items=[item_id], since=hour_bucket() - timedelta(days=HISTORY_DAYS))
    if not rows:
        return
    activity = await site_activity(conn, settings, [site_id])
    level = stock_level(rows[0], activity.get(site_id), settings)
    if level.low == was_low:
        return
    await store.set_low(conn, site_id, item_id, level.low)
    data = {
        "item_id": str(item_id),
        "sku": level.sku,
        "quantity": level.quantity,
        "reorder_level": level.reorder_level,
        "days_of_cover": level.days_of_cover,
    }
    if not level.low:
        await bus.emit(conn, "supplies.stock_recovered", site_id=site_id, subject_id=item_id, actor=SYSTEM_ACTOR, data=data)
        return
    await bus.emit(conn, "supplies.low_stock", site_id=site_id, subject_id=item_id, actor=SYSTEM_ACTOR, data=data)
    wanted = level.target_level - level.quantity
    if settings.supply_auto_replenish and wanted > 0 and not await store.item_on_order(conn, site_id, item_id):
        await _create_replenishment(
            conn, SYSTEM_ACTOR, site_id=site_id, lines=[(item_id, wanted)], origin="low_stock", note="raised on low stock", rep_id=None
        )


# --- replenishment ------------------------------------------------------------------


async def _create_replenishment(
    conn: asyncpg.Connection, actor: str, *, site_id: UUID, lines: list[tuple[UUID, int]], origin: str, note: str, rep_id: UUID | None
) -> UUID | None:
    new_id = await store.insert_replenishment(conn, id=rep_id, site_id=site_id, origin=origin, note=note, requested_by=actor)
    if new_id is None:
        return None
    for item_id, quantity in lines:
        await store.insert_replenishment_line(conn, new_id, item_id, quantity)
    await bus.emit(
        conn,
        "supplies.replenishment_requested",
        site_id=site_id,
        subject_id=new_id,
        actor=actor,
        data={"state": "open", "origin": origin, "lines": [{"item_id": str(i), "requested": q} for i, q in lines]},
    )
    return new_id


async def get_replenishment(conn: asyncpg.Connection, principal: Principal, rep_id: UUID) -> Replenishment:
    _require(principal, READ_ROLES, "read replenishments")
    found = await store.get_replenishments(conn, [rep_id], principal.site_scope)
    if rep_id not in found:
        raise NotFound("No such replenishment request.", code="replenishment_not_found")
    return found[rep_id]


async def get_replenishments(conn: asyncpg.Connection, principal: Principal, ids: list[UUID]) -> dict[UUID, Replenishment]:
    if principal.role not in READ_ROLES:
        return {}
    return await store.get_replenishments(conn, ids, principal.site_scope)


async def list_replenishments(
    conn: asyncpg.Connection,
    principal: Principal,
    *,
    site_id: UUID | None,
    states: list[ReplenishmentState] | None,
    cursor: str | None,
    limit: int,
) -> Page[Replenishment]:
    _require(principal, READ_ROLES, "read replenishments")
    check_limit(limit)
    if site_id is not None and not principal.can_access_site(site_id):
        return Page(items=[], next_cursor=None)
    after = decode_cursor(cursor, [datetime, UUID])
    ids = await store.list_replenishment_ids(
        conn, site_ids=principal.site_scope, only_site=site_id, states=[s.value for s in states] if states else None, after=after, limit=limit + 1
    )
    found = await store.get_replenishments(conn, ids, principal.site_scope)
    return page_of([found[i] for i in ids if i in found], limit, lambda r: [r.created_at.isoformat(), str(r.id)])


async def raise_replenishment(conn: asyncpg.Connection, principal: Principal, data: ReplenishmentCreate) -> Replenishment:
    _require(principal, STOCK_ROLES, "raise replenishment requests")
    _require_site(principal, data.site_id)
    from service.sites import service as sites

    await sites.get_site(conn, principal, data.site_id)
    item_ids = [line.item_id for line in data.lines]
    if len(set(item_ids)) != len(item_ids):
        raise InvalidInput("Each item may appear once.", code="duplicate_item", field="lines")
    known = await store.get_items(conn, item_ids)
    if missing := [i for i in item_ids if i not in known]:
        raise NotFound(f"No such item: {missing[0]}.", code="item_not_found", field="lines")
    new_id = await _create_replenishment(
        conn, principal.ref, site_id=data.site_id, lines=[(line.item_id, line.quantity) for line in data.lines],
        origin="manual", note=data.note, rep_id=data.id,
    )
    if new_id is None:  # a replay of the client's id: answer what exists, if it is the same request
        # Another site's replenishment answers like any other taken id: its existence is all that shows.
        # new_id is None only when the client gave an id (a fresh one is always inserted).
        existing = (await get_replenishments(conn, principal, [data.id])).get(data.id) if data.id else None
        if existing is None or existing.site_id != data.site_id:
            raise Conflict("This replenishment id is already used.", code="replenishment_id_taken", field="id")
        return existing
    return await get_replenishment(conn, principal, new_id)


_FROM = {
    ReplenishmentState.ACKNOWLEDGED: [ReplenishmentState.OPEN],
    ReplenishmentState.DISPATCHED: [ReplenishmentState.OPEN, ReplenishmentState.ACKNOWLEDGED],
    ReplenishmentState.RECEIVED: [ReplenishmentState.DISPATCHED],
    ReplenishmentState.CANCELLED: [ReplenishmentState.OPEN, ReplenishmentState.ACKNOWLEDGED],
}


async def _transition(
    conn: asyncpg.Connection, principal: Principal, rep_id: UUID, version: int, to: ReplenishmentState, **extra: Any
) -> Replenishment:
    """Lock the request, check state and version, move it; the caller then fills in lines."""
    locked = await store.lock_replenishment(conn, rep_id, principal.site_scope)
    if locked is None:
        raise NotFound("No such replenishment request.", code="replenishment_not_found")
    if locked["state"] not in _FROM[to]:
        raise RuleViolated(
            f"A {locked['state']} request cannot become {to}.", code="invalid_transition", current_state=locked["state"]
        )
    if locked["version"] != version:
        raise Conflict(
            f"The request changed since version {version}; it is now at version {locked['version']}.",
            code="stale_version",
            current_version=locked["version"],
        )
    await store.transition_replenishment(
        conn, rep_id, version=version, from_states=[s.value for s in _FROM[to]], to_state=to.value, site_ids=principal.site_scope,
        shipment_ref=extra.get("shipment_ref"),
    )
    return await get_replenishment(conn, principal, rep_id)


async def _emit_replenishment(conn: asyncpg.Connection, principal: Principal, rep: Replenishment) -> Replenishment:
    await bus.emit(
        conn,
        f"supplies.replenishment_{rep.state.value}",
        site_id=rep.site_id,
        subject_id=rep.id,
        actor=principal.ref,
        data={
            "state": rep.state.value,
            "version": rep.version,
            "shipment_ref": rep.shipment_ref,
            "lines": [msgspec.to_builtins(line) for line in rep.lines],
        },
    )
    return rep


def _counts(lines: list[Any], rep: Replenishment, field: str) -> dict[UUID, int]:
    known = {line.item_id for line in rep.lines}
    counts = {c.item_id: c.quantity for c in lines}
    if len(counts) != len(lines):
        raise InvalidInput("Each item may appear once.", code="duplicate_item", field="lines")
    if stray := [i for i in counts if i not in known]:
        raise InvalidInput(f"Item {stray[0]} is not on this request.", code="item_not_on_request", field="lines")
    return counts


async def acknowledge_replenishment(conn: asyncpg.Connection, principal: Principal, rep_id: UUID, data: ReplenishmentAck) -> Replenishment:
    _require(principal, LOGISTICS_ROLES, "acknowledge replenishment requests")
    rep = await _transition(conn, principal, rep_id, data.version, ReplenishmentState.ACKNOWLEDGED)
    return await _emit_replenishment(conn, principal, rep)


async def dispatch_replenishment(conn: asyncpg.Connection, principal: Principal, rep_id: UUID, data: ReplenishmentDispatch) -> Replenishment:
    _require(principal, LOGISTICS_ROLES, "dispatch replenishments")
    rep = await _transition(conn, principal, rep_id, data.version, ReplenishmentState.DISPATCHED, shipment_ref=data.shipment_ref)
    counts = _counts(data.lines, rep, "lines")
    for line in rep.lines:
        await store.set_line(conn, rep.id, line.item_id, dispatched=counts.get(line.item_id, line.requested))
    return await _emit_replenishment(conn, principal, await get_replenishment(conn, principal, rep_id))


async def receive_replenishment(
    conn: asyncpg.Connection, principal: Principal, settings: Settings, rep_id: UUID, data: ReplenishmentReceive
) -> Replenishment:
    """Site staff confirm the counts: each posts a receipt movement; a short delivery stays on record."""
    _require(principal, STOCK_ROLES, "receive replenishments")
    rep = await _transition(conn, principal, rep_id, data.version, ReplenishmentState.RECEIVED)
    counts = _counts(data.lines, rep, "lines")
    for line in rep.lines:
        received = counts.get(line.item_id, line.dispatched or 0)
        await store.set_line(conn, rep.id, line.item_id, received=received)
        if received > 0:
            row = await _stock_for_change(conn, principal, rep.site_id, line.item_id, create=True)
            movement = await store.insert_movement(
                conn,
                # Derived id: the receipt of this line exists once whatever happens.
                id=uuid.uuid5(rep.id, str(line.item_id)),
                site_id=rep.site_id,
                item_id=line.item_id,
                kind="receipt",
                delta=received,
                reason=f"replenishment {rep.shipment_ref}",
                replenishment_id=rep.id,
                actor=principal.ref,
            )
            await _emit_movement(conn, principal, movement)
            await check_low_stock(conn, settings, rep.site_id, line.item_id, was_low=row["low"] if row else False)
    return await _emit_replenishment(conn, principal, await get_replenishment(conn, principal, rep_id))


async def cancel_replenishment(conn: asyncpg.Connection, principal: Principal, rep_id: UUID, data: ReplenishmentCancel) -> Replenishment:
    _require(principal, CANCEL_ROLES, "cancel replenishment requests")
    rep = await _transition(conn, principal, rep_id, data.version, ReplenishmentState.CANCELLED)
    return await _emit_replenishment(conn, principal, rep)


# --- change feed --------------------------------------------------------------------


async def changes(conn: asyncpg.Connection, principal: Principal, *, cursor: str | None, limit: int) -> Feed:
    """Stock movements and replenishment state changes after ``cursor``; never skips a commit."""
    _require(principal, READ_ROLES, "read the change feed")
    check_limit(limit)
    page = await bus.read_events(conn, cursor=cursor, limit=limit, site_ids=principal.site_scope, types=FEED_EVENTS)
    return Feed(
        events=[
            FeedEvent(id=e.id, type=e.type, site_id=e.site_id, subject_id=e.subject_id, data=e.data, at=e.at) for e in page.events
        ],
        next_cursor=page.next_cursor,
    )
