"""GraphQL: the region tree, roll-ups, daily series and reports."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

import strawberry

from service import policy
from service.errors import InvalidInput, NotFound
from service.gql import Ctx, UserError, input_struct, mutate, to_gql, user_errors
from service.regions import model, service
from service.regions.model import RegionCreate, RegionLevel, RegionPatch

strawberry.enum(RegionLevel, name="RegionLevel")  # registers RegionLevel itself
RegionLevelGQL = RegionLevel


@strawberry.type(description="A region of the command chain: city, district or street (township).")
class Region:
    id: UUID
    parent_id: UUID | None
    level: RegionLevelGQL
    code: str
    name: str
    path: list[UUID] = strawberry.field(description="Ancestors' ids from the root, this region last.")
    site_ids: list[UUID] = strawberry.field(description="The caller's sites placed directly in this region.")
    version: int
    created_at: datetime
    updated_at: datetime


def region_gql(m: model.Region) -> Region:
    return to_gql(Region, m)


@strawberry.type(description="A labelled count: a stay category, an alert kind, a transfer state.")
class Count:
    key: str
    count: int


@strawberry.type(description="A low-stock item of a site, with days of cover at the last 7 days' issue rate.")
class LowStockLine:
    site_id: UUID
    item_id: UUID
    sku: str
    name: str
    unit: str
    quantity: int
    reorder_level: int
    days_of_cover: float | None


@strawberry.type(description="Live figures of a set of sites. Compliance counts today's slots and test days begun so far.")
class Figures:
    sites: int
    capacity_beds: int
    occupied_beds: int
    free_beds: int
    unavailable_beds: int
    occupied_by_category: list[Count]
    open_alerts: int
    open_alerts_by_kind: list[Count]
    transfers_in_flight: int
    transfers_by_state: list[Count]
    checkins_done: int
    checkins_due: int
    swabs_done: int
    swabs_due: int
    results_7d: int
    turnaround_median_h: float | None
    turnaround_p90_h: float | None
    low_stock_items: int
    min_days_of_cover: float | None


def figures_gql(m: model.Figures) -> Figures:
    counts = {f: [to_gql(Count, c) for c in getattr(m, f)] for f in ("occupied_by_category", "open_alerts_by_kind", "transfers_by_state")}
    return to_gql(Figures, m, **counts)


@strawberry.type
class SiteFigures:
    site_id: UUID
    code: str
    name: str
    region_id: UUID | None
    figures: Figures


@strawberry.type
class RegionFigures:
    region: Region
    figures: Figures


@strawberry.type(description="Live roll-up: the region (null: all the caller's sites), its child regions and its sites.")
class RegionRollUp:
    region: Region | None
    generated_at: datetime
    totals: Figures
    children: list[RegionFigures]
    sites: list[SiteFigures]
    low_stock: list[LowStockLine]


def rollup_gql(m: model.RegionRollUp) -> RegionRollUp:
    return RegionRollUp(
        region=region_gql(m.region) if m.region else None,
        generated_at=m.generated_at,
        totals=figures_gql(m.totals),
        children=[RegionFigures(region=region_gql(c.region), figures=figures_gql(c.figures)) for c in m.children],
        sites=[to_gql(SiteFigures, s, figures=figures_gql(s.figures)) for s in m.sites],
        low_stock=[to_gql(LowStockLine, line) for line in m.low_stock],
    )


@strawberry.type(description="One local day's figures (a site's snapshot, or summed over sites). final: the day is over.")
class DayFigures:
    day: date
    sites: int
    in_quarantine: int
    admitted: int
    released: int
    transferred: int
    positives: int
    exposure_reviews: int
    missed_checkins: int
    checkins_done: int
    checkins_due: int
    swabs_done: int
    swabs_due: int
    results: int
    turnaround_median_h: float | None
    turnaround_p90_h: float | None
    low_stock_items: int
    final: bool


@strawberry.type
class DailySeries:
    region: Region | None
    site_id: UUID | None
    days: list[DayFigures]


@strawberry.type
class ReportSiteRow:
    site_id: UUID
    code: str
    name: str
    region_id: UUID | None
    figures: DayFigures


@strawberry.type(description="One day's report: totals and a row per site (CSV and HTML at /api/v1/command/reports/{day}).")
class DailyReport:
    region: Region | None
    day: date
    generated_at: datetime
    totals: DayFigures
    sites: list[ReportSiteRow]


@strawberry.type
class SitePlacement:
    site_id: UUID
    region_id: UUID
    placed_at: datetime


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
                return rollup_gql(await service.rollup(conn, ctx.require_principal(), region_id))
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
        return DailySeries(region=region_gql(s.region) if s.region else None, site_id=s.site_id, days=[to_gql(DayFigures, d) for d in s.days])

    @strawberry.field(permission_classes=[policy.gql("regions.figures")], description="One day's report; null for an unknown region.")
    async def daily_report(self, info: Ctx, day: date, region_id: UUID | None = None) -> DailyReport | None:
        ctx = info.context
        try:
            async with ctx.db.connection() as conn:
                r = await service.daily_report(conn, ctx.require_principal(), region_id, day)
        except NotFound:
            return None
        return DailyReport(
            region=region_gql(r.region) if r.region else None, day=r.day, generated_at=r.generated_at,
            totals=to_gql(DayFigures, r.totals),
            sites=[to_gql(ReportSiteRow, s, figures=to_gql(DayFigures, s.figures)) for s in r.sites],
        )


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
        data, errors = input_struct(RegionCreate, input)
        if data is None:
            return RegionPayload(user_errors=errors)
        region, errors = await mutate(info, lambda conn: service.create_region(conn, principal, data), result_type=model.Region)
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
        data, errors = input_struct(RegionPatch, fields)
        if data is None:
            return RegionPayload(user_errors=errors)
        region, errors = await mutate(info, lambda conn: service.update_region(conn, principal, input.id, data), result_type=model.Region)
        return RegionPayload(region=region_gql(region) if region else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("regions.manage")], description="Place a site in a region (out of its previous one).")
    async def place_site(self, info: Ctx, input: PlaceSiteInput) -> PlaceSitePayload:
        principal = info.context.require_principal()
        placement, errors = await mutate(
            info, lambda conn: service.place_site(conn, principal, input.region_id, input.site_id), result_type=model.SitePlacement
        )
        return PlaceSitePayload(placement=to_gql(SitePlacement, placement) if placement else None, user_errors=errors)

