"""REST for tracing teams (API key, role ``tracing``): submit referrals, follow them, cancel; the queue; risk areas."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.params import Body, Parameter

from service import idempotency, policy
from service.access.model import Principal
from service.db import Database
from service.http import CursorParam, LimitParam, instant_param, json_with_etag, parse_instant
from service.intake import service
from service.intake.model import Closing, IsolationTimes, Referral, ReferralCreate, ReferralState, ReferralSubmitted, RiskArea
from service.pagination import Page
from service.settings import Settings

StatesParam = Parameter(query="state", default=None, description="Only these states (repeat the parameter); default: pending and assigned.")


class ReferralController(Controller):
    tags = ["intake"]

    @post("/referrals", opt=policy.rest("referrals.submit"), status_code=201)
    async def submit_referral(
        self, request: Request, db: Database, settings: Settings, principal: Principal, data: Annotated[ReferralCreate, Body()]
    ) -> Response[ReferralSubmitted]:
        """Refer a person to isolate at a site. A person with an open referral is not queued twice:
        the submission merges into it (``merged: true``; earliest identification, every index case).
        Give ``id`` (made by the caller) so that a replay answers the stored referral."""
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.submit(conn, principal, settings, data))

    @get("/referrals/{referral_id:uuid}", opt=policy.rest("referrals.read"))
    async def get_referral(self, request: Request, db: Database, principal: Principal, referral_id: UUID) -> Response[Referral]:
        """One referral, the person masked (404 when not at one of the caller's sites)."""
        async with db.connection() as conn:
            found = await service.get_referral(conn, principal, referral_id)
        return json_with_etag(request, found)

    @post("/referrals/{referral_id:uuid}/cancel", opt=policy.rest("referrals.cancel"), status_code=200)
    async def cancel_referral(
        self, request: Request, db: Database, principal: Principal, referral_id: UUID, data: Annotated[Closing, Body()]
    ) -> Response[Referral]:
        """No longer to isolate; ``version`` must match (409 ``stale_version``)."""
        return await idempotency.respond(
            request, db, principal.ref, lambda conn: service.cancel(conn, principal, referral_id, data), status_code=200
        )

    @get("/sites/{site_id:uuid}/referrals", opt=policy.rest("referrals.read"))
    async def site_queue(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        site_id: UUID,
        states: Annotated[list[ReferralState] | None, StatesParam] = None,
        limit: Annotated[int, LimitParam] = 50,
        cursor: Annotated[str | None, CursorParam] = None,
    ) -> Response[Page[Referral]]:
        """A site's pending-admission queue, longest waiting (earliest identification) first."""
        async with db.connection() as conn:
            page = await service.queue(conn, principal, site_id=site_id, states=states, cursor=cursor, limit=limit)
        return json_with_etag(request, page)

    @get("/sites/{site_id:uuid}/isolation-times", opt=policy.rest("referrals.read"))
    async def isolation_times(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        site_id: UUID,
        since: Annotated[str | None, instant_param("since", "Arrivals from (default: 14 days before until), RFC 3339.")] = None,
        until: Annotated[str | None, instant_param("until", "Arrivals before (default: now), RFC 3339.")] = None,
    ) -> Response[list[IsolationTimes]]:
        """Identification -> isolation per local day of arrival: arrivals, median and longest hours (at most 93 days)."""
        async with db.connection() as conn:
            found = await service.isolation_times(
                conn, principal, site_id, since=parse_instant(since, "since"), until=parse_instant(until, "until")
            )
        return json_with_etag(request, found)


class RiskAreaController(Controller):
    tags = ["intake"]

    @get("/risk-areas", opt=policy.rest("risk_areas.read"))
    async def list_risk_areas(
        self,
        request: Request,
        db: Database,
        code: Annotated[str | None, Parameter(query="code", default=None, min_length=1, max_length=200)] = None,
        at: Annotated[str | None, instant_param("at", "Only the levels in force at this instant, RFC 3339.")] = None,
    ) -> Response[list[RiskArea]]:
        """Risk areas and their periods (one area with ``code``; at most 500)."""
        async with db.connection() as conn:
            found = await service.list_risk_areas(conn, code=code, at=parse_instant(at, "at"))
        return json_with_etag(request, found)


ROUTES = [ReferralController, RiskAreaController]
