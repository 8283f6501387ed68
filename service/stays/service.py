"""Stay rules: admission and allocation, moves, release, transfer departure, regimes, residents.

Functions other domains call (each takes a connection inside the caller's transaction and
the caller's Principal; ids of other sites are "not found"):

- ``get_stay`` / ``get_stays``                     read stays
- ``release_blockers(conn, stay)``                  why a stay cannot be released yet (health extends it)
- ``close_for_transfer(conn, principal, stay_id, infectious=...)``  a transfer departed
- ``extend_stay(conn, principal, stay_id, Extension(...))``          exposure confirmed
- ``contacts(conn, principal, stay_id)``            roommates, household, floor neighbours (exposure review)
- ``occupied_beds(conn, site_ids)``                 active stays per site (supplies forecast)
- ``regime_of(conn, stay)``                         the stay's regime (test days, check-ins per day)
- ``quarantine_day(stay, now)``                     day N in the site's time zone, day 1 = admission date
- ``regime_for(conn, category, risk_level=, code=, at=)``  the regime (version in force at ``at``) by the rules
- ``is_isolated(conn, settings, document_type, number)``   whether a person has an active stay (intake)
- ``reserve_beds`` / ``release_reservations``        hold beds for announced arrivals (intake manifests);
  an ``Admission`` with ``reservation_id`` consumes its reservation, with ``needs`` picks a bed offering them
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from service import bus, policy
from service.access import crypto
from service.access import service as access
from service.access.model import STAFF_ROLES, Principal, Role
from service.errors import Conflict, Forbidden, InvalidInput, NotFound, RuleViolated
from service.fields import BACKDATE_LIMIT, CLOCK_SKEW
from service.handover.model import HandoverCreate
from service.pagination import Page, check_limit, decode_cursor, page_of
from service.settings import Settings
from service.sites import service as sites
from service.sites.model import Room, RoomStatus, Site
from service.stays import store
from service.stays.model import (
    Admission,
    BatchAdmission,
    BedEntity,
    BedOccupancy,
    BedPatch,
    BedRequest,
    Blocker,
    Category,
    Contacts,
    Extension,
    Move,
    Occupancy,
    Outcome,
    Phase,
    PhaseKind,
    Regime,
    RegimeChange,
    RegimeCreate,
    RegimePatch,
    RegimeRule,
    RegimeRuleSet,
    Reservation,
    ReservationState,
    Resident,
    ResidentCreate,
    ResidentRevealed,
    RiskLevel,
    SiteOccupancy,
    Stay,
    StayStatus,
    StayView,
    Suggestion,
    attributes_for,
    phase_days,
)

ADMIT_ROLES = policy.roles("stays.admit")


def _require(principal: Principal, roles: tuple[Role, ...] | frozenset[Role], what: str) -> None:
    if principal.role not in roles:
        raise Forbidden(f"The role {principal.role} may not {what}.", code="role_not_allowed")


def _now() -> datetime:
    return datetime.now(UTC)


# --- quarantine calendar (the site's time zone) ------------------------------


def local_date(at: datetime, time_zone: str) -> date:
    return at.astimezone(ZoneInfo(time_zone)).date()


def release_at(period_start: date, centralized_days: int, time_zone: str) -> datetime:
    """Local midnight after the last centralized day (period_start = day 1), in UTC.

    The SQL of ``replan_regime_stays`` computes the same: (period_start + days)::timestamp AT TIME ZONE tz.
    """
    return datetime.combine(period_start + timedelta(days=centralized_days), time(0), ZoneInfo(time_zone)).astimezone(UTC)


def quarantine_day(stay: Stay, now: datetime | None = None) -> int:
    """Quarantine day N today in the site's time zone; day 1 is the admission date (kept across moves)."""
    return (local_date(now or _now(), stay.time_zone) - stay.day_one).days + 1


# --- reads ------------------------------------------------------------------


async def get_stay(conn: asyncpg.Connection, principal: Principal, stay_id: UUID) -> Stay:
    found = await store.get_stays(conn, [stay_id], principal.site_scope)
    if not found:
        raise NotFound("No such stay.", code="stay_not_found")
    return found[0]


async def get_stays(conn: asyncpg.Connection, principal: Principal, stay_ids: list[UUID]) -> dict[UUID, Stay]:
    return {s.id: s for s in await store.get_stays(conn, stay_ids, principal.site_scope)}


async def list_stays(
    conn: asyncpg.Connection,
    principal: Principal,
    site_id: UUID,
    *,
    status: StayStatus | None = None,
    arrival_batch: str | None = None,
    cursor: str | None,
    limit: int,
) -> Page[Stay]:
    check_limit(limit)
    await sites.get_site(conn, principal, site_id)
    after = decode_cursor(cursor, [datetime, UUID])
    rows = await store.list_stays(
        conn, site_id, principal.site_scope, status=status, arrival_batch=arrival_batch, after=tuple(after) if after else None, limit=limit + 1
    )
    return page_of(rows, limit, lambda s: [s.admitted_at.isoformat(), str(s.id)])


async def get_residents(conn: asyncpg.Connection, principal: Principal, resident_ids: list[UUID]) -> dict[UUID, Resident]:
    """Residents (masked) by id, one statement."""
    return {r.id: r for r in await store.get_residents(conn, resident_ids, principal.site_scope)}


async def board(conn: asyncpg.Connection, principal: Principal, room_ids: list[UUID], now: datetime | None = None) -> dict[UUID, list[StayView]]:
    """Active stays of many rooms with their masked residents and quarantine day: one statement."""
    now = now or _now()
    found: dict[UUID, list[StayView]] = {r: [] for r in room_ids}
    for stay, resident in await store.board_rows(conn, room_ids, principal.site_scope):
        found[stay.room_id].append(StayView(stay=stay, resident=resident, quarantine_day=quarantine_day(stay, now)))
    return found


async def regime_of(conn: asyncpg.Connection, stay: Stay) -> Regime:
    return (await store.get_regimes_by_ids(conn, [stay.regime_id]))[0]


async def list_regimes(conn: asyncpg.Connection) -> list[Regime]:
    return await store.list_regimes(conn)


