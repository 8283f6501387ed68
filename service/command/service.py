"""The command dashboard's rules: browser sessions, the figures it shows, and their ETag.

Sessions: a staff account of a role granted ``command.dashboard`` logs in with its password
(``access.check_password``: argon2, rate limited, one answer for every wrong credential); the
browser then holds a random token in an HttpOnly cookie, stored here only as its SHA-256.
Every request reads the account afresh (``access.current_staff_principal``), so the page shows
exactly what the API would show the same account: the same role, the same sites.

Figures: the regions domain's live roll-up and daily series (``service.regions``), read with
the caller's principal, so a district officer's page counts only that district's sites.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from service import bus, policy, readpath
from service.access import service as access
from service.access.model import Principal
from service.command import store
from service.command.model import Count, Dashboard, DayFigures, LowStockRow, RegionFigures, SiteFigures, Totals
from service.db import Database, purge_in_batches
from service.regions import model as regions_model
from service.regions import service as regions
from service.regions.model import Region
from service.settings import Settings
from service.sites import service as sites

OPERATION = "command.dashboard"
# What the figures are read from: a write to any of these topics at one of the caller's sites
# changes the ETag (service/versions.py bumps them in the writing transaction).
TOPICS = ("rooms", "health", "transfers", "stock")
DAYS = 14  # the lines' span, today included
# Some figures move with the clock alone (check-ins and swabs due today, days of cover, the
# region tree's placement, which bumps no data version): the ETag moves every few minutes too.
CLOCK_BUCKET_S = 300
DEFAULT_TIME_ZONE = "Asia/Shanghai"  # sites' default (db/migrations/0002)
# Bump when the fragment's markup changes, so that a browser never keeps an old rendering.
MARKUP_REVISION = 2


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# --- sessions -----------------------------------------------------------------------


async def start_session(db: Database, settings: Settings, *, username: str, password: str, address: str) -> tuple[str, Principal]:
    """Check the credentials and open a session: (the cookie's token, the principal).

    401 ``invalid_credentials`` for any wrong credential, 429 past the login limits (both from
    access); 403 ``role_not_allowed`` for a right password on an account the dashboard is not for.
    """
    principal = await access.check_password(db, settings, username=username, password=password, address=address)
    policy.require(principal, OPERATION)
    token = secrets.token_urlsafe(32)
    async with db.transaction() as conn:
        await store.insert_session(conn, _digest(token), principal.id, settings.command_session_hours)
        await bus.emit(conn, "command.session_started", site_id=None, subject_id=principal.id, actor=principal.ref)
    return token, principal


async def session_principal(db: Database, settings: Settings, token: str | None) -> Principal | None:
    """The account behind a live session token as it is now (None: no such session, or it ended)."""
    if not token or len(token) > 128:
        return None
    async with db.connection() as conn:
        staff_id = await store.live_session(conn, _digest(token), settings.command_session_idle_minutes)
        return None if staff_id is None else await access.current_staff_principal(conn, staff_id)


async def end_session(db: Database, token: str | None) -> None:
    """Log out. An unknown or already ended token is fine: the answer is the same."""
    if not token or len(token) > 128:
        return
    async with db.transaction() as conn:
        staff_id = await store.end_session(conn, _digest(token))
        if staff_id is not None:
            await bus.emit(conn, "command.session_ended", site_id=None, subject_id=staff_id, actor=f"staff:{staff_id}")


async def purge_sessions(db: Database, settings: Settings) -> int:
    """Retention: sessions that ended or expired more than a day ago."""
    return await purge_in_batches(db, settings.retention_batch_size, store.purge_sessions)


# --- figures ------------------------------------------------------------------------


async def figures_tag(db: Database, principal: Principal, now: datetime | None = None) -> str:
    """The ETag of what ``dashboard`` would answer now, without reading the figures.

    It moves with any write at the caller's sites (data versions), with the caller's scope,
    every ``CLOCK_BUCKET_S`` seconds (figures that move with the clock) and with the markup revision.
    """
    now = now or datetime.now(UTC)
    versions = await readpath.versions_of(db, principal.site_scope, TOPICS)
    key = readpath.cache_key(MARKUP_REVISION, readpath.scope_of(principal), int(now.timestamp()) // CLOCK_BUCKET_S, versions)
    return f'"cmd-{key}"'


def _region_rows(regions: list[Region], site_rows: list[SiteFigures], site_region: dict[UUID, UUID | None]) -> list[RegionFigures]:
    """Each visible region's subtree added up from its sites, in tree order (a parent before its children)."""
    visible = {r.id: r for r in regions}
    sums: dict[UUID, list[int]] = {r.id: [0, 0, 0, 0] for r in regions}
    for row in site_rows:
        placed = site_region.get(row.site_id)
        for region_id in visible[placed].path if placed in visible else []:
            if region_id in sums:
                total = sums[region_id]
                total[0] += 1
                total[1] += row.beds_total
                total[2] += row.beds_occupied
                total[3] += row.beds_free
    top = min((len(r.path) for r in regions), default=1)

    def order(r: Region) -> list[str]:
        return [visible[i].name if i in visible else "" for i in r.path]

    return [
        RegionFigures(region_id=r.id, name=r.name, level=r.level, depth=len(r.path) - top, sites=n, beds_total=beds, beds_occupied=occupied, beds_free=free)
        for r in sorted(regions, key=order)
        for n, beds, occupied, free in [sums[r.id]]
    ]


async def dashboard(db: Database, settings: Settings, principal: Principal, now: datetime | None = None) -> Dashboard:
    """Everything the page shows, for the caller's sites: the live roll-up and the last ``DAYS`` days."""
    policy.require(principal, OPERATION)
    now = now or datetime.now(UTC)
    async with db.connection() as conn:
        roll = await regions.rollup(conn, principal, None, now=now)
        series = await regions.daily_series(conn, principal, None, DAYS, now=now)
        tree = await regions.list_regions(conn, principal)
        site_info = await sites.get_sites(conn, principal, [s.site_id for s in roll.sites])
    names = {r.id: r.name for r in tree}
    site_rows = [
        SiteFigures(
            site_id=s.site_id,
            code=s.code,
            name=s.name,
            region=names.get(s.region_id, "") if s.region_id else "",
            beds_total=s.figures.capacity_beds,
            beds_occupied=s.figures.occupied_beds,
            beds_free=s.figures.free_beds,
        )
        for s in sorted(roll.sites, key=lambda s: (names.get(s.region_id, "") if s.region_id else "", s.code))
    ]
    site_names = {s.site_id: s.name for s in roll.sites}
    t = roll.totals
    zones = Counter(site.time_zone for site in site_info.values())
    return Dashboard(
        scope=_scope_label(principal, tree, list(site_names.values())),
        as_of=now,
        time_zone=zones.most_common(1)[0][0] if zones else DEFAULT_TIME_ZONE,
        totals=Totals(
            sites=t.sites,
            beds_total=t.capacity_beds,
            in_quarantine=t.occupied_beds,
            beds_free=t.free_beds,
            open_alerts=t.open_alerts,
            transfers_in_flight=t.transfers_in_flight,
            low_stock_items=t.low_stock_items,
            checkins_done=t.checkins_done,
            checkins_due=t.checkins_due,
            swabs_done=t.swabs_done,
            swabs_due=t.swabs_due,
            turnaround_median_h=t.turnaround_median_h,
            turnaround_p90_h=t.turnaround_p90_h,
        ),
        sites=site_rows,
        regions=_region_rows(tree, site_rows, {s.site_id: s.region_id for s in roll.sites}),
        days=[DayFigures(day=d.day, admitted=d.admitted, released=d.released, positives=d.positives, final=d.final) for d in series.days],
        alerts=_counts(roll.sites, site_names, lambda f: f.open_alerts_by_kind),
        transfers=_counts(roll.sites, site_names, lambda f: f.transfers_by_state),
        low_stock=[
            LowStockRow(
                site=site_names.get(line.site_id, ""),
                item=line.name,
                unit=line.unit,
                quantity=line.quantity,
                reorder_level=line.reorder_level,
                days_of_cover=line.days_of_cover,
            )
            for line in roll.low_stock
        ],
    )


def _counts(rows: list[regions_model.SiteFigures], names: dict[UUID, str], of: Callable[[regions_model.Figures], list[regions_model.Count]]) -> list[Count]:
    """Per-site counts (alerts by kind, transfers by state): site by site, each in the roll-up's order."""
    found = [Count(site=names[s.site_id], key=c.key, count=c.count) for s in rows for c in of(s.figures) if c.count]
    return sorted(found, key=lambda c: c.site)


def _scope_label(principal: Principal, tree: list[Region], site_names: list[str]) -> str:
    if principal.site_scope is None:
        return "every site"
    granted = [r.name for r in tree if principal.region_ids and r.id in principal.region_ids]
    if granted:
        return ", ".join(sorted(granted))
    if len(site_names) <= 3:
        return ", ".join(sorted(site_names)) or "no site"
    return f"{len(site_names)} sites"
