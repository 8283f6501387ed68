"""GraphQL: transfers for the medical teams' app (request, move, board, history, times) and facilities."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import strawberry

from service import policy
from service.access.model import Principal
from service.gql import (
    Connection,
    Context,
    Ctx,
    OfflineWrite,
    Prepared,
    UserError,
    connection_of,
    fields_from,
    mutate_input,
    perform,
    prepare,
    scoped_loader,
    site_connection,
    site_read,
    to_gql,
)
from service.stays import service as stays
from service.stays.gql import Stay, stay_gql
from service.transfers import model as m
from service.transfers import service

strawberry.enum(m.FacilityKind, name="FacilityKind")  # registers m.FacilityKind itself
FacilityKindGQL = m.FacilityKind
strawberry.enum(m.TransferReason, name="TransferReason")  # registers m.TransferReason itself
TransferReasonGQL = m.TransferReason
strawberry.enum(m.Urgency, name="TransferUrgency")  # registers m.Urgency itself
UrgencyGQL = m.Urgency
strawberry.enum(m.TransferState, name="TransferState")  # registers m.TransferState itself
TransferStateGQL = m.TransferState
strawberry.enum(m.TransferAction, name="TransferAction", description="An edge of the transfer state machine.")  # registers m.TransferAction itself
TransferActionGQL = m.TransferAction
strawberry.enum(m.VehicleKind, name="TransferVehicleKind")  # registers m.VehicleKind itself
VehicleKindGQL = m.VehicleKind
strawberry.enum(m.TransferOutcome, name="TransferOutcome", description="What became of the resident at the hospital.")
TransferOutcomeGQL = m.TransferOutcome


@strawberry.type(description="A destination: designated or makeshift hospital.")
@fields_from(m.Facility, leave_out=("created_at", "updated_at"))
class DestinationFacility:
    requires_acceptance: bool = strawberry.field(description="The facility accepts each transfer before it is dispatched.")


def facility_gql(model: m.Facility) -> DestinationFacility:
    return to_gql(DestinationFacility, model)


@strawberry.type(description="One transition of a transfer: from, to, who, when, and the note (reason, handover).")
@fields_from(m.TransferTransition, leave_out=("id", "transfer_id"))
class TransferTransition:
    facility_id: UUID | None = strawberry.field(description="The new destination, or the facility that refused at the door.")


@strawberry.type(description="A medical transfer of a resident to a hospital.")
@fields_from(m.Transfer, leave_out=("consequences_at", "updated_at"))
class Transfer:
    id: UUID
    stay_id: UUID
    infectious: bool = strawberry.field(description="Positive test or symptoms: the room is sealed on departure.")
    destination_id: UUID | None
    requested_at: datetime
    dispatched_at: datetime | None = strawberry.field(description="First dispatch.")
    closed_at: datetime | None = strawberry.field(description="When rejected or cancelled.")
    destination_approved_at: datetime | None = strawberry.field(description="When the destination accepted (cleared by a decline or redirect).")
    outcome: TransferOutcomeGQL | None = strawberry.field(description="Reported by the hospital after arrival.")
    return_site_id: UUID | None = strawberry.field(description="A return: the receiving site (null if not one of yours).")
    return_stay_id: UUID | None = strawberry.field(description="A return: the new stay there (null if not one of yours).")

    @strawberry.field(description="Minutes since the request (the board's age).")
    def age_minutes(self) -> float:
        return round((datetime.now(UTC) - self.requested_at).total_seconds() / 60, 1)

    @strawberry.field(permission_classes=[policy.gql("facilities.read")])
    async def destination(self, info: Ctx) -> DestinationFacility | None:
        if self.destination_id is None:
            return None
        found = await scoped_loader(info, "transfers.facilities", service.get_facilities).load(self.destination_id)
        return facility_gql(found) if found else None

    @strawberry.field(permission_classes=[policy.gql("stays.read")], description="The stay the resident left (null when not at one of the caller's sites).")
    async def stay(self, info: Ctx) -> Stay | None:
        found = await scoped_loader(info, "transfers.stays", stays.get_stays).load(self.stay_id)
        return stay_gql(found) if found else None

    @strawberry.field(description="Every transition, oldest first.")
    async def transitions(self, info: Ctx) -> list[TransferTransition]:
        found = await scoped_loader(info, "transfers.transitions", service.transitions, []).load(self.id)
        return [to_gql(TransferTransition, t) for t in found]


def transfer_gql(model: m.Transfer) -> Transfer:
    return to_gql(Transfer, model)


@strawberry.type(description="Median response times of a site's transfers requested in [since, until).")
@fields_from(m.TransferTimes)
class TransferTimes:
    pass


@strawberry.input
class RequestTransferInput:
    stay_id: UUID
    reason: TransferReasonGQL
    urgency: UrgencyGQL = m.Urgency.URGENT
    reason_note: str = ""
    alert_id: UUID | None = None
    sample_id: UUID | None = None
    destination_id: UUID | None = None
    id: UUID | None = strawberry.field(default=None, description="Client-generated id: a replay answers the stored transfer.")


@strawberry.input
class TransferVehicleInput:
    plate: str
    kind: VehicleKindGQL
    driver: str
    escort: str


@strawberry.input(description="Move along one edge; `version` is the one you read (stale: userError stale_version).")
class MoveTransferInput:
    id: UUID
    action: TransferActionGQL
    version: int
    note: str = strawberry.field(
        default="", description="Reason (reject, cancel, refuse at door, decline: required) or handover note (arrive)."
    )
    destination_id: UUID | None = strawberry.field(default=None, description="approve / dispatch: the destination; redirect: required.")
    vehicle: TransferVehicleInput | None = strawberry.field(default=None, description="dispatch: required.")


@strawberry.input
class CreateFacilityInput:
    code: str
    name: str
    kind: FacilityKindGQL
    region_path: str = ""
    contact: str = ""
    capacity_note: str = ""
    requires_acceptance: bool = False


@strawberry.input
class UpdateFacilityInput:
    id: UUID
    version: int
    name: str | None = None
    kind: FacilityKindGQL | None = None
    region_path: str | None = None
    contact: str | None = None
    capacity_note: str | None = None
    active: bool | None = None
    requires_acceptance: bool | None = None


@strawberry.type
class TransferPayload:
    transfer: Transfer | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class FacilityPayload:
    facility: DestinationFacility | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _site_key(t: m.Transfer) -> list[object]:
    return [t.requested_at.isoformat(), str(t.id)]


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[policy.gql("transfers.read")], description="One transfer; null when not at one of the caller's sites.")
    async def transfer(self, info: Ctx, id: UUID) -> Transfer | None:
        found = await scoped_loader(info, "transfers.transfers", service.get_transfers).load(id)
        return transfer_gql(found) if found else None

    @strawberry.field(
        permission_classes=[policy.gql("transfers.read")], description="A site's open transfers: emergency first, then urgent, routine; oldest request first."
    )
    async def transfer_board(self, info: Ctx, site_id: UUID, first: int = 50, after: str | None = None) -> Connection[Transfer]:
        return await site_connection(
            info, site_id, lambda conn, p: service.board(conn, p, site_id, cursor=after, limit=first), lambda rt: transfer_gql(rt[1]), service.board_key
        )

    @strawberry.field(permission_classes=[policy.gql("transfers.read")], description="A site's transfers, newest request first; optionally only some states.")
    async def site_transfers(
        self, info: Ctx, site_id: UUID, states: list[TransferStateGQL] | None = None, first: int = 50, after: str | None = None
    ) -> Connection[Transfer]:
        wanted = [m.TransferState(s) for s in states or []] or None
        return await site_connection(
            info, site_id, lambda conn, p: service.list_site_transfers(conn, p, site_id, states=wanted, cursor=after, limit=first), transfer_gql, _site_key
        )

    @strawberry.field(permission_classes=[policy.gql("transfers.read")], description="A resident's transfers at the caller's sites, newest first.")
    async def resident_transfers(self, info: Ctx, resident_id: UUID) -> list[Transfer]:
        found = await scoped_loader(info, "transfers.by_resident", service.resident_history, []).load(resident_id)
        return [transfer_gql(t) for t in found]

    @strawberry.field(
        permission_classes=[policy.gql("transfers.read")],
        description="Median request-to-dispatch / request-to-arrival minutes; null for another site.",
    )
    async def transfer_times(self, info: Ctx, site_id: UUID, since: datetime, until: datetime) -> TransferTimes | None:
        times = await site_read(info, site_id, lambda conn, p: service.site_times(conn, p, site_id, since=since, until=until), None)
        return None if times is None else to_gql(TransferTimes, times)

    @strawberry.field(permission_classes=[policy.gql("facilities.read")], description="Destination facilities by code; `region` includes its sub-regions.")
    async def destination_facilities(
        self, info: Ctx, region: str | None = None, active: bool | None = None, first: int = 50, after: str | None = None
    ) -> Connection[DestinationFacility]:
        ctx = info.context
        async with ctx.db.connection() as conn:
            page = await service.list_facilities(conn, ctx.require_principal(), region=region, active=active, cursor=after, limit=first)
        return connection_of(page, facility_gql, lambda f: [f.code])


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[policy.gql("transfers.request")], description="Request a resident's transfer.")
    async def request_transfer(self, info: Ctx, input: RequestTransferInput) -> TransferPayload:
        transfer, errors = await perform(info, request_write(info.context, info.context.require_principal(), input))
        return TransferPayload(transfer=transfer_gql(transfer) if transfer else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("transfers.move")], description="Move a transfer along one edge (medics, command).")
    async def move_transfer(self, info: Ctx, input: MoveTransferInput) -> TransferPayload:
        transfer, errors = await perform(info, move_write(info.context, info.context.require_principal(), input))
        return TransferPayload(transfer=transfer_gql(transfer) if transfer else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("facilities.manage")])
    async def create_destination_facility(self, info: Ctx, input: CreateFacilityInput) -> FacilityPayload:
        principal = info.context.require_principal()
        facility, errors = await mutate_input(info, input, m.FacilityCreate, m.Facility, lambda conn, data: service.create_facility(conn, principal, data))
        return FacilityPayload(facility=facility_gql(facility) if facility else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("facilities.manage")])
    async def update_destination_facility(self, info: Ctx, input: UpdateFacilityInput) -> FacilityPayload:
        principal = info.context.require_principal()
        facility, errors = await mutate_input(
            info, input, m.FacilityPatch, m.Facility, lambda conn, data: service.update_facility(conn, principal, input.id, data),
            leave_out=("id",), omit_null=True,
        )
        return FacilityPayload(facility=facility_gql(facility) if facility else None, user_errors=errors)


# --- writes, prepared once for their own mutation and for syncWrites (service/offline.py) ---------


def request_write(ctx: Context, principal: Principal, input: RequestTransferInput) -> Prepared[m.Transfer]:
    return prepare(input, m.TransferRequest, m.Transfer, lambda conn, data: service.request_transfer(conn, principal, data))


def move_write(ctx: Context, principal: Principal, input: MoveTransferInput) -> Prepared[m.Transfer]:
    return prepare(input, m.TransferMove, m.Transfer, lambda conn, data: service.move_transfer(conn, principal, input.id, data), leave_out=("id",))


async def _requested_now(conn: asyncpg.Connection, ctx: Context, principal: Principal, input: RequestTransferInput) -> Transfer | Stay | None:
    """What a transfer request conflicts with: the transfer its client id names, else its stay."""
    if input.id is not None and (found := await service.get_transfers(conn, principal, [input.id])):
        return transfer_gql(found[input.id])
    stay = await stays.get_stays(conn, principal, [input.stay_id])
    return stay_gql(stay[input.stay_id]) if input.stay_id in stay else None


async def _transfer_now(conn: asyncpg.Connection, ctx: Context, principal: Principal, input: MoveTransferInput) -> Transfer | None:
    found = await service.get_transfers(conn, principal, [input.id])
    return transfer_gql(found[input.id]) if input.id in found else None


OFFLINE_WRITES = {
    "request_transfer": OfflineWrite("transfers.request", request_write, transfer_gql, _requested_now),
    "move_transfer": OfflineWrite("transfers.move", move_write, transfer_gql, _transfer_now),
}
