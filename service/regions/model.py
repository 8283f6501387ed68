"""Regions: the tree, its inputs, roll-ups, daily snapshots and reports."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

import msgspec

from service.fields import Version


class RegionLevel(StrEnum):
    """City -> district -> street (or township); a child is always below its parent."""

    CITY = "city"
    DISTRICT = "district"
    STREET = "street"


LEVEL_RANK = {RegionLevel.CITY: 0, RegionLevel.DISTRICT: 1, RegionLevel.STREET: 2}

Code = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{2,32}$", description="Short unique region code, e.g. LJ-LIJIA")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
SERIES_MAX_DAYS = 92
Days = Annotated[int, msgspec.Meta(ge=1, le=SERIES_MAX_DAYS, description="How many days, today included (1-92)")]


class Region(msgspec.Struct, kw_only=True):
    id: UUID
    parent_id: UUID | None
    level: RegionLevel
    code: str
    name: str
    # Ancestors' ids from the root down, this region last.
    path: list[UUID]
    # The sites placed directly in this region (not in its sub-regions) that the caller sees.
    site_ids: list[UUID]
    version: int
    created_at: datetime
    updated_at: datetime


class RegionCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    code: Code
    name: Name
    level: RegionLevel
    parent_id: UUID | None = None
    # Offline-safe: a replay with the same id is a conflict rather than a second region.
    id: UUID | None = None


class RegionPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Rename and/or move: ``parent_id`` null makes the region a root."""

    version: Version
    name: Name | msgspec.UnsetType = msgspec.UNSET
    code: Code | msgspec.UnsetType = msgspec.UNSET
    parent_id: UUID | None | msgspec.UnsetType = msgspec.UNSET


class SitePlacement(msgspec.Struct, kw_only=True):
    site_id: UUID
    region_id: UUID
    placed_at: datetime


# --- roll-ups ---------------------------------------------------------------------------


class Count(msgspec.Struct, kw_only=True):
    """One labelled count: a stay category, an alert kind, a transfer state."""

    key: str
    count: int


class LowStockLine(msgspec.Struct, kw_only=True):
    site_id: UUID
    item_id: UUID
    sku: str
    name: str
    unit: str
    quantity: int
    reorder_level: int
    # Quantity over the last 7 days' average daily issues; null when nothing was issued.
    days_of_cover: float | None


class Figures(msgspec.Struct, kw_only=True):
    """The live figures of a set of sites (one site, a region's subtree, the caller's sites)."""

    sites: int
    capacity_beds: int
    occupied_beds: int
    # Free beds in rooms that can take a resident now (status ready or occupied).
    free_beds: int
    # Beds in rooms being turned over, sealed or out of service.
    unavailable_beds: int
    occupied_by_category: list[Count]
    open_alerts: int
    open_alerts_by_kind: list[Count]
    transfers_in_flight: int
    transfers_by_state: list[Count]
    # Today (each site's local day) so far: slots and test days that have begun.
    checkins_done: int
    checkins_due: int
    swabs_done: int
    swabs_due: int
    # Tubes resulted in the last 7 days, collected -> resulted, in hours.
    results_7d: int
    turnaround_median_h: float | None
    turnaround_p90_h: float | None
    low_stock_items: int
    # The shortest days of cover among the items with usage.
    min_days_of_cover: float | None


class SiteFigures(msgspec.Struct, kw_only=True):
    site_id: UUID
    code: str
    name: str
    region_id: UUID | None
    figures: Figures


class RegionFigures(msgspec.Struct, kw_only=True):
    region: Region
    figures: Figures


class RegionRollUp(msgspec.Struct, kw_only=True):
    """``region`` null: every site the caller sees. ``children``: the child regions' subtrees."""

    region: Region | None
    generated_at: datetime
    totals: Figures
    children: list[RegionFigures]
    sites: list[SiteFigures]
    # The lowest-cover low items across these sites (at most 20).
    low_stock: list[LowStockLine]


# --- daily snapshots ----------------------------------------------------------------------


class DayFigures(msgspec.Struct, kw_only=True):
    """One local day's figures: of a site (a snapshot) or summed over sites."""

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
    # False for a day not yet over (today so far): its figures still move.
    final: bool = True


class DailySeries(msgspec.Struct, kw_only=True):
    """Oldest day first; a day without snapshots is absent."""

    region: Region | None
    site_id: UUID | None
    days: list[DayFigures]


class ReportSiteRow(msgspec.Struct, kw_only=True):
    site_id: UUID
    code: str
    name: str
    region_id: UUID | None
    figures: DayFigures


class DailyReport(msgspec.Struct, kw_only=True):
    """One region's (or the caller's) day, as the headquarters asks for it: totals and one row per site."""

    region: Region | None
    day: date
    generated_at: datetime
    totals: DayFigures
    sites: list[ReportSiteRow]


class BackfillResult(msgspec.Struct, kw_only=True):
    sites: int
    days: int
    rows: int
