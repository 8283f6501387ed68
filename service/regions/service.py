"""Regions: the command chain's tree, region scope, roll-ups, daily snapshots and reports.

The tree is city -> district -> street (or township); each site is placed in one region.
Staff accounts may be granted region subtrees (``staff_regions``): when a token is issued,
``service.access`` expands them to site ids with ``sites_under``, so ``Principal.site_scope``
and every site-scoped read of every domain honour them without knowing about regions.

Python API (stable; the /command dashboard and the REST/GraphQL edges call these):

    list_regions(conn, principal) -> list[Region]
    get_region(conn, principal, region_id) -> Region                      # 404 region_not_found
    create_region(conn, principal, data: RegionCreate) -> Region
    update_region(conn, principal, region_id, patch: RegionPatch) -> Region  # rename and/or move
    place_site(conn, principal, region_id, site_id) -> SitePlacement
    sites_under(conn, region_ids) -> list[UUID]                             # for token issue
    check_grantable(conn, principal, region_ids) -> None                    # for staff management

    rollup(conn, principal, region_id: UUID | None, *, now=None) -> RegionRollUp
        live figures per site, per child region and in total; region_id None: the caller's sites
    daily_series(conn, principal, region_id: UUID | None, days=14, *, site_id=None, now=None) -> DailySeries
        one DayFigures per day from the snapshots, oldest first; today (so far) last, final=False
    daily_report(conn, principal, region_id: UUID | None, day: date, *, now=None) -> DailyReport
        one day's totals and site rows, the snapshots' numbers (computed from the ledgers where
        a site has no snapshot of that day yet)

    snapshot_due(db, settings, *, now=None) -> int          # the daily_snapshots job
    backfill(conn, site_ids | None, first_day, last_day, *, now=None) -> BackfillResult

Figures of a day are counted in each site's own time zone; a day is final once the site's
local midnight has passed.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from service import bus
from service.access.model import Principal, Role
from service.db import Database
from service.errors import Conflict, Forbidden, InvalidInput, NotFound
from service.regions import store
from service.regions.model import (
    LEVEL_RANK,
    SERIES_MAX_DAYS,
    BackfillResult,
    Count,
    DailyReport,
    DailySeries,
    DayFigures,
    Figures,
    Region,
    RegionCreate,
    RegionFigures,
    RegionLevel,
    RegionPatch,
    RegionRollUp,
    ReportSiteRow,
    SiteFigures,
    SitePlacement,
)
from service.settings import Settings
from service.sites import service as sites

log = logging.getLogger("qsite.regions")

TURNAROUND_WINDOW = timedelta(days=7)
LOW_STOCK_LINES = 20
# The job looks this many days back for site-days without a snapshot (an instance down over
# a midnight catches up); older gaps are for ``backfill``.
JOB_LOOKBACK_DAYS = 7
JOB_BATCH = 500


def _now() -> datetime:
    return datetime.now(UTC)


def _grants(principal: Principal) -> list[UUID]:
    return sorted(principal.region_ids or ())


def _require_command(principal: Principal) -> None:
    if principal.role is not Role.COMMAND:
        raise Forbidden("Only the command centre manages regions.", code="role_not_allowed")


# --- the tree ----------------------------------------------------------------------------


async def list_regions(conn: asyncpg.Connection, principal: Principal) -> list[Region]:
    """The regions the caller sees, roots first: all (unscoped command), else its granted
    subtrees, their ancestors and the ancestors of its sites' regions. ``site_ids`` of each
    region lists only the caller's sites."""
    return await store.list_regions(conn, principal.site_scope, _grants(principal))


async def get_regions(conn: asyncpg.Connection, principal: Principal, ids: list[UUID]) -> dict[UUID, Region]:
    return {r.id: r for r in await store.list_regions(conn, principal.site_scope, _grants(principal), ids)}


async def get_region(conn: asyncpg.Connection, principal: Principal, region_id: UUID) -> Region:
    found = await get_regions(conn, principal, [region_id])
    if region_id not in found:
        raise NotFound("No such region.", code="region_not_found")
    return found[region_id]


async def region_by_id(conn: asyncpg.Connection, region_id: UUID) -> Region | None:
    """Any region of the tree, whoever asks: for a reference another domain checks (a released
    resident's receiving street may lie outside the caller's regions). Answers names, no figures."""
    found = await store.list_regions(conn, None, [], [region_id])
    return found[0] if found else None


