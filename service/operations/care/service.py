"""Resident care rules: vulnerability flags (health data), care requests and their SLA, stock issued.

Flags are health data: only ``care.flags.read`` roles (medics, site managers, command) read them;
every other caller learns only whether a resident is flagged (``flagged``). Writes leave an audit
row. A care request moves ``open -> in_progress -> done``, or to ``declined`` from either open
state; its ``due_at`` is the request time plus the kind's SLA (model.SLA), ``overdue`` is computed
at read time. Stock issued against a request is an ``issue`` movement of the supplies ledger
(supplies.record_movement: stock checks, low-stock notices), linked here.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import asyncpg

from service import bus, policy
from service.access import audit
from service.access.model import Principal, Role
from service.errors import Conflict, Forbidden, InvalidInput, NotFound
from service.operations.care import store
from service.operations.care.model import (
    OPEN_STATES,
    SLA,
    TRANSITIONS,
    CareAction,
    CareIssue,
    CareIssueCreate,
    CareKind,
    CareProfile,
    CareProfileSet,
    CareRequest,
    CareRequestCreate,
    CareRequestMove,
    CareState,
)
from service.pagination import Page, check_limit, decode_cursor, page_of
from service.settings import Settings
from service.sites import service as sites
from service.stays import service as stays
from service.stays.model import StayStatus
from service.supplies import service as supplies
from service.supplies.model import MovementCreate

READ_ROLES = policy.roles("care.read")
HANDLE_ROLES = policy.roles("care.request")
ISSUE_ROLES = policy.roles("care.issue")
FLAGS_READ_ROLES = policy.roles("care.flags.read")
FLAGS_WRITE_ROLES = policy.roles("care.flags.write")

EVENT_OF = {CareAction.START: "care.request_started", CareAction.COMPLETE: "care.request_done", CareAction.DECLINE: "care.request_declined"}


def _require(principal: Principal, roles: tuple[Role, ...], what: str) -> None:
    if principal.role not in roles:
        raise Forbidden(f"The role {principal.role} may not {what}.", code="role_not_allowed")


# --- vulnerability flags ------------------------------------------------------------


async def get_profiles(conn: asyncpg.Connection, principal: Principal, stay_ids: list[UUID]) -> dict[UUID, CareProfile]:
    """The flags of these stays at the caller's sites; nothing for a role without health-data access."""
    if principal.role not in FLAGS_READ_ROLES or not stay_ids:
        return {}
    return {p.stay_id: p for p in await store.get_profiles(conn, stay_ids, principal.site_scope)}


async def flagged(conn: asyncpg.Connection, principal: Principal, stay_ids: list[UUID]) -> dict[UUID, bool]:
    """Whether each stay carries any flag: the masked form every care reader may see."""
    if principal.role not in READ_ROLES or not stay_ids:
        return {}
    found = await store.flagged_stays(conn, stay_ids, principal.site_scope)
    return {s: s in found for s in stay_ids}


async def set_profile(conn: asyncpg.Connection, principal: Principal, data: CareProfileSet) -> CareProfile:
    """Replace a stay's flags and note (audited). Without ``version`` it creates the profile; the same
    content sent again answers the stored profile (a replay), other content 409 ``stale_version``."""
    _require(principal, FLAGS_WRITE_ROLES, "set vulnerability flags")
    stay = await stays.get_stay(conn, principal, data.stay_id)
    if stay.status is not StayStatus.ACTIVE:
        raise Conflict(f"The stay is already closed ({stay.outcome}).", code="stay_closed", field="stay_id")
    flags = sorted(set(data.flags))
    current = next(iter(await store.get_profiles(conn, [stay.id], None)), None)
    if current is not None and data.version is None and (current.flags, current.note) == (flags, data.note):
        return current  # a replay of the first setting
    profile = None
    if (current is None) == (data.version is None):
        # A first setting (no version; a concurrent first setting makes this one stale) or a change
        # of the version read; anything else is stale.
        profile = await store.upsert_profile(
            conn, stay_id=stay.id, site_id=stay.site_id, flags=[f.value for f in flags], note=data.note, actor=principal.ref,
            version=data.version or 0,
        )
    if profile is None:
        raise Conflict(
            "The flags changed since you read them." if current else "This stay has no flags yet; send no version.",
            code="stale_version", field="version", current_version=current.version if current else None,
        )
    await audit.record(conn, principal, "care_profile.set", site_id=stay.site_id, subject_id=stay.id, fields=["flags", "note"])
    # No flag names in the event: it reaches every subscriber of the site.
    await bus.emit(
        conn, "care.profile_updated", site_id=stay.site_id, subject_id=stay.id, actor=principal.ref,
        data={"flagged": bool(flags), "version": profile.version},
    )
    return profile