async def get_regimes(conn: asyncpg.Connection, regime_ids: list[UUID]) -> dict[UUID, Regime]:
    return {r.id: r for r in await store.get_regimes_by_ids(conn, regime_ids)}


async def regime_for(
    conn: asyncpg.Connection, category: Category, *, risk_level: RiskLevel | None = None, code: str | None = None, at: datetime | None = None
) -> Regime:
    """The regime a person serves, in its version in force at ``at`` (admission; None: now): ``code`` if
    given; else the regime rule for (category, risk level), then the category's rule without a level,
    then the category's default regime (``regimes.category``).

    Referrals (intake) ask at referral and again at admission: the rules may change in between.
    """
    if code:
        regime = await store.get_regime_by_code(conn, code, at)
        if regime is None:
            raise InvalidInput(f"No regime {code!r}.", code="unknown_regime", field="regime_code")
        return regime
    regime = await store.regime_by_rule(conn, category, risk_level, at) if risk_level else None
    regime = regime or await store.regime_by_rule(conn, category, None, at) or await store.get_regime_for_category(conn, category, at)
    if regime is None:
        raise InvalidInput(f"Category {category} has no default regime; give regime_code.", code="regime_required", field="regime_code")
    return regime


async def regime_versions(conn: asyncpg.Connection, code: str) -> list[Regime]:
    """Every version of a regime, oldest first (empty for an unknown code)."""
    return await store.regime_versions(conn, code)


async def list_regime_rules(conn: asyncpg.Connection) -> list[RegimeRule]:
    return await store.list_regime_rules(conn)


async def set_regime_rule(conn: asyncpg.Connection, principal: Principal, data: RegimeRuleSet) -> list[RegimeRule]:
    """Set the rule of (category, risk level); answers every rule."""
    _require(principal, policy.roles("regimes.update"), "change regime rules")
    if await store.get_regime_by_code(conn, data.regime_code) is None:
        raise InvalidInput(f"No regime {data.regime_code!r}.", code="unknown_regime", field="regime_code")
    await store.set_regime_rule(conn, data.category, data.risk_level, data.regime_code, principal.ref)
    await bus.emit(
        conn,
        "stays.regime_rule_set",
        site_id=None,
        actor=principal.ref,
        data={"category": str(data.category), "risk_level": data.risk_level, "regime": data.regime_code},
    )
    return await store.list_regime_rules(conn)


async def is_isolated(conn: asyncpg.Connection, settings: Settings, document_type: str, document_number: str) -> bool:
    """Whether the person with this document has an active stay at any site (a yes/no: no ids leave)."""
    return await store.has_active_stay(conn, crypto.blind_index(settings, document_number), document_type)


# --- residents --------------------------------------------------------------


async def find_residents(conn: asyncpg.Connection, principal: Principal, settings: Settings, document_number: str) -> list[Resident]:
    """Residents (masked) with exactly this document number, through the blind index; caller's sites only."""
    return await store.search_residents_by_index(conn, crypto.blind_index(settings, document_number), principal.site_scope)


async def reveal_resident(
    conn: asyncpg.Connection, principal: Principal, settings: Settings, resident_id: UUID, purpose: str
) -> ResidentRevealed:
    """Unmasked name, ID and phone number for command, medics and site managers, with a purpose.

    Role, purpose and the audit row are access.service.reveal's (run it in a transaction,
    e.g. through gql.mutate): 403 ``unmask_not_allowed``, 422 ``invalid_purpose``.
    """
    row = await store.get_resident_secrets(conn, resident_id, principal.site_scope)
    if row is None:
        raise NotFound("No such resident.", code="resident_not_found")
    fields = ["name", "birth_date", "document_number", "phone"]
    if not await access.reveal(
        conn, principal, purpose=purpose, site_id=row["site_id"], subject_id=resident_id, fields=fields, action="resident.unmask"
    ):
        raise InvalidInput("Give the purpose of unmasking.", code="invalid_purpose", field="purpose")
    record_id = resident_id.bytes
    revealed = ResidentRevealed(
        id=resident_id,
        name=row["name"],
        birth_date=row["birth_date"],
        document_type=row["document_type"],
        document_number=crypto.decrypt(settings, row["document_enc"], record_id=record_id),
        phone=None if row["phone_enc"] is None else crypto.decrypt(settings, row["phone_enc"], record_id=record_id),
    )
    return revealed


async def _resident_for(conn: asyncpg.Connection, principal: Principal, settings: Settings, data: Admission, site_id: UUID) -> UUID:
    """The resident to admit: the given id, the person already registered with this document, or a new one."""
    if data.resident_id is not None:
        found = await store.get_residents(conn, [data.resident_id], principal.site_scope)
        if not found:
            raise NotFound("No such resident.", code="resident_not_found")
        resident_id, current_site = found[0].id, found[0].site_id
    else:
        new: ResidentCreate = data.resident  # type: ignore[assignment]
        index = crypto.blind_index(settings, new.document_number)
        known = await store.find_resident_by_index(conn, index, new.document_type)
        if known is not None:
            resident_id, current_site = known.id, known.site_id
        else:
            resident_id = uuid4()
            number = crypto.normalise(new.document_number)
            phone = crypto.normalise(new.phone) if new.phone else None
            await store.insert_resident(
                conn,
                id=resident_id,
                site_id=site_id,
                name=new.name.strip(),
                sex=new.sex,
                birth_date=new.birth_date,
                document_type=new.document_type,
                document_enc=crypto.encrypt(settings, number, record_id=resident_id.bytes),
                document_index=index,
                document_tail=number[-4:],
                phone_enc=crypto.encrypt(settings, phone, record_id=resident_id.bytes) if phone else None,
                phone_tail=phone[-4:] if phone else None,
                household_key=new.household_key,
                actor=principal.ref,
            )
            return resident_id
    if current_site != site_id:
        await store.set_resident_site(conn, resident_id, site_id)
    return resident_id


# --- allocation ---------------------------------------------------------------