def _manages(principal: Principal, path: Sequence[UUID]) -> bool:
    """Whether the caller may change the region with this path (or create under it)."""
    return principal.all_sites or bool(set(path) & (principal.region_ids or frozenset()))


async def _managed(conn: asyncpg.Connection, principal: Principal, region_id: UUID, *, field: str | None = None) -> Region:
    """A region the caller may change: 404 when it does not see it, 403 when it only sees it."""
    try:
        region = await get_region(conn, principal, region_id)
    except NotFound as exc:
        exc.field = field
        raise
    if not _manages(principal, region.path):
        raise Forbidden("This region is outside the regions you manage.", code="region_outside_scope", field=field)
    return region


def _check_level(level: RegionLevel, parent: Region | None, field: str = "level") -> None:
    if parent is not None and LEVEL_RANK[level] <= LEVEL_RANK[parent.level]:
        raise InvalidInput(
            f"A {level} cannot be placed under a {parent.level}: levels go city, district, street.",
            code="region_level_order",
            field=field,
        )


async def create_region(conn: asyncpg.Connection, principal: Principal, data: RegionCreate) -> Region:
    _require_command(principal)
    parent: Region | None = None
    if data.parent_id is not None:
        parent = await _managed(conn, principal, data.parent_id, field="parent_id")
    elif not principal.all_sites:
        raise Forbidden("Only the command centre without region limits creates top-level regions.", code="region_outside_scope", field="parent_id")
    _check_level(data.level, parent)
    region_id = data.id or uuid.uuid4()
    await store.insert_region(
        conn, id=region_id, parent_id=data.parent_id, level=data.level.value, code=data.code, name=data.name,
        parent_path=parent.path if parent else [],
    )
    await bus.emit(conn, "regions.region_created", site_id=None, subject_id=region_id, actor=principal.ref,
                   data={"level": data.level.value, "parent_id": str(data.parent_id) if data.parent_id else None})
    return await get_region(conn, principal, region_id)


async def update_region(conn: asyncpg.Connection, principal: Principal, region_id: UUID, patch: RegionPatch) -> Region:
    """Rename (name, code) and/or move (parent_id) a region with its whole subtree."""
    _require_command(principal)
    region = await _managed(conn, principal, region_id)
    locked = await store.lock_region(conn, region_id)
    if locked is None or locked["version"] != patch.version:
        raise Conflict(f"The region changed since version {patch.version}.", code="stale_version",
                       current_version=None if locked is None else locked["version"])
    moving = patch.parent_id is not msgspec.UNSET and patch.parent_id != region.parent_id
    if moving:
        if region_id in (principal.region_ids or ()):
            # Moving a granted root would move the caller's own scope.
            raise Forbidden("A region you are granted cannot be moved by you.", code="region_outside_scope", field="parent_id")
        new_parent: Region | None = None
        if patch.parent_id is not None:
            new_parent = await _managed(conn, principal, patch.parent_id, field="parent_id")  # type: ignore[arg-type]
            if region_id in new_parent.path:
                raise InvalidInput("A region cannot move under itself or its own sub-regions.", code="region_cycle", field="parent_id")
        elif not principal.all_sites:
            raise Forbidden("Only the command centre without region limits makes top-level regions.", code="region_outside_scope", field="parent_id")
        _check_level(region.level, new_parent, field="parent_id")
        depth = await store.subtree_depth(conn, region_id)
        if (len(new_parent.path) if new_parent else 0) + 1 + depth > 3:
            raise InvalidInput("Regions nest at most three levels (city, district, street).", code="region_too_deep", field="parent_id")
        moved = await store.move_region(conn, region_id, new_parent.id if new_parent else None, new_parent.path if new_parent else [])
        version = patch.version + 1
    else:
        moved, version = 0, patch.version
    name = None if patch.name is msgspec.UNSET else patch.name
    code = None if patch.code is msgspec.UNSET else patch.code
    if name is not None or code is not None:
        await store.update_region(conn, region_id, version, name, code)
    await bus.emit(conn, "regions.region_updated", site_id=None, subject_id=region_id, actor=principal.ref,
                   data={"fields": sorted(f for f in ("name", "code", "parent_id") if getattr(patch, f) is not msgspec.UNSET),
                         "moved_regions": moved})
    return await get_region(conn, principal, region_id)


