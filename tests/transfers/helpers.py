"""Shared helpers for transfer tests: a site with residents, facilities, hospital clients, moves."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec

from service.access import service as access
from service.access.model import ApiClientCreate, Principal, Role
from service.access.service import SYSTEM_PRINCIPAL
from service.sites import service as sites
from service.stays import service as stays
from service.stays.model import Stay
from service.transfers import service as transfers
from service.transfers.model import FacilityCreate, Transfer, TransferMove, TransferRequest
from tests.conftest import make_principal
from tests.stays.helpers import COMMAND, admission, make_site, person

_codes = itertools.count(1)
VEHICLE = {"plate": "渝A12345", "kind": "negative_pressure_ambulance", "driver": "王师傅", "escort": "李医生"}


@dataclass
class Ward:
    """A site with rooms 201 (2 beds), 202 on floor 2, 301 on floor 3, 501-510 spare; patient+roommate in 201, neighbour in 202."""

    site_id: UUID
    rooms: dict[str, UUID]
    patient: Stay
    roommate: Stay
    neighbour: Stay
    medic: Principal
    staff: Principal


async def make_ward(db: Any, settings: Any, code: str = "LJ-01") -> Ward:
    site_id = await make_site(db, code, floors={2: (2, 2), 3: (1, 1), 5: (10, 1)})
    async with db.connection() as conn:
        rooms = {r.number: r.id for r in await sites.list_site_rooms(conn, COMMAND, site_id)}
    worker = make_principal(Role.SITE_STAFF, [site_id])
    async with db.transaction() as conn:
        patient = await stays.admit(conn, worker, settings, admission(site_id, resident=person(f"H-{code}"), room_id=rooms["201"]))
        roommate = await stays.admit(conn, worker, settings, admission(site_id, resident=person(f"H-{code}"), room_id=rooms["201"]))
        neighbour = await stays.admit(conn, worker, settings, admission(site_id, resident=person(), room_id=rooms["202"]))
    return Ward(site_id, rooms, patient, roommate, neighbour, make_principal(Role.MEDIC, [site_id]), worker)


async def make_facility(db: Any, code: str | None = None, **fields: Any) -> UUID:
    code = code or f"H-{next(_codes)}"
    async with db.transaction() as conn:
        created = await transfers.create_facility(
            conn, COMMAND, FacilityCreate(code=code, name=f"定点医院 {code}", kind=fields.pop("kind", "designated_hospital"), **fields)
        )
    return created.id


async def make_hospital(db: Any, facility_id: UUID, site_ids: list[UUID] | None = None) -> tuple[Principal, str]:
    """A hospital API client for the facility: (its principal, its API key)."""
    async with db.transaction() as conn:
        client = await access.create_client(
            conn,
            SYSTEM_PRINCIPAL,
            msgspec.convert({"name": "hospital", "role": "hospital", "site_ids": site_ids, "facility_id": facility_id}, ApiClientCreate),
        )
    principal = make_principal(Role.HOSPITAL, site_ids, id=client.id, facility_id=facility_id)
    if site_ids is None:
        principal = msgspec.structs.replace(principal, site_ids=None)
    return principal, client.api_key or ""


async def request(db: Any, principal: Principal, stay_id: UUID, **fields: Any) -> Transfer:
    fields.setdefault("reason", "positive_test")
    async with db.transaction() as conn:
        return await transfers.request_transfer(conn, principal, msgspec.convert({"stay_id": stay_id, **fields}, TransferRequest))


async def move(db: Any, principal: Principal, transfer: Transfer, action: str, **fields: Any) -> Transfer:
    async with db.transaction() as conn:
        return await transfers.move_transfer(
            conn, principal, transfer.id, msgspec.convert({"action": action, "version": fields.pop("version", transfer.version), **fields}, TransferMove)
        )


async def to_state(db: Any, principal: Principal, transfer: Transfer, state: str, destination: UUID) -> Transfer:
    """Walk a requested transfer forward to ``state`` along the main path."""
    path = {
        "requested": [],
        "approved": [("approve", {"destination_id": destination})],
        "rejected": [("reject", {"note": "not needed"})],
        "cancelled": [("cancel", {"note": "recovered"})],
    }
    path["destination_approved"] = path["approved"] + [("accept", {})]
    path["dispatched"] = path["approved"] + [("dispatch", {"vehicle": VEHICLE})]
    path["departed"] = path["dispatched"] + [("depart", {})]
    path["arrived"] = path["departed"] + [("arrive", {"note": "handed over"})]
    for action, fields in path[state]:
        transfer = await move(db, principal, transfer, action, **fields)
    return transfer
