"""Site rules: who may create, read and change a site."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from service import bus
from service.access.model import Principal, Role
from service.errors import Conflict, Forbidden, NotFound
from service.pagination import Page, check_limit, decode_cursor, page_of
from service.sites import store
from service.sites.model import Site, SiteCreate, SitePatch

MANAGE_ROLES = (Role.COMMAND, Role.SITE_MANAGER)


async def list_sites(conn: asyncpg.Connection, principal: Principal, *, cursor: str | None, limit: int) -> Page[Site]:
    check_limit(limit)
    after = decode_cursor(cursor, [str])
    rows = await store.list_sites(conn, principal.site_scope, after[0] if after else None, limit + 1)
    return page_of(rows, limit, lambda s: [s.code])


async def get_site(conn: asyncpg.Connection, principal: Principal, site_id: UUID) -> Site:
    """The site, if the caller may see it; another site's id is simply not found."""
    site = await store.get_site(conn, site_id, principal.site_scope)
    if site is None:
        raise NotFound("No such site.", code="site_not_found")
    return site


async def get_sites(conn: asyncpg.Connection, principal: Principal, site_ids: list[UUID]) -> dict[UUID, Site]:
    return {s.id: s for s in await store.get_sites_by_ids(conn, site_ids, principal.site_scope)}


async def create_site(conn: asyncpg.Connection, principal: Principal, data: SiteCreate) -> Site:
    if principal.role is not Role.COMMAND:
        raise Forbidden("Only the command centre creates sites.", code="role_not_allowed")
    site = await store.insert_site(conn, data)
    await bus.emit(conn, "sites.site_created", site_id=site.id, subject_id=site.id, actor=principal.ref, data={"code": site.code})
    return site


async def update_site(conn: asyncpg.Connection, principal: Principal, site_id: UUID, patch: SitePatch) -> Site:
    if principal.role not in MANAGE_ROLES:
        raise Forbidden("Only the command centre and site managers change sites.", code="role_not_allowed")
    current = await get_site(conn, principal, site_id)
    changes = patch.changes()
    site = await store.update_site(conn, site_id, patch.version, changes, principal.site_scope)
    if site is None:
        raise Conflict(
            f"The site changed since version {patch.version}; it is now at version {current.version}.",
            code="stale_version",
            current_version=current.version,
        )
    await bus.emit(conn, "sites.site_updated", site_id=site.id, subject_id=site.id, actor=principal.ref, data={"fields": sorted(changes)})
    return site
