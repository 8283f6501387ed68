"""Site rules: who may create, read and change a site."""

from __future__ import annotations

from uuid import UUID

import asyncpg
import msgspec

from service import bus, policy
from service.access.model import Principal, Role
from service.errors import Conflict, Forbidden, InvalidInput, NotFound, RuleViolated
from service.pagination import Page, check_limit, decode_cursor, page_of
from service.sites import store
from service.sites.model import (
    MANUAL_ACTIONS,
    TRANSITIONS,
    BedSummary,
    DisinfectionState,
    DisinfectionTask,
    FloorCreate,
    Room,
    RoomAction,
    RoomCreate,
    RoomPatch,
    RoomStatus,
    RoomStatusChange,
    Site,
    SiteCreate,
    SitePatch,
)

MANAGE_ROLES = policy.roles("rooms.manage")
# People who run the rooms day to day (turnover, sealing).
ROOM_ROLES = policy.roles("rooms.turn_over")


async def list_sites(conn: asyncpg.Connection, principal: Principal, *, cursor: str | None, limit: int) -> Page[Site]:
    check_limit(limit)
    after = decode_cursor(cursor, [str])
    rows = await store.list_sites(conn, principal.site_scope, after[0] if after else None, limit + 1)
    return page_of(rows, limit, lambda s: [s.code])


async def get_site(conn: asyncpg.Connection, principal: Principal, site_id: UUID) -> Site:
    """The site, if the caller may see it; another site's id is simply not found."""
    site = await store.get_site(conn, site_id, principal.site_scope)
    if site is None:
        raise NotFound("No such site.", code="site_not_found")
    return site


async def get_sites(conn: asyncpg.Connection, principal: Principal, site_ids: list[UUID]) -> dict[UUID, Site]:
    return {s.id: s for s in await store.get_sites_by_ids(conn, site_ids, principal.site_scope)}


async def create_site(conn: asyncpg.Connection, principal: Principal, data: SiteCreate) -> Site:
    if principal.role is not Role.COMMAND:
        raise Forbidden("Only the command centre creates sites.", code="role_not_allowed")
    site = await store.insert_site(conn, data)
    await bus.emit(conn, "sites.site_created", site_id=site.id, subject_id=site.id, actor=principal.ref, data={"code": site.code, "version": site.version})
    return site


async def update_site(conn: asyncpg.Connection, principal: Principal, site_id: UUID, patch: SitePatch) -> Site:
    if principal.role not in MANAGE_ROLES:
        raise Forbidden("Only the command centre and site managers change sites.", code="role_not_allowed")
    current = await get_site(conn, principal, site_id)
    changes = patch.changes()
    site = await store.update_site(conn, site_id, patch.version, changes, principal.site_scope)
    if site is None:
        raise Conflict(
            f"The site changed since version {patch.version}; it is now at version {current.version}.",
            code="stale_version",
            current_version=current.version,
        )
    await bus.emit(
        conn, "sites.site_updated", site_id=site.id, subject_id=site.id, actor=principal.ref, data={"fields": sorted(changes), "version": site.version}
    )
    return site


# --- rooms ------------------------------------------------------------------
#
# Other domains call: get_room / get_rooms, list_site_rooms, lock_room / lock_rooms_for_admission,
# occupy_bed and release_bed (admissions and departures), seal_room (positive case),
# bed_summary (occupancy). Every function takes the caller's Principal; a room of
# another site is "not found".


def _require(principal: Principal, roles: tuple[Role, ...], what: str) -> None:
    if principal.role not in roles:
        raise Forbidden(f"The role {principal.role} may not {what}.", code="role_not_allowed")


