"""REST: the region tree, site placement, roll-ups, daily series and daily reports."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, Response, get, patch, post, put
from litestar.params import Body, Parameter

from service import idempotency, policy
from service.access.model import Principal
from service.db import Database
from service.errors import InvalidInput
from service.http import json_with_etag
from service.regions import render, service
from service.regions.model import (
    SERIES_MAX_DAYS,
    DailyReport,
    DailySeries,
    Region,
    RegionCreate,
    RegionPatch,
    RegionRollUp,
    SitePlacement,
)

RegionParam = Parameter(query="region_id", default=None, description="A region (its subtree); omitted: every site of the caller")
DaysParam = Parameter(query="days", ge=1, le=SERIES_MAX_DAYS, default=14, description=f"Days, today included (1-{SERIES_MAX_DAYS})")
DayPath = Annotated[str, Parameter(description="The local day, YYYY-MM-DD")]
SiteParam = Parameter(query="site_id", default=None, description="One site instead of the region's sum")


class RegionController(Controller):
    path = "/regions"
    tags = ["regions"]
    opt = policy.rest("regions.read")

    @get("/")
    async def list_regions(self, request: Request, db: Database, principal: Principal) -> Response[list[Region]]:
        """The region tree as the caller sees it, roots first (each with its parent and path)."""
        async with db.connection() as conn:
            regions = await service.list_regions(conn, principal)
        return json_with_etag(request, regions)

    @get("/{region_id:uuid}")
    async def get_region(self, request: Request, db: Database, principal: Principal, region_id: UUID) -> Response[Region]:
        """One region (404 when the caller does not see it)."""
        async with db.connection() as conn:
            region = await service.get_region(conn, principal, region_id)
        return json_with_etag(request, region)

    @post("/", opt=policy.rest("regions.manage"), status_code=201)
    async def create_region(
        self, request: Request, db: Database, principal: Principal, data: Annotated[RegionCreate, Body()]
    ) -> Response[Region]:
        """Create a region under ``parent_id`` (null: a top-level region); levels go city, district, street."""
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.create_region(conn, principal, data))

    @patch("/{region_id:uuid}", opt=policy.rest("regions.manage"))
    async def update_region(self, db: Database, principal: Principal, region_id: UUID, data: RegionPatch) -> Region:
        """Rename and/or move a region with its subtree; ``version`` must match (409 ``stale_version``)."""
        async with db.transaction() as conn:
            return await service.update_region(conn, principal, region_id, data)

    @put("/{region_id:uuid}/sites/{site_id:uuid}", opt=policy.rest("regions.manage"))
    async def place_site(self, db: Database, principal: Principal, region_id: UUID, site_id: UUID) -> SitePlacement:
        """Place a site in this region (out of its previous one). Safe to repeat."""
        async with db.transaction() as conn:
            return await service.place_site(conn, principal, region_id, site_id)


class CommandController(Controller):
    """The command centre's figures: live roll-ups, daily series, daily reports."""

    path = "/command"
    tags = ["command"]
    opt = policy.rest("regions.figures")

    @get("/rollup")
    async def rollup(
        self, request: Request, db: Database, principal: Principal, region_id: Annotated[UUID | None, RegionParam] = None
    ) -> Response[RegionRollUp]:
        """Live figures per site, per child region and in total: beds, open alerts, transfers in flight,
        today's check-in and swab compliance, 7-day lab turnaround, low stock."""
        async with db.connection() as conn:
            found = await service.rollup(conn, principal, region_id)
        return json_with_etag(request, found)

    async def _series(self, db: Database, principal: Principal, region_id: UUID | None, days: int, site_id: UUID | None) -> DailySeries:
        async with db.connection() as conn:
            return await service.daily_series(conn, principal, region_id, days, site_id=site_id)

    @get("/daily")
    async def daily_series(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        region_id: Annotated[UUID | None, RegionParam] = None,
        days: Annotated[int, DaysParam] = 14,
        site_id: Annotated[UUID | None, SiteParam] = None,
    ) -> Response[DailySeries]:
        """Daily figures from the snapshots, oldest first, today so far last (``final`` false)."""
        return json_with_etag(request, await self._series(db, principal, region_id, days, site_id))

    @get("/daily/csv", media_type="text/csv")
    async def daily_series_csv(
        self,
        db: Database,
        principal: Principal,
        region_id: Annotated[UUID | None, RegionParam] = None,
        days: Annotated[int, DaysParam] = 14,
        site_id: Annotated[UUID | None, SiteParam] = None,
    ) -> Response[str]:
        """The daily series as CSV, one line per day."""
        series = await self._series(db, principal, region_id, days, site_id)
        return _download(render.series_csv(series), "text/csv; charset=utf-8", f"daily-{series.days[-1].day if series.days else 'none'}.csv")

    async def _report(self, db: Database, principal: Principal, region_id: UUID | None, day: str) -> DailyReport:
        async with db.connection() as conn:
            return await service.daily_report(conn, principal, region_id, parse_day(day))

    @get("/reports/{day:str}")
    async def daily_report(
        self, request: Request, db: Database, principal: Principal, day: DayPath, region_id: Annotated[UUID | None, RegionParam] = None
    ) -> Response[DailyReport]:
        """One day's report (each site's local day): totals and a row per site, the snapshots' numbers."""
        return json_with_etag(request, await self._report(db, principal, region_id, day))

    @get("/reports/{day:str}/csv", media_type="text/csv")
    async def daily_report_csv(
        self, db: Database, principal: Principal, day: DayPath, region_id: Annotated[UUID | None, RegionParam] = None
    ) -> Response[str]:
        """The day's report as CSV: one line per site, then the total."""
        report = await self._report(db, principal, region_id, day)
        return _download(render.report_csv(report), "text/csv; charset=utf-8", f"report-{day}.csv")

    @get("/reports/{day:str}/html", media_type="text/html")
    async def daily_report_html(
        self, db: Database, principal: Principal, day: DayPath, region_id: Annotated[UUID | None, RegionParam] = None
    ) -> Response[str]:
        """The day's report as a printable HTML page (no scripts, no external assets)."""
        report = await self._report(db, principal, region_id, day)
        return Response(render.report_html(report), media_type="text/html; charset=utf-8")


def parse_day(value: str) -> date:
    """The report's day from the path (checked here, after authentication: 400 ``invalid_day``)."""
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise InvalidInput("The day must be a date, YYYY-MM-DD.", code="invalid_day", field="day")


def _download(text: str, media_type: str, filename: str) -> Response[str]:
    return Response(text, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


ROUTES = [RegionController, CommandController]
