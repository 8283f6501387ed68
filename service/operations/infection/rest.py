"""REST: the medical-waste carrier's interface (the staff apps use GraphQL for infection control)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.params import Body

from service import idempotency, policy
from service.access.model import Principal
from service.db import Database
from service.http import instant_param, json_with_etag, parse_instant
from service.operations.infection import service
from service.operations.infection.model import CarrierWaste, WasteReceipt


class CarrierController(Controller):
    """A carrier's API key reaches the waste batches of the sites it serves, as ``CarrierWaste``, and nothing else."""

    path = "/carrier"
    tags = ["carrier"]
    opt = policy.rest("waste.carrier")

    @get("/sites/{site_id:uuid}/waste")
    async def list_waste(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        site_id: UUID,
        since: Annotated[str, instant_param("since", "Batches sealed from this instant, RFC 3339.", required=True)],
        until: Annotated[str, instant_param("until", "End of the period (exclusive, at most 92 days), RFC 3339.", required=True)],
    ) -> Response[list[CarrierWaste]]:
        """A served site's waste batches sealed in [since, until), newest first (whole: a period of at most 92 days)."""
        start, end = parse_instant(since, "since"), parse_instant(until, "until")
        async with db.connection() as conn:
            batches = await service.carrier_waste(conn, principal, site_id, since=start, until=end)
        return json_with_etag(request, batches)

    @get("/waste/{waste_id:uuid}")
    async def get_waste(self, request: Request, db: Database, principal: Principal, waste_id: UUID) -> Response[CarrierWaste]:
        async with db.connection() as conn:
            batch = await service.carrier_batch(conn, principal, waste_id)
        return json_with_etag(request, batch)

    @post("/waste/{waste_id:uuid}/receipt", status_code=200)
    async def confirm_receipt(
        self, request: Request, db: Database, principal: Principal, waste_id: UUID, data: Annotated[WasteReceipt, Body()]
    ) -> Response[CarrierWaste]:
        """The carrier took the batch (``version`` as read: 409 ``stale_version``), with its receipt number.

        The batch is handed over to the carrier the key names. The same receipt again, or one the site
        recorded already, answers the batch unchanged; another receipt is 409 ``waste_handed_over``.
        """
        return await idempotency.respond(
            request, db, principal.ref, lambda conn: service.confirm_receipt(conn, principal, waste_id, data), status_code=200
        )


ROUTES = [CarrierController]