# --- care requests ------------------------------------------------------------------


async def get_requests(conn: asyncpg.Connection, principal: Principal, ids: list[UUID]) -> dict[UUID, CareRequest]:
    if principal.role not in READ_ROLES or not ids:
        return {}
    return {r.id: r for r in await store.get_requests(conn, ids, principal.site_scope)}


async def get_request(conn: asyncpg.Connection, principal: Principal, request_id: UUID) -> CareRequest:
    found = await get_requests(conn, principal, [request_id])
    if request_id not in found:
        raise NotFound("No such care request.", code="care_request_not_found")
    return found[request_id]


async def list_site_requests(
    conn: asyncpg.Connection,
    principal: Principal,
    site_id: UUID,
    *,
    states: list[CareState] | None = None,
    kind: CareKind | None = None,
    overdue_only: bool = False,
    cursor: str | None,
    limit: int,
) -> Page[CareRequest]:
    """A site's care requests by deadline (default: open and in progress: the worklist)."""
    _require(principal, READ_ROLES, "read care requests")
    check_limit(limit)
    await sites.get_site(conn, principal, site_id)
    after = decode_cursor(cursor, [datetime, UUID])
    rows = await store.site_requests(
        conn, site_id, principal.site_scope, states=[s.value for s in states or OPEN_STATES], kind=kind.value if kind else None,
        overdue_only=overdue_only, after=(after[0], after[1]) if after else None, limit=limit + 1,
    )
    return page_of(rows, limit, request_key)


def request_key(r: CareRequest) -> list[object]:
    return [r.due_at.isoformat(), str(r.id)]


async def stay_requests(conn: asyncpg.Connection, principal: Principal, stay_ids: list[UUID]) -> dict[UUID, list[CareRequest]]:
    """Every care request of these stays, newest first (one statement)."""
    out: dict[UUID, list[CareRequest]] = {s: [] for s in stay_ids}
    if principal.role not in READ_ROLES or not stay_ids:
        return out
    for r in await store.stay_requests(conn, stay_ids, principal.site_scope):
        out[r.stay_id].append(r)
    return out


async def create_request(conn: asyncpg.Connection, principal: Principal, data: CareRequestCreate) -> CareRequest:
    """Take a resident's request. A replayed client ``id`` answers the stored request unchanged."""
    _require(principal, HANDLE_ROLES, "take care requests")
    request_id = data.id or uuid4()
    if data.id is not None and (replay := await _replay(conn, principal, data)) is not None:
        return replay
    stay = await stays.get_stay(conn, principal, data.stay_id)
    if stay.status is not StayStatus.ACTIVE:
        raise Conflict(f"The stay is already closed ({stay.outcome}).", code="stay_closed", field="stay_id")
    kind = CareKind(data.kind)
    inserted = await store.insert_request(
        conn, id=request_id, site_id=stay.site_id, stay_id=stay.id, kind=kind.value, detail=data.detail, actor=principal.ref, sla=SLA[kind]
    )
    if not inserted and (replay := await _replay(conn, principal, data)) is not None:  # the same id committed meanwhile
        return replay
    request = (await store.get_requests(conn, [request_id], None))[0]
    await bus.emit(
        conn, "care.request_opened", site_id=request.site_id, subject_id=request.id, actor=principal.ref,
        data={"stay_id": str(request.stay_id), "kind": request.kind.value, "due_at": request.due_at.isoformat()},
    )
    return request


async def _replay(conn: asyncpg.Connection, principal: Principal, data: CareRequestCreate) -> CareRequest | None:
    """The stored request of a replayed id; None when new; 409 when the id is another's (or another site's)."""
    assert data.id is not None
    stored = await store.get_requests(conn, [data.id], None)
    if not stored:
        return None
    if (stored[0].stay_id, stored[0].kind) != (data.stay_id, data.kind) or not principal.can_access_site(stored[0].site_id):
        raise Conflict("Another care request already has this id.", code="care_request_id_taken", field="id")
    return stored[0]


