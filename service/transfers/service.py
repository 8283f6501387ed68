"""Transfer rules: who may request and move a transfer, the state machine, and what departure does.

Functions other domains may call (each takes a connection in the caller's transaction and
the caller's Principal; ids of other sites are "not found"):

- ``get_transfers(conn, principal, ids)``          transfers by id
- ``resident_history(conn, principal, resident_ids)``  every transfer of these residents
- ``request_transfer(conn, principal, TransferRequest(...))``  e.g. health on a positive result
- ``get_facilities(conn, principal, ids)``         destination facilities

The hospital interface (facility-scoped API keys): ``hospital_transfers``, ``get_incoming``,
``accept_transfer`` / ``decline_transfer`` before dispatch, ``confirm_arrival`` / ``refuse_at_door``
at the door, ``report_outcome`` after arrival (a return opens a new stay through stays.admit).
Hospitals see ``IncomingTransfer``: a masked identity and the sending site's contact.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import msgspec

from service import bus, policy
from service.access.model import STAFF_ROLES, Principal, Role
from service.errors import Conflict, Forbidden, InvalidInput, NotFound
from service.health import service as health
from service.health.model import ExposureSource
from service.pagination import Page, check_limit, decode_cursor, page_of
from service.settings import Settings
from service.sites import service as sites
from service.stays import service as stays
from service.stays.model import Admission, Stay, StayStatus
from service.transfers import store
from service.transfers.model import (
    OUTCOME_NEXT,
    TRANSITIONS,
    Acceptance,
    ArrivalConfirmation,
    Decline,
    DoorRefusal,
    Facility,
    FacilityCreate,
    FacilityPatch,
    IncomingTransfer,
    MaskedPatient,
    OutcomeReport,
    SendingSite,
    Transfer,
    TransferAction,
    TransferMove,
    TransferOutcome,
    TransferRequest,
    TransferState,
    TransferTimes,
    TransferTransition,
    Vehicle,
)

# Site staff may ask; only medics (and the command centre) move a transfer.
REQUEST_ROLES = policy.roles("transfers.request")
MOVE_ROLES = policy.roles("transfers.move")
FACILITY_ADMIN_ROLES = policy.roles("facilities.manage")
# Who reads transfers through site-wide lists; hospital clients read only theirs (``hospital_transfers``).
READ_ROLES = policy.roles("transfers.read")
HOSPITAL_OP = "hospital.transfers"
HOSPITAL_ROLES = policy.roles(HOSPITAL_OP)
# What a hospital sees by default: transfers on their way to it.
HEADING_STATES = (TransferState.APPROVED, TransferState.DESTINATION_APPROVED, TransferState.DISPATCHED, TransferState.DEPARTED)
# Actions whose note is the reason and may not be empty.
NOTE_REQUIRED = frozenset({TransferAction.REJECT, TransferAction.CANCEL, TransferAction.REFUSE_AT_DOOR, TransferAction.DECLINE})
# Actions that name the destination: optional at approve and dispatch, required to redirect.
SETS_DESTINATION = frozenset({TransferAction.APPROVE, TransferAction.DISPATCH, TransferAction.REDIRECT})
# Actions after which the transfer heads nowhere: the facility that said no is kept in the transition.
CLEARS_DESTINATION = frozenset({TransferAction.REFUSE_AT_DOOR, TransferAction.DECLINE})
MAX_TIMES_PERIOD = timedelta(days=366)

EVENT_OF = {
    TransferAction.APPROVE: "transfers.approved",
    TransferAction.REJECT: "transfers.rejected",
    TransferAction.DISPATCH: "transfers.dispatched",
    TransferAction.DEPART: "transfers.departed",
    TransferAction.ARRIVE: "transfers.arrived",
    TransferAction.CANCEL: "transfers.cancelled",
    TransferAction.REFUSE_AT_DOOR: "transfers.refused_at_door",
    TransferAction.ACCEPT: "transfers.destination_accepted",
    TransferAction.DECLINE: "transfers.destination_declined",
    TransferAction.REDIRECT: "transfers.redirected",
}


def _require(principal: Principal, roles: tuple[Role, ...], what: str) -> None:
    if principal.role not in roles:
        raise Forbidden(f"The role {principal.role} may not {what}.", code="role_not_allowed")


def _hospital_facility(principal: Principal) -> UUID:
    """The facility a hospital client speaks for (403 for any other caller or a client without one)."""
    _require(principal, HOSPITAL_ROLES, "use the hospital interface")
    facility_id = policy.facility_filter(principal, HOSPITAL_OP)
    if facility_id is None:
        raise Forbidden("This hospital client is not linked to a facility.", code="facility_required")
    return facility_id


def _sites(principal: Principal) -> list[UUID] | None:
    """The site filter of a transfer read: the caller's sites, or for a hospital the sites its key names."""
    return policy.site_filter(principal, HOSPITAL_OP if principal.role is Role.HOSPITAL else "transfers.read")


