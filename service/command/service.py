"""The command dashboard's rules: browser sessions, the figures it shows, and their ETag.

Sessions: a staff account of a role granted ``command.dashboard`` logs in with its password
(``access.check_password``: argon2, rate limited, one answer for every wrong credential); the
browser then holds a random token in an HttpOnly cookie, stored here only as its SHA-256.
Every request reads the account afresh (``access.current_staff_principal``), so the page shows
exactly what the API would show the same account: the same role, the same sites.

Figures: read through the owning domains' service functions with the caller's principal, so a
district officer's page counts only that district's sites.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

import asyncpg

from service import bus, policy, readpath
from service.access import service as access
from service.access.model import Principal
from service.command import store
from service.command.model import AlertCount, Dashboard, DayFigures, LowStockRow, RegionFigures, SiteFigures, Totals, TransferRow
from service.db import Database, purge_in_batches
from service.health import service as health
from service.health.model import AlertState
from service.settings import Settings
from service.sites import service as sites
from service.sites.model import Site
from service.stays import service as stays
from service.supplies import service as supplies
from service.transfers import service as transfers

OPERATION = "command.dashboard"
# What the figures are read from: a write to any of these topics at one of the caller's sites
# changes the ETag (service/versions.py bumps them in the writing transaction).
TOPICS = ("rooms", "health", "transfers", "stock")
PAGE = 100  # rows per read of a paged list
DEFAULT_TIME_ZONE = "Asia/Shanghai"  # sites' default (db/migrations/0002)
# Bump when the fragment's markup changes, so that a browser never keeps an old rendering.
MARKUP_REVISION = 1


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
    the hour (days of stock cover are counted per hour) and the markup revision.
    """
    now = now or datetime.now(UTC)
    versions = await readpath.versions_of(db, principal.site_scope, TOPICS)
    key = readpath.cache_key(MARKUP_REVISION, readpath.scope_of(principal), f"{now:%Y-%m-%dT%H}", versions)
    return f'"cmd-{key}"'


async def _all_sites(conn: asyncpg.Connection, principal: Principal) -> list[Site]:
    found: list[Site] = []
    cursor: str | None = None
    while True:
        page = await sites.list_sites(conn, principal, cursor=cursor, limit=PAGE)
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def _regions(rows: Iterable[SiteFigures]) -> list[RegionFigures]:
    """Sites added up along their region path: each prefix of ``a/b/c`` is a region."""
    levels = ("district", "street", "community")
    sums: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        parts = [p for p in row.region.split("/") if p]
        for depth in range(len(parts)):
            total = sums[(depth, "/".join(parts[: depth + 1]))]
            total[0] += 1
            total[1] += row.beds_total
            total[2] += row.beds_occupied
            total[3] += row.beds_ready
    return [
        RegionFigures(
            name=path,
            level=levels[depth] if depth < len(levels) else f"level {depth + 1}",
            sites=n,
            beds_total=beds,
            beds_occupied=occupied,
            beds_ready=ready,
        )
        for (depth, path), (n, beds, occupied, ready) in sorted(sums.items())
    ]


async def dashboard(db: Database, settings: Settings, principal: Principal, now: datetime | None = None) -> Dashboard:
    """Everything the page shows, for the caller's sites."""
    policy.require(principal, OPERATION)
    now = now or datetime.now(UTC)
    async with db.connection() as conn:
        site_list = await _all_sites(conn, principal)
        occupancy = await stays.occupancy(conn, principal)
        beds = {o.site_id: o for o in occupancy.sites}
        names = {s.id: s.name for s in site_list}
        site_rows = []
        for site in sorted(site_list, key=lambda s: (s.region_path, s.code)):
            o = beds.get(site.id)
            site_rows.append(
                SiteFigures(
                    site_id=site.id,
                    code=site.code,
                    name=site.name,
                    region=site.region_path,
                    beds_total=o.beds_total if o else 0,
                    beds_occupied=o.beds_occupied if o else 0,
                    beds_ready=o.beds_ready if o else 0,
                    releases_due_today=o.releases_due_today if o else 0,
                )
            )
        alerts: list[AlertCount] = []
        in_flight: list[TransferRow] = []
        for site in site_list:
            alerts.extend(await _open_alerts(conn, principal, site))
            board = await transfers.board(conn, principal, site.id, cursor=None, limit=PAGE)
            in_flight.extend(
                TransferRow(site=site.name, state=t.state, urgency=t.urgency, reason=t.reason, requested_at=t.requested_at) for _, t in board.items
            )
        stock = await supplies.stock_levels(conn, principal, settings)
    low = [
        LowStockRow(
            site=names.get(level.site_id, str(level.site_id)),
            item=level.name,
            unit=level.unit,
            quantity=level.quantity,
            reorder_level=level.reorder_level,
            days_of_cover=level.days_of_cover,
        )
        for site_stock in stock.sites
        for level in site_stock.items
        if level.low
    ]
    low.sort(key=lambda r: (r.days_of_cover if r.days_of_cover is not None else float("inf"), r.site, r.item))
    days: list[DayFigures] = []
    totals = Totals(
        sites=len(site_rows),
        beds_total=sum(r.beds_total for r in site_rows),
        in_quarantine=sum(r.beds_occupied for r in site_rows),
        beds_ready=sum(r.beds_ready for r in site_rows),
        releases_due_today=sum(r.releases_due_today for r in site_rows),
        open_alerts=sum(a.open for a in alerts),
        transfers_in_flight=len(in_flight),
        low_stock_items=len(low),
    )
    return Dashboard(
        scope=scope_label(principal, site_list),
        as_of=now,
        time_zone=Counter(s.time_zone for s in site_list).most_common(1)[0][0] if site_list else DEFAULT_TIME_ZONE,
        totals=totals,
        sites=site_rows,
        regions=_regions(site_rows),
        days=days,
        alerts=sorted(alerts, key=lambda a: (-a.open, a.site, a.kind)),
        transfers=sorted(in_flight, key=lambda t: t.requested_at),
        low_stock=low,
    )


async def _open_alerts(conn: asyncpg.Connection, principal: Principal, site: Site) -> list[AlertCount]:
    counts: dict[str, list[datetime]] = defaultdict(list)
    cursor: str | None = None
    while True:
        page = await health.list_site_alerts(conn, principal, site.id, states=[AlertState.OPEN], cursor=cursor, limit=PAGE)
        for alert in page.items:
            counts[alert.kind].append(alert.raised_at)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return [AlertCount(site=site.name, kind=kind, open=len(at), oldest=min(at)) for kind, at in counts.items()]


def scope_label(principal: Principal, site_list: list[Site]) -> str:
    if principal.site_scope is None:
        return "every site"
    if len(site_list) <= 3:
        return ", ".join(s.name for s in site_list) or "no site"
    return f"{len(site_list)} sites"
