"""REST: destination facilities, transfers per site for integrations, and the hospital interface."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated
from uuid import UUID

import asyncpg
from litestar import Controller, Request, Response, get, patch, post
from litestar.params import Body, Parameter

from service import idempotency, policy
from service.access.model import Principal
from service.db import Database
from service.http import CursorParam, LimitParam, instant_param, json_with_etag, parse_instant
from service.pagination import Page
from service.settings import Settings
from service.transfers import service
from service.transfers.model import (
    Acceptance,
    ArrivalConfirmation,
    Decline,
    DoorRefusal,
    Facility,
    FacilityCreate,
    FacilityPatch,
    IncomingTransfer,
    OutcomeReport,
    Transfer,
    TransferMove,
    TransferRequest,
    TransferState,
    TransferTimes,
    TransferTransition,
)

StatesParam = Parameter(query="state", default=None, description="Only these states (repeat the parameter for several).")


class FacilityController(Controller):
    path = "/facilities"
    tags = ["transfers"]

    @get("/", opt=policy.rest("facilities.read"))
    async def list_facilities(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        region: Annotated[str | None, Parameter(query="region", default=None, max_length=300)] = None,
        active: Annotated[bool | None, Parameter(query="active", default=None)] = None,
        limit: Annotated[int, LimitParam] = 50,
        cursor: Annotated[str | None, CursorParam] = None,
    ) -> Response[Page[Facility]]:
        """Destination facilities by code (``region`` includes its sub-regions); a hospital client sees its own."""
        async with db.connection() as conn:
            page = await service.list_facilities(conn, principal, region=region, active=active, cursor=cursor, limit=limit)
        return json_with_etag(request, page)

    @get("/{facility_id:uuid}", opt=policy.rest("facilities.read"))
    async def get_facility(self, request: Request, db: Database, principal: Principal, facility_id: UUID) -> Response[Facility]:
        """One facility."""
        async with db.connection() as conn:
            facility = await service.get_facility(conn, principal, facility_id)
        return json_with_etag(request, facility)

    @post("/", opt=policy.rest("facilities.manage"), status_code=201)
    async def create_facility(
        self, request: Request, db: Database, principal: Principal, data: Annotated[FacilityCreate, Body()]
    ) -> Response[Facility]:
        """Add a destination facility (command centre)."""
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.create_facility(conn, principal, data))

    @patch("/{facility_id:uuid}", opt=policy.rest("facilities.manage"))
    async def update_facility(
        self, db: Database, principal: Principal, facility_id: UUID, data: Annotated[FacilityPatch, Body()]
    ) -> Facility:
        """Change a facility; ``version`` must match (409 ``stale_version``)."""
        async with db.transaction() as conn:
            return await service.update_facility(conn, principal, facility_id, data)


class TransferController(Controller):
    """Transfers for integrations and tools (the apps use GraphQL)."""

    tags = ["transfers"]
    opt = policy.rest("transfers.read")

    @get("/sites/{site_id:uuid}/transfers")
    async def list_site_transfers(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        site_id: UUID,
        states: Annotated[list[TransferState] | None, StatesParam] = None,
        limit: Annotated[int, LimitParam] = 50,
        cursor: Annotated[str | None, CursorParam] = None,
    ) -> Response[Page[Transfer]]:
        """A site's transfers, newest request first (404 for another site)."""
        async with db.connection() as conn:
            page = await service.list_site_transfers(conn, principal, site_id, states=states, cursor=cursor, limit=limit)
        return json_with_etag(request, page)

    @get("/sites/{site_id:uuid}/transfer-times")
    async def transfer_times(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        site_id: UUID,
        since: Annotated[str, instant_param("since", "Start of the period (requests from), RFC 3339.", required=True)],
        until: Annotated[str, instant_param("until", "End of the period (exclusive), RFC 3339.", required=True)],
    ) -> Response[TransferTimes]:
        """Median request-to-dispatch and request-to-arrival minutes of the site's transfers requested in the period."""
        async with db.connection() as conn:
            times = await service.site_times(
                conn, principal, site_id, since=parse_instant(since, "since"), until=parse_instant(until, "until")
            )
        return json_with_etag(request, times)

    @get("/transfers/{transfer_id:uuid}")
    async def get_transfer(self, request: Request, db: Database, principal: Principal, transfer_id: UUID) -> Response[Transfer]:
        """One transfer with its response times (404 when not at one of the caller's sites)."""
        async with db.connection() as conn:
            transfer = await service.get_transfer(conn, principal, transfer_id)
        return json_with_etag(request, transfer)

    @get("/transfers/{transfer_id:uuid}/transitions")
    async def get_transitions(
        self, request: Request, db: Database, principal: Principal, transfer_id: UUID
    ) -> Response[list[TransferTransition]]:
        """Every transition of a transfer, oldest first: from, to, who, when, note."""
        async with db.connection() as conn:
            await service.get_transfer(conn, principal, transfer_id)  # 404 for another site's
            found = await service.transitions(conn, principal, [transfer_id])
        return json_with_etag(request, found.get(transfer_id, []))

    @post("/transfers", status_code=201, opt=policy.rest("transfers.request"))
    async def request_transfer(
        self, request: Request, db: Database, principal: Principal, data: Annotated[TransferRequest, Body()]
    ) -> Response[Transfer]:
        """Request a resident's transfer (site staff, managers, medics, command); ``id`` may be client-generated."""
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.request_transfer(conn, principal, data))

    @post("/transfers/{transfer_id:uuid}/transitions", status_code=200, opt=policy.rest("transfers.move"))
    async def move_transfer(
        self, request: Request, db: Database, principal: Principal, transfer_id: UUID, data: Annotated[TransferMove, Body()]
    ) -> Response[Transfer]:
        """Move a transfer along one edge (medics, command); a stale ``version`` answers 409 with the current state."""
        return await idempotency.respond(
            request, db, principal.ref, lambda conn: service.move_transfer(conn, principal, transfer_id, data), status_code=200
        )