async def create_rooms(conn: asyncpg.Connection, principal: Principal, site_id: UUID, rooms: list[RoomCreate]) -> list[Room]:
    """Create rooms (``ready``); numbers that already exist at the site answer 409 ``room_number_taken``."""
    _require(principal, MANAGE_ROLES, "create rooms")
    await get_site(conn, principal, site_id)
    if not rooms:
        raise InvalidInput("No rooms given.", code="no_rooms", field="rooms")
    numbers = [r.number for r in rooms]
    if len(set(numbers)) != len(numbers):
        raise InvalidInput("Room numbers repeat within the request.", code="duplicate_room_number", field="rooms")
    created = await store.insert_rooms(conn, site_id, rooms, principal.ref)
    if len(created) != len(rooms):
        taken = sorted(set(numbers) - {r.number for r in created})
        raise Conflict(f"The site already has rooms {', '.join(taken[:10])}.", code="room_number_taken", numbers=taken[:50])
    await bus.emit(
        conn,
        "sites.rooms_created",
        site_id=site_id,
        subject_id=site_id,
        actor=principal.ref,
        data={"count": len(created), "room_ids": [str(r.id) for r in created], "floors": sorted({r.floor for r in created})},
    )
    return sorted(created, key=lambda r: (r.floor, r.number))


async def create_floor(conn: asyncpg.Connection, principal: Principal, site_id: UUID, data: FloorCreate) -> list[Room]:
    """Bulk creation of a floor's rooms, e.g. 301-330 with one bed each (all or nothing)."""
    return await create_rooms(conn, principal, site_id, data.rooms())


async def get_room(conn: asyncpg.Connection, principal: Principal, room_id: UUID) -> Room:
    room = await store.get_room(conn, room_id, principal.site_scope)
    if room is None:
        raise NotFound("No such room.", code="room_not_found")
    return room


async def get_rooms(conn: asyncpg.Connection, principal: Principal, room_ids: list[UUID]) -> dict[UUID, Room]:
    """Rooms by id (one statement); ids of other sites are simply absent."""
    return {r.id: r for r in await store.get_rooms_by_ids(conn, room_ids, principal.site_scope)}


async def list_site_rooms(
    conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, floor: int | None = None, status: RoomStatus | None = None
) -> list[Room]:
    """All rooms of a site (optionally one floor / status) in one statement, ordered by floor and number."""
    await get_site(conn, principal, site_id)
    return await store.list_rooms(conn, site_id, principal.site_scope, floor=floor, status=status)


async def list_rooms(
    conn: asyncpg.Connection,
    principal: Principal,
    site_id: UUID,
    *,
    floor: int | None = None,
    status: RoomStatus | None = None,
    cursor: str | None,
    limit: int,
) -> Page[Room]:
    check_limit(limit)
    await get_site(conn, principal, site_id)
    after = decode_cursor(cursor, [int, str])
    rows = await store.list_rooms(
        conn, site_id, principal.site_scope, floor=floor, status=status, after=tuple(after) if after else None, limit=limit + 1
    )
    return page_of(rows, limit, lambda r: [r.floor, r.number])


async def update_room(conn: asyncpg.Connection, principal: Principal, room_id: UUID, patch: RoomPatch) -> Room:
    """Change beds or notes; fewer beds than residents answers 409 ``room_full``."""
    _require(principal, MANAGE_ROLES, "change rooms")
    current = await get_room(conn, principal, room_id)
    changes = {f: v for f in ("beds", "notes") if (v := getattr(patch, f)) is not msgspec.UNSET}
    room = await store.update_room(conn, room_id, patch.version, changes, principal.site_scope)
    if room is None:
        raise Conflict(
            f"The room changed since version {patch.version}; it is now at version {current.version}.",
            code="stale_version",
            current_version=current.version,
        )
    await bus.emit(
        conn, "sites.room_updated", site_id=room.site_id, subject_id=room.id, actor=principal.ref,
        data={"fields": sorted(changes), "version": room.version},
    )
    return room


# A room's history grows with every turnover; reads return its latest changes only.
HISTORY_DEFAULT = 50
HISTORY_MAX = 200


