"""REST: sites, for integrations and admin tools."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import Body, Parameter

from service import idempotency, policy
from service.access.model import Principal
from service.db import Database
from service.http import CursorParam, LimitParam, json_with_etag
from service.pagination import Page
from service.sites import service
from service.sites.model import Room, RoomStatus, Site, SiteCreate, SitePatch


class SiteController(Controller):
    path = "/sites"
    tags = ["sites"]
    opt = policy.rest("sites.read")

    @get("/")
    async def list_sites(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        limit: Annotated[int, LimitParam] = 50,
        cursor: Annotated[str | None, CursorParam] = None,
    ) -> Response[Page[Site]]:
        """Sites the caller may see, ordered by code."""
        async with db.connection() as conn:
            page = await service.list_sites(conn, principal, cursor=cursor, limit=limit)
        return json_with_etag(request, page)

    @get("/{site_id:uuid}")
    async def get_site(self, request: Request, db: Database, principal: Principal, site_id: UUID) -> Response[Site]:
        """One site (404 when it is not one of the caller's)."""
        async with db.connection() as conn:
            site = await service.get_site(conn, principal, site_id)
        return json_with_etag(request, site)

    @post("/", opt=policy.rest("sites.create"), status_code=201)
    async def create_site(
        self, request: Request, db: Database, principal: Principal, data: Annotated[SiteCreate, Body()]
    ) -> Response[Site]:
        """Create a site (command centre only)."""
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.create_site(conn, principal, data))

    @patch("/{site_id:uuid}", opt=policy.rest("sites.update"))
    async def update_site(self, db: Database, principal: Principal, site_id: UUID, data: SitePatch) -> Site:
        """Change a site; ``version`` must match the current one (409 ``stale_version`` otherwise)."""
        async with db.transaction() as conn:
            return await service.update_site(conn, principal, site_id, data)


class RoomController(Controller):
    """Rooms, read-only for integrations (the apps change rooms through GraphQL)."""

    tags = ["rooms"]
    opt = policy.rest("rooms.read")

    @get("/sites/{site_id:uuid}/rooms")
    async def list_rooms(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        site_id: UUID,
        floor: Annotated[int | None, Parameter(query="floor", ge=-5, le=200)] = None,
        status: Annotated[RoomStatus | None, Parameter(query="status")] = None,
        limit: Annotated[int, LimitParam] = 50,
        cursor: Annotated[str | None, CursorParam] = None,
    ) -> Response[Page[Room]]:
        """A site's rooms ordered by floor and number (404 for another site)."""
        async with db.connection() as conn:
            page = await service.list_rooms(conn, principal, site_id, floor=floor, status=status, cursor=cursor, limit=limit)
        return json_with_etag(request, page)

    @get("/rooms/{room_id:uuid}")
    async def get_room(self, request: Request, db: Database, principal: Principal, room_id: UUID) -> Response[Room]:
        """One room with its status, who set it and since when (404 for another site)."""
        async with db.connection() as conn:
            room = await service.get_room(conn, principal, room_id)
        return json_with_etag(request, room)


ROUTES = [SiteController, RoomController]
