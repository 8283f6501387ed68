"""GraphQL: referrals and the pending-admission queue, admission from a referral, risk areas, isolation times."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import strawberry

from service import policy
from service.errors import DomainError
from service.gql import Connection, Ctx, UserError, connection_of, fields_from, mutate, mutate_input, scoped_loader, site_connection, site_read, to_gql
from service.intake import model as m
from service.intake import service
from service.pagination import Page
from service.stays import model as stays_model
from service.stays.gql import CategoryGQL, ResidentInput, RiskLevelGQL, Stay, StayPayload, stay_gql
from service.stays.service import get_stays

strawberry.enum(m.ReferralState, name="ReferralState")  # registers m.ReferralState itself
ReferralStateGQL = m.ReferralState
strawberry.enum(m.Need, name="ReferralNeed")  # registers m.Need itself
NeedGQL = m.Need
strawberry.enum(m.VehicleKind, name="VehicleKind")  # registers m.VehicleKind itself
VehicleKindGQL = m.VehicleKind
strawberry.enum(m.ManifestState, name="ManifestState")  # registers m.ManifestState itself
ManifestStateGQL = m.ManifestState
strawberry.enum(m.MemberState, name="ManifestMemberState")  # registers m.MemberState itself
MemberStateGQL = m.MemberState


@strawberry.type(description="The referred person, masked like residents.")
@fields_from(m.Person)
class ReferredPerson:
    pass


@strawberry.type(description="A person referred for isolation: pending -> assigned -> arrived | cancelled | no_show.")
@fields_from(m.Referral)
class Referral:
    regime_code: str = strawberry.field(description="The regime the rules proposed at referral; admission asks them again.")
    submissions: int = strawberry.field(description="How many submissions merged into this referral.")
    stay_id: UUID | None
    hours_to_isolation: float | None = strawberry.field(description="Identification -> isolation (earliest identification), once arrived.")

    @strawberry.field(permission_classes=[policy.gql("stays.read")], description="The stay the referral became, once arrived.")
    async def stay(self, info: Ctx) -> Stay | None:
        if self.stay_id is None:
            return None
        found = await scoped_loader(info, "stays.stays", get_stays).load(self.stay_id)
        return stay_gql(found) if found else None


def referral_gql(r: m.Referral) -> Referral:
    return to_gql(Referral, r, person=to_gql(ReferredPerson, r.person))


@strawberry.type(description="A risk area at a level over a period.")
@fields_from(m.RiskArea, leave_out=("created_at",))
class RiskArea:
    pass


@strawberry.type(description="Identification -> isolation at a site on one local day of arrival.")
@fields_from(m.IsolationTimes)
class IsolationTimes:
    pass


@strawberry.type(description="Someone on an announced vehicle: the bed reserved for them, then the stay.")
@fields_from(m.ManifestMember)
class ManifestMember:
    referral_id: UUID
    reservation_state: str | None = strawberry.field(description="held, consumed, released or expired.")

    @strawberry.field(permission_classes=[policy.gql("referrals.read")])
    async def referral(self, info: Ctx) -> Referral | None:
        found = await scoped_loader(info, "intake.referrals", service.get_referrals).load(self.referral_id)
        return referral_gql(found) if found else None


@strawberry.type(description="An inbound vehicle announced before it arrives; a bed is reserved for each person on board.")
@fields_from(m.Manifest)
class Manifest:
    hold_until: datetime = strawberry.field(description="The reservations expire then.")
    members: list[ManifestMember]


def manifest_gql(x: m.Manifest) -> Manifest:
    return to_gql(Manifest, x, members=[to_gql(ManifestMember, mm) for mm in x.members])


# --- inputs -------------------------------------------------------------------------


@strawberry.input(description="A person to isolate; `id` (made by the client) makes a replay answer the stored referral.")
class SubmitReferralInput:
    site_id: UUID
    person: ResidentInput
    category: CategoryGQL
    identified_at: datetime
    index_case_ref: str | None = None
    origin_area: str = ""
    risk_area_code: str | None = None
    needs: list[NeedGQL] = strawberry.field(default_factory=list)
    note: str = ""
    id: UUID | None = None


@strawberry.input
class AssignReferralInput:
    referral_id: UUID
    version: int
    site_id: UUID | None = strawberry.field(default=None, description="Another site to place the person at (default: the referral's).")


@strawberry.input
class CloseReferralInput:
    referral_id: UUID
    version: int
    reason: str = ""


@strawberry.input(description="Admit a referred person: `roomId` (and `bed`) or let qsite allocate (optionally on `floor`).")
class AdmitReferralInput:
    referral_id: UUID
    room_id: UUID | None = None
    bed: int | None = None
    floor: int | None = None
    arrival_batch: str = ""
    admitted_at: datetime | None = None


@strawberry.input
class DeclareRiskAreaInput:
    code: str
    level: RiskLevelGQL
    valid_from: datetime
    valid_to: datetime | None = None
    name: str = ""


@strawberry.input(description="An inbound vehicle and the referrals on board; `id` (made by the client) makes a replay answer the stored manifest.")
class AnnounceManifestInput:
    site_id: UUID
    vehicle_plate: str
    vehicle_kind: VehicleKindGQL
    expected_at: datetime
    referral_ids: list[UUID]
    escort: str = ""
    hold_minutes: int = m.HOLD_MINUTES_DEFAULT
    floor: int | None = None
    id: UUID | None = None


@strawberry.input
class AdmitManifestInput:
    manifest_id: UUID
    version: int
    no_show_referral_ids: list[UUID] = strawberry.field(default_factory=list, description="Not on board: their beds are freed.")
    admitted_at: datetime | None = None


@strawberry.input
class ManifestNoShowInput:
    manifest_id: UUID
    referral_id: UUID


@strawberry.input
class CancelManifestInput:
    manifest_id: UUID
    version: int
    reason: str = ""


@strawberry.type
class ManifestPayload:
    manifest: Manifest | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ReferralPayload:
    referral: Referral | None = None
    merged: bool = strawberry.field(default=False, description="The submission merged into the person's open referral.")
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RiskAreaPayload:
    risk_area: RiskArea | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


# --- root fields --------------------------------------------------------------------


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[policy.gql("referrals.read")], description="One referral; null when not at one of the caller's sites.")
    async def referral(self, info: Ctx, id: UUID) -> Referral | None:
        found = await scoped_loader(info, "intake.referrals", service.get_referrals).load(id)
        return referral_gql(found) if found else None

    @strawberry.field(
        permission_classes=[policy.gql("referrals.read")],
        description="The pending-admission queue of a site, of the sites under a region path, or of all the caller's sites; "
        "open referrals unless `states` says otherwise; longest waiting first.",
    )
    async def referral_queue(
        self,
        info: Ctx,
        site_id: UUID | None = None,
        region: str | None = None,
        states: list[ReferralStateGQL] | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[Referral]:
        ctx = info.context
        principal = ctx.require_principal()
        key = lambda r: [r.identified_at.isoformat(), str(r.id)]  # noqa: E731
        try:
            async with ctx.db.connection() as conn:
                page = await service.queue(conn, principal, site_id=site_id, region=region, states=states, cursor=after, limit=first)
        except DomainError as exc:
            if exc.status != 404:
                raise
            page = Page(items=[], next_cursor=None)
        return connection_of(page, referral_gql, key)

    @strawberry.field(
        permission_classes=[policy.gql("referrals.read")],
        description="Identification -> isolation per local day of arrival at a site (default: the last 14 days); null for another site.",
    )
    async def isolation_times(
        self, info: Ctx, site_id: UUID, since: datetime | None = None, until: datetime | None = None
    ) -> list[IsolationTimes] | None:
        found = await site_read(info, site_id, lambda conn, p: service.isolation_times(conn, p, site_id, since=since, until=until), None)
        return None if found is None else [to_gql(IsolationTimes, t) for t in found]

    @strawberry.field(permission_classes=[policy.gql("manifests.read")], description="One arrival manifest; null when not at one of the caller's sites.")
    async def manifest(self, info: Ctx, id: UUID) -> Manifest | None:
        found = await scoped_loader(info, "intake.manifests", service.get_manifests).load(id)
        return manifest_gql(found) if found else None

    @strawberry.field(permission_classes=[policy.gql("manifests.read")], description="A site's arrival manifests by expected arrival (default: announced).")
    async def site_manifests(
        self, info: Ctx, site_id: UUID, states: list[ManifestStateGQL] | None = None, first: int = 50, after: str | None = None
    ) -> Connection[Manifest]:
        return await site_connection(
            info, site_id, lambda conn, p: service.site_manifests(conn, p, site_id, states=states, cursor=after, limit=first),
            manifest_gql, lambda x: [x.expected_at.isoformat(), str(x.id)],
        )

    @strawberry.field(permission_classes=[policy.gql("risk_areas.read")], description="Risk areas (one `code`; with `at`, those in force then).")
    async def risk_areas(self, info: Ctx, code: str | None = None, at: datetime | None = None) -> list[RiskArea]:
        async with info.context.db.connection() as conn:
            return [to_gql(RiskArea, a) for a in await service.list_risk_areas(conn, code=code, at=at)]


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[policy.gql("referrals.submit")], description="Refer a person to isolate; a duplicate merges.")
    async def submit_referral(self, info: Ctx, input: SubmitReferralInput) -> ReferralPayload:
        ctx = info.context
        principal = ctx.require_principal()
        done, errors = await mutate_input(
            info, input, m.ReferralCreate, m.ReferralSubmitted, lambda conn, data: service.submit(conn, principal, ctx.settings, data)
        )
        if done is None:
            return ReferralPayload(user_errors=errors)
        return ReferralPayload(referral=referral_gql(done.referral), merged=done.merged)

    @strawberry.mutation(permission_classes=[policy.gql("referrals.assign")], description="Place a referral at a site (`assigned`).")
    async def assign_referral(self, info: Ctx, input: AssignReferralInput) -> ReferralPayload:
        principal = info.context.require_principal()
        found, errors = await mutate_input(
            info, input, m.Assignment, m.Referral, lambda conn, data: service.assign(conn, principal, input.referral_id, data), leave_out=("referral_id",)
        )
        return ReferralPayload(referral=referral_gql(found) if found else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("referrals.cancel")], description="No longer to isolate (`cancelled`).")
    async def cancel_referral(self, info: Ctx, input: CloseReferralInput) -> ReferralPayload:
        principal = info.context.require_principal()
        found, errors = await mutate_input(
            info, input, m.Closing, m.Referral, lambda conn, data: service.cancel(conn, principal, input.referral_id, data), leave_out=("referral_id",)
        )
        return ReferralPayload(referral=referral_gql(found) if found else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("referrals.assign")], description="The assigned person did not arrive (`no_show`).")
    async def mark_referral_no_show(self, info: Ctx, input: CloseReferralInput) -> ReferralPayload:
        principal = info.context.require_principal()
        found, errors = await mutate_input(
            info, input, m.Closing, m.Referral, lambda conn, data: service.no_show(conn, principal, input.referral_id, data), leave_out=("referral_id",)
        )
        return ReferralPayload(referral=referral_gql(found) if found else None, user_errors=errors)

    @strawberry.mutation(
        permission_classes=[policy.gql("stays.admit")],
        description="Admit a referred person at the referral's site and link the stay (`arrived`); an admitted referral answers its stay.",
    )
    async def admit_referral(self, info: Ctx, input: AdmitReferralInput) -> StayPayload:
        ctx = info.context
        principal = ctx.require_principal()
        stay, errors = await mutate_input(
            info, input, m.ReferralAdmission, stays_model.Stay,
            lambda conn, data: service.admit(conn, principal, ctx.settings, input.referral_id, data), leave_out=("referral_id",),
        )
        return StayPayload(stay=stay_gql(stay) if stay else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("risk_areas.manage")], description="Declare an area's risk level over a period.")
    async def declare_risk_area(self, info: Ctx, input: DeclareRiskAreaInput) -> RiskAreaPayload:
        principal = info.context.require_principal()
        area, errors = await mutate_input(info, input, m.RiskAreaCreate, m.RiskArea, lambda conn, data: service.declare_risk_area(conn, principal, data))
        return RiskAreaPayload(risk_area=to_gql(RiskArea, area) if area else None, user_errors=errors)

    @strawberry.mutation(
        permission_classes=[policy.gql("manifests.manage")],
        description="Announce an inbound vehicle: a bed is reserved for each referral on board (all or none).",
    )
    async def announce_manifest(self, info: Ctx, input: AnnounceManifestInput) -> ManifestPayload:
        principal = info.context.require_principal()
        found, errors = await mutate_input(info, input, m.ManifestCreate, m.Manifest, lambda conn, data: service.announce(conn, principal, data))
        return ManifestPayload(manifest=manifest_gql(found) if found else None, user_errors=errors)

    @strawberry.mutation(
        permission_classes=[policy.gql("stays.admit")],
        description="The vehicle arrived: admit everyone into their reserved beds but the no-shows (freed). All or none.",
    )
    async def admit_manifest(self, info: Ctx, input: AdmitManifestInput) -> ManifestPayload:
        ctx = info.context
        principal = ctx.require_principal()
        fields = strawberry.asdict(input)
        fields["no_show"] = fields.pop("no_show_referral_ids")
        found, errors = await mutate_input(
            info, fields, m.ManifestArrival, m.Manifest,
            lambda conn, data: service.admit_manifest(conn, principal, ctx.settings, input.manifest_id, data), leave_out=("manifest_id",), omit_null=True,
        )
        return ManifestPayload(manifest=manifest_gql(found) if found else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("manifests.manage")], description="Someone on the manifest will not come: the bed is freed.")
    async def mark_manifest_no_show(self, info: Ctx, input: ManifestNoShowInput) -> ManifestPayload:
        principal = info.context.require_principal()
        found, errors = await mutate(
            info, lambda conn: service.member_no_show(conn, principal, input.manifest_id, input.referral_id), result_type=m.Manifest
        )
        return ManifestPayload(manifest=manifest_gql(found) if found else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("manifests.manage")], description="The vehicle will not come: every reservation is freed.")
    async def cancel_manifest(self, info: Ctx, input: CancelManifestInput) -> ManifestPayload:
        principal = info.context.require_principal()
        found, errors = await mutate_input(
            info, input, m.Closing, m.Manifest, lambda conn, data: service.cancel_manifest(conn, principal, input.manifest_id, data), leave_out=("manifest_id",)
        )
        return ManifestPayload(manifest=manifest_gql(found) if found else None, user_errors=errors)