def _acting_for_hospital(principal: Principal, site_ids: set[UUID]) -> Principal:
    """A hospital client reaches no site's records. What its answers need at the sites of its own
    transfers (the resident's masked identity, the sending site's contact, the stay opened by a
    return) runs with a site-staff grant limited to those sites, under the client's own id so that
    audit rows and events name the hospital."""
    return msgspec.structs.replace(principal, role=Role.SITE_STAFF, site_ids=frozenset(site_ids), facility_id=None)


# --- facilities -------------------------------------------------------------------


async def list_facilities(
    conn: asyncpg.Connection,
    principal: Principal,
    *,
    region: str | None = None,
    active: bool | None = None,
    cursor: str | None,
    limit: int,
) -> Page[Facility]:
    """Destination facilities by code (shared by every site); a hospital client sees its own only."""
    check_limit(limit)
    after = decode_cursor(cursor, [str])
    only = None
    if principal.role is Role.HOSPITAL:
        only = _hospital_facility(principal)
    elif principal.role not in STAFF_ROLES:
        _require(principal, READ_ROLES, "read facilities")
    rows = await store.list_facilities(
        conn, only_id=only, region=region, active=active, after_code=after[0] if after else None, limit=limit + 1
    )
    return page_of(rows, limit, lambda f: [f.code])


async def get_facilities(conn: asyncpg.Connection, principal: Principal, ids: list[UUID]) -> dict[UUID, Facility]:
    if principal.role is Role.HOSPITAL:
        ids = [i for i in ids if i == principal.facility_id]
    elif principal.role not in STAFF_ROLES:
        return {}
    return {f.id: f for f in await store.get_facilities(conn, ids)} if ids else {}


async def get_facility(conn: asyncpg.Connection, principal: Principal, facility_id: UUID) -> Facility:
    found = await get_facilities(conn, principal, [facility_id])
    if facility_id not in found:
        raise NotFound("No such facility.", code="facility_not_found")
    return found[facility_id]


async def create_facility(conn: asyncpg.Connection, principal: Principal, data: FacilityCreate) -> Facility:
    """A new destination facility (command centre). A replayed client ``id`` with the same code returns it."""
    _require(principal, FACILITY_ADMIN_ROLES, "create facilities")
    if data.id is not None:
        existing = await store.get_facilities(conn, [data.id])
        if existing:
            if existing[0].code != data.code:
                raise Conflict("Another facility already has this id.", code="facility_id_taken")
            return existing[0]
    facility = await store.insert_facility(conn, data)
    await bus.emit(
        conn, "transfers.facility_created", site_id=None, subject_id=facility.id, actor=principal.ref,
        data={"code": facility.code, "kind": facility.kind.value},
    )
    return facility


async def update_facility(conn: asyncpg.Connection, principal: Principal, facility_id: UUID, patch: FacilityPatch) -> Facility:
    _require(principal, FACILITY_ADMIN_ROLES, "change facilities")
    current = await get_facility(conn, principal, facility_id)
    changes = patch.changes()
    facility = await store.update_facility(conn, facility_id, patch.version, changes)
    if facility is None:
        raise Conflict(
            f"The facility changed since version {patch.version}; it is now at version {current.version}.",
            code="stale_version",
            current_version=current.version,
        )
    await bus.emit(
        conn, "transfers.facility_updated", site_id=None, subject_id=facility.id, actor=principal.ref, data={"fields": sorted(changes)}
    )
    return facility


