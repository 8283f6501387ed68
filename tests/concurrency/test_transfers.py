"""Transfer races: several connections at once through asyncio.gather; the row lock and versions decide."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec

from service.errors import DomainError, from_database
from service.transfers import service as transfers
from service.transfers.model import ArrivalConfirmation, TransferMove, TransferState
from tests.conftest import make_principal
from service.access.model import Role
from tests.transfers.helpers import make_facility, make_hospital, make_ward, request, to_state


async def attempt(coro):
    """The result, or the DomainError the API would answer (constraint violations mapped as at the edge)."""
    try:
        return await coro
    except DomainError as exc:
        return exc
    except asyncpg.PostgresError as exc:
        mapped = from_database(exc)
        assert mapped is not None, exc
        return mapped


async def test_two_medics_move_the_same_transfer_one_wins(db, settings):
    ward = await make_ward(db, settings)
    facility = await make_facility(db)
    t = await request(db, ward.staff, ward.patient.id)
    medics = [make_principal(Role.MEDIC, [ward.site_id]) for _ in range(2)]

    async def move(principal, action, **fields):
        async with db.transaction() as conn:
            data = msgspec.convert({"action": action, "version": t.version, **fields}, TransferMove)
            return await transfers.move_transfer(conn, principal, t.id, data)

    results = await asyncio.gather(
        attempt(move(medics[0], "approve", destination_id=facility)),
        attempt(move(medics[1], "reject", note="not needed")),
    )
    won = [r for r in results if not isinstance(r, DomainError)]
    lost = [r for r in results if isinstance(r, DomainError)]
    assert len(won) == 1 and len(lost) == 1
    assert lost[0].status == 409 and lost[0].code == "stale_version"
    assert lost[0].extra == {"current_state": won[0].state.value, "current_version": 2}
    async with db.connection() as conn:
        current = await transfers.get_transfer(conn, ward.medic, t.id)
        history = (await transfers.transitions(conn, ward.medic, [t.id]))[t.id]
    assert current.state is won[0].state and current.version == 2 and len(history) == 2


async def test_many_departures_at_once_close_the_stay_once(db, settings):
    ward = await make_ward(db, settings)
    t = await to_state(db, ward.medic, await request(db, ward.staff, ward.patient.id), "dispatched", await make_facility(db))

    async def depart():
        async with db.transaction() as conn:
            return await transfers.move_transfer(conn, ward.medic, t.id, TransferMove(action="depart", version=t.version))  # type: ignore[arg-type]

    results = await asyncio.gather(*(attempt(depart()) for _ in range(6)))
    assert sum(not isinstance(r, DomainError) for r in results) == 1
    assert {r.code for r in results if isinstance(r, DomainError)} == {"stale_version"}
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events WHERE type = 'stays.transferred'") == 1
        assert await conn.fetchval("SELECT count(*) FROM transfer_transitions WHERE to_state = 'departed'") == 1


async def test_concurrent_requests_for_one_stay_open_one_transfer(db, settings):
    ward = await make_ward(db, settings)
    results = await asyncio.gather(*(attempt(request(db, ward.staff, ward.patient.id, urgency=u)) for u in ("routine", "urgent", "emergency", "urgent")))
    assert sum(not isinstance(r, DomainError) for r in results) == 1
    assert {r.code for r in results if isinstance(r, DomainError)} == {"transfer_already_open"}


async def test_hospital_confirms_arrival_concurrently_once(db, settings):
    ward = await make_ward(db, settings)
    facility = await make_facility(db)
    hospital, _ = await make_hospital(db, facility, [ward.site_id])
    t = await to_state(db, ward.medic, await request(db, ward.staff, ward.patient.id), "departed", facility)
    async def confirm():
        async with db.transaction() as conn:
            return await transfers.confirm_arrival(conn, hospital, t.id, ArrivalConfirmation(handover_note="ok"))

    results = await asyncio.gather(*(confirm() for _ in range(5)))
    assert {r.state for r in results} == {TransferState.ARRIVED} and {r.version for r in results} == {t.version + 1}
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM transfer_transitions WHERE to_state = 'arrived'") == 1


async def test_cancel_races_departure(db, settings):
    """Cancel and depart from the same version: exactly one applies; a cancelled transfer never closes the stay."""
    ward = await make_ward(db, settings)
    t = await to_state(db, ward.medic, await request(db, ward.staff, ward.patient.id), "dispatched", await make_facility(db))

    async def do(action, **fields):
        async with db.transaction() as conn:
            data = msgspec.convert({"action": action, "version": t.version, **fields}, TransferMove)
            return await transfers.move_transfer(conn, ward.medic, t.id, data)

    results = await asyncio.gather(attempt(do("depart")), attempt(do("cancel", note="improved")))
    won = [r for r in results if not isinstance(r, DomainError)]
    assert len(won) == 1
    async with db.connection() as conn:
        closed = await conn.fetchval("SELECT count(*) FROM events WHERE type = 'stays.transferred'")
    assert closed == (1 if won[0].state is TransferState.DEPARTED else 0)