Work = Callable[[asyncpg.Connection], Awaitable[Transfer]]


def _as_incoming(principal: Principal, work: Work) -> Callable[[asyncpg.Connection], Awaitable[IncomingTransfer]]:
    """A hospital's write, answered as the hospital sees the transfer (in the same transaction)."""

    async def run(conn: asyncpg.Connection) -> IncomingTransfer:
        return (await service.incoming(conn, principal, [await work(conn)]))[0]

    return run


class HospitalController(Controller):
    """The hospital integration: a hospital client sees and answers only transfers heading to its facility,
    with the resident's identity masked and the sending site's contact."""

    path = "/hospital/transfers"
    tags = ["hospital"]
    opt = policy.rest("hospital.transfers")

    @get("/")
    async def list_incoming(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        states: Annotated[list[TransferState] | None, StatesParam] = None,
        limit: Annotated[int, LimitParam] = 50,
        cursor: Annotated[str | None, CursorParam] = None,
    ) -> Response[Page[IncomingTransfer]]:
        """Transfers heading to the caller's facility (default: approved, destination_approved, dispatched, departed),
        oldest request first; ``state=arrived`` lists those awaiting or carrying an outcome."""
        async with db.connection() as conn:
            page = await service.hospital_transfers(conn, principal, states=states, cursor=cursor, limit=limit)
        return json_with_etag(request, page)

    @get("/{transfer_id:uuid}")
    async def get_incoming(self, request: Request, db: Database, principal: Principal, transfer_id: UUID) -> Response[IncomingTransfer]:
        """One transfer heading to the caller's facility (404 otherwise)."""
        async with db.connection() as conn:
            transfer = await service.get_incoming(conn, principal, transfer_id)
        return json_with_etag(request, transfer)

    @post("/{transfer_id:uuid}/acceptance", status_code=200)
    async def accept_transfer(
        self, request: Request, db: Database, principal: Principal, transfer_id: UUID, data: Annotated[Acceptance, Body()]
    ) -> Response[IncomingTransfer]:
        """Accept the transfer before dispatch (``destination_approved``); accepting again changes nothing.
        Facilities with ``requires_acceptance`` must accept before the site may dispatch."""
        work = _as_incoming(principal, lambda conn: service.accept_transfer(conn, principal, transfer_id, data))
        return await idempotency.respond(request, db, principal.ref, work, status_code=200)

    @post("/{transfer_id:uuid}/decline", status_code=200)
    async def decline_transfer(
        self, request: Request, db: Database, principal: Principal, transfer_id: UUID, data: Annotated[Decline, Body()]
    ) -> Response[IncomingTransfer]:
        """Decline the transfer before dispatch, with the reason; it goes back to approved for another destination."""
        work = _as_incoming(principal, lambda conn: service.decline_transfer(conn, principal, transfer_id, data))
        return await idempotency.respond(request, db, principal.ref, work, status_code=200)

    @post("/{transfer_id:uuid}/arrival", status_code=200)
    async def confirm_arrival(
        self, request: Request, db: Database, principal: Principal, transfer_id: UUID, data: Annotated[ArrivalConfirmation, Body()]
    ) -> Response[IncomingTransfer]:
        """Confirm the resident arrived (idempotent: confirming again answers the arrived transfer unchanged)."""
        work = _as_incoming(principal, lambda conn: service.confirm_arrival(conn, principal, transfer_id, data))
        return await idempotency.respond(request, db, principal.ref, work, status_code=200)

    @post("/{transfer_id:uuid}/refusal", status_code=200)
    async def refuse_at_door(
        self, request: Request, db: Database, principal: Principal, transfer_id: UUID, data: Annotated[DoorRefusal, Body()]
    ) -> Response[IncomingTransfer]:
        """Refuse the resident at the door with a reason; the transfer goes back to approved for a new destination."""
        work = _as_incoming(principal, lambda conn: service.refuse_at_door(conn, principal, transfer_id, data))
        return await idempotency.respond(request, db, principal.ref, work, status_code=200)

    @post("/{transfer_id:uuid}/outcome", status_code=200)
    async def report_outcome(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        settings: Settings,
        transfer_id: UUID,
        data: Annotated[OutcomeReport, Body()],
    ) -> Response[IncomingTransfer]:
        """Report the outcome after arrival: admitted, then discharged, deceased or returned (final).
        ``returned`` opens a new stay at ``return_site_id`` (default: the sending site); the same outcome again changes nothing."""
        work = _as_incoming(principal, lambda conn: service.report_outcome(conn, principal, settings, transfer_id, data))
        return await idempotency.respond(request, db, principal.ref, work, status_code=200)


ROUTES = [FacilityController, TransferController, HospitalController]