@dataclass
class _Allocator:
    """One request's view of a site's rooms: ranks rooms for each newcomer, updated as they are placed.

    Rules, in order: join a room already holding the same household (when beds allow);
    prefer floors where nobody of another category or arrival batch lives; among those,
    a room that holds the whole household; floors already opened before empty ones;
    then the snuggest room (fewest spare beds), lowest floor and number.
    """

    rooms: dict[UUID, Room]
    households: dict[UUID, set[str | None]]
    mix: dict[int, set[tuple[str, str]]]
    # Beds reserved for people on their way (arrival manifests) count as taken; ``placed``: reserved by this request.
    reserved: dict[UUID, set[int]] = field(default_factory=dict)
    placed: Counter[UUID] = field(default_factory=Counter)
    # Bed numbers with an active stay, and each bed's attributes (accessible, cot, oxygen).
    taken: dict[UUID, set[int]] = field(default_factory=dict)
    attributes: dict[UUID, dict[int, frozenset[str]]] = field(default_factory=dict)

    @classmethod
    async def load(cls, conn: asyncpg.Connection, principal: Principal, site_id: UUID) -> _Allocator:
        rooms = {r.id: r for r in await sites.list_site_rooms(conn, principal, site_id)}
        households = await store.room_households(conn, list(rooms))
        reserved: dict[UUID, set[int]] = {}
        for row in await store.reserved_beds(conn, list(rooms), None):
            reserved.setdefault(row["room_id"], set()).add(row["bed"])
        taken: dict[UUID, set[int]] = {}
        attributes: dict[UUID, dict[int, frozenset[str]]] = {}
        for room_id, number, attrs, occupied in await store.site_beds(conn, site_id):
            attributes.setdefault(room_id, {})[number] = attrs
            if occupied:
                taken.setdefault(room_id, set()).add(number)
        return cls(rooms=rooms, households=households, mix=await store.floor_mix(conn, site_id), reserved=reserved,
                   taken=taken, attributes=attributes)

    def free(self, room: Room) -> int:
        return room.beds - room.occupied - len(self.reserved.get(room.id, ())) - self.placed[room.id]

    def bed_for(self, room: Room, needs: frozenset[str]) -> int | None:
        """The free bed a newcomer takes: one offering every need, else None; without needs a plain bed first."""
        return pick_bed(room.beds, self.taken.get(room.id, set()) | self.reserved.get(room.id, set()), self.attributes.get(room.id, {}), needs)

    def special_free(self, room: Room) -> bool:
        used = self.taken.get(room.id, set()) | self.reserved.get(room.id, set())
        return any(self.attributes.get(room.id, {}).get(n) for n in range(1, room.beds + 1) if n not in used)

    def ranked(
        self, *, household: str | None, party_size: int, category: str, batch: str, floor: int | None, needs: frozenset[str] = frozenset()
    ) -> list[Room]:
        mine = {(category, batch)}
        ranked: list[tuple[tuple[object, ...], Room]] = []
        for room in self.rooms.values():
            if floor is not None and room.floor != floor:
                continue
            if self.free(room) <= 0:
                continue
            if needs and self.bed_for(room, needs) is None:
                continue  # no free bed there offers what the person needs
            in_room = self.households.get(room.id, set())
            joins = household is not None and in_room == {household}
            if not (joins or (room.status is RoomStatus.READY and not in_room)):
                continue
            on_floor = self.mix.get(room.floor, set())
            key = (
                not joins,
                not on_floor <= mine,  # another category or batch lives there
                self.free(room) < party_size,  # the household would be split
                not on_floor,  # an empty floor: open it only when needed
                not needs and self.special_free(room),  # keep beds with oxygen, a cot or step-free access for who needs them
                abs(self.free(room) - party_size),
                room.floor,
                room.number,
            )
            ranked.append((key, room))
        ranked.sort(key=lambda kr: kr[0])
        return [room for _, room in ranked]

    def took(self, room: Room, *, household: str | None, category: str, batch: str) -> None:
        self.rooms[room.id] = room
        self.households.setdefault(room.id, set()).add(household)
        self.mix.setdefault(room.floor, set()).add((category, batch))


class _Placement:
    """The order newcomers are placed in, admitted or reserved for: households first and together, so
    that each is placed while its room still has the beds; within one, who needs a special bed first
    (the others then join that room). ``party`` is how many of a household are still to place."""

    def __init__(self, newcomers: list[tuple[str | None, bool]]) -> None:
        """``newcomers``: (household key, needs a special bed) of each, in request order."""
        sizes = Counter(household for household, _ in newcomers if household)
        self.order = sorted(
            range(len(newcomers)), key=lambda i: (-sizes.get(newcomers[i][0] or "", 0), newcomers[i][0] or "", not newcomers[i][1], i)
        )
        self.remaining = Counter(sizes)

    def party(self, household: str | None) -> int:
        return max(1, self.remaining.get(household, 1)) if household else 1

    def placed(self, household: str | None) -> None:
        if household:
            self.remaining[household] -= 1


async def suggest_rooms(
    conn: asyncpg.Connection,
    principal: Principal,
    site_id: UUID,
    *,
    category: Category,
    arrival_batch: str = "",
    household_key: str | None = None,
    party_size: int = 1,
    floor: int | None = None,
    limit: int = 10,
) -> list[Suggestion]:
    """The rooms qsite would pick, best first (nothing is reserved)."""
    allocator = await _Allocator.load(conn, principal, site_id)
    ranked = allocator.ranked(household=household_key, party_size=party_size, category=category, batch=arrival_batch, floor=floor)
    return [Suggestion(room_id=r.id, number=r.number, floor=r.floor, free_beds=allocator.free(r)) for r in ranked[:limit]]


