"""REST: a released stay's hand-over and printable certificate; the public certificate check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, Response, get
from litestar.datastructures import ResponseHeader
from litestar.params import Parameter

from service import policy
from service.access.model import Principal
from service.access.rest import EXCLUDE_FROM_AUTH, PurposeParam, client_address
from service.db import Database
from service.handover import service
from service.handover.model import CertificateCheck, Handover
from service.http import json_with_etag
from service.settings import Settings

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# The certificate page is self-contained: its one style sheet inline, nothing from anywhere else, no script.
CERTIFICATE_HEADERS = [
    ResponseHeader(name="Content-Security-Policy", value="default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Cache-Control", value="no-store"),
]
CodePath = Annotated[str, Parameter(description="The verification code as printed (26 letters and digits; dashes and case ignored)")]


class HandoverController(Controller):
    path = "/stays/{stay_id:uuid}"
    tags = ["handover"]
    opt = policy.rest("handovers.read")

    @get("/handover")
    async def get_handover(
        self,
        request: Request,
        db: Database,
        settings: Settings,
        principal: Principal,
        stay_id: UUID,
        purpose: Annotated[str | None, PurposeParam] = None,
    ) -> Response[Handover]:
        """A released stay's hand-over: receiving street, contact (masked; unmasked with ``purpose``, audited),
        home phases' dates. 404 for another site's stay or one not released."""
        async with db.connection() as conn:
            found = await service.get_handover(conn, principal, settings, stay_id, purpose=purpose)
        return json_with_etag(request, found)

    @get("/certificate", media_type="text/html", response_headers=CERTIFICATE_HEADERS)
    async def get_certificate(
        self,
        request: Request,
        db: Database,
        settings: Settings,
        principal: Principal,
        stay_id: UUID,
        purpose: Annotated[str | None, PurposeParam] = None,
    ) -> Response[str]:
        """The release certificate as a printable HTML page (no script, no external asset): the resident masked,
        or unmasked with ``purpose`` (command, medic, site manager; audited), the dates and the verification code."""
        async with db.connection() as conn:
            context = await service.certificate(conn, principal, settings, stay_id, purpose=purpose)
        page = request.app.template_engine.get_template("handover/certificate.html").render(**context)  # type: ignore[union-attr]
        return Response(page, media_type="text/html; charset=utf-8")


class CertificateController(Controller):
    path = "/certificates"
    tags = ["handover"]
    security = [{}]

    @get("/{code:str}", opt={EXCLUDE_FROM_AUTH: True, **policy.rest("certificates.verify")}, cache_control=None)
    async def verify_certificate(self, request: Request, db: Database, settings: Settings, code: CodePath) -> CertificateCheck:
        """Whether a release certificate is valid or revoked, its site, release date and home phases' dates.
        No credential; no name, ID number, contact or record id. Counted per client address (429 past
        ``QSITE_CERTIFICATE_CHECKS_PER_ADDRESS_PER_MINUTE``)."""
        async with db.connection() as conn:
            return await service.verify(conn, db.cache, settings, code, address=client_address(request))


ROUTES = [HandoverController, CertificateController]
