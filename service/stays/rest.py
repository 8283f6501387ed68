"""REST: occupancy for integrations (the apps use GraphQL for everything else)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get
from litestar.params import Parameter

from service import policy
from service.access.model import Principal
from service.db import Database
from service.http import json_with_etag
from service.sites import service as sites
from service.stays import service
from service.stays.model import Occupancy, SiteOccupancy


class OccupancyController(Controller):
    tags = ["occupancy"]
    opt = policy.rest("occupancy.read")

    @get("/occupancy")
    async def occupancy(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        site_id: Annotated[list[UUID] | None, Parameter(query="site_id", max_items=100)] = None,
    ) -> Response[Occupancy]:
        """Beds by room status and releases due today/tomorrow, per site (the caller's, or those given) and in total."""
        async with db.connection() as conn:
            found = await service.occupancy(conn, principal, site_id)
        return json_with_etag(request, found)

    @get("/sites/{site_id:uuid}/occupancy")
    async def site_occupancy(self, request: Request, db: Database, principal: Principal, site_id: UUID) -> Response[SiteOccupancy]:
        """One site's occupancy (404 for another site)."""
        async with db.connection() as conn:
            await sites.get_site(conn, principal, site_id)
            found = await service.occupancy(conn, principal, [site_id])
        # A site without rooms yet answers zeros.
        row = found.sites[0] if found.sites else msgspec.structs.replace(found.total, site_id=site_id)
        return json_with_etag(request, row)


ROUTES = [OccupancyController]