async def _take_bed(
    conn: asyncpg.Connection,
    principal: Principal,
    *,
    site_id: UUID,
    room_id: UUID | None,
    bed: int | None,
    household: str | None,
    party_size: int,
    category: str,
    batch: str,
    floor: int | None,
    allocator: _Allocator | None,
    reservation: UUID | None = None,
    needs: frozenset[str] = frozenset(),
) -> tuple[Room, int, _Allocator | None]:
    """Lock a room for one newcomer and take a bed in it; (room after, bed, allocator).

    Beds reserved for others count as taken; ``reservation`` is the one this newcomer consumes.
    Allocating, only a room with a free bed offering every need (bed attributes) is chosen; in a room
    the caller names, the bed offering them is taken when there is one.
    """
    if room_id is not None:
        room = await sites.lock_room(conn, principal, room_id)
        if room.site_id != site_id:
            raise InvalidInput("The room is at another site.", code="room_at_other_site", field="room_id")
        in_room = (await store.room_households(conn, [room.id])).get(room.id, set())
        if len(await store.taken_beds(conn, room.id, reservation)) >= room.beds:
            raise Conflict(f"Room {room.number} has no free bed.", code="room_full")
        after = await sites.occupy_bed(conn, principal, room, may_share=household is not None and in_room == {household})
    else:
        allocator = allocator or await _Allocator.load(conn, principal, site_id)
        found: Room | None = None
        # The rooms were locked (lock_rooms_for_admission) before the allocator read them: it is current.
        ranked = allocator.ranked(household=household, party_size=party_size, category=category, batch=batch, floor=floor, needs=needs)
        for candidate in ranked:
            room = await sites.lock_room(conn, principal, candidate.id)
            reserved = len(allocator.reserved.get(room.id, ()))
            if room.status not in (RoomStatus.READY, RoomStatus.OCCUPIED) or room.occupied + reserved >= room.beds:
                continue
            in_room = (await store.room_households(conn, [room.id])).get(room.id, set())
            joins = household is not None and in_room == {household}
            if room.status is RoomStatus.OCCUPIED and not joins:
                continue
            found = await sites.occupy_bed(conn, principal, room, may_share=joins)
            break
        if found is None:
            where = f"floor {floor}" if floor is not None else "the site"
            raise Conflict(f"No free bed on {where} fits this admission.", code="no_room_available")
        after = found
        allocator.took(after, household=household, category=category, batch=batch)
    taken = await store.taken_beds(conn, after.id, reservation)
    if bed is None:
        attributes = await store.room_bed_attributes(conn, after.id)
        bed = pick_bed(after.beds, taken, attributes, needs) or pick_bed(after.beds, taken, attributes, frozenset())
        if bed is None:
            raise Conflict(f"Room {after.number} has no free bed.", code="room_full")
        if allocator is not None:
            allocator.taken.setdefault(after.id, set()).add(bed)
    elif bed > after.beds:
        raise InvalidInput(f"Room {after.number} has {after.beds} bed(s).", code="no_such_bed", field="bed")
    elif bed in taken:
        raise Conflict(f"Bed {bed} of room {after.number} is taken.", code="bed_taken")
    return after, bed, allocator


# --- beds -------------------------------------------------------------------------


async def room_beds(conn: asyncpg.Connection, principal: Principal, room_ids: list[UUID]) -> dict[UUID, list[BedEntity]]:
    """Beds of rooms (the caller's sites) with attributes, occupant and reservation: one statement."""
    found: dict[UUID, list[BedEntity]] = {r: [] for r in room_ids}
    for bed in await store.room_beds(conn, room_ids, principal.site_scope):
        found[bed.room_id].append(bed)
    return found


async def get_beds(conn: asyncpg.Connection, principal: Principal, ids: list[UUID]) -> dict[UUID, BedEntity]:
    return {b.id: b for b in await store.get_beds(conn, ids, principal.site_scope)}


async def update_bed(conn: asyncpg.Connection, principal: Principal, bed_id: UUID, patch: BedPatch) -> BedEntity:
    """Set a bed's attributes (command, site manager); ``version`` must match (409 ``stale_version``)."""
    _require(principal, policy.roles("rooms.manage"), "change beds")
    current = (await store.get_beds(conn, [bed_id], principal.site_scope))
    if not current:
        raise NotFound("No such bed.", code="bed_not_found")
    changes = {k: v for k, v in msgspec.structs.asdict(patch).items() if k != "version" and v is not msgspec.UNSET}
    if not await store.update_bed(conn, bed_id, patch.version, changes, principal.site_scope, principal.ref):
        raise Conflict(
            f"The bed changed since version {patch.version}; it is now at version {current[0].version}.",
            code="stale_version",
            current_version=current[0].version,
        )
    bed = (await store.get_beds(conn, [bed_id], None))[0]
    await bus.emit(conn, "stays.bed_updated", site_id=bed.site_id, subject_id=bed.id, actor=principal.ref,
                   data={"room_id": str(bed.room_id), "number": bed.number, "version": bed.version, **changes})
    return bed


async def bed_history(conn: asyncpg.Connection, principal: Principal, bed_id: UUID, *, limit: int = 50) -> list[BedOccupancy]:
    """Who lay on a bed, newest first (404 ``bed_not_found`` for another site's)."""
    check_limit(limit)
    if not await store.get_beds(conn, [bed_id], principal.site_scope):
        raise NotFound("No such bed.", code="bed_not_found")
    return await store.bed_history(conn, bed_id, principal.site_scope, limit)


# --- reservations ---------------------------------------------------------------


async def reserve_beds(
    conn: asyncpg.Connection,
    principal: Principal,
    site_id: UUID,
    requests: list[BedRequest],
    *,
    holder_id: UUID,
    expires_at: datetime,
    floor: int | None = None,
) -> list[Reservation]:
    """Hold a bed for each person expected (in request order), by the admission allocation rules:
    households together, floors kept to one category and batch. All or none: 409 ``no_room_available``.

    The site's rooms are locked as an admission locks them, so concurrent reservations and admissions
    never take the same bed or more beds than a room has; reservations past their time are let go first.
    """
    _require(principal, ADMIT_ROLES, "reserve beds")
    site = await sites.get_site(conn, principal, site_id)
    await sites.lock_rooms_for_admission(conn, principal, site.id, [], allocate=True)
    await store.expire_reservations(conn, site.id)
    allocator = await _Allocator.load(conn, principal, site.id)
    placement = _Placement([(r.household_key, bool(r.needs)) for r in requests])
    rows: dict[int, dict[str, object]] = {}
    for i in placement.order:
        request = requests[i]
        household = request.household_key
        needs = attributes_for(request.needs)
        ranked = allocator.ranked(
            household=household, party_size=placement.party(household), category=request.category, batch=request.arrival_batch, floor=floor, needs=needs
        )
        bed = allocator.bed_for(ranked[0], needs) if ranked else None
        if bed is None:
            where = f"floor {floor}" if floor is not None else "the site"
            raise Conflict(f"No free bed on {where} for everyone announced.", code="no_room_available")
        room = ranked[0]
        allocator.reserved.setdefault(room.id, set()).add(bed)
        allocator.took(room, household=household, category=str(request.category), batch=request.arrival_batch)
        placement.placed(household)
        rows[i] = {"room_id": room.id, "bed": bed, "subject_id": request.subject_id, "household_key": household,
                   "category": str(request.category), "arrival_batch": request.arrival_batch}
    ids = await store.insert_reservations(conn, site_id=site.id, holder_id=holder_id, expires_at=expires_at, rows=[rows[i] for i in range(len(requests))])
    found = {r.id: r for r in await store.get_reservations(conn, ids, None)}
    return [found[i] for i in ids]