async def _destination(conn: asyncpg.Connection, facility_id: UUID) -> Facility:
    found = await store.get_facilities(conn, [facility_id])
    if not found:
        raise NotFound("No such facility.", code="facility_not_found", field="destination_id")
    if not found[0].active:
        raise Conflict(f"Facility {found[0].code} takes no transfers now.", code="facility_inactive", field="destination_id")
    return found[0]


# --- reads ------------------------------------------------------------------------


def _visible(principal: Principal, transfer: Transfer) -> bool:
    """Site scope is in every query; a hospital client further sees only transfers heading to it."""
    if principal.role is Role.HOSPITAL:
        return principal.facility_id is not None and transfer.destination_id == principal.facility_id
    return principal.role in READ_ROLES


def _shown(principal: Principal, transfer: Transfer) -> Transfer:
    """A return names the receiving site and its new stay: only for callers who reach that site."""
    if transfer.return_site_id is None or principal.role is Role.HOSPITAL or principal.can_access_site(transfer.return_site_id):
        return transfer
    return msgspec.structs.replace(transfer, return_site_id=None, return_stay_id=None)


async def get_transfers(conn: asyncpg.Connection, principal: Principal, ids: list[UUID]) -> dict[UUID, Transfer]:
    rows = await store.get_transfers(conn, ids, _sites(principal)) if ids else []
    return {t.id: _shown(principal, t) for t in rows if _visible(principal, t)}


async def get_transfer(conn: asyncpg.Connection, principal: Principal, transfer_id: UUID) -> Transfer:
    found = await get_transfers(conn, principal, [transfer_id])
    if transfer_id not in found:
        raise NotFound("No such transfer.", code="transfer_not_found")
    return found[transfer_id]


async def transitions(conn: asyncpg.Connection, principal: Principal, transfer_ids: list[UUID]) -> dict[UUID, list[TransferTransition]]:
    """Every transition of each visible transfer, oldest first (one statement)."""
    visible = list(await get_transfers(conn, principal, transfer_ids))
    out: dict[UUID, list[TransferTransition]] = {i: [] for i in visible}
    for t in await store.transitions_of(conn, visible, _sites(principal)) if visible else []:
        out[t.transfer_id].append(t)
    return out


async def list_site_transfers(
    conn: asyncpg.Connection,
    principal: Principal,
    site_id: UUID,
    *,
    states: list[TransferState] | None = None,
    cursor: str | None,
    limit: int,
) -> Page[Transfer]:
    """A site's transfers, newest request first (404 for another site)."""
    _require(principal, READ_ROLES, "list a site's transfers")
    check_limit(limit)
    await sites.get_site(conn, principal, site_id)
    after = decode_cursor(cursor, [datetime, UUID])
    rows = await store.list_site_transfers(
        conn,
        site_id,
        principal.site_scope,
        states=[s.value for s in states] if states else None,
        after=(after[0], after[1]) if after else None,
        limit=limit + 1,
    )
    return page_of([_shown(principal, t) for t in rows], limit, lambda t: [t.requested_at.isoformat(), str(t.id)])


def board_key(rank_and_transfer: tuple[int, Transfer]) -> list[object]:
    rank, t = rank_and_transfer
    return [rank, t.requested_at.isoformat(), str(t.id)]


async def board(conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, cursor: str | None, limit: int) -> Page[tuple[int, Transfer]]:
    """A site's open transfers: emergency first, then urgent, then routine; oldest request first within each."""
    _require(principal, READ_ROLES, "read the transfer board")
    check_limit(limit)
    await sites.get_site(conn, principal, site_id)
    after = decode_cursor(cursor, [int, datetime, UUID])
    rows = await store.board(conn, site_id, principal.site_scope, after=tuple(after) if after else None, limit=limit + 1)
    return page_of(rows, limit, board_key)


