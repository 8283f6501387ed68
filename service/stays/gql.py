"""GraphQL: regimes, residents (masked), stays, admission, allocation, the room board, occupancy."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import asyncpg
import strawberry

from service import policy
from service.access.model import Principal
from service.errors import NotFound
from service.gql import (
    Connection,
    Context,
    Ctx,
    OfflineWrite,
    Prepared,
    UserError,
    Write,
    connection_of,
    fields_from,
    mutate,
    mutate_input,
    perform,
    prepare,
    scoped_loader,
    to_gql,
)
from service.pagination import Page
from service.sites import service as sites
from service.sites.gql import Room, room_gql
from service.stays import model as m
from service.stays import service

strawberry.enum(m.Category, name="StayCategory")  # registers m.Category itself
CategoryGQL = m.Category
strawberry.enum(m.RiskLevel, name="OriginRiskLevel")  # registers m.RiskLevel itself
RiskLevelGQL = m.RiskLevel
strawberry.enum(m.StayStatus, name="StayStatus")  # registers m.StayStatus itself
StayStatusGQL = m.StayStatus
strawberry.enum(m.Outcome, name="StayOutcome")  # registers m.Outcome itself
OutcomeGQL = m.Outcome
strawberry.enum(m.Sex, name="ResidentSex")  # registers m.Sex itself
SexGQL = m.Sex
strawberry.enum(m.DocumentType, name="ResidentDocumentType")  # registers m.DocumentType itself
DocumentTypeGQL = m.DocumentType


strawberry.enum(m.PhaseKind, name="RegimePhaseKind")  # registers m.PhaseKind itself
PhaseKindGQL = m.PhaseKind


@strawberry.type(description="A phase of a regime: its days and test days, numbered from the phase's day 1 (centralized: quarantine day 1).")
class RegimePhase:
    phase: PhaseKindGQL
    days: int
    test_days: list[int]


@strawberry.type(description="A quarantine regime, one version of it: policy as data. A stay serves the version in force when it was admitted.")
class Regime:
    id: UUID
    code: str
    name: str
    category: CategoryGQL | None
    centralized_days: int
    home_isolation_days: int
    home_monitoring_days: int
    test_days: list[int] = strawberry.field(description="The centralized phase's test days (quarantine days).")
    checkins_per_day: int
    effective_from: datetime
    version: int
    phases: list[RegimePhase]


def regime_gql(regime: m.Regime) -> Regime:
    return to_gql(Regime, regime, phases=[to_gql(RegimePhase, p) for p in regime.phases])


@strawberry.type(description="Category x risk level (null: no risk area known) -> the regime served.")
@fields_from(m.RegimeRule, leave_out=("updated_by",))
class RegimeRule:
    pass


@strawberry.type(description="A resident; name, ID and phone numbers masked (see revealResident).")
@fields_from(m.Resident, leave_out=("created_at",))
class Resident:
    pass


@strawberry.type(description="Unmasked personal data; every read is audited.")
@fields_from(m.ResidentRevealed)
class ResidentRevealed:
    pass


if TYPE_CHECKING:
    from service.handover.gql import Handover, HandoverInput

# The hand-over package builds on stays (its types use stays' enums): referenced lazily.
HandoverGQL = Annotated["Handover", strawberry.lazy("service.handover.gql")]
HandoverInputGQL = Annotated["HandoverInput", strawberry.lazy("service.handover.gql")]

_loader = scoped_loader


@strawberry.type(description="A stay (admission) of a resident at a site.")
class Stay:
    id: UUID
    resident_id: UUID
    site_id: UUID
    room_id: UUID
    room_number: str
    floor: int
    bed: int
    category: CategoryGQL
    origin_area: str
    risk_level: RiskLevelGQL | None
    arrival_batch: str
    regime_code: str
    admitted_at: datetime
    planned_release_at: datetime
    status: StayStatusGQL
    ended_at: datetime | None
    outcome: OutcomeGQL | None
    moved_to: UUID | None
    moved_from: UUID | None
    version: int
    quarantine_day: int = strawberry.field(description="Day N today in the site's time zone; day 1 = admission date.")
    regime_id: strawberry.Private[UUID]
    preloaded_resident: strawberry.Private[m.Resident | None] = None

    @strawberry.field(description="The resident, masked.")
    async def resident(self, info: Ctx) -> Resident | None:
        found = self.preloaded_resident or await _loader(info, "stays.residents", service.get_residents).load(self.resident_id)
        return to_gql(Resident, found) if found else None

    @strawberry.field(permission_classes=[policy.gql("rooms.read")])
    async def room(self, info: Ctx) -> Room | None:
        found = await _loader(info, "sites.rooms", sites.get_rooms).load(self.room_id)
        return room_gql(found) if found else None

    @strawberry.field(permission_classes=[policy.gql("regimes.read")])
    async def regime(self, info: Ctx) -> Regime | None:
        async def fetch(conn: Any, _: Any, ids: list[UUID]) -> dict[UUID, m.Regime]:
            return await service.get_regimes(conn, ids)

        found = await _loader(info, "stays.regimes", fetch).load(self.regime_id)
        return regime_gql(found) if found else None

    @strawberry.field(
        permission_classes=[policy.gql("handovers.read")],
        description="The hand-over and release certificate of a released stay; null before release (or for a stay moved or transferred).",
    )
    async def handover(self, info: Ctx) -> HandoverGQL | None:
        from service.handover.gql import load_handover

        return await load_handover(info, self.id)


def stay_gql(stay: m.Stay, resident: m.Resident | None = None) -> Stay:
    return to_gql(Stay, stay, quarantine_day=service.quarantine_day(stay), preloaded_resident=resident)


@strawberry.type(description="A bed of a room: its attributes, who lies there now, whether it is reserved.")
@fields_from(m.BedEntity, leave_out=("site_id",))
class Bed:
    accessible: bool = strawberry.field(description="Step-free, for people with reduced mobility.")
    cot: bool = strawberry.field(description="An infant's cot beside a parent's bed.")
    oxygen: bool = strawberry.field(description="An oxygen supply point.")


@strawberry.type(description="One stay on a bed: the bed's occupancy history.")
@fields_from(m.BedOccupancy)
class BedOccupancy:
    pass


@strawberry.input
class UpdateBedInput:
    bed_id: UUID
    version: int
    accessible: bool | None = None
    cot: bool | None = None
    oxygen: bool | None = None


@strawberry.type
class BedPayload:
    bed: Bed | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(description="A bed held for someone on an announced vehicle (an arrival manifest).")
class ReservedBed:
    bed: int
    expires_at: datetime


@strawberry.type(description="A room on the board with the people in it now and the beds reserved for people on their way.")
class BoardRoom:
    room: Room
    occupants: list[Stay]

    @strawberry.field(description="Beds held for people on an announced vehicle (one statement for the whole board, when asked for).")
    async def reserved_beds(self, info: Ctx) -> list[ReservedBed]:
        found = await scoped_loader(info, "stays.reserved_beds", service.reserved_in_rooms).load(self.room.id)
        return [ReservedBed(bed=b["bed"], expires_at=b["expires_at"]) for b in found or []]


@strawberry.type(description="Beds by room status and releases due (site's local today/tomorrow); siteId null in the total.")
@fields_from(m.SiteOccupancy)
class SiteOccupancy:
    pass


@strawberry.type
class Occupancy:
    sites: list[SiteOccupancy]
    total: SiteOccupancy


@strawberry.type
@fields_from(m.Suggestion)
class RoomSuggestion:
    pass


@strawberry.type(description="Active stays that shared room, household or floor with a stay (exposure review).")
class StayContacts:
    roommates: list[Stay]
    household: list[Stay]
    floor_neighbours: list[Stay]


# --- inputs ---------------------------------------------------------------------


@strawberry.input
class ResidentInput:
    name: str
    document_type: DocumentTypeGQL
    document_number: str
    sex: SexGQL = m.Sex.UNKNOWN
    birth_date: date | None = None
    phone: str | None = None
    household_key: str | None = None


@strawberry.input(description="Admit one resident: `resident` (new) or `residentId`; `roomId` or let qsite allocate (optionally on `floor`).")
class AdmitInput:
    site_id: UUID
    category: CategoryGQL
    resident: ResidentInput | None = None
    resident_id: UUID | None = None
    id: UUID | None = strawberry.field(default=None, description="Client-generated stay id: a replay is a no-op.")
    room_id: UUID | None = None
    bed: int | None = None
    floor: int | None = None
    origin_area: str = ""
    risk_level: RiskLevelGQL | None = None
    arrival_batch: str = ""
    regime_code: str | None = None
    admitted_at: datetime | None = None


@strawberry.input
class BatchMemberInput:
    resident: ResidentInput
    id: UUID | None = None
    room_id: UUID | None = None
    bed: int | None = None
    category: CategoryGQL | None = None
    origin_area: str | None = None
    risk_level: RiskLevelGQL | None = None


@strawberry.input(description="An arriving batch (e.g. a bus) admitted all or nothing.")
class AdmitBatchInput:
    site_id: UUID
    category: CategoryGQL
    arrival_batch: str
    members: list[BatchMemberInput]
    origin_area: str = ""
    risk_level: RiskLevelGQL | None = None
    regime_code: str | None = None
    floor: int | None = None
    admitted_at: datetime | None = None


@strawberry.input
class MoveStayInput:
    stay_id: UUID
    room_id: UUID
    bed: int | None = None
    reason: str = ""


@strawberry.input(description="Release a stay (the batch form of `releaseStay`, for `syncWrites`).")
class ReleaseStayInput:
    stay_id: UUID
    handover: HandoverInputGQL | None = None


@strawberry.input
class ExtendStayInput:
    stay_id: UUID
    exposed_at: datetime
    reason: str = ""


@strawberry.input
class RegimePhaseInput:
    phase: PhaseKindGQL
    days: int
    test_days: list[int] = strawberry.field(default_factory=list)


@strawberry.input(description="A new regime (version 1); `category` makes it that category's default regime.")
class CreateRegimeInput:
    code: str
    name: str
    phases: list[RegimePhaseInput]
    checkins_per_day: int
    category: CategoryGQL | None = None
    effective_from: datetime | None = None


@strawberry.input(
    description="A new version of a regime from `effectiveFrom` (default now) for stays admitted from then on; "
    "`replanOpenStays` moves the open stays onto it too. `phases` replaces every phase; the day fields edit one."
)
class UpdateRegimeInput:
    code: str
    version: int
    name: str | None = None
    phases: list[RegimePhaseInput] | None = None
    centralized_days: int | None = None
    home_monitoring_days: int | None = None
    test_days: list[int] | None = None
    checkins_per_day: int | None = None
    effective_from: datetime | None = None
    replan_open_stays: bool = False


@strawberry.input(description="Set the regime of a category at a risk level (null level: no risk area known).")
class SetRegimeRuleInput:
    category: CategoryGQL
    regime_code: str
    risk_level: RiskLevelGQL | None = None


@strawberry.type
class RegimeRulesPayload:
    rules: list[RegimeRule] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RevealResidentInput:
    resident_id: UUID
    purpose: str


@strawberry.type
class StayPayload:
    stay: Stay | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class StaysPayload:
    stays: list[Stay] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RegimePayload:
    regime: Regime | None = None
    replanned: int = strawberry.field(default=0, description="Open stays moved onto the new version (replanOpenStays).")
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RevealResidentPayload:
    resident: ResidentRevealed | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


# --- root fields ----------------------------------------------------------------


@strawberry.type
class Query:
    @strawberry.field(
        permission_classes=[policy.gql("stays.read")],
        description="A site's rooms (optionally one floor) with status, beds and current residents (masked), in a constant number of statements.",
    )
    async def room_board(self, info: Ctx, site_id: UUID, floor: int | None = None) -> list[BoardRoom] | None:
        ctx = info.context
        principal = ctx.require_principal()
        if not principal.can_access_site(site_id):
            return None
        async with ctx.db.connection() as conn:
            try:
                rooms = await sites.list_site_rooms(conn, principal, site_id, floor=floor)
            except NotFound:
                return None
            occupied = [r.id for r in rooms if r.occupied]
            views = await service.board(conn, principal, occupied) if occupied else {}
        return [BoardRoom(room=room_gql(r), occupants=[stay_gql(v.stay, v.resident) for v in views.get(r.id, [])]) for r in rooms]

    @strawberry.field(
        permission_classes=[policy.gql("rooms.read")], description="A room's beds with attributes, occupant and reservation; null for another site's room."
    )
    async def room_beds(self, info: Ctx, room_id: UUID) -> list[Bed] | None:
        ctx = info.context
        async with ctx.db.connection() as conn:
            found = await service.room_beds(conn, ctx.require_principal(), [room_id])
        beds = found.get(room_id, [])
        return [to_gql(Bed, b) for b in beds] if beds else None

    @strawberry.field(permission_classes=[policy.gql("rooms.read")], description="Who lay on a bed, newest first; null for another site's bed.")
    async def bed_history(self, info: Ctx, bed_id: UUID, first: int = 50) -> list[BedOccupancy] | None:
        ctx = info.context
        try:
            async with ctx.db.connection() as conn:
                found = await service.bed_history(conn, ctx.require_principal(), bed_id, limit=first)
        except NotFound:
            return None
        return [to_gql(BedOccupancy, o) for o in found]

    @strawberry.field(permission_classes=[policy.gql("occupancy.read")], description="Occupancy per site (the caller's, or these) and in total.")
    async def occupancy(self, info: Ctx, site_ids: list[UUID] | None = None) -> Occupancy:
        ctx = info.context
        async with ctx.db.connection() as conn:
            found = await service.occupancy(conn, ctx.require_principal(), site_ids)
        return Occupancy(sites=[to_gql(SiteOccupancy, s) for s in found.sites], total=to_gql(SiteOccupancy, found.total))

    @strawberry.field(permission_classes=[policy.gql("stays.read")], description="One stay; null when not at one of the caller's sites.")
    async def stay(self, info: Ctx, id: UUID) -> Stay | None:
        found = await _loader(info, "stays.stays", service.get_stays).load(id)
        return stay_gql(found) if found else None

    @strawberry.field(permission_classes=[policy.gql("stays.read")], description="A site's stays, newest admission first.")
    async def stays(
        self,
        info: Ctx,
        site_id: UUID,
        status: StayStatusGQL | None = None,
        arrival_batch: str | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[Stay]:
        ctx = info.context
        principal = ctx.require_principal()
        key = lambda s: [s.admitted_at.isoformat(), str(s.id)]  # noqa: E731
        if not principal.can_access_site(site_id):
            return connection_of(Page(items=[], next_cursor=None), stay_gql, key)
        try:
            async with ctx.db.connection() as conn:
                page = await service.list_stays(conn, principal, site_id, status=status, arrival_batch=arrival_batch, cursor=after, limit=first)
        except NotFound:
            page = Page(items=[], next_cursor=None)
        return connection_of(page, stay_gql, key)

    @strawberry.field(permission_classes=[policy.gql("regimes.read")])
    async def regimes(self, info: Ctx) -> list[Regime]:
        async with info.context.db.connection() as conn:
            return [regime_gql(r) for r in await service.list_regimes(conn)]

    @strawberry.field(permission_classes=[policy.gql("regimes.read")], description="Every version of a regime, oldest first.")
    async def regime_versions(self, info: Ctx, code: str) -> list[Regime]:
        async with info.context.db.connection() as conn:
            return [regime_gql(r) for r in await service.regime_versions(conn, code)]

    @strawberry.field(
        permission_classes=[policy.gql("regimes.read")],
        description="Regime rules: which regime a category serves at a risk level (else the category's default regime).",
    )
    async def regime_rules(self, info: Ctx) -> list[RegimeRule]:
        async with info.context.db.connection() as conn:
            return [to_gql(RegimeRule, r) for r in await service.list_regime_rules(conn)]

    @strawberry.field(permission_classes=[policy.gql("residents.find")], description="Residents with exactly this document number (blind index), masked.")
    async def residents_by_document(self, info: Ctx, document_number: str) -> list[Resident]:
        ctx = info.context
        if not 3 <= len(document_number) <= 40:
            return []
        async with ctx.db.connection() as conn:
            found = await service.find_residents(conn, ctx.require_principal(), ctx.settings, document_number)
        return [to_gql(Resident, r) for r in found]

    @strawberry.field(permission_classes=[policy.gql("stays.admit")], description="Rooms qsite would allocate, best first (nothing reserved).")
    async def suggest_rooms(
        self,
        info: Ctx,
        site_id: UUID,
        category: CategoryGQL,
        arrival_batch: str = "",
        household_key: str | None = None,
        party_size: int = 1,
        floor: int | None = None,
    ) -> list[RoomSuggestion] | None:
        ctx = info.context
        principal = ctx.require_principal()
        if not principal.can_access_site(site_id):
            return None
        async with ctx.db.connection() as conn:
            if not await sites.get_sites(conn, principal, [site_id]):
                return None
            found = await service.suggest_rooms(
                conn, principal, site_id, category=category, arrival_batch=arrival_batch, household_key=household_key,
                party_size=max(1, min(party_size, 20)), floor=floor,
            )
        return [to_gql(RoomSuggestion, s) for s in found]

    @strawberry.field(permission_classes=[policy.gql("stays.read")], description="Roommates, household and floor neighbours of a stay.")
    async def stay_contacts(self, info: Ctx, stay_id: UUID) -> StayContacts | None:
        ctx = info.context
        principal = ctx.require_principal()
        if not (await _loader(info, "stays.stays", service.get_stays).load(stay_id)):
            return None
        async with ctx.db.connection() as conn:
            found = await service.contacts(conn, principal, stay_id)
        return StayContacts(
            roommates=[stay_gql(s) for s in found.roommates],
            household=[stay_gql(s) for s in found.household],
            floor_neighbours=[stay_gql(s) for s in found.floor_neighbours],
        )



@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[policy.gql("stays.admit")])
    async def admit_resident(self, info: Ctx, input: AdmitInput) -> StayPayload:
        stay, errors = await perform(info, admit_write(info.context, info.context.require_principal(), input))
        return StayPayload(stay=stay_gql(stay) if stay else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("stays.admit")], description="Admit an arriving batch: every member or none.")
    async def admit_batch(self, info: Ctx, input: AdmitBatchInput) -> StaysPayload:
        ctx = info.context
        principal = ctx.require_principal()
        stays, errors = await mutate_input(
            info, input, m.BatchAdmission, list[m.Stay], lambda conn, data: service.admit_batch(conn, principal, ctx.settings, data)
        )
        return StaysPayload(stays=[stay_gql(s) for s in stays or []], user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("stays.admit")], description="Move to another room (this site or another); returns the new stay.")
    async def move_stay(self, info: Ctx, input: MoveStayInput) -> StayPayload:
        stay, errors = await perform(info, move_write(info.context, info.context.require_principal(), input))
        return StayPayload(stay=stay_gql(stay) if stay else None, user_errors=errors)

    @strawberry.mutation(
        permission_classes=[policy.gql("stays.close")],
        description="End centralized quarantine: records the hand-over (`handover` required when the regime continues at home) "
        "and issues the release certificate (`stay { handover { certificateCode } }`).",
    )
    async def release_stay(self, info: Ctx, stay_id: UUID, handover: HandoverInputGQL | None = None) -> StayPayload:
        prepared = release_write(info.context, info.context.require_principal(), ReleaseStayInput(stay_id=stay_id, handover=handover))
        stay, errors = await perform(info, prepared)
        return StayPayload(stay=stay_gql(stay) if stay else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("stays.close")])
    async def extend_stay(self, info: Ctx, input: ExtendStayInput) -> StayPayload:
        stay, errors = await perform(info, extend_write(info.context, info.context.require_principal(), input))
        return StayPayload(stay=stay_gql(stay) if stay else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("rooms.manage")], description="Set a bed's attributes (accessible, cot, oxygen).")
    async def update_bed(self, info: Ctx, input: UpdateBedInput) -> BedPayload:
        principal = info.context.require_principal()
        bed, errors = await mutate_input(
            info, input, m.BedPatch, m.BedEntity, lambda conn, data: service.update_bed(conn, principal, input.bed_id, data),
            leave_out=("bed_id",), omit_null=True,
        )
        return BedPayload(bed=to_gql(Bed, bed) if bed else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("regimes.update")], description="Create a regime (version 1).")
    async def create_regime(self, info: Ctx, input: CreateRegimeInput) -> RegimePayload:
        principal = info.context.require_principal()
        regime, errors = await mutate_input(info, input, m.RegimeCreate, m.Regime, lambda conn, data: service.create_regime(conn, principal, data))
        return RegimePayload(regime=regime_gql(regime) if regime else None, user_errors=errors)

    @strawberry.mutation(
        permission_classes=[policy.gql("regimes.update")],
        description="A new version of a regime for stays admitted from its effectiveFrom; open stays move onto it only with replanOpenStays.",
    )
    async def update_regime(self, info: Ctx, input: UpdateRegimeInput) -> RegimePayload:
        principal = info.context.require_principal()
        change, errors = await mutate_input(
            info, input, m.RegimePatch, m.RegimeChange, lambda conn, data: service.update_regime(conn, principal, input.code, data),
            leave_out=("code",), omit_null=True,
        )
        if change is None:
            return RegimePayload(user_errors=errors)
        return RegimePayload(regime=regime_gql(change.regime), replanned=change.replanned)

    @strawberry.mutation(permission_classes=[policy.gql("regimes.update")], description="Set a regime rule; answers every rule.")
    async def set_regime_rule(self, info: Ctx, input: SetRegimeRuleInput) -> RegimeRulesPayload:
        principal = info.context.require_principal()
        rules, errors = await mutate_input(info, input, m.RegimeRuleSet, list[m.RegimeRule], lambda conn, data: service.set_regime_rule(conn, principal, data))
        return RegimeRulesPayload(rules=[to_gql(RegimeRule, r) for r in rules or []], user_errors=errors)

    @strawberry.mutation(
        permission_classes=[policy.gql("residents.reveal")],
        description="Unmasked name, ID and phone number, for a stated purpose; audited.",
    )
    async def reveal_resident(self, info: Ctx, input: RevealResidentInput) -> RevealResidentPayload:
        ctx = info.context
        principal = ctx.require_principal()
        # replay=False: the Idempotency-Key binds to this input, but the unmasked answer is never stored.
        found, errors = await mutate(
            info,
            lambda conn: service.reveal_resident(conn, principal, ctx.settings, input.resident_id, input.purpose),
            result_type=m.ResidentRevealed,
            replay=False,
        )
        if found is None:
            return RevealResidentPayload(user_errors=errors)
        return RevealResidentPayload(resident=to_gql(ResidentRevealed, found))


# --- writes, prepared once for their own mutation and for syncWrites (service/offline.py) ---------


def admit_write(ctx: Context, principal: Principal, input: AdmitInput) -> Prepared[m.Stay]:
    return prepare(input, m.Admission, m.Stay, lambda conn, data: service.admit(conn, principal, ctx.settings, data))


def move_write(ctx: Context, principal: Principal, input: MoveStayInput) -> Prepared[m.Stay]:
    return prepare(input, m.Move, m.Stay, lambda conn, data: service.move(conn, principal, input.stay_id, data), leave_out=("stay_id",))


def release_write(ctx: Context, principal: Principal, input: ReleaseStayInput) -> Prepared[m.Stay]:
    from service.handover.gql import handover_struct

    handover, errors = handover_struct(input.handover)
    if errors:
        return errors
    return Write(lambda conn: service.release(conn, principal, ctx.settings, input.stay_id, handover=handover), m.Stay)


def extend_write(ctx: Context, principal: Principal, input: ExtendStayInput) -> Prepared[m.Stay]:
    return prepare(input, m.Extension, m.Stay, lambda conn, data: service.extend_stay(conn, principal, input.stay_id, data), leave_out=("stay_id",))


async def _stay_now(conn: asyncpg.Connection, ctx: Context, principal: Principal, input: Any) -> Stay | None:
    found = await service.get_stays(conn, principal, [input.stay_id])
    return stay_gql(found[input.stay_id]) if input.stay_id in found else None


async def _admission_now(conn: asyncpg.Connection, ctx: Context, principal: Principal, input: AdmitInput) -> Stay | Room | None:
    """What an admission conflicts with: the stay its client id names, else the room it asked for."""
    if input.id is not None and (found := await service.get_stays(conn, principal, [input.id])):
        return stay_gql(found[input.id])
    if input.room_id is not None and (rooms := await sites.get_rooms(conn, principal, [input.room_id])):
        return room_gql(rooms[input.room_id])
    return None


OFFLINE_WRITES = {
    "admit_resident": OfflineWrite("stays.admit", admit_write, stay_gql, _admission_now),
    "move_stay": OfflineWrite("stays.admit", move_write, stay_gql, _stay_now),
    "release_stay": OfflineWrite("stays.close", release_write, stay_gql, _stay_now),
    "extend_stay": OfflineWrite("stays.close", extend_write, stay_gql, _stay_now),
}