async def place_site(conn: asyncpg.Connection, principal: Principal, region_id: UUID, site_id: UUID) -> SitePlacement:
    """Put a site in a region (moving it out of its previous one). Tokens pick it up at refresh."""
    _require_command(principal)
    if site_id not in await sites.get_sites(conn, principal, [site_id]):
        raise NotFound("No such site.", code="site_not_found", field="site_id")
    await _managed(conn, principal, region_id, field="region_id")
    placement = await store.place_site(conn, site_id, region_id)
    await bus.emit(conn, "regions.site_placed", site_id=site_id, subject_id=region_id, actor=principal.ref)
    return placement


async def sites_under(conn: asyncpg.Connection, region_ids: Iterable[UUID]) -> list[UUID]:
    """Every site placed anywhere under these regions (what a region grant reaches)."""
    ids = sorted(set(region_ids))
    return await store.subtree_sites(conn, ids) if ids else []


async def check_grantable(conn: asyncpg.Connection, principal: Principal, region_ids: Sequence[UUID]) -> None:
    """Whether ``principal`` may grant these regions to an account: it must manage each one."""
    if not region_ids:
        return
    found = await get_regions(conn, principal, list(region_ids))
    for region_id in region_ids:
        if region_id not in found:
            raise NotFound("No such region.", code="region_not_found", field="region_ids")
        if not _manages(principal, found[region_id].path):
            raise Forbidden("This region is outside the regions you manage.", code="region_outside_scope", field="region_ids")


# --- figures -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks: what PostgreSQL's percentile_cont computes."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _hours(minutes: Sequence[float], q: float) -> float | None:
    p = percentile(minutes, q)
    return None if p is None else round(p / 60.0, 2)


def _counts(items: dict[str, int]) -> list[Count]:
    return [Count(key=k, count=v) for k, v in sorted(items.items())]


