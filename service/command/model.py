"""What the command dashboard shows: one ``Dashboard`` per request, built by service.py, drawn by the templates."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

import msgspec


class SiteFigures(msgspec.Struct, kw_only=True):
    site_id: UUID
    code: str
    name: str
    region: str  # the name of the region the site is placed in, "" when none
    beds_total: int
    beds_occupied: int
    beds_free: int


class RegionFigures(msgspec.Struct, kw_only=True):
    """A region's subtree added up (only the caller's sites count)."""

    region_id: UUID
    name: str
    level: str  # city, district, street
    depth: int  # 0 for the caller's top regions: the bars are indented by it
    sites: int
    beds_total: int
    beds_occupied: int
    beds_free: int


class DayFigures(msgspec.Struct, kw_only=True):
    day: date
    admitted: int
    released: int
    positives: int
    final: bool  # False for today so far


class Count(msgspec.Struct, kw_only=True):
    """Open alerts of one kind, or transfers in one state, at one site."""

    site: str  # site name
    key: str
    count: int


class LowStockRow(msgspec.Struct, kw_only=True):
    site: str
    item: str
    unit: str
    quantity: int
    reorder_level: int
    days_of_cover: float | None


class Totals(msgspec.Struct, kw_only=True):
    sites: int
    beds_total: int
    in_quarantine: int
    beds_free: int
    open_alerts: int
    transfers_in_flight: int
    low_stock_items: int
    checkins_done: int
    checkins_due: int
    swabs_done: int
    swabs_due: int
    turnaround_median_h: float | None
    turnaround_p90_h: float | None


class Dashboard(msgspec.Struct, kw_only=True):
    scope: str  # whose sites: "every site", the caller's regions, or its sites
    as_of: datetime
    time_zone: str  # the one most of the sites keep: times are shown in it
    totals: Totals
    sites: list[SiteFigures]
    regions: list[RegionFigures]  # tree order
    days: list[DayFigures]  # oldest first, today (so far) last
    alerts: list[Count]
    transfers: list[Count]
    low_stock: list[LowStockRow]