async def room_history(
    conn: asyncpg.Connection, principal: Principal, room_id: UUID, *, last: int = HISTORY_DEFAULT
) -> list[RoomStatusChange]:
    """The room's latest ``last`` status changes, oldest first: from, to, action, who, when, why."""
    await get_room(conn, principal, room_id)
    return (await room_histories(conn, principal, [room_id], last=last)).get(room_id, [])


async def room_histories(
    conn: asyncpg.Connection, principal: Principal, room_ids: list[UUID], *, last: int = HISTORY_DEFAULT
) -> dict[UUID, list[RoomStatusChange]]:
    """The latest ``last`` status changes of each room, oldest first, in one statement (rooms of other sites: none)."""
    if not 1 <= last <= HISTORY_MAX:
        raise InvalidInput(f"last must be between 1 and {HISTORY_MAX}.", code="invalid_input", field="last")
    found: dict[UUID, list[RoomStatusChange]] = {}
    for change in await store.room_histories(conn, room_ids, principal.site_scope, last=last):
        found.setdefault(change.room_id, []).append(change)
    return found


async def room_tasks(conn: asyncpg.Connection, principal: Principal, room_ids: list[UUID]) -> dict[UUID, DisinfectionTask]:
    """The latest disinfection task of each room (one statement)."""
    return {t.room_id: t for t in await store.tasks_of_rooms(conn, room_ids, principal.site_scope)}


async def lock_room(conn: asyncpg.Connection, principal: Principal, room_id: UUID) -> Room:
    """Lock the room row for the rest of the transaction (every bed or status change goes through it)."""
    room = await store.lock_room(conn, room_id, principal.site_scope)
    if room is None:
        raise NotFound("No such room.", code="room_not_found")
    return room


async def lock_rooms_for_admission(
    conn: asyncpg.Connection, principal: Principal, site_id: UUID, room_ids: list[UUID], *, allocate: bool
) -> None:
    """Before an admission takes beds: lock the rooms it names and (``allocate``) every room of the
    site with a free bed, all in id order and waiting for other admissions, never skipping."""
    await store.lock_rooms_for_admission(conn, site_id, principal.site_scope, sorted(set(room_ids)), allocate=allocate)


def _transition(room: Room, action: RoomAction) -> RoomStatus:
    target = TRANSITIONS.get((room.status, action))
    if target is None:
        raise Conflict(
            f"A room in status {room.status} cannot {action.replace('_', ' ')}.",
            code="invalid_room_transition",
            status=room.status.value,
            action=action.value,
        )
    return target


async def _emit_status(conn: asyncpg.Connection, principal: Principal, before: Room, after: Room, action: RoomAction, reason: str) -> None:
    await bus.emit(
        conn,
        "sites.room_status_changed",
        site_id=after.site_id,
        subject_id=after.id,
        actor=principal.ref,
        data={"number": after.number, "from": before.status.value, "to": after.status.value, "action": action.value, "reason": reason,
              "version": after.version},
    )


async def occupy_bed(conn: asyncpg.Connection, principal: Principal, room: Room, *, may_share: bool) -> Room:
    """Take one bed of a room locked with ``lock_room``/``lock_rooms_for_admission``; returns the room after.

    A room takes a newcomer only when ``ready``, or when already ``occupied`` and the caller
    says sharing is allowed (``may_share``: same household); 409 ``room_not_ready`` /
    ``room_full`` otherwise. ``ready -> occupied`` is recorded in the room's history.
    """
    if room.status is RoomStatus.OCCUPIED and not may_share:
        raise Conflict(f"Room {room.number} is occupied by another household.", code="room_not_ready", status=room.status.value)
    if room.status not in (RoomStatus.READY, RoomStatus.OCCUPIED):
        raise Conflict(f"Room {room.number} is {room.status}, not ready.", code="room_not_ready", status=room.status.value)
    if room.free_beds <= 0:
        raise Conflict(f"Room {room.number} has no free bed.", code="room_full")
    target = _transition(room, RoomAction.ADMIT) if room.status is RoomStatus.READY else RoomStatus.OCCUPIED
    after = await store.set_room_state(
        conn, room, status=target, occupied=room.occupied + 1, action=RoomAction.ADMIT, actor=principal.ref, reason=""
    )
    if target != room.status:
        await _emit_status(conn, principal, room, after, RoomAction.ADMIT, "")
    return after