async def resident_history(conn: asyncpg.Connection, principal: Principal, resident_ids: list[UUID]) -> dict[UUID, list[Transfer]]:
    """Every transfer of each resident at the caller's sites, newest first (one statement)."""
    if principal.role not in READ_ROLES or not resident_ids:
        return {r: [] for r in resident_ids}
    out: dict[UUID, list[Transfer]] = {r: [] for r in resident_ids}
    for t in await store.resident_transfers(conn, resident_ids, principal.site_scope):
        out[t.resident_id].append(_shown(principal, t))
    return out


async def hospital_transfers(
    conn: asyncpg.Connection,
    principal: Principal,
    *,
    states: list[TransferState] | None = None,
    cursor: str | None,
    limit: int,
) -> Page[IncomingTransfer]:
    """Transfers heading to the calling hospital (by default approved, destination_approved, dispatched,
    departed), oldest first, as the hospital sees them."""
    facility_id = _hospital_facility(principal)
    check_limit(limit)
    after = decode_cursor(cursor, [datetime, UUID])
    rows = await store.facility_transfers(
        conn,
        facility_id,
        _sites(principal),
        states=[s.value for s in (states or HEADING_STATES)],
        after=(after[0], after[1]) if after else None,
        limit=limit + 1,
    )
    return page_of(await incoming(conn, principal, rows), limit, lambda t: [t.requested_at.isoformat(), str(t.id)])


async def get_incoming(conn: asyncpg.Connection, principal: Principal, transfer_id: UUID) -> IncomingTransfer:
    """One transfer heading to the calling hospital (404 otherwise)."""
    _hospital_facility(principal)
    return (await incoming(conn, principal, [await get_transfer(conn, principal, transfer_id)]))[0]


async def incoming(conn: asyncpg.Connection, principal: Principal, transfers: list[Transfer]) -> list[IncomingTransfer]:
    """Transfers as their destination hospital sees them: masked identity, sending site's contact (two statements)."""
    if not transfers:
        return []
    reach = {t.site_id for t in transfers} | {t.return_site_id for t in transfers if t.return_site_id}
    acting = _acting_for_hospital(principal, reach)
    residents = await stays.get_residents(conn, acting, list({t.resident_id for t in transfers}))
    senders = await sites.get_sites(conn, acting, list({t.site_id for t in transfers}))
    out = []
    for t in transfers:
        resident, site = residents.get(t.resident_id), senders.get(t.site_id)
        out.append(
            IncomingTransfer(
                id=t.id, state=t.state, version=t.version, reason=t.reason, infectious=t.infectious, reason_note=t.reason_note,
                urgency=t.urgency, destination_id=t.destination_id,
                patient=MaskedPatient(name=resident.name, sex=resident.sex.value, birth_year=resident.birth_year) if resident else None,
                sending_site=SendingSite(id=site.id, code=site.code, name=site.name, contact=site.contact, address=site.address)
                if site else None,
                requested_at=t.requested_at, approved_at=t.approved_at, destination_approved_at=t.destination_approved_at,
                dispatched_at=t.dispatched_at, departed_at=t.departed_at, arrived_at=t.arrived_at,
                vehicle_plate=t.vehicle_plate, vehicle_kind=t.vehicle_kind, escort=t.escort, handover_note=t.handover_note,
                outcome=t.outcome, outcome_at=t.outcome_at, return_site_id=t.return_site_id, return_stay_id=t.return_stay_id,
            )
        )
    return out


async def site_times(
    conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, since: datetime, until: datetime
) -> TransferTimes:
    """Median request-to-dispatch and request-to-arrival minutes of the transfers requested in [since, until)."""
    _require(principal, READ_ROLES, "read transfer times")
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None:
            raise InvalidInput(f"{name} needs a time zone offset.", code="naive_datetime", field=name)
    if until <= since or until - since > MAX_TIMES_PERIOD:
        raise InvalidInput("The period must be positive and at most 366 days.", code="invalid_period", field="until")
    await sites.get_site(conn, principal, site_id)
    row = await store.site_times(conn, site_id, principal.site_scope, since, until)
    return TransferTimes(site_id=site_id, since=since.astimezone(UTC), until=until.astimezone(UTC), **row)


