"""SQL for supplies (db/queries/supplies.sql); rows come back as Structs or plain records."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service.db import queries
from service.errors import register_constraint
from service.supplies.model import Item, ItemCreate, Movement, Replenishment

Q = queries("supplies")

register_constraint("supply_items_sku_key", "sku_taken", "Another item already uses this SKU.")
register_constraint("supply_stock_quantity_check", "insufficient_stock", "Not enough stock on hand.")
register_constraint("supply_stock_ledger_check", "ledger_only", "Stock changes only through movements.")
register_constraint("supply_stock_target_level_check", "invalid_levels", "The target level must be at least the reorder level.")
register_constraint("supply_movements_pkey", "movement_id_taken", "This movement id was already used for another movement.")
register_constraint("supply_replenishment_lines_pkey", "duplicate_item", "An item appears twice in the request.")


async def list_items(conn: asyncpg.Connection, after_sku: str | None, limit: int) -> list[Item]:
    return [msgspec.convert(dict(r), Item) async for r in Q.list_items(conn, after_sku=after_sku, limit=limit)]


async def get_items(conn: asyncpg.Connection, ids: list[UUID]) -> dict[UUID, Item]:
    return {r["id"]: msgspec.convert(dict(r), Item) async for r in Q.get_items_by_ids(conn, ids=ids)}


async def insert_item(conn: asyncpg.Connection, data: ItemCreate) -> Item:
    return msgspec.convert(dict(await Q.insert_item(conn, **msgspec.structs.asdict(data))), Item)


async def lock_stock(conn: asyncpg.Connection, site_id: UUID, item_id: UUID) -> asyncpg.Record | None:
    return await Q.lock_stock(conn, site_id=site_id, item_id=item_id)


async def create_stock(conn: asyncpg.Connection, site_id: UUID, item_id: UUID) -> None:
    await Q.create_stock(conn, site_id=site_id, item_id=item_id)


def _movement(row: asyncpg.Record | None) -> Movement | None:
    return None if row is None else msgspec.convert(dict(row), Movement)


async def get_movement(conn: asyncpg.Connection, movement_id: UUID) -> Movement | None:
    return _movement(await Q.get_movement(conn, id=movement_id))


async def insert_movement(conn: asyncpg.Connection, **fields: Any) -> Movement:
    fields.setdefault("counterpart_id", None)
    fields.setdefault("replenishment_id", None)
    fields.setdefault("recorded_at", None)
    return _movement(await Q.insert_movement(conn, **fields))  # type: ignore[return-value]


async def set_low(conn: asyncpg.Connection, site_id: UUID, item_id: UUID, low: bool) -> None:
    await Q.set_low(conn, site_id=site_id, item_id=item_id, low=low)


async def set_levels(
    conn: asyncpg.Connection, site_id: UUID, item_id: UUID, version: int, reorder: int, target: int, site_ids: list[UUID] | None
) -> asyncpg.Record | None:
    return await Q.set_levels(
        conn, site_id=site_id, item_id=item_id, version=version, reorder_level=reorder, target_level=target, site_ids=site_ids
    )


async def list_movements(
    conn: asyncpg.Connection, site_id: UUID, item_id: UUID | None, after: list[Any] | None, limit: int, site_ids: list[UUID] | None
) -> list[Movement]:
    after_at, after_id = after if after else (None, None)
    rows = Q.list_movements(
        conn, site_id=site_id, item_id=item_id, after_at=after_at, after_id=after_id, limit=limit, site_ids=site_ids
    )
    return [msgspec.convert(dict(r), Movement) async for r in rows]


async def stock_rows(
    conn: asyncpg.Connection,
    *,
    site_ids: list[UUID] | None,
    only_sites: list[UUID] | None,
    only_items: list[UUID] | None,
    since: datetime,
) -> list[asyncpg.Record]:
    rows = Q.stock_levels(conn, site_ids=site_ids, only_sites=only_sites, only_items=only_items, since=since)
    return [r async for r in rows]


async def generations(conn: asyncpg.Connection, site_ids: list[UUID] | None) -> dict[UUID, int]:
    return {r["site_id"]: r["generation"] async for r in Q.generations(conn, site_ids=site_ids)}


# --- replenishment ------------------------------------------------------------


async def insert_replenishment(
    conn: asyncpg.Connection, *, id: UUID | None, site_id: UUID, origin: str, note: str, requested_by: str
) -> UUID | None:
    """The new request's id, or None when a request with this client id already exists."""
    row = await Q.insert_replenishment(conn, id=id, site_id=site_id, origin=origin, note=note, requested_by=requested_by)
    return None if row is None else row["id"]


async def insert_replenishment_line(conn: asyncpg.Connection, replenishment_id: UUID, item_id: UUID, requested: int) -> None:
    await Q.insert_replenishment_line(conn, replenishment_id=replenishment_id, item_id=item_id, requested=requested)


async def get_replenishments(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> dict[UUID, Replenishment]:
    rows = Q.get_replenishments(conn, ids=ids, site_ids=site_ids)
    return {r["id"]: msgspec.convert(dict(r), Replenishment) async for r in rows}


async def list_replenishment_ids(
    conn: asyncpg.Connection,
    *,
    site_ids: list[UUID] | None,
    only_site: UUID | None,
    states: list[str] | None,
    after: list[Any] | None,
    limit: int,
) -> list[UUID]:
    after_at, after_id = after if after else (None, None)
    rows = Q.list_replenishments(
        conn, site_ids=site_ids, only_site=only_site, states=states, after_at=after_at, after_id=after_id, limit=limit
    )
    return [r["id"] async for r in rows]


async def item_on_order(conn: asyncpg.Connection, site_id: UUID, item_id: UUID) -> bool:
    return bool(await Q.open_replenishment_for_item(conn, site_id=site_id, item_id=item_id))


async def lock_replenishment(conn: asyncpg.Connection, rep_id: UUID, site_ids: list[UUID] | None) -> asyncpg.Record | None:
    return await Q.lock_replenishment(conn, id=rep_id, site_ids=site_ids)


async def transition_replenishment(
    conn: asyncpg.Connection,
    rep_id: UUID,
    *,
    version: int,
    from_states: list[str],
    to_state: str,
    site_ids: list[UUID] | None,
    shipment_ref: str | None = None,
) -> bool:
    row = await Q.transition_replenishment(
        conn, id=rep_id, version=version, from_states=from_states, to_state=to_state, site_ids=site_ids, shipment_ref=shipment_ref
    )
    return row is not None


async def set_line(conn: asyncpg.Connection, rep_id: UUID, item_id: UUID, *, dispatched: int | None = None, received: int | None = None) -> None:
    if dispatched is not None:
        await Q.set_line_dispatched(conn, replenishment_id=rep_id, item_id=item_id, quantity=dispatched)
    if received is not None:
        await Q.set_line_received(conn, replenishment_id=rep_id, item_id=item_id, quantity=received)