async def release_bed(conn: asyncpg.Connection, principal: Principal, room_id: UUID, *, seal: bool = False, reason: str = "") -> Room:
    """One resident left the room (release, move, transfer). Returns the room after.

    With ``seal`` (an infectious resident left) the room is sealed first. When the last
    resident leaves, an occupied room becomes ``vacated``; an emptied room (vacated or
    sealed) gets its disinfection task.
    """
    room = await lock_room(conn, principal, room_id)
    if room.occupied <= 0:
        raise Conflict(f"Room {room.number} has nobody to release.", code="room_empty")
    if seal and room.status is not RoomStatus.SEALED:
        room = await _apply(conn, principal, room, RoomAction.SEAL, reason)
    status = room.status
    if room.occupied == 1 and status is RoomStatus.OCCUPIED:
        status = _transition(room, RoomAction.VACATE)
    after = await store.set_room_state(
        conn, room, status=status, occupied=room.occupied - 1, action=RoomAction.VACATE, actor=principal.ref, reason=reason
    )
    if status != room.status:
        await _emit_status(conn, principal, room, after, RoomAction.VACATE, reason)
    if after.occupied == 0:
        await _open_task(conn, principal, after)
    return after


async def _open_task(conn: asyncpg.Connection, principal: Principal, room: Room) -> DisinfectionTask:
    task = await store.open_task(conn, room, principal.ref)
    await bus.emit(
        conn, "sites.disinfection_opened", site_id=room.site_id, subject_id=room.id, actor=principal.ref, data={"task_id": str(task.id), "number": room.number}
    )
    return task


async def _apply(conn: asyncpg.Connection, principal: Principal, room: Room, action: RoomAction, reason: str) -> Room:
    """Move a locked room along one edge of the turnover graph and record who, when and why."""
    target = _transition(room, action)
    after = await store.set_room_state(conn, room, status=target, occupied=room.occupied, action=action, actor=principal.ref, reason=reason)
    await _emit_status(conn, principal, room, after, action, reason)
    return after


async def seal_room(conn: asyncpg.Connection, principal: Principal, room_id: UUID, reason: str) -> Room:
    """Seal a room after a positive case (health calls this). Sealing a sealed room is a no-op.

    Residents still inside stay; once it is empty it is disinfected like a vacated room.
    """
    _require(principal, ROOM_ROLES, "seal rooms")
    room = await lock_room(conn, principal, room_id)
    if room.status is RoomStatus.SEALED:
        return room
    after = await _apply(conn, principal, room, RoomAction.SEAL, reason)
    if after.occupied == 0:
        await _open_task(conn, principal, after)
    return after