async def get_reservations(conn: asyncpg.Connection, principal: Principal, ids: list[UUID]) -> dict[UUID, Reservation]:
    return {r.id: r for r in await store.get_reservations(conn, ids, principal.site_scope)}


async def release_reservations(conn: asyncpg.Connection, principal: Principal, ids: list[UUID]) -> None:
    """Let go of held beds (a no-show, a cancelled manifest); consumed or expired ones stay as they are."""
    _require(principal, ADMIT_ROLES, "release reservations")
    await store.release_reservations(conn, ids)


async def reserved_in_rooms(conn: asyncpg.Connection, principal: Principal, room_ids: list[UUID]) -> dict[UUID, list[asyncpg.Record]]:
    """Reservations in force per room (the room board), one statement."""
    found: dict[UUID, list[asyncpg.Record]] = {r: [] for r in room_ids}
    for row in await store.reserved_beds(conn, room_ids, principal.site_scope):
        found[row["room_id"]].append(row)
    return found


# --- admission --------------------------------------------------------------


async def admit(
    conn: asyncpg.Connection, principal: Principal, settings: Settings, data: Admission, *, now: datetime | None = None
) -> Stay:
    """Admit one resident into a room (given or allocated). A replayed client ``id`` returns the stay."""
    stays = await _admit_all(conn, principal, settings, [data], now=now)
    return stays[0]


async def admit_batch(
    conn: asyncpg.Connection, principal: Principal, settings: Settings, data: BatchAdmission, *, now: datetime | None = None
) -> list[Stay]:
    """Admit an arriving batch in the caller's transaction: every member or none (any failure raises)."""
    entries = [
        Admission(
            site_id=data.site_id,
            category=m.category or data.category,
            resident=m.resident,
            id=m.id,
            room_id=m.room_id,
            bed=m.bed,
            floor=data.floor,
            origin_area=data.origin_area if m.origin_area is None else m.origin_area,
            risk_level=m.risk_level or data.risk_level,
            arrival_batch=data.arrival_batch,
            regime_code=data.regime_code,
            admitted_at=data.admitted_at,
        )
        for m in data.members
    ]
    numbers = [(m.resident.document_type, crypto.normalise(m.resident.document_number)) for m in data.members]
    if len(set(numbers)) != len(numbers):
        raise InvalidInput("The same document appears twice in the batch.", code="duplicate_resident", field="members")
    stays = await _admit_all(conn, principal, settings, entries, now=now)
    await bus.emit(
        conn,
        "stays.batch_admitted",
        site_id=data.site_id,
        actor=principal.ref,
        data={"arrival_batch": data.arrival_batch, "count": len(stays), "stay_ids": [str(s.id) for s in stays]},
    )
    return stays


async def _admit_all(
    conn: asyncpg.Connection, principal: Principal, settings: Settings, entries: list[Admission], *, now: datetime | None
) -> list[Stay]:
    _require(principal, ADMIT_ROLES, "admit residents")
    now = now or _now()
    site = await sites.get_site(conn, principal, entries[0].site_id)
    client_ids = [e.id for e in entries if e.id is not None]
    await store.lock_admissions(conn, client_ids)  # before the lookup: a replay racing the first attempt waits for it
    replayed = await get_stays(conn, principal, client_ids)
    entries = [await _with_reservation(conn, e) for e in entries]
    pending = [e for e in entries if e.id not in replayed]
    if pending:
        await sites.lock_rooms_for_admission(
            conn, principal, site.id, [e.room_id for e in pending if e.room_id], allocate=any(e.room_id is None for e in pending)
        )
    placement = _Placement([(_household(e), bool(e.needs)) for e in entries])
    allocator: _Allocator | None = None
    regimes: dict[tuple[Category, RiskLevel | None, str | None, datetime], Regime] = {}
    results: dict[int, Stay] = {}
    for i in placement.order:
        entry = entries[i]
        if entry.id in replayed:
            results[i] = replayed[entry.id]
            continue
        admitted_at = entry.admitted_at or now
        if admitted_at.tzinfo is None:
            raise InvalidInput("admitted_at needs a time zone offset.", code="naive_datetime", field="admitted_at")
        if admitted_at > now + CLOCK_SKEW:
            raise InvalidInput("admitted_at is in the future.", code="admitted_in_future", field="admitted_at")
        if admitted_at < now - BACKDATE_LIMIT:
            raise InvalidInput(f"admitted_at is more than {BACKDATE_LIMIT.days} days ago.", code="admitted_too_early", field="admitted_at")
        # The regime's version in force at admission: a newer version applies to stays admitted from its effective_from on.
        key = (entry.category, entry.risk_level, entry.regime_code, admitted_at)
        if key not in regimes:
            regimes[key] = await regime_for(conn, entry.category, risk_level=entry.risk_level, code=entry.regime_code, at=admitted_at)
        resident_id = await _resident_for(conn, principal, settings, entry, site.id)
        household = await _household_of(conn, principal, entry, resident_id)
        room, bed, allocator = await _take_bed(
            conn,
            principal,
            site_id=site.id,
            room_id=entry.room_id,
            bed=entry.bed,
            household=household,
            party_size=placement.party(household),
            category=entry.category,
            batch=entry.arrival_batch,
            floor=entry.floor,
            allocator=allocator,
            reservation=entry.reservation_id,
            needs=attributes_for(entry.needs),
        )
        placement.placed(household)
        results[i] = await _open_stay(
            conn, principal, site, room, bed, resident_id, entry, regimes[key], admitted_at=admitted_at, day_one=None, period_start=None
        )
        if entry.reservation_id is not None:
            await store.consume_reservation(conn, entry.reservation_id, results[i].id)
    return [results[i] for i in range(len(entries))]


