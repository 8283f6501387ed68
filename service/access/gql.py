"""GraphQL: login and tokens, staff accounts, integration clients, the audit log."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from uuid import UUID

import strawberry

from service import policy
from service.access import service
from service.access.model import ApiClient as ApiClientModel
from service.access.model import ApiClientCreate, ApiClientCreated, ClientRole, StaffCreate, StaffPatch, StaffRole, TokenPair
from service.access.model import AuditEntry as AuditEntryModel
from service.access.model import Staff as StaffModel
from service.errors import DomainError, NotFound, RateLimited
from service.gql import Connection, Ctx, UserError, connection_of, input_struct, mutate, mutate_input, to_gql, user_errors

strawberry.enum(StaffRole, name="StaffRole")  # registers StaffRole itself
StaffRoleGQL = StaffRole
strawberry.enum(ClientRole, name="ApiClientRole")  # registers ClientRole itself
ApiClientRoleGQL = ClientRole

@strawberry.type(description="A staff account. `phone` is masked unless read with a purpose (audited).")
class StaffMember:
    id: UUID
    username: str
    display_name: str
    phone: str | None
    role: StaffRoleGQL
    site_ids: list[UUID]
    region_ids: list[UUID] = strawberry.field(description="Region subtrees the account reaches every site of")
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime


@strawberry.type(description="An integration client (logistics, lab, hospital). Its API key is shown only at creation.")
class ApiClient:
    id: UUID
    name: str
    role: ApiClientRoleGQL
    key_prefix: str
    site_ids: list[UUID] | None = strawberry.field(description="null: every site")
    facility_id: UUID | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


@strawberry.type(description="One audit row: an unmasked read of personal data or a health-data write.")
class AuditEntry:
    id: str
    at: datetime
    actor: str
    actor_role: str
    action: str
    site_id: UUID | None
    subject_id: UUID | None
    fields: list[str]
    purpose: str | None
    request_id: str | None


@strawberry.type(description="A short-lived access token (Bearer) and a rotating refresh token.")
class AuthTokens:
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    staff_id: UUID
    role: StaffRoleGQL
    site_ids: list[UUID] | None


@strawberry.type
class AuthPayload:
    tokens: AuthTokens | None = None
    retry_after: int | None = strawberry.field(default=None, description="Seconds to wait when rate limited")
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class LogoutPayload:
    ok: bool
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class StaffPayload:
    staff: StaffMember | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ApiClientPayload:
    client: ApiClient | None = None
    api_key: str | None = strawberry.field(default=None, description="The key, shown this once (null on a replay)")
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class CreateStaffInput:
    username: str
    display_name: str
    password: str
    role: StaffRoleGQL
    site_ids: list[UUID] = strawberry.field(default_factory=list)
    region_ids: list[UUID] = strawberry.field(default_factory=list)
    phone: str | None = None
    id: UUID | None = None


@strawberry.input
class UpdateStaffInput:
    id: UUID
    version: int
    display_name: str | None = None
    phone: str | None = None
    role: StaffRoleGQL | None = None
    site_ids: list[UUID] | None = None
    region_ids: list[UUID] | None = None
    active: bool | None = None
    password: str | None = None


@strawberry.input
class CreateApiClientInput:
    name: str
    role: ApiClientRoleGQL
    site_ids: list[UUID] | None = strawberry.field(
        description="Logistics, lab: the sites served (required). Hospital: null = transfers from every site (command only)"
    )
    facility_id: UUID | None = strawberry.field(default=None, description="Hospital clients (required): the facility they speak for")


def staff_gql(model: StaffModel) -> StaffMember:
    return to_gql(StaffMember, model)


def client_gql(model: ApiClientModel) -> ApiClient:
    return to_gql(ApiClient, model)


def audit_gql(model: AuditEntryModel) -> AuditEntry:
    return to_gql(AuditEntry, model, id=str(model.id))


def _tokens(pair: TokenPair) -> AuthTokens:
    return to_gql(AuthTokens, pair)


async def _auth_payload(work: Awaitable[TokenPair]) -> AuthPayload:
    try:
        return AuthPayload(tokens=_tokens(await work))
    except RateLimited as exc:
        return AuthPayload(retry_after=exc.extra["retry_after"], user_errors=user_errors(exc))
    except DomainError as exc:
        return AuthPayload(user_errors=user_errors(exc))


def _address(info: Ctx) -> str:
    request = info.context.request
    return request.client.host if request is not None and request.client else "unknown"


async def _load_staff(info: Ctx, staff_id: UUID) -> StaffMember | None:
    ctx = info.context
    principal = ctx.require_principal()

    async def batch(ids: list[UUID]) -> list[StaffModel | None]:
        async with ctx.db.connection() as conn:
            found = await service.get_staff_many(conn, ctx.settings, principal, ids)
        return [found.get(i) for i in ids]

    found = await ctx.loader("access.staff", batch).load(staff_id)
    return staff_gql(found) if found else None


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[policy.gql("staff.self")], description="The caller's own staff account (null for API clients).")
    async def me(self, info: Ctx) -> StaffMember | None:
        return await _load_staff(info, info.context.require_principal().id)

    @strawberry.field(permission_classes=[policy.gql("staff.read")], description="Staff of the caller's sites by username; phones masked unless `purpose`.")
    async def staff_members(
        self, info: Ctx, site_id: UUID | None = None, purpose: str | None = None, first: int = 50, after: str | None = None
    ) -> Connection[StaffMember]:
        ctx = info.context
        async with ctx.db.connection() as conn:
            page = await service.list_staff(conn, ctx.settings, ctx.require_principal(), site_id=site_id, cursor=after, limit=first, purpose=purpose)
        return connection_of(page, staff_gql, lambda s: [s.username])

    @strawberry.field(permission_classes=[policy.gql("staff.read")], description="One staff account; null when not visible to the caller.")
    async def staff_member(self, info: Ctx, id: UUID, purpose: str | None = None) -> StaffMember | None:
        if purpose is None:
            return await _load_staff(info, id)
        ctx = info.context
        async with ctx.db.connection() as conn:
            try:
                return staff_gql(await service.get_staff(conn, ctx.settings, ctx.require_principal(), id, purpose=purpose))
            except NotFound:
                return None

    @strawberry.field(permission_classes=[policy.gql("clients.manage")], description="Integration clients whose sites are all the caller's.")
    async def api_clients(self, info: Ctx, first: int = 50, after: str | None = None) -> Connection[ApiClient]:
        ctx = info.context
        async with ctx.db.connection() as conn:
            page = await service.list_clients(conn, ctx.require_principal(), cursor=after, limit=first)
        return connection_of(page, client_gql, lambda c: [str(c.id)])

    @strawberry.field(permission_classes=[policy.gql("audit.read")], description="The audit log, newest first (command only).")
    async def audit_log(
        self,
        info: Ctx,
        site_id: UUID | None = None,
        subject_id: UUID | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[AuditEntry]:
        ctx = info.context
        async with ctx.db.connection() as conn:
            page = await service.list_audit(
                conn,
                ctx.require_principal(),
                site_id=site_id,
                subject_id=subject_id,
                actor=actor,
                since=since,
                until=until,
                cursor=after,
                limit=first,
            )
        return connection_of(page, audit_gql, lambda e: [e.id])


@strawberry.type
class Mutation:
    # login / refreshToken / logout need no credential: they issue or end one. They do
    # not go through `mutate` (no Idempotency-Key replay: they mint secrets).
    @strawberry.mutation(description="Staff login; rate limited per account and per address (userError rate_limited, retryAfter).")
    async def login(self, info: Ctx, username: str, password: str) -> AuthPayload:
        ctx = info.context
        return await _auth_payload(service.login(ctx.db, ctx.settings, username=username, password=password, address=_address(info)))

    @strawberry.mutation(description="Rotate a refresh token; reusing a rotated one ends the whole login.")
    async def refresh_token(self, info: Ctx, refresh_token: str) -> AuthPayload:
        ctx = info.context
        return await _auth_payload(service.refresh(ctx.db, ctx.settings, refresh_token))

    @strawberry.mutation(description="End the login this refresh token belongs to.")
    async def logout(self, info: Ctx, refresh_token: str) -> LogoutPayload:
        await service.logout(info.context.db, refresh_token)
        return LogoutPayload(ok=True)

    @strawberry.mutation(permission_classes=[policy.gql("staff.manage")])
    async def create_staff(self, info: Ctx, input: CreateStaffInput) -> StaffPayload:
        ctx = info.context
        principal = ctx.require_principal()
        staff, errors = await mutate_input(info, input, StaffCreate, StaffModel, lambda conn, data: service.create_staff(conn, ctx.settings, principal, data))
        return StaffPayload(staff=staff_gql(staff) if staff else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("staff.manage")])
    async def update_staff(self, info: Ctx, input: UpdateStaffInput) -> StaffPayload:
        ctx = info.context
        principal = ctx.require_principal()
        staff, errors = await mutate_input(
            info, input, StaffPatch, StaffModel, lambda conn, data: service.update_staff(conn, ctx.settings, principal, input.id, data),
            leave_out=("id",), omit_null=True,
        )
        return StaffPayload(staff=staff_gql(staff) if staff else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("clients.manage")])
    async def create_api_client(self, info: Ctx, input: CreateApiClientInput) -> ApiClientPayload:
        principal = info.context.require_principal()
        data, errors = input_struct(ApiClientCreate, input)
        if data is None:
            return ApiClientPayload(user_errors=errors)
        work, with_key = service.client_creation(principal, data)
        stored, errors = await mutate(info, work, result_type=ApiClientCreated)
        if stored is None:
            return ApiClientPayload(user_errors=errors)
        created = with_key(stored)
        return ApiClientPayload(client=client_gql(created), api_key=created.api_key)

    @strawberry.mutation(permission_classes=[policy.gql("clients.manage")])
    async def revoke_api_client(self, info: Ctx, id: UUID) -> ApiClientPayload:
        ctx = info.context
        principal = ctx.require_principal()
        client, errors = await mutate(info, lambda conn: service.revoke_client(ctx.db, conn, principal, id), result_type=ApiClientModel)
        return ApiClientPayload(client=client_gql(client) if client else None, user_errors=errors)