async def turn_over(
    conn: asyncpg.Connection,
    principal: Principal,
    room_id: UUID,
    action: RoomAction,
    *,
    reason: str = "",
    airing_minutes: int = 30,
    version: int | None = None,
) -> Room:
    """Staff move a room along the turnover graph (DESIGN.md) and the disinfection task with it.

    - ``start_disinfection`` (vacated/sealed, empty) -> disinfecting;
    - ``finish_disinfection`` -> airing for ``airing_minutes`` (setting ``room_airing_minutes``);
    - ``pass_inspection`` (airing over) -> ready; ``fail_inspection`` -> disinfecting again;
    - ``take_out_of_service`` (empty) -> out_of_service; ``return_to_service`` -> vacated (new task).

    Two staff doing the same at once: the room lock orders them, the second gets 409
    ``invalid_room_transition``. ``version`` (optional) is the room version the caller saw: a
    phone replaying queued steps gets 409 ``stale_version`` (with the current status and version)
    instead of applying a step to a room that moved on meanwhile.
    """
    if action not in MANUAL_ACTIONS:
        raise InvalidInput(f"{action} happens through admissions and departures only.", code="not_a_manual_action", field="action")
    if action in (RoomAction.TAKE_OUT_OF_SERVICE, RoomAction.RETURN_TO_SERVICE):
        _require(principal, MANAGE_ROLES, "take rooms in or out of service")
    else:
        _require(principal, ROOM_ROLES, "turn rooms over")
    room = await lock_room(conn, principal, room_id)
    if version is not None and version != room.version:
        raise Conflict(
            f"The room changed since version {version}; it is now {room.status} at version {room.version}.",
            code="stale_version",
            field="version",
            current_state=room.status.value,
            current_version=room.version,
        )
    if action is RoomAction.SEAL:
        return await seal_room(conn, principal, room_id, reason)
    _transition(room, action)
    if room.occupied and action in (RoomAction.START_DISINFECTION, RoomAction.TAKE_OUT_OF_SERVICE):
        raise Conflict(f"Room {room.number} still has {room.occupied} resident(s).", code="room_not_empty")
    task = await store.current_task(conn, room.id)
    actor = principal.ref
    if action is RoomAction.START_DISINFECTION:
        task = task or await _open_task(conn, principal, room)
        await store.update_task(conn, task.id, state=DisinfectionState.DISINFECTING, actor=actor, notes=reason)
    elif action is RoomAction.FINISH_DISINFECTION and task:
        await store.update_task(conn, task.id, state=DisinfectionState.AIRING, actor=actor, airing_minutes=airing_minutes, notes=reason)
    elif action is RoomAction.PASS_INSPECTION and task:
        if not await store.airing_over(conn, task.id):
            until = task.airing_until.isoformat() if task.airing_until else None
            raise RuleViolated(f"Room {room.number} is still airing until {until}.", code="airing_not_finished", airing_until=until)
        await store.update_task(conn, task.id, state=DisinfectionState.PASSED, actor=actor, inspected=True, notes=reason)
    elif action is RoomAction.FAIL_INSPECTION and task:
        await store.update_task(conn, task.id, state=DisinfectionState.DISINFECTING, actor=actor, inspected=True, failed=True, notes=reason)
    elif action is RoomAction.TAKE_OUT_OF_SERVICE and task:
        await store.update_task(conn, task.id, state=DisinfectionState.CANCELLED, actor=actor, notes=reason)
    after = await _apply(conn, principal, room, action, reason)
    if action is RoomAction.RETURN_TO_SERVICE:
        await _open_task(conn, principal, after)
    return after


async def bed_summary(conn: asyncpg.Connection, site_ids: list[UUID] | None) -> dict[UUID, BedSummary]:
    """Beds per site by room status (one statement); ``site_ids`` = principal.site_scope."""
    return {b.site_id: b for b in await store.bed_summary(conn, site_ids)}


async def seed_room_states(conn: asyncpg.Connection, principal: Principal, states: dict[UUID, tuple[RoomStatus, int]]) -> None:
    """Seeding only (demo, scale data): set many rooms' status and occupancy in one statement,
    bypassing the turnover graph. Disinfection tasks are opened for rooms left in turnover."""
    _require(principal, (Role.COMMAND,), "seed rooms")
    await store.bulk_set_rooms(conn, {k: (s.value, n) for k, (s, n) in states.items()}, principal.ref)
    in_turnover = [k for k, (s, _) in states.items() if s in (RoomStatus.VACATED, RoomStatus.DISINFECTING, RoomStatus.AIRING)]
    for room in await store.get_rooms_by_ids(conn, in_turnover, None):
        task = await store.open_task(conn, room, principal.ref)
        if room.status is not RoomStatus.VACATED:
            await store.update_task(conn, task.id, state="disinfecting", actor=principal.ref)
        if room.status is RoomStatus.AIRING:
            await store.update_task(conn, task.id, state="airing", actor=principal.ref, airing_minutes=30)