async def _with_reservation(conn: asyncpg.Connection, entry: Admission) -> Admission:
    """An admission consuming a reservation takes its room and bed while the reservation still holds
    them (row-locked); an expired or let-go one is no longer the newcomer's: the bed is allocated anew."""
    if entry.reservation_id is None:
        return entry
    held = await store.lock_reservation(conn, entry.reservation_id)
    if held is None or held["state"] != ReservationState.HELD or held["expires_at"] <= _now():
        return msgspec.structs.replace(entry, reservation_id=None)
    return msgspec.structs.replace(entry, room_id=held["room_id"], bed=held["bed"])


def pick_bed(beds: int, used: set[int], attributes: dict[int, frozenset[str]], needs: frozenset[str]) -> int | None:
    """The free bed (of 1..beds, not ``used``) for a newcomer: the first offering every need; without
    needs, the first plain bed, else the first free one. None: no free bed fits."""
    free = [n for n in range(1, beds + 1) if n not in used]
    if needs:
        return next((n for n in free if needs <= attributes.get(n, frozenset())), None)
    return next((n for n in free if not attributes.get(n)), free[0] if free else None)


def _household(entry: Admission) -> str | None:
    return entry.resident.household_key if entry.resident else None


async def _household_of(conn: asyncpg.Connection, principal: Principal, entry: Admission, resident_id: UUID) -> str | None:
    if entry.resident is not None:
        return entry.resident.household_key
    return (await store.get_residents(conn, [resident_id], None))[0].household_key


async def _open_stay(
    conn: asyncpg.Connection,
    principal: Principal,
    site: Site,
    room: Room,
    bed: int,
    resident_id: UUID,
    entry: Admission,
    regime: Regime,
    *,
    admitted_at: datetime,
    day_one: date | None,
    period_start: date | None,
    moved_from: UUID | None = None,
) -> Stay:
    day_one = day_one or local_date(admitted_at, site.time_zone)
    period_start = period_start or day_one
    stay_id = await store.insert_stay(
        conn,
        id=entry.id or uuid4(),
        resident_id=resident_id,
        site_id=site.id,
        room_id=room.id,
        room_number=room.number,
        floor=room.floor,
        bed=bed,
        category=entry.category,
        origin_area=entry.origin_area,
        risk_level=entry.risk_level,
        arrival_batch=entry.arrival_batch,
        regime_id=regime.id,
        time_zone=site.time_zone,
        admitted_at=admitted_at,
        day_one=day_one,
        period_start=period_start,
        planned_release_at=release_at(period_start, regime.centralized_days, site.time_zone),
        moved_from=moved_from,
        actor=principal.ref,
    )
    stay = (await store.get_stays(conn, [stay_id], None))[0]
    await bus.emit(
        conn,
        "stays.admitted",
        site_id=site.id,
        subject_id=stay.id,
        actor=principal.ref,
        data={
            "version": stay.version,
            "room_id": str(room.id),
            "room_number": room.number,
            "bed": bed,
            "category": stay.category.value,
            "arrival_batch": stay.arrival_batch,
            "regime": regime.code,
            "moved_from": str(moved_from) if moved_from else None,
        },
    )
    return stay


# --- leaving ------------------------------------------------------------------


async def _lock_active(conn: asyncpg.Connection, principal: Principal, stay_id: UUID) -> Stay:
    if not await store.lock_stay(conn, stay_id, principal.site_scope):
        raise NotFound("No such stay.", code="stay_not_found")
    stay = (await store.get_stays(conn, [stay_id], None))[0]
    if stay.status is not StayStatus.ACTIVE:
        raise Conflict(f"The stay is already closed ({stay.outcome}).", code="stay_closed", outcome=stay.outcome)
    return stay


async def release_blocker_details(conn: asyncpg.Connection, stay: Stay, *, now: datetime | None = None) -> list[Blocker]:
    """Every reason ``stay`` cannot be released now, each scheduled test day on its own; empty when it can.

    The one place release rules live: the centralized period must be served
    (``centralized_period_not_served``); the health domain adds its reasons (a positive test,
    an open retest, each scheduled test day so far that is missing or not negative).
    """
    blockers = []
    if (now or _now()) < stay.planned_release_at:
        blockers.append(Blocker(reason="centralized_period_not_served"))
    # Every scheduled test so far negative, no positive, no open retest (health domain's rule;
    # imported here because health builds on stays).
    from service.health import service as health

    blockers += await health.release_blockers(conn, stay, now=now)
    return blockers


async def release_blockers(conn: asyncpg.Connection, stay: Stay, *, now: datetime | None = None) -> list[str]:
    """The distinct reasons of ``release_blocker_details``, in order."""
    return list(dict.fromkeys(b.reason for b in await release_blocker_details(conn, stay, now=now)))


async def _leave(
    conn: asyncpg.Connection, principal: Principal, stay: Stay, outcome: Outcome, *, seal: bool = False, reason: str = "", moved_to: UUID | None = None
) -> Stay:
    await store.close_stay(conn, stay.id, outcome, moved_to)
    await sites.release_bed(conn, principal, stay.room_id, seal=seal, reason=reason or outcome.value)
    return (await store.get_stays(conn, [stay.id], None))[0]