def _stale(request: CareRequest, version: int) -> Conflict:
    return Conflict(
        f"The request changed since version {version}; it is now {request.state} at version {request.version}.",
        code="stale_version", field="version", current_state=request.state.value, current_version=request.version,
    )


async def _lock(conn: asyncpg.Connection, principal: Principal, request_id: UUID) -> CareRequest:
    request = await store.lock_request(conn, request_id, principal.site_scope)
    if request is None:
        raise NotFound("No such care request.", code="care_request_not_found")
    return request


async def move_request(conn: asyncpg.Connection, principal: Principal, request_id: UUID, move: CareRequestMove) -> CareRequest:
    """start, complete or decline (with the reason); the actor is recorded as who started / closed it."""
    _require(principal, HANDLE_ROLES, "handle care requests")
    request = await _lock(conn, principal, request_id)
    if request.version != move.version:
        raise _stale(request, move.version)
    action = CareAction(move.action)
    sources, target = TRANSITIONS[action]
    if request.state not in sources:
        raise Conflict(
            f"A care request in state {request.state} cannot {action}.", code="invalid_care_transition",
            current_state=request.state.value, current_version=request.version,
        )
    if action is CareAction.DECLINE and not move.resolution.strip():
        raise InvalidInput("Give the reason.", code="reason_required", field="resolution")
    await store.move_request(conn, request, target.value, actor=principal.ref, resolution=move.resolution)
    after = (await store.get_requests(conn, [request.id], None))[0]
    await bus.emit(
        conn, EVENT_OF[action], site_id=after.site_id, subject_id=after.id, actor=principal.ref,
        data={"stay_id": str(after.stay_id), "kind": after.kind.value, "from": request.state.value, "to": after.state.value,
              "version": after.version, "overdue": after.overdue},
    )
    return after


# --- stock issued against a request ---------------------------------------------------


async def issues(conn: asyncpg.Connection, principal: Principal, request_ids: list[UUID]) -> dict[UUID, list[CareIssue]]:
    out: dict[UUID, list[CareIssue]] = {r: [] for r in request_ids}
    if principal.role not in READ_ROLES or not request_ids:
        return out
    for i in await store.issues_of(conn, request_ids, principal.site_scope):
        out[i.request_id].append(i)
    return out


async def issue_stock(conn: asyncpg.Connection, principal: Principal, settings: Settings, data: CareIssueCreate) -> CareIssue:
    """Issue stock from the request's site for an open request: one ``issue`` movement of the supplies
    ledger (409 ``insufficient_stock`` when short), linked to the request. ``id`` names the movement:
    a replay answers the stored issue; an id used for any other movement is 409 ``movement_id_taken``."""
    _require(principal, ISSUE_ROLES, "issue stock")
    request = await _lock(conn, principal, data.care_request_id)
    reason = f"care request {request.id}"
    stored = await store.get_issue(conn, data.id)
    if stored is not None:
        if (stored.request_id, stored.item_id, stored.quantity) != (request.id, data.item_id, data.quantity):
            raise Conflict("This movement id was already used for another movement.", code="movement_id_taken", field="id")
        return stored
    if request.state not in OPEN_STATES:
        raise Conflict(f"The request is {request.state}; stock is issued for open requests.", code="care_request_closed",
                       current_state=request.state.value)
    movement = await supplies.record_movement(
        conn, principal, settings,
        MovementCreate(id=data.id, site_id=request.site_id, item_id=data.item_id, kind="issue", quantity=data.quantity, reason=reason),
    )
    if movement.reason != reason or movement.delta != -data.quantity:  # the ledger answered an earlier, unrelated movement
        raise Conflict("This movement id was already used for another movement.", code="movement_id_taken", field="id")
    await store.insert_issue(
        conn, movement_id=movement.id, request_id=request.id, site_id=request.site_id, item_id=data.item_id,
        quantity=data.quantity, actor=principal.ref,
    )
    issue = await store.get_issue(conn, movement.id)
    assert issue is not None
    await bus.emit(
        conn, "care.stock_issued", site_id=request.site_id, subject_id=request.id, actor=principal.ref,
        data={"movement_id": str(movement.id), "item_id": str(data.item_id), "quantity": data.quantity,
              "quantity_after": movement.quantity_after},
    )
    return issue