# --- request ------------------------------------------------------------------------


async def request_transfer(conn: asyncpg.Connection, principal: Principal, data: TransferRequest) -> Transfer:
    """Ask for a resident's transfer (site staff, managers, medics, command).

    One open transfer per stay (409 ``transfer_already_open``). A replayed client ``id``
    answers the stored transfer unchanged.
    """
    _require(principal, REQUEST_ROLES, "request transfers")
    transfer_id = data.id or uuid4()
    if data.id is not None:
        replay = await _replay(conn, principal, data)
        if replay is not None:
            return replay
    stay = await stays.get_stay(conn, principal, data.stay_id)
    if stay.status is not StayStatus.ACTIVE:
        raise Conflict(f"The stay is already closed ({stay.outcome}).", code="stay_closed", field="stay_id")
    if data.destination_id is not None:
        await _destination(conn, data.destination_id)
    await _check_cited(conn, principal, stay, data)
    inserted = await store.insert_transfer(
        conn, transfer_id, data, site_id=stay.site_id, resident_id=stay.resident_id, room_id=stay.room_id, actor=principal.ref
    )
    if not inserted:  # the same id committed meanwhile
        replay = await _replay(conn, principal, data)
        if replay is None:
            raise Conflict("Another transfer already has this id.", code="transfer_id_taken", field="id")
        return replay
    transfer = (await store.get_transfers(conn, [transfer_id], None))[0]
    await store.insert_transition(
        conn, transfer, from_state=None, to_state=TransferState.REQUESTED, action="request", actor=principal.ref, note=data.reason_note
    )
    await bus.emit(
        conn,
        "transfers.requested",
        site_id=transfer.site_id,
        subject_id=transfer.id,
        actor=principal.ref,
        data={
            "stay_id": str(transfer.stay_id),
            "reason": transfer.reason.value,
            "urgency": transfer.urgency.value,
            "infectious": transfer.infectious,
            "destination_id": str(transfer.destination_id) if transfer.destination_id else None,
        },
    )
    return transfer


async def _check_cited(conn: asyncpg.Connection, principal: Principal, stay: Stay, data: TransferRequest) -> None:
    """The alert and sample a request cites must be this stay's alert and a sample of its site.

    Anything else (another site's, another stay's) answers exactly like an id that does
    not exist, i.e. as the foreign key would: existence elsewhere is not disclosed.
    """
    if data.alert_id is not None:
        alert = (await health.get_alerts(conn, principal, [data.alert_id])).get(data.alert_id)
        if alert is None or alert.stay_id != stay.id:
            raise Conflict("No such alert.", code="alert_not_found")
    if data.sample_id is not None:
        sample = (await health.get_samples(conn, principal, [data.sample_id])).get(data.sample_id)
        if sample is None or sample.site_id != stay.site_id:
            raise Conflict("No such sample.", code="sample_not_found")


async def _replay(conn: asyncpg.Connection, principal: Principal, data: TransferRequest) -> Transfer | None:
    """The stored transfer of a replayed request, None when the id is new; 409 when the id is another's."""
    assert data.id is not None
    stored = await store.get_transfers(conn, [data.id], None)
    if not stored:
        return None
    if stored[0].stay_id != data.stay_id or not principal.can_access_site(stored[0].site_id):
        raise Conflict("Another transfer already has this id.", code="transfer_id_taken", field="id")
    return stored[0]


# --- the state machine ----------------------------------------------------------------


def _stale(transfer: Transfer, version: int) -> Conflict:
    return Conflict(
        f"The transfer changed since version {version}; it is now {transfer.state} at version {transfer.version}.",
        code="stale_version",
        field="version",
        current_state=transfer.state.value,
        current_version=transfer.version,
    )