async def release(
    conn: asyncpg.Connection,
    principal: Principal,
    settings: Settings,
    stay_id: UUID,
    *,
    handover: HandoverCreate | None = None,
    now: datetime | None = None,
) -> Stay:
    """End centralized quarantine: 422 ``release_blocked`` with every reason (``reasons``, and
    ``blockers`` one per reason and test day) while any remain; then the hand-over record and
    the release certificate (service/handover: ``handover_required`` when the regime continues
    at home), dated ``now`` (default: the release's commit clock)."""
    _require(principal, ADMIT_ROLES + (Role.MEDIC,), "release residents")
    stay = await _lock_active(conn, principal, stay_id)
    blockers = await release_blocker_details(conn, stay, now=now)
    if blockers:
        reasons = list(dict.fromkeys(b.reason for b in blockers))
        raise RuleViolated(
            "The stay cannot be released yet: " + ", ".join(reasons) + ".", code="release_blocked", reasons=reasons,
            blockers=[msgspec.to_builtins(b) for b in blockers],
        )
    regime = await regime_of(conn, stay)
    closed = await _leave(conn, principal, stay, Outcome.RELEASED)
    await bus.emit(
        conn,
        "stays.released",
        site_id=stay.site_id,
        subject_id=stay.id,
        actor=principal.ref,
        data={"room_id": str(stay.room_id), "home_monitoring_days": regime.home_monitoring_days, "version": closed.version},
    )
    from service.handover import service as handovers  # builds on stays

    await handovers.record(conn, principal, settings, stay, regime, handover, released_at=now or closed.ended_at or _now())
    return closed


async def close_for_transfer(conn: asyncpg.Connection, principal: Principal, stay_id: UUID, *, infectious: bool) -> Stay:
    """A transfer departed: close the stay (outcome ``transferred``); the room is sealed when
    ``infectious``, else vacated if it emptied (disinfection task opened either way once empty)."""
    _require(principal, STAFF_ROLES, "close stays")
    stay = await _lock_active(conn, principal, stay_id)
    closed = await _leave(conn, principal, stay, Outcome.TRANSFERRED, seal=infectious, reason="transfer")
    await bus.emit(
        conn,
        "stays.transferred",
        site_id=stay.site_id,
        subject_id=stay.id,
        actor=principal.ref,
        data={"room_id": str(stay.room_id), "infectious": infectious, "version": closed.version},
    )
    return closed


async def move(conn: asyncpg.Connection, principal: Principal, stay_id: UUID, data: Move, *, now: datetime | None = None) -> Stay:
    """Move a resident to another room, at this site or another (the caller must reach both).

    The old stay closes (outcome ``moved``) and a new one opens in the new room; quarantine
    day 1 and the period start carry over. Returns the new stay.
    """
    _require(principal, ADMIT_ROLES, "move residents")
    stay = await _lock_active(conn, principal, stay_id)
    if data.room_id == stay.room_id:
        raise InvalidInput("The resident is already in this room.", code="same_room", field="room_id")
    target = await sites.get_room(conn, principal, data.room_id)
    site = await sites.get_site(conn, principal, target.site_id)
    household = (await store.get_residents(conn, [stay.resident_id], None))[0].household_key
    new_id = uuid4()
    # Close first: the resident's one-active-stay index must see the old one closed.
    await store.close_stay(conn, stay.id, Outcome.MOVED, None)
    room, bed, _ = await _take_bed(
        conn,
        principal,
        site_id=site.id,
        room_id=target.id,
        bed=data.bed,
        household=household,
        party_size=1,
        category=stay.category,
        batch=stay.arrival_batch,
        floor=None,
        allocator=None,
    )
    await sites.release_bed(conn, principal, stay.room_id, reason=data.reason or "moved")
    if site.id != stay.site_id:
        await store.set_resident_site(conn, stay.resident_id, site.id)
    regime = await regime_of(conn, stay)
    entry = Admission(
        site_id=site.id,
        category=stay.category,
        resident_id=stay.resident_id,
        id=new_id,
        origin_area=stay.origin_area,
        risk_level=stay.risk_level,
        arrival_batch=stay.arrival_batch,
        regime_code=regime.code,
    )
    new = await _open_stay(
        conn,
        principal,
        site,
        room,
        bed,
        stay.resident_id,
        entry,
        regime,
        admitted_at=now or _now(),
        day_one=stay.day_one,
        period_start=stay.period_start,
        moved_from=stay.id,
    )
    await store.close_stay_link(conn, stay.id, new.id)
    (closed,) = await store.get_stays(conn, [stay.id], None)
    await bus.emit(
        conn,
        "stays.moved",
        site_id=stay.site_id,
        subject_id=stay.id,
        actor=principal.ref,
        data={"to_stay": str(new.id), "to_site": str(site.id), "to_room": str(room.id), "reason": data.reason, "version": closed.version},
    )
    return new


async def extend_stay(conn: asyncpg.Connection, principal: Principal, stay_id: UUID, data: Extension) -> Stay:
    """Exposure confirmed: the centralized period restarts on the exposure's local date (regime's days).

    An exposure that would not push the release later changes nothing.
    """
    _require(principal, STAFF_ROLES, "extend stays")
    if data.exposed_at.tzinfo is None:
        raise InvalidInput("exposed_at needs a time zone offset.", code="naive_datetime", field="exposed_at")
    if data.exposed_at > _now() + CLOCK_SKEW:
        raise InvalidInput("exposed_at is in the future.", code="exposed_in_future", field="exposed_at")
    stay = await _lock_active(conn, principal, stay_id)
    start = local_date(data.exposed_at, stay.time_zone)
    if start <= stay.period_start:
        return stay
    regime = await regime_of(conn, stay)
    planned = release_at(start, regime.centralized_days, stay.time_zone)
    await store.set_period(conn, stay.id, start, planned)
    (extended,) = await store.get_stays(conn, [stay.id], None)
    await bus.emit(
        conn,
        "stays.extended",
        site_id=stay.site_id,
        subject_id=stay.id,
        actor=principal.ref,
        data={"from": stay.planned_release_at.isoformat(), "to": planned.isoformat(), "reason": data.reason, "version": extended.version},
    )
    return extended


# --- exposure, occupancy ------------------------------------------------------


