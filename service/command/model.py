"""What the command dashboard shows: one ``Dashboard`` per request, built by service.py, drawn by the templates."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

import msgspec


class SiteFigures(msgspec.Struct, kw_only=True):
    site_id: UUID
    code: str
    name: str
    region: str  # the site's region (its path), "" when it has none
    beds_total: int
    beds_occupied: int
    beds_ready: int
    releases_due_today: int


class RegionFigures(msgspec.Struct, kw_only=True):
    """A region's sites added up (only the caller's sites count)."""

    name: str
    level: str  # "district", "street", ...: what the region is in the tree
    sites: int
    beds_total: int
    beds_occupied: int
    beds_ready: int


class DayFigures(msgspec.Struct, kw_only=True):
    day: date
    admitted: int
    released: int
    positives: int


class AlertCount(msgspec.Struct, kw_only=True):
    site: str  # site name
    kind: str
    open: int
    oldest: datetime


class TransferRow(msgspec.Struct, kw_only=True):
    site: str
    state: str
    urgency: str
    reason: str
    requested_at: datetime


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
    beds_ready: int
    releases_due_today: int
    open_alerts: int
    transfers_in_flight: int
    low_stock_items: int


class Dashboard(msgspec.Struct, kw_only=True):
    scope: str  # whose sites: "every site" or the caller's region / site names
    as_of: datetime
    time_zone: str  # the one most of the sites keep: times are shown in it
    totals: Totals
    sites: list[SiteFigures]
    regions: list[RegionFigures]
    days: list[DayFigures]  # oldest first
    alerts: list[AlertCount]
    transfers: list[TransferRow]
    low_stock: list[LowStockRow]


class LoginForm(msgspec.Struct, kw_only=True):
    """The login form's fields (``_csrf_token`` is checked and dropped by the CSRF middleware)."""

    username: str = ""
    password: str = ""
    next: str = ""