async def _lock(conn: asyncpg.Connection, principal: Principal, transfer_id: UUID, facility_id: UUID | None = None) -> Transfer:
    transfer = await store.lock_transfer(conn, transfer_id, _sites(principal), facility_id)
    if transfer is None:
        raise NotFound("No such transfer.", code="transfer_not_found")
    return transfer


async def move_transfer(conn: asyncpg.Connection, principal: Principal, transfer_id: UUID, move: TransferMove) -> Transfer:
    """Move a transfer along one edge (medics and command).

    ``move.version`` must be the version the caller read: two medics moving the same transfer
    are ordered by the row lock and the second gets 409 ``stale_version`` with the current state.
    """
    _require(principal, MOVE_ROLES, "move transfers")
    transfer = await _lock(conn, principal, transfer_id)
    if transfer.version != move.version:
        raise _stale(transfer, move.version)
    return await _apply(
        conn, principal, transfer, TransferAction(move.action), note=move.note, destination_id=move.destination_id, vehicle=move.vehicle
    )


async def _hospital_step(
    conn: asyncpg.Connection,
    principal: Principal,
    transfer_id: UUID,
    version: int | None,
    action: TransferAction,
    note: str,
    *,
    done: TransferState | None = None,
) -> Transfer:
    """A hospital's step on a transfer to its facility: locked, the version checked when given, the action applied.
    ``done``: the state the step leads to, where taking it again changes nothing (the transfer answered as it is)."""
    facility_id = _hospital_facility(principal)
    transfer = await _lock(conn, principal, transfer_id, facility_id)
    if done is not None and transfer.state is done:
        return transfer
    if version is not None and version != transfer.version:
        raise _stale(transfer, version)
    return await _apply(conn, principal, transfer, action, note=note)


async def confirm_arrival(conn: asyncpg.Connection, principal: Principal, transfer_id: UUID, data: ArrivalConfirmation) -> Transfer:
    """A hospital confirms the resident arrived. Confirming an arrived transfer again changes nothing."""
    return await _hospital_step(conn, principal, transfer_id, data.version, TransferAction.ARRIVE, data.handover_note, done=TransferState.ARRIVED)


async def refuse_at_door(conn: asyncpg.Connection, principal: Principal, transfer_id: UUID, data: DoorRefusal) -> Transfer:
    """A hospital refuses the resident at the door: back to ``approved`` without a destination."""
    return await _hospital_step(conn, principal, transfer_id, data.version, TransferAction.REFUSE_AT_DOOR, data.reason)


async def accept_transfer(conn: asyncpg.Connection, principal: Principal, transfer_id: UUID, data: Acceptance) -> Transfer:
    """The destination hospital accepts a transfer before dispatch. Accepting again changes nothing."""
    return await _hospital_step(
        conn, principal, transfer_id, data.version, TransferAction.ACCEPT, data.note, done=TransferState.DESTINATION_APPROVED
    )


async def decline_transfer(conn: asyncpg.Connection, principal: Principal, transfer_id: UUID, data: Decline) -> Transfer:
    """The destination hospital declines a transfer before dispatch: back to ``approved`` without a destination."""
    return await _hospital_step(conn, principal, transfer_id, data.version, TransferAction.DECLINE, data.reason)


