"""REST: check-ins (single and offline batches), lab results, a site's alerts."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Body, Parameter
from litestar.types import Scope

from service import idempotency, policy
from service.access.model import Principal
from service.access.rest import principal_of, provide_principal
from service.db import Connection, Database
from service.health import service
from service.health.model import (
    MAX_BATCH,
    Alert,
    AlertAction,
    AlertState,
    Checkin,
    CheckinBatch,
    CheckinCreate,
    ExposureReview,
    LabUpload,
    LabUploadResult,
    ReviewDecision,
    ReviewState,
)
from service.http import CursorParam, LimitParam, direct, json_with_etag
from service.pagination import Page

RECORDERS = policy.rest("health.record")
_IDEMPOTENCY_KEY = idempotency.HEADER.lower().encode()  # ASGI header names are lower case


async def _record_one(scope: Scope, data: CheckinCreate) -> bytes | None:
    """A single check-in without an Idempotency-Key, answered straight from the checked body
    (service.http.direct): the hot path. With a key, the route's handler answers."""
    if any(name == _IDEMPOTENCY_KEY for name, _ in scope["headers"]):
        return None
    checkin = await service.record_checkin(scope["app"].state.db, principal_of(scope), data)
    return msgspec.json.encode(checkin)


class CheckinBatchCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Check-ins recorded offline; each item is validated on its own (see CheckinCreate)."""

    checkins: Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class CheckinController(Controller):
    path = "/checkins"
    tags = ["health"]

    @post("/", opt={**RECORDERS, **direct(_record_one)}, status_code=201)
    async def record_checkin(self, request: Request, data: Annotated[CheckinCreate, Body()]) -> Response[Checkin]:
        """Record one check-in; give ``id`` (a UUID made on the phone) so a replay is a no-op answering the stored record.

        Impossible readings (e.g. 50 C, SpO2 120) answer 422 ``implausible_value`` naming the field.
        Without an Idempotency-Key the check-in is one autocommit statement (the hot path).
        """
        # Without a key the request was answered by _record_one before reaching here (unless the
        # body was left to Litestar's decoding, which then refused it); this is the keyed path.
        db: Database = request.app.state.db
        principal = provide_principal(request)
        if request.headers.get(idempotency.HEADER) is not None:
            return await idempotency.respond(request, db, principal.ref, lambda conn: service.record_checkin_in(conn, principal, data))
        return Response(await service.record_checkin(db, principal, data), status_code=201)

    @post("/batch", opt=RECORDERS, status_code=200)
    async def record_checkins(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        data: Annotated[CheckinBatchCreate, Body()],
        records: Annotated[
            bool, Parameter(query="records", description="Include each stored check-in in ``items`` (default: ids and outcomes only).")
        ] = False,
    ) -> Response[CheckinBatch]:
        """Up to 500 check-ins recorded offline: each succeeds or fails on its own; ``items`` says which (by index).

        The answer is compact by default (index, status, id, error: ~40 bytes an item instead of ~400);
        ``?records=true`` adds each stored record.
        """

        async def work(conn: Connection) -> CheckinBatch:
            return await service.record_checkin_batch(conn, principal, data.checkins, records=records)

        return await idempotency.respond(request, db, principal.ref, work, status_code=200)


class LabController(Controller):
    path = "/lab"
    tags = ["health"]

    @post("/results", opt=policy.rest("lab.results"), status_code=200)
    async def upload_results(self, request: Request, db: Database, principal: Principal, data: Annotated[LabUpload, Body()]) -> Response[LabUploadResult]:
        """Test results by tube barcode (lab clients). Idempotent; unknown barcodes are reported per item."""
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.upload_results(conn, principal, data), status_code=200)


StatesParam = Parameter(query="state", default=None, description="Only alerts in these states (repeat the parameter).")


class AlertController(Controller):
    path = "/"
    tags = ["health"]
    opt = policy.rest("health.read")

    @get("/sites/{site_id:uuid}/alerts")
    async def list_alerts(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        site_id: UUID,
        states: Annotated[list[AlertState] | None, StatesParam] = None,
        limit: Annotated[int, LimitParam] = 50,
        cursor: Annotated[str | None, CursorParam] = None,
    ) -> Response[Page[Alert]]:
        """A site's alerts, newest first (404 for another site)."""
        async with db.connection() as conn:
            page = await service.list_site_alerts(conn, principal, site_id, states=states, cursor=cursor, limit=limit)
        return json_with_etag(request, page)

    @get("/alerts/{alert_id:uuid}")
    async def get_alert(self, request: Request, db: Database, principal: Principal, alert_id: UUID) -> Response[Alert]:
        async with db.connection() as conn:
            alert = await service.get_alert(conn, principal, alert_id)
        return json_with_etag(request, alert)

    @post("/alerts/{alert_id:uuid}/acknowledge", opt=policy.rest("alerts.acknowledge"), status_code=200)
    async def acknowledge(self, request: Request, db: Database, principal: Principal, alert_id: UUID, data: Annotated[AlertAction, Body()]) -> Response[Alert]:
        """open -> acknowledged; ``version`` as read (409 ``stale_version``)."""
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.acknowledge_alert(conn, principal, alert_id, data), status_code=200)

    @post("/alerts/{alert_id:uuid}/resolve", opt=policy.rest("alerts.resolve"), status_code=200)
    async def resolve(self, request: Request, db: Database, principal: Principal, alert_id: UUID, data: Annotated[AlertAction, Body()]) -> Response[Alert]:
        """-> resolved, by a medic, with a note saying what was done."""
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.resolve_alert(conn, principal, alert_id, data), status_code=200)

    @get("/sites/{site_id:uuid}/exposure-reviews")
    async def list_reviews(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        site_id: UUID,
        review_state: Annotated[ReviewState | None, Parameter(query="state", default=ReviewState.OPEN)] = ReviewState.OPEN,
        limit: Annotated[int, LimitParam] = 50,
    ) -> Response[list[ExposureReview]]:
        """A site's exposure reviews (open ones by default), oldest first."""
        async with db.connection() as conn:
            reviews = await service.list_exposure_reviews(conn, principal, site_id, state=review_state, limit=limit)
        return json_with_etag(request, reviews)

    @post("/exposure-reviews/{review_id:uuid}/decision", opt=policy.rest("reviews.decide"), status_code=200)
    async def decide_review(
        self, request: Request, db: Database, principal: Principal, review_id: UUID, data: Annotated[ReviewDecision, Body()]
    ) -> Response[ExposureReview]:
        """Confirm (the stay is extended as its regime says) or dismiss an open review."""
        return await idempotency.respond(
            request, db, principal.ref, lambda conn: service.decide_exposure_review(conn, principal, review_id, data), status_code=200
        )


ROUTES = [CheckinController, LabController, AlertController]
