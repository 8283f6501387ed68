"""GraphQL: resident care for the site app (flags for medics and managers, care requests, stock issued)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import strawberry

from service import policy
from service.access.model import Principal
from service.gql import Connection, Context, Ctx, OfflineWrite, Prepared, UserError, fields_from, perform, prepare, scoped_loader, site_connection, to_gql
from service.operations.care import model as m
from service.operations.care import service
from service.stays import service as stays
from service.stays.gql import Stay, stay_gql

strawberry.enum(m.Vulnerability, name="Vulnerability", description="Why a resident needs closer care (health data).")
VulnerabilityGQL = m.Vulnerability
strawberry.enum(m.CareKind, name="CareKind")
CareKindGQL = m.CareKind
strawberry.enum(m.CareState, name="CareState")
CareStateGQL = m.CareState
strawberry.enum(m.CareAction, name="CareAction")
CareActionGQL = m.CareAction


@strawberry.type(description="A stay's vulnerability flags and note: health data (medics, site managers, command).")
@fields_from(m.CareProfile)
class CareProfile:
    pass


@strawberry.type(description="Stock issued against a care request: the supplies ledger movement it made.")
@fields_from(m.CareIssue, leave_out=("site_id",))
class CareIssue:
    pass


@strawberry.type(description="A resident's service request, taken by staff, with its deadline (SLA per kind).")
@fields_from(m.CareRequest)
class CareRequest:
    id: UUID
    stay_id: UUID
    due_at: datetime = strawberry.field(description="The request time plus the kind's SLA.")
    closed_by: str | None = strawberry.field(description="Who completed or declined it.")
    overdue: bool = strawberry.field(description="Past due and still open, or closed after its deadline.")

    @strawberry.field(description="Whether the resident carries any vulnerability flag (the flags themselves: careProfile).")
    async def flagged(self, info: Ctx) -> bool:
        return bool(await scoped_loader(info, "care.flagged", service.flagged, False).load(self.stay_id))

    @strawberry.field(description="Stock issued against this request, oldest first.")
    async def issues(self, info: Ctx) -> list[CareIssue]:
        found = await scoped_loader(info, "care.issues", service.issues, []).load(self.id)
        return [to_gql(CareIssue, i) for i in found]

    @strawberry.field(permission_classes=[policy.gql("stays.read")], description="The resident's stay (null when not at one of the caller's sites).")
    async def stay(self, info: Ctx) -> Stay | None:
        found = await scoped_loader(info, "care.stays", stays.get_stays).load(self.stay_id)
        return stay_gql(found) if found else None


def request_gql(model: m.CareRequest) -> CareRequest:
    return to_gql(CareRequest, model)


@strawberry.input
class SetCareProfileInput:
    stay_id: UUID
    flags: list[VulnerabilityGQL]
    note: str = ""
    version: int | None = strawberry.field(default=None, description="The profile's version read; omit when the stay has none yet.")


@strawberry.input
class CreateCareRequestInput:
    stay_id: UUID
    kind: CareKindGQL
    detail: str = ""
    id: UUID | None = strawberry.field(default=None, description="Client-generated id: a replay answers the stored request.")


@strawberry.input(description="start / complete / decline; `version` is the one you read; decline needs `resolution`.")
class MoveCareRequestInput:
    id: UUID
    action: CareActionGQL
    version: int
    resolution: str = ""


@strawberry.input(description="Issue stock from the site's store for an open request; `id` (client UUID) names the ledger movement.")
class RecordCareStockIssueInput:
    care_request_id: UUID
    item_id: UUID
    quantity: int
    id: UUID


@strawberry.type
class CareProfilePayload:
    profile: CareProfile | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CareRequestPayload:
    request: CareRequest | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CareIssuePayload:
    issue: CareIssue | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[policy.gql("care.read")], description="One care request; null when not at one of the caller's sites.")
    async def care_request(self, info: Ctx, id: UUID) -> CareRequest | None:
        found = await scoped_loader(info, "care.requests", service.get_requests).load(id)
        return request_gql(found) if found else None

    @strawberry.field(
        permission_classes=[policy.gql("care.read")],
        description="A site's care requests by deadline; default the worklist (open, in progress); `overdueOnly` past their SLA.",
    )
    async def care_requests(
        self,
        info: Ctx,
        site_id: UUID,
        states: list[CareStateGQL] | None = None,
        kind: CareKindGQL | None = None,
        overdue_only: bool = False,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[CareRequest]:
        wanted, of_kind = [m.CareState(s) for s in states or []] or None, m.CareKind(kind) if kind else None
        return await site_connection(
            info, site_id,
            lambda conn, p: service.list_site_requests(conn, p, site_id, states=wanted, kind=of_kind, overdue_only=overdue_only, cursor=after, limit=first),
            request_gql, service.request_key,
        )

    @strawberry.field(permission_classes=[policy.gql("care.read")], description="A stay's care requests, newest first.")
    async def stay_care_requests(self, info: Ctx, stay_id: UUID) -> list[CareRequest]:
        found = await scoped_loader(info, "care.by_stay", service.stay_requests, []).load(stay_id)
        return [request_gql(r) for r in found]

    @strawberry.field(permission_classes=[policy.gql("care.flags.read")], description="A stay's vulnerability flags; null when none set or not yours.")
    async def care_profile(self, info: Ctx, stay_id: UUID) -> CareProfile | None:
        found = await scoped_loader(info, "care.profiles", service.get_profiles).load(stay_id)
        return to_gql(CareProfile, found) if found else None


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[policy.gql("care.flags.write")], description="Set a stay's vulnerability flags (audited).")
    async def set_care_profile(self, info: Ctx, input: SetCareProfileInput) -> CareProfilePayload:
        profile, errors = await perform(info, profile_write(info.context, info.context.require_principal(), input))
        return CareProfilePayload(profile=to_gql(CareProfile, profile) if profile else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("care.request")], description="Take a resident's request (meal, medicine, ...).")
    async def create_care_request(self, info: Ctx, input: CreateCareRequestInput) -> CareRequestPayload:
        request, errors = await perform(info, create_write(info.context, info.context.require_principal(), input))
        return CareRequestPayload(request=request_gql(request) if request else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("care.request")], description="Start, complete or decline a care request.")
    async def move_care_request(self, info: Ctx, input: MoveCareRequestInput) -> CareRequestPayload:
        request, errors = await perform(info, move_write(info.context, info.context.require_principal(), input))
        return CareRequestPayload(request=request_gql(request) if request else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("care.issue")], description="Issue stock against a care request (supplies ledger).")
    async def record_care_stock_issue(self, info: Ctx, input: RecordCareStockIssueInput) -> CareIssuePayload:
        issue, errors = await perform(info, issue_write(info.context, info.context.require_principal(), input))
        return CareIssuePayload(issue=to_gql(CareIssue, issue) if issue else None, user_errors=errors)


# --- writes, prepared once for their own mutation and for syncWrites (service/offline.py) ---------


def profile_write(ctx: Context, principal: Principal, input: SetCareProfileInput) -> Prepared[m.CareProfile]:
    return prepare(input, m.CareProfileSet, m.CareProfile, lambda conn, data: service.set_profile(conn, principal, data))


def create_write(ctx: Context, principal: Principal, input: CreateCareRequestInput) -> Prepared[m.CareRequest]:
    return prepare(input, m.CareRequestCreate, m.CareRequest, lambda conn, data: service.create_request(conn, principal, data))


def move_write(ctx: Context, principal: Principal, input: MoveCareRequestInput) -> Prepared[m.CareRequest]:
    return prepare(input, m.CareRequestMove, m.CareRequest, lambda conn, data: service.move_request(conn, principal, input.id, data), leave_out=("id",))


def issue_write(ctx: Context, principal: Principal, input: RecordCareStockIssueInput) -> Prepared[m.CareIssue]:
    return prepare(input, m.CareIssueCreate, m.CareIssue, lambda conn, data: service.issue_stock(conn, principal, ctx.settings, data))


async def _profile_now(conn: asyncpg.Connection, ctx: Context, principal: Principal, input: SetCareProfileInput) -> CareProfile | None:
    found = await service.get_profiles(conn, principal, [input.stay_id])
    return to_gql(CareProfile, found[input.stay_id]) if input.stay_id in found else None


async def _request_now(conn: asyncpg.Connection, ctx: Context, principal: Principal, input: Any) -> CareRequest | None:
    """What a care write conflicts with: the request it names (its id, or the one stock is issued for)."""
    request_id = getattr(input, "care_request_id", None) or input.id
    if request_id is None:
        return None
    found = await service.get_requests(conn, principal, [request_id])
    return request_gql(found[request_id]) if request_id in found else None


OFFLINE_WRITES = {
    "set_care_profile": OfflineWrite("care.flags.write", profile_write, lambda p: to_gql(CareProfile, p), _profile_now),
    "create_care_request": OfflineWrite("care.request", create_write, request_gql, _request_now),
    "move_care_request": OfflineWrite("care.request", move_write, request_gql, _request_now),
    "record_care_stock_issue": OfflineWrite("care.issue", issue_write, lambda i: to_gql(CareIssue, i), _request_now),
}