async def report_outcome(
    conn: asyncpg.Connection, principal: Principal, settings: Settings, transfer_id: UUID, data: OutcomeReport
) -> Transfer:
    """The hospital reports what became of the resident after arrival.

    ``admitted`` may later be followed by ``discharged``, ``deceased`` or ``returned``; those are
    final (409 ``outcome_final``). The current outcome reported again changes nothing. ``returned``
    opens a new stay at the receiving site through the stays domain's admission (room allocated
    there, regime by the old stay's category), in this transaction: no free bed, no outcome.
    """
    facility_id = _hospital_facility(principal)
    transfer = await _lock(conn, principal, transfer_id, facility_id)
    if transfer.state is not TransferState.ARRIVED:
        raise Conflict(
            f"A transfer in state {transfer.state} has no outcome yet; confirm the arrival first.",
            code="transfer_not_arrived", current_state=transfer.state.value, current_version=transfer.version,
        )
    if transfer.outcome == data.outcome:
        return transfer
    if data.version is not None and data.version != transfer.version:
        raise _stale(transfer, data.version)
    if data.outcome not in OUTCOME_NEXT.get(transfer.outcome, frozenset()):
        raise Conflict(
            f"The outcome {transfer.outcome} is final.", code="outcome_final", field="outcome",
            current_outcome=transfer.outcome.value if transfer.outcome else None, current_version=transfer.version,
        )
    if data.outcome is not TransferOutcome.RETURNED and (data.return_site_id or data.return_stay_id):
        raise InvalidInput("Only a return names a site and a stay.", code="return_fields_unexpected", field="return_site_id")
    site_id = stay_id = None
    if data.outcome is TransferOutcome.RETURNED:
        site_id = data.return_site_id or transfer.site_id
        named = policy.site_filter(principal, HOSPITAL_OP)  # None: the key names every site
        if named is not None and site_id not in named:
            raise NotFound("No such site.", code="site_not_found", field="return_site_id")
        acting = _acting_for_hospital(principal, {transfer.site_id, site_id})
        left = await stays.get_stay(conn, acting, transfer.stay_id)
        returned = await stays.admit(
            conn, acting, settings,
            Admission(site_id=site_id, category=left.category, resident_id=transfer.resident_id, id=data.return_stay_id,
                      origin_area=left.origin_area, risk_level=left.risk_level),
        )
        stay_id = returned.id
    if not await store.report_outcome(conn, transfer, data.outcome.value, return_site_id=site_id, return_stay_id=stay_id):
        raise _stale((await store.get_transfers(conn, [transfer.id], None))[0], transfer.version)  # cannot happen under the row lock
    await store.insert_transition(
        conn, transfer, from_state=transfer.state.value, to_state=transfer.state.value, action=f"outcome_{data.outcome.value}",
        actor=principal.ref, note=data.note, facility_id=facility_id,
    )
    after = (await store.get_transfers(conn, [transfer.id], None))[0]
    await bus.emit(
        conn, "transfers.outcome_reported", site_id=after.site_id, subject_id=after.id, actor=principal.ref,
        # The receiving site and its stay are not named: this event is the sending site's.
        data={
            "stay_id": str(after.stay_id),
            "destination_id": str(after.destination_id) if after.destination_id else None,  # the reporting facility
            "outcome": data.outcome.value,
            "previous": transfer.outcome.value if transfer.outcome else None,
            "version": after.version,
            "returned_to_sending_site": site_id == after.site_id if site_id else None,
        },
    )
    return after


