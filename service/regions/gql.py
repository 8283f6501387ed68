"""GraphQL: the region tree, roll-ups, daily series and reports."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import strawberry

from service import policy
from service.errors import InvalidInput, NotFound
from service.gql import Ctx, UserError, fields_from, from_struct, mutate, mutate_input, user_errors
from service.regions import model, service
from service.regions.model import RegionCreate, RegionLevel, RegionPatch

strawberry.enum(RegionLevel, name="RegionLevel")  # registers RegionLevel itself
RegionLevelGQL = RegionLevel


# The types mirror service/regions/model.py field for field (``fields_from``); built with ``from_struct``.


@strawberry.type(description="A region of the command chain: city, district or street (township).")
@fields_from(model.Region)
class Region:
    path: list[UUID] = strawberry.field(description="Ancestors' ids from the root, this region last.")
    site_ids: list[UUID] = strawberry.field(description="The caller's sites placed directly in this region.")


def region_gql(m: model.Region) -> Region:
    return from_struct(Region, m)


@strawberry.type(description="A labelled count: a stay category, an alert kind, a transfer state.")
@fields_from(model.Count)
class Count:
    pass


@strawberry.type(description="A low-stock item of a site, with days of cover at the last 7 days' issue rate.")
@fields_from(model.LowStockLine)
class LowStockLine:
    pass


@strawberry.type(description="Live figures of a set of sites. Compliance counts today's slots and test days begun so far.")
@fields_from(model.Figures)
class Figures:
    pass


@strawberry.type
@fields_from(model.SiteFigures)
class SiteFigures:
    pass


@strawberry.type
@fields_from(model.RegionFigures)
class RegionFigures:
    pass


@strawberry.type(description="Live roll-up: the region (null: all the caller's sites), its child regions and its sites.")
@fields_from(model.RegionRollUp)
class RegionRollUp:
    pass


@strawberry.type(description="One local day's figures (a site's snapshot, or summed over sites). final: the day is over.")
@fields_from(model.DayFigures)
class DayFigures:
    pass


@strawberry.type
@fields_from(model.DailySeries)
class DailySeries:
    pass


@strawberry.type
@fields_from(model.ReportSiteRow)
class ReportSiteRow:
    pass


@strawberry.type(description="One day's report: totals and a row per site (CSV and HTML at /api/v1/command/reports/{day}).")
@fields_from(model.DailyReport)
class DailyReport:
    pass


@strawberry.type
@fields_from(model.SitePlacement)
class SitePlacement:
    pass


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[policy.gql("regions.read")], description="The region tree as the caller sees it, roots first.")
    async def regions(self, info: Ctx) -> list[Region]:
        ctx = info.context
        async with ctx.db.connection() as conn:
            return [region_gql(r) for r in await service.list_regions(conn, ctx.require_principal())]

    @strawberry.field(permission_classes=[policy.gql("regions.read")], description="One region; null when the caller does not see it.")
    async def region(self, info: Ctx, id: UUID) -> Region | None:
        ctx = info.context
        async with ctx.db.connection() as conn:
            found = await service.get_regions(conn, ctx.require_principal(), [id])
        return region_gql(found[id]) if id in found else None

    @strawberry.field(permission_classes=[policy.gql("regions.figures")], description="Live figures of a region's sites (null: all the caller's sites).")
    async def region_roll_up(self, info: Ctx, region_id: UUID | None = None) -> RegionRollUp | None:
        ctx = info.context
        try:
            async with ctx.db.connection() as conn:
                return from_struct(RegionRollUp, await service.rollup(conn, ctx.require_principal(), region_id))
        except NotFound:
            return None

    @strawberry.field(
        permission_classes=[policy.gql("regions.figures")],
        description="Daily figures from the snapshots, oldest first, today so far last; null for an unknown region or site.",
    )
    async def daily_series(self, info: Ctx, region_id: UUID | None = None, days: int = 14, site_id: UUID | None = None) -> DailySeries | None:
        ctx = info.context
        try:
            async with ctx.db.connection() as conn:
                s = await service.daily_series(conn, ctx.require_principal(), region_id, days, site_id=site_id)
        except NotFound:
            return None
        return from_struct(DailySeries, s)

    @strawberry.field(permission_classes=[policy.gql("regions.figures")], description="One day's report; null for an unknown region.")
    async def daily_report(self, info: Ctx, day: date, region_id: UUID | None = None) -> DailyReport | None:
        ctx = info.context
        try:
            async with ctx.db.connection() as conn:
                r = await service.daily_report(conn, ctx.require_principal(), region_id, day)
        except NotFound:
            return None
        return from_struct(DailyReport, r)


@strawberry.input
class CreateRegionInput:
    code: str
    name: str
    level: RegionLevelGQL
    parent_id: UUID | None = None
    id: UUID | None = None


@strawberry.input(description="Rename and/or move. To make a region top-level, set makeRoot (parentId null means: do not move).")
class UpdateRegionInput:
    id: UUID
    version: int
    name: str | None = None
    code: str | None = None
    parent_id: UUID | None = None
    make_root: bool = False


@strawberry.input
class PlaceSiteInput:
    site_id: UUID
    region_id: UUID


@strawberry.type
class RegionPayload:
    region: Region | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class PlaceSitePayload:
    placement: SitePlacement | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[policy.gql("regions.manage")])
    async def create_region(self, info: Ctx, input: CreateRegionInput) -> RegionPayload:
        principal = info.context.require_principal()
        region, errors = await mutate_input(info, input, RegionCreate, model.Region, lambda conn, data: service.create_region(conn, principal, data))
        return RegionPayload(region=region_gql(region) if region else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("regions.manage")], description="Rename and/or move a region with its subtree.")
    async def update_region(self, info: Ctx, input: UpdateRegionInput) -> RegionPayload:
        principal = info.context.require_principal()
        fields = {k: v for k, v in strawberry.asdict(input).items() if v is not None and k not in ("id", "make_root")}
        if input.make_root:
            if input.parent_id is not None:
                both = InvalidInput("Give parentId or makeRoot, not both.", code="invalid_input", field="make_root")
                return RegionPayload(user_errors=user_errors(both))
            fields["parent_id"] = None
        region, errors = await mutate_input(info, fields, RegionPatch, model.Region, lambda conn, data: service.update_region(conn, principal, input.id, data))
        return RegionPayload(region=region_gql(region) if region else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("regions.manage")], description="Place a site in a region (out of its previous one).")
    async def place_site(self, info: Ctx, input: PlaceSiteInput) -> PlaceSitePayload:
        principal = info.context.require_principal()
        placement, errors = await mutate(
            info, lambda conn: service.place_site(conn, principal, input.region_id, input.site_id), result_type=model.SitePlacement
        )
        return PlaceSitePayload(placement=from_struct(SitePlacement, placement) if placement else None, user_errors=errors)

