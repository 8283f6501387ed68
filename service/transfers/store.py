"""SQL for transfers and facilities (db/queries/transfers.sql); rows come back as Structs."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service.db import queries
from service.errors import register_constraint
from service.transfers.model import Facility, FacilityCreate, Transfer, TransferRequest, TransferTransition

Q = queries("transfers")

register_constraint("facilities_code_key", "facility_code_taken", "Another facility already uses this code.")
register_constraint("transfers_stay_active_key", "transfer_already_open", "The stay already has an open transfer.")
register_constraint("transfers_transition_valid", "invalid_transfer_transition", "The transfer cannot make this move from its state.")
register_constraint("transfers_version_advances", "stale_version", "The transfer changed meanwhile.")
register_constraint("transfers_destination_when_moving", "destination_required", "A destination is needed to dispatch.")
register_constraint("transfers_vehicle_when_moving", "vehicle_required", "A vehicle is needed to dispatch.")
register_constraint("api_clients_facility_fk", "facility_not_found", "No such facility.")
register_constraint("transfers_alert_fk", "alert_not_found", "No such alert.")
register_constraint("transfers_sample_fk", "sample_not_found", "No such sample.")
register_constraint("transfers_outcome_valid", "outcome_final", "A final outcome cannot be replaced.")
register_constraint("transfers_outcome_after_arrival", "transfer_not_arrived", "An outcome is reported after arrival.")


def _as(struct: type[Any], row: asyncpg.Record | None) -> Any:
    return None if row is None else msgspec.convert(dict(row), struct)


async def _all(struct: type[Any], rows: Any) -> list[Any]:
    return [msgspec.convert(dict(r), struct) async for r in rows]


# --- facilities ---------------------------------------------------------------


async def list_facilities(
    conn: asyncpg.Connection, *, only_id: UUID | None, region: str | None, active: bool | None, after_code: str | None, limit: int
) -> list[Facility]:
    rows = Q.list_facilities(conn, only_id=only_id, region=region, active=active, after_code=after_code, limit=limit)
    return await _all(Facility, rows)


async def get_facilities(conn: asyncpg.Connection, ids: list[UUID]) -> list[Facility]:
    return await _all(Facility, Q.get_facilities(conn, ids=ids))


async def insert_facility(conn: asyncpg.Connection, data: FacilityCreate) -> Facility:
    return _as(Facility, await Q.insert_facility(conn, **msgspec.structs.asdict(data)))


async def update_facility(conn: asyncpg.Connection, facility_id: UUID, version: int, changes: dict[str, object]) -> Facility | None:
    fields = ("name", "kind", "region_path", "contact", "capacity_note", "active", "requires_acceptance")
    return _as(Facility, await Q.update_facility(conn, id=facility_id, version=version, **{f: changes.get(f) for f in fields}))


# --- transfers ----------------------------------------------------------------


async def insert_transfer(
    conn: asyncpg.Connection, transfer_id: UUID, data: TransferRequest, *, site_id: UUID, resident_id: UUID, room_id: UUID, actor: str
) -> bool:
    """Insert the request; False when a transfer with this id already exists (a replay)."""
    inserted = await Q.insert_transfer(
        conn,
        id=transfer_id,
        site_id=site_id,
        stay_id=data.stay_id,
        resident_id=resident_id,
        room_id=room_id,
        reason=str(data.reason),
        reason_note=data.reason_note,
        alert_id=data.alert_id,
        sample_id=data.sample_id,
        urgency=str(data.urgency),
        destination_id=data.destination_id,
        requested_by=actor,
    )
    return inserted is not None


async def get_transfers(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[Transfer]:
    return await _all(Transfer, Q.get_transfers(conn, ids=ids, site_ids=site_ids))


async def lock_transfer(
    conn: asyncpg.Connection, transfer_id: UUID, site_ids: list[UUID] | None, facility_id: UUID | None = None
) -> Transfer | None:
    return _as(Transfer, await Q.lock_transfer(conn, id=transfer_id, site_ids=site_ids, facility_id=facility_id))


async def move_transfer(
    conn: asyncpg.Connection,
    transfer: Transfer,
    to_state: str,
    *,
    set_destination: bool = False,
    destination_id: UUID | None = None,
    vehicle: dict[str, str] | None = None,
    handover_note: str | None = None,
) -> bool:
    """Apply one edge if the version is still ``transfer.version``; False otherwise."""
    vehicle = vehicle or {}
    moved = await Q.move_transfer(
        conn,
        id=transfer.id,
        version=transfer.version,
        to_state=to_state,
        set_destination=set_destination,
        destination_id=destination_id,
        vehicle_plate=vehicle.get("plate"),
        vehicle_kind=vehicle.get("kind"),
        driver=vehicle.get("driver"),
        escort=vehicle.get("escort"),
        handover_note=handover_note,
    )
    return moved is not None


async def report_outcome(
    conn: asyncpg.Connection, transfer: Transfer, outcome: str, *, return_site_id: UUID | None, return_stay_id: UUID | None
) -> bool:
    """Record the outcome if the version is still ``transfer.version``; False otherwise."""
    moved = await Q.report_outcome(
        conn, id=transfer.id, version=transfer.version, outcome=outcome, return_site_id=return_site_id, return_stay_id=return_stay_id
    )
    return moved is not None


async def insert_transition(
    conn: asyncpg.Connection,
    transfer: Transfer,
    *,
    from_state: str | None,
    to_state: str,
    action: str,
    actor: str,
    note: str = "",
    facility_id: UUID | None = None,
) -> None:
    await Q.insert_transition(
        conn,
        transfer_id=transfer.id,
        site_id=transfer.site_id,
        from_state=from_state,
        to_state=to_state,
        action=action,
        actor=actor,
        note=note,
        facility_id=facility_id,
    )


async def transitions_of(conn: asyncpg.Connection, transfer_ids: list[UUID], site_ids: list[UUID] | None) -> list[TransferTransition]:
    return await _all(TransferTransition, Q.transitions_of(conn, transfer_ids=transfer_ids, site_ids=site_ids))


async def list_site_transfers(
    conn: asyncpg.Connection,
    site_id: UUID,
    site_ids: list[UUID] | None,
    *,
    states: list[str] | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[Transfer]:
    after_at, after_id = after or (None, None)
    rows = Q.list_site_transfers(
        conn, site_id=site_id, site_ids=site_ids, states=states, after_at=after_at, after_id=after_id, limit=limit
    )
    return await _all(Transfer, rows)


async def board(
    conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, *, after: tuple[int, datetime, UUID] | None, limit: int
) -> list[tuple[int, Transfer]]:
    after_rank, after_at, after_id = after or (None, None, None)
    rows = Q.board(
        conn, site_id=site_id, site_ids=site_ids, after_rank=after_rank, after_at=after_at, after_id=after_id, limit=limit
    )
    return [(r["urgency_rank"], msgspec.convert({k: v for k, v in r.items() if k != "urgency_rank"}, Transfer)) async for r in rows]


async def resident_transfers(conn: asyncpg.Connection, resident_ids: list[UUID], site_ids: list[UUID] | None) -> list[Transfer]:
    return await _all(Transfer, Q.resident_transfers(conn, resident_ids=resident_ids, site_ids=site_ids))


async def facility_transfers(
    conn: asyncpg.Connection,
    facility_id: UUID,
    site_ids: list[UUID] | None,
    *,
    states: list[str],
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[Transfer]:
    after_at, after_id = after or (None, None)
    rows = Q.facility_transfers(
        conn, facility_id=facility_id, site_ids=site_ids, states=states, after_at=after_at, after_id=after_id, limit=limit
    )
    return await _all(Transfer, rows)


async def site_times(conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, since: datetime, until: datetime) -> dict[str, Any]:
    row = await Q.site_times(conn, site_id=site_id, site_ids=site_ids, since=since, until=until)
    return dict(row)


async def demo_backdate(conn: asyncpg.Connection, transfer_id: UUID, times: dict[str, datetime]) -> None:
    """Demo seed only: move a transfer's reached times (and its transitions) into the past."""
    await Q.demo_backdate(conn, id=transfer_id, **times)