def _merge(dicts: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + int(v)
    return out


_SUMMED = ("capacity_beds", "occupied_beds", "free_beds", "unavailable_beds", "open_alerts", "transfers_in_flight",
           "checkins_done", "checkins_due", "swabs_done", "swabs_due", "low_stock_items")


def _figures(rows: list[dict[str, Any]], turnaround: dict[str, Any] | None) -> Figures:
    """Figures of a set of sites from their per-site rows; turnaround already computed for the set."""
    covers = [r["min_days_of_cover"] for r in rows if r["min_days_of_cover"] is not None]
    return Figures(
        sites=len(rows),
        **{f: sum(int(r[f]) for r in rows) for f in _SUMMED},
        occupied_by_category=_counts(_merge(r["occupied_by_category"] for r in rows)),
        open_alerts_by_kind=_counts(_merge(r["open_alerts_by_kind"] for r in rows)),
        transfers_by_state=_counts(_merge(r["transfers_by_state"] for r in rows)),
        results_7d=int(turnaround["results"]) if turnaround else 0,
        turnaround_median_h=turnaround["median_h"] if turnaround else None,
        turnaround_p90_h=turnaround["p90_h"] if turnaround else None,
        min_days_of_cover=min(covers) if covers else None,
    )


def local_today(time_zone: str, now: datetime) -> date:
    return now.astimezone(ZoneInfo(time_zone)).date()


async def _scope(conn: asyncpg.Connection, principal: Principal, region_id: UUID | None) -> tuple[Region | None, list[dict[str, Any]]]:
    region = await get_region(conn, principal, region_id) if region_id is not None else None
    return region, await store.scope_sites(conn, principal.site_scope, region_id)


async def rollup(conn: asyncpg.Connection, principal: Principal, region_id: UUID | None, *, now: datetime | None = None) -> RegionRollUp:
    """Live figures of the caller's sites under ``region_id`` (None: all its sites): per site,
    per child region (for None: per top-level region) and in total."""
    now = now or _now()
    region, sites = await _scope(conn, principal, region_id)
    site_ids = [s["site_id"] for s in sites]
    live = {r["site_id"]: r for r in await store.live_figures(conn, site_ids, now)} if site_ids else {}
    today = await _today_rows(conn, sites, now)
    rows: dict[UUID, dict[str, Any]] = {}
    for s in sites:
        row = dict(live[s["site_id"]])
        day = today.get(s["site_id"], {})
        for f in ("checkins_done", "checkins_due", "swabs_done", "swabs_due"):
            row[f] = day.get(f, 0)
        rows[s["site_id"]] = row
    visible = await list_regions(conn, principal)
    children = [r for r in visible if (r.parent_id == region_id if region_id else r.parent_id is None)]
    pairs = [(s["site_id"], f"s:{s['site_id']}") for s in sites] + [(s["site_id"], "t") for s in sites]
    pairs += [(s["site_id"], f"c:{s['child_id']}") for s in sites if s["child_id"]]
    turnaround = await store.turnaround(conn, pairs, now - TURNAROUND_WINDOW, now) if pairs else {}
    by_child: dict[UUID, list[dict[str, Any]]] = {}
    for s in sites:
        if s["child_id"]:
            by_child.setdefault(s["child_id"], []).append(rows[s["site_id"]])
    return RegionRollUp(
        region=region,
        generated_at=now,
        totals=_figures(list(rows.values()), turnaround.get("t")),
        children=[RegionFigures(region=c, figures=_figures(by_child.get(c.id, []), turnaround.get(f"c:{c.id}"))) for c in children],
        sites=[
            SiteFigures(site_id=s["site_id"], code=s["code"], name=s["name"], region_id=s["region_id"],
                        figures=_figures([rows[s["site_id"]]], turnaround.get(f"s:{s['site_id']}")))
            for s in sites
        ],
        low_stock=await store.low_stock(conn, site_ids, now, LOW_STOCK_LINES) if site_ids else [],
    )


async def _today_rows(conn: asyncpg.Connection, sites: list[dict[str, Any]], now: datetime) -> dict[UUID, dict[str, Any]]:
    """Each site's own local today so far, from the ledgers."""
    if not sites:
        return {}
    todays = {s["site_id"]: local_today(s["time_zone"], now) for s in sites}
    rows = await store.day_figures(conn, list(todays), min(todays.values()), max(todays.values()), now)
    return {r["site_id"]: r for r in rows if r["day"] == todays[r["site_id"]]}


def _day(day: date, rows: list[dict[str, Any]], *, final: bool) -> DayFigures:
    """Figures of one day summed over site rows (snapshot or ledger rows of that day)."""
    minutes = [m for r in rows for m in r["turnaround_minutes"]]
    summed = ("in_quarantine", "admitted", "released", "transferred", "positives", "exposure_reviews",
              "missed_checkins", "checkins_done", "checkins_due", "swabs_done", "swabs_due", "low_stock_items")
    return DayFigures(
        day=day, sites=len(rows), **{f: sum(int(r[f]) for r in rows) for f in summed},
        results=len(minutes), turnaround_median_h=_hours(minutes, 0.5), turnaround_p90_h=_hours(minutes, 0.9), final=final,
    )


async def daily_series(
    conn: asyncpg.Connection,
    principal: Principal,
    region_id: UUID | None,
    days: int = 14,
    *,
    site_id: UUID | None = None,
    now: datetime | None = None,
) -> DailySeries:
    """The last ``days`` days (today included) of the caller's sites under ``region_id`` (or
    of one ``site_id``): snapshots summed per day, then today so far from the ledgers."""
    if not 1 <= days <= SERIES_MAX_DAYS:
        raise InvalidInput(f"days must be 1-{SERIES_MAX_DAYS}.", code="invalid_days", field="days")
    now = now or _now()
    region, sites = await _scope(conn, principal, region_id)
    if site_id is not None:
        sites = [s for s in sites if s["site_id"] == site_id]
        if not sites:
            raise NotFound("No such site.", code="site_not_found", field="site_id")
    if not sites:
        return DailySeries(region=region, site_id=site_id, days=[])
    last = max(local_today(s["time_zone"], now) for s in sites)
    first = last - timedelta(days=days - 1)
    site_ids = [s["site_id"] for s in sites]
    points = [p for p in await store.series(conn, site_ids, first, last) if p.day < last]
    today = await _today_rows(conn, sites, now)
    points.append(_day(last, [r for r in today.values() if r["day"] == last], final=False))
    return DailySeries(region=region, site_id=site_id, days=points)


async def daily_report(
    conn: asyncpg.Connection, principal: Principal, region_id: UUID | None, day: date, *, now: datetime | None = None
) -> DailyReport:
    """One day of the caller's sites under ``region_id``: a row per site and the totals. A site
    without a snapshot of ``day`` (not yet written, or today) is computed from the ledgers."""
    if day == date.min:  # asyncpg sends it as -infinity, from which the walk over days never ends
        raise InvalidInput("The day must be after 0001-01-01.", code="invalid_day", field="day")
    now = now or _now()
    region, sites = await _scope(conn, principal, region_id)
    site_ids = [s["site_id"] for s in sites]
    if day > max((local_today(s["time_zone"], now) for s in sites), default=now.date()):
        raise InvalidInput("The day has not begun yet.", code="day_in_future", field="day")
    snaps = await store.site_days(conn, site_ids, day) if site_ids else {}
    missing = [s for s in site_ids if s not in snaps]
    computed = {r["site_id"]: r for r in await store.day_figures(conn, missing, day, day, now)} if missing else {}
    rows: list[ReportSiteRow] = []
    raw: list[dict[str, Any]] = []
    for s in sites:
        final = day < local_today(s["time_zone"], now)
        row = snaps.get(s["site_id"]) or computed.get(s["site_id"])
        if row is None:  # the site did not exist yet in that day's local calendar: nothing to count
            continue
        raw.append(row)
        rows.append(ReportSiteRow(site_id=s["site_id"], code=s["code"], name=s["name"], region_id=s["region_id"],
                                  figures=_day(day, [row], final=final)))
    return DailyReport(
        region=region, day=day, generated_at=now,
        totals=_day(day, raw, final=all(r.figures.final for r in rows)), sites=rows,
    )


# --- snapshots ---------------------------------------------------------------------------


_SNAPSHOT_FIELDS = ("site_id", "day", "in_quarantine", "admitted", "released", "transferred", "positives", "exposure_reviews",
                    "missed_checkins", "checkins_done", "checkins_due", "swabs_done", "swabs_due", "turnaround_minutes",
                    "low_stock_items")


async def _write(conn: asyncpg.Connection, pairs: list[tuple[UUID, date]], now: datetime) -> int:
    """Compute and store the snapshots of these (site, day) pairs; each day must have ended."""
    by_day: dict[date, list[UUID]] = {}
    for site_id, day in pairs:
        by_day.setdefault(day, []).append(site_id)
    written = 0
    for day, site_ids in sorted(by_day.items()):
        rows = await store.day_figures(conn, site_ids, day, day, now)
        await store.upsert_site_daily(conn, [{f: r[f] for f in _SNAPSHOT_FIELDS} for r in rows])
        written += len(rows)
    return written


async def snapshot_due(db: Database, settings: Settings, *, now: datetime | None = None) -> int:
    """The daily_snapshots job: every site-day of the last week that has ended at the site
    (local midnight passed) and has no snapshot yet. Returns how many it wrote."""
    now = now or _now()
    written = 0
    async with db.transaction() as conn:
        pairs = await store.due_snapshots(conn, now.date() - timedelta(days=JOB_LOOKBACK_DAYS), now, JOB_BATCH)
        if pairs:
            written = await _write(conn, pairs, now)
    if written:
        log.info("snapshots", extra={"event": "snapshots_written", "subject": f"{written} site-days"})
    return written


async def backfill(
    conn: asyncpg.Connection, site_ids: list[UUID] | None, first_day: date, last_day: date, *, now: datetime | None = None
) -> BackfillResult:
    """(Re)compute the snapshots of ``first_day``..``last_day`` from the ledgers (None: every
    site); days that have not ended at a site are skipped. Safe to repeat."""
    now = now or _now()
    if last_day < first_day:
        raise InvalidInput("last_day is before first_day.", code="invalid_range", field="last_day")
    sites = await store.scope_sites(conn, site_ids, None)
    pairs = [
        (s["site_id"], first_day + timedelta(days=i))
        for s in sites
        for i in range((last_day - first_day).days + 1)
        if first_day + timedelta(days=i) < local_today(s["time_zone"], now)
    ]
    rows = await _write(conn, pairs, now)
    return BackfillResult(sites=len({p[0] for p in pairs}), days=len({p[1] for p in pairs}), rows=rows)
