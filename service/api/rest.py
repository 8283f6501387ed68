"""Every REST controller, mounted under /api/v1. Add a domain's controllers here."""

from __future__ import annotations

from litestar import Router

ROUTE_HANDLERS: list = []

api_v1 = Router(path="/api/v1", route_handlers=ROUTE_HANDLERS, tags=[])