async def contacts(conn: asyncpg.Connection, principal: Principal, stay_id: UUID) -> Contacts:
    """Active stays that shared the room, the household or the floor with ``stay_id`` (which may be closed)."""
    stay = await get_stay(conn, principal, stay_id)
    scope = principal.site_scope
    household = (await store.get_residents(conn, [stay.resident_id], None))[0].household_key
    ids = {
        "roommates": await store.roommates(conn, stay, scope),
        "household": await store.household(conn, stay, household, scope) if household else [],
        "floor_neighbours": await store.floor_neighbours(conn, stay, scope),
    }
    found = await get_stays(conn, principal, [i for group in ids.values() for i in group])
    return Contacts(**{k: [found[i] for i in v if i in found] for k, v in ids.items()})


async def occupied_beds(conn: asyncpg.Connection, site_ids: list[UUID] | None) -> dict[UUID, int]:
    """Active stays per site (``site_ids`` = principal.site_scope; None = all sites)."""
    return await store.occupied_beds(conn, site_ids)


async def occupancy(conn: asyncpg.Connection, principal: Principal, site_ids: list[UUID] | None = None) -> Occupancy:
    """Beds by room status and releases due today/tomorrow (each site's local dates), per site and in total."""
    scope = principal.site_scope
    if site_ids is not None:
        scope = [s for s in site_ids if principal.can_access_site(s)]
    beds = await sites.bed_summary(conn, scope)
    due = await store.releases_due(conn, scope)
    rows = [
        SiteOccupancy(
            **msgspec.structs.asdict(b),
            releases_due_today=due.get(site_id, (0, 0))[0],
            releases_due_tomorrow=due.get(site_id, (0, 0))[1],
        )
        for site_id, b in sorted(beds.items(), key=lambda kv: str(kv[0]))
    ]
    numbers = [f for f in SiteOccupancy.__struct_fields__ if f != "site_id"]
    total = SiteOccupancy(site_id=None, **{f: sum(getattr(r, f) for r in rows) for f in numbers})
    return Occupancy(sites=rows, total=total)


# --- regimes ------------------------------------------------------------------


def _regime_columns(phases: list[Phase]) -> dict[str, object]:
    """The columns the SQL readers use, derived from the phases (centralized test days are quarantine days)."""
    return {
        "centralized_days": phases[0].days,
        "test_days": list(phases[0].test_days),
        "home_isolation_days": phase_days(phases, PhaseKind.HOME_ISOLATION),
        "home_monitoring_days": phase_days(phases, PhaseKind.HOME_MONITORING),
        "phases": msgspec.to_builtins(phases),
    }


async def create_regime(conn: asyncpg.Connection, principal: Principal, data: RegimeCreate) -> Regime:
    """A new regime (version 1, command only): 409 ``regime_exists``; a category already served by another
    regime's code: 409 ``category_taken`` (a category has one default regime)."""
    _require(principal, policy.roles("regimes.update"), "create regimes")
    await store.lock_regimes(conn)
    if await store.latest_regime_version(conn, data.code) is not None:
        raise Conflict(f"A regime {data.code!r} exists; change it with a new version.", code="regime_exists")
    if data.category is not None and await store.category_codes(conn, data.category):
        raise Conflict(f"Category {data.category} already has a default regime; use a regime rule.", code="category_taken")
    regime = await store.insert_regime(
        conn, code=data.code, name=data.name.strip(), category=data.category, checkins_per_day=data.checkins_per_day,
        effective_from=data.effective_from or _now(), version=1, actor=principal.ref, **_regime_columns(data.phases),
    )
    await bus.emit(conn, "stays.regime_created", site_id=None, subject_id=regime.id, actor=principal.ref, data={"code": regime.code, "version": 1})
    return regime


async def update_regime(conn: asyncpg.Connection, principal: Principal, code: str, patch: RegimePatch) -> RegimeChange:
    """A new version of a regime (command only), in force from ``effective_from`` (default now) for stays
    admitted from then on. Open stays keep their version unless ``replan_open_stays``: then they move onto
    the new one and their planned release is recomputed; ``replanned`` says how many.
    """
    _require(principal, (Role.COMMAND,), "change regimes")
    await store.lock_regimes(conn)
    current = await store.latest_regime_version(conn, code)
    if current is None:
        raise NotFound("No such regime.", code="regime_not_found")
    if patch.version != current.version:
        raise Conflict(
            f"The regime changed since version {patch.version}; it is now at version {current.version}.",
            code="stale_version",
            current_version=current.version,
        )
    effective_from = patch.effective_from if patch.effective_from is not msgspec.UNSET else _now()
    if effective_from <= current.effective_from:
        raise InvalidInput(
            "A new version takes effect after the current one.", code="invalid_effective_from", field="effective_from",
            current_effective_from=current.effective_from.isoformat(),
        )
    changes = patch.changes()
    phases = patch.phases_after(current.phases)
    regime = await store.insert_regime(
        conn,
        code=code,
        name=patch.name.strip() if patch.name is not msgspec.UNSET else current.name,
        category=current.category,
        checkins_per_day=current.checkins_per_day if patch.checkins_per_day is msgspec.UNSET else patch.checkins_per_day,
        effective_from=effective_from,
        version=current.version + 1,
        actor=principal.ref,
        **_regime_columns(phases),
    )
    replanned = await store.replan_regime_stays(conn, code, regime.id, regime.centralized_days) if patch.replan_open_stays else []
    await bus.emit(
        conn,
        "stays.regime_updated",
        site_id=None,
        subject_id=regime.id,
        actor=principal.ref,
        data={"code": regime.code, "version": regime.version, "fields": sorted(changes), "replanned": len(replanned),
              "effective_from": regime.effective_from.isoformat()},
    )
    by_site: dict[UUID, list[str]] = {}
    for stay_id, site_id in replanned:
        by_site.setdefault(site_id, []).append(str(stay_id))
    for site_id, stay_ids in by_site.items():
        await bus.emit(
            conn,
            "stays.release_replanned",
            site_id=site_id,
            subject_id=regime.id,
            actor=principal.ref,
            data={"regime": regime.code, "version": regime.version, "centralized_days": regime.centralized_days,
                  "count": len(stay_ids), "stay_ids": stay_ids},
        )
    return RegimeChange(regime=regime, replanned=len(replanned))