async def _apply(
    conn: asyncpg.Connection,
    principal: Principal,
    transfer: Transfer,
    action: TransferAction,
    *,
    note: str = "",
    destination_id: UUID | None = None,
    vehicle: Vehicle | None = None,
) -> Transfer:
    """One edge on a locked transfer: check, update, record the transition, run departure's consequences, emit."""
    sources, target = TRANSITIONS[action]
    if transfer.state not in sources:
        raise Conflict(
            f"A transfer in state {transfer.state} cannot {action.replace('_', ' ')}.",
            code="invalid_transfer_transition",
            current_state=transfer.state.value,
            current_version=transfer.version,
        )
    if action is TransferAction.CANCEL and transfer.consequences_at is not None:
        raise Conflict("The resident has already left the site; the transfer cannot be cancelled.", code="transfer_departed",
                       current_state=transfer.state.value, current_version=transfer.version)
    if action in NOTE_REQUIRED and not note.strip():
        raise InvalidInput("Give the reason.", code="reason_required", field="note")
    if action is TransferAction.REDIRECT and destination_id is None:
        raise InvalidInput("Name the new destination.", code="destination_required", field="destination_id")
    if action in (TransferAction.ACCEPT, TransferAction.DECLINE) and transfer.destination_id is None:
        raise Conflict("The transfer heads to no destination that could answer.", code="no_destination",
                       current_state=transfer.state.value, current_version=transfer.version)
    set_destination, new_destination, facility = False, transfer.destination_id, None
    if destination_id is not None and action in SETS_DESTINATION:
        facility = await _destination(conn, destination_id)
        set_destination, new_destination = True, destination_id
    refused_by = None
    if action in CLEARS_DESTINATION:
        # The refusing facility is kept in the transition; the transfer heads nowhere until re-dispatched.
        refused_by, set_destination, new_destination = transfer.destination_id, True, None
    if action is TransferAction.DISPATCH:
        if vehicle is None:
            raise InvalidInput("Dispatch needs the vehicle, driver and escort.", code="vehicle_required", field="vehicle")
        if new_destination is None:
            raise InvalidInput("Dispatch needs a destination.", code="destination_required", field="destination_id")
        facility = facility or await _destination(conn, new_destination)
        accepted = transfer.state is TransferState.DESTINATION_APPROVED and new_destination == transfer.destination_id
        if facility.requires_acceptance and not accepted:
            raise Conflict(
                f"Facility {facility.code} accepts transfers before dispatch; it has not accepted this one.",
                code="destination_not_accepted", field="destination_id",
                current_state=transfer.state.value, current_version=transfer.version,
            )
    departing = action is TransferAction.DEPART and transfer.consequences_at is None
    moved = await store.move_transfer(
        conn,
        transfer,
        target.value,
        set_destination=set_destination,
        destination_id=new_destination,
        vehicle=msgspec.structs.asdict(vehicle) | {"kind": vehicle.kind.value} if vehicle else None,
        handover_note=note if action is TransferAction.ARRIVE else None,
    )
    if not moved:  # cannot happen under the row lock; kept so a missing lock never overwrites
        raise _stale((await store.get_transfers(conn, [transfer.id], None))[0], transfer.version)
    await store.insert_transition(
        conn,
        transfer,
        from_state=transfer.state.value,
        to_state=target.value,
        action=action.value,
        actor=principal.ref,
        note=note,
        facility_id=refused_by or (new_destination if set_destination or action is TransferAction.ACCEPT else None),
    )
    if departing:
        await _departure_consequences(conn, principal, transfer)
    after = (await store.get_transfers(conn, [transfer.id], None))[0]
    await bus.emit(
        conn,
        EVENT_OF[action],
        site_id=after.site_id,
        subject_id=after.id,
        actor=principal.ref,
        # No free text (notes, names, plates): events must not carry personal data.
        data={
            "stay_id": str(after.stay_id),
            "from": transfer.state.value,
            "to": after.state.value,
            "version": after.version,
            "urgency": after.urgency.value,
            "infectious": after.infectious,
            "destination_id": str(after.destination_id) if after.destination_id else None,
            "refused_by": str(refused_by) if refused_by else None,
            # The destination this move took the transfer away from (a redirect, or another destination
            # named at dispatch), so that facility hears it no longer comes (hospital webhooks).
            "previous_destination_id": str(transfer.destination_id)
            if transfer.destination_id and transfer.destination_id not in (after.destination_id, refused_by) else None,
            "vehicle_kind": after.vehicle_kind.value if after.vehicle_kind and action is TransferAction.DISPATCH else None,
        },
    )
    return after


async def _departure_consequences(conn: asyncpg.Connection, principal: Principal, transfer: Transfer) -> None:
    """In the transaction of ``departed``: the stay closes (``transferred``), the room is sealed (infectious)
    or vacated, and the contacts' exposure review opens; each domain emits its own event."""
    await stays.close_for_transfer(conn, principal, transfer.stay_id, infectious=transfer.infectious)
    await open_exposure_review(conn, principal, transfer)


async def open_exposure_review(conn: asyncpg.Connection, principal: Principal, transfer: Transfer) -> None:
    """Open the exposure review of the departed resident's roommates, household and floor neighbours
    (the health domain decides who they are and emits ``health.exposure_review_opened``)."""
    await health.open_exposure_review(
        conn, principal, transfer.stay_id, reason=f"transfer {transfer.id}: {transfer.reason.value}", source=ExposureSource.TRANSFER
    )
