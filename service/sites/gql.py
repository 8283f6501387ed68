"""GraphQL: sites."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import strawberry

from service.access.model import Role
from service.gql import Authenticated, Connection, Ctx, UserError, connection_of, input_struct, mutate, roles, to_gql
from service.sites import service
from service.sites.model import Site as SiteModel
from service.sites.model import SiteCreate, SiteKind, SitePatch, SiteStatus

SiteKindGQL = strawberry.enum(SiteKind, name="SiteKind")
SiteStatusGQL = strawberry.enum(SiteStatus, name="SiteStatus")


@strawberry.type(description="An isolation site: the unit of access.")
class Site:
    id: UUID
    code: str
    name: str
    region_path: str
    kind: SiteKindGQL
    status: SiteStatusGQL
    time_zone: str
    address: str
    contact: str
    version: int
    created_at: datetime
    updated_at: datetime


def site_gql(model: SiteModel) -> Site:
    return to_gql(Site, model)


@strawberry.input
class CreateSiteInput:
    code: str
    name: str
    region_path: str = ""
    kind: SiteKindGQL = SiteKind.HOTEL
    status: SiteStatusGQL = SiteStatus.ACTIVE
    time_zone: str = "Asia/Shanghai"
    address: str = ""
    contact: str = ""


@strawberry.input
class UpdateSiteInput:
    id: UUID
    version: int
    name: str | None = None
    region_path: str | None = None
    kind: SiteKindGQL | None = None
    status: SiteStatusGQL | None = None
    time_zone: str | None = None
    address: str | None = None
    contact: str | None = None


@strawberry.type
class SitePayload:
    site: Site | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[Authenticated], description="Sites the caller may see, ordered by code.")
    async def sites(self, info: Ctx, first: int = 50, after: str | None = None) -> Connection[Site]:
        ctx = info.context
        async with ctx.db.connection() as conn:
            page = await service.list_sites(conn, ctx.require_principal(), cursor=after, limit=first)
        return connection_of(page, site_gql, lambda s: [s.code])

    @strawberry.field(permission_classes=[Authenticated], description="One site; null when it is not one of the caller's.")
    async def site(self, info: Ctx, id: UUID) -> Site | None:
        ctx = info.context
        async with ctx.db.connection() as conn:
            found = await service.get_sites(conn, ctx.require_principal(), [id])
        return site_gql(found[id]) if id in found else None


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[roles(Role.COMMAND)])
    async def create_site(self, info: Ctx, input: CreateSiteInput) -> SitePayload:
        principal = info.context.require_principal()
        data, errors = input_struct(SiteCreate, input)
        if errors:
            return SitePayload(user_errors=errors)
        site, errors = await mutate(info, lambda conn: service.create_site(conn, principal, data), result_type=SiteModel, fingerprint=data)
        return SitePayload(site=site_gql(site) if site else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[roles(Role.COMMAND, Role.SITE_MANAGER)])
    async def update_site(self, info: Ctx, input: UpdateSiteInput) -> SitePayload:
        principal = info.context.require_principal()
        fields = {k: v for k, v in strawberry.asdict(input).items() if v is not None and k != "id"}
        data, errors = input_struct(SitePatch, fields)
        if errors:
            return SitePayload(user_errors=errors)
        site, errors = await mutate(
            info, lambda conn: service.update_site(conn, principal, input.id, data), result_type=SiteModel
        )
        return SitePayload(site=site_gql(site) if site else None, user_errors=errors)
