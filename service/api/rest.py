"""Every REST controller, mounted under /api/v1. Add a domain's ROUTES here."""

from __future__ import annotations

from litestar import Router
from litestar.types import ControllerRouterHandler

from service.access import rest as access
from service.changes import rest as changes
from service.handover import rest as handover
from service.health import rest as health
from service.intake import rest as intake
from service.operations.infection import rest as infection
from service.operations.staffing import rest as staffing
from service.regions import rest as regions
from service.sites import rest as sites
from service.stays import rest as stays
from service.supplies import rest as supplies
from service.transfers import rest as transfers
from service.webhooks import rest as webhooks

ROUTE_HANDLERS: list[ControllerRouterHandler] = [
    *access.ROUTES, *sites.ROUTES, *stays.ROUTES, *health.ROUTES, *supplies.ROUTES, *transfers.ROUTES, *changes.ROUTES, *regions.ROUTES,
    *intake.ROUTES, *webhooks.ROUTES, *staffing.ROUTES, *infection.ROUTES, *handover.ROUTES,
]

api_v1 = Router(path="/api/v1", route_handlers=ROUTE_HANDLERS)
