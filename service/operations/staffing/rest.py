"""REST: staff swab results from labs (the staff apps use GraphQL for the rest of the closed loop)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, Response, post
from litestar.params import Body

from service import idempotency, policy
from service.access.model import Principal
from service.db import Database
from service.health.model import LabUpload, LabUploadResult
from service.operations.staffing import service


class StaffLabController(Controller):
    path = "/lab"
    tags = ["staff"]

    @post("/staff-results", opt=policy.rest("lab.results"), status_code=200)
    async def upload_staff_results(
        self, request: Request, db: Database, principal: Principal, data: Annotated[LabUpload, Body()]
    ) -> Response[LabUploadResult]:
        """Staff swab results by tube barcode (lab clients), as ``/lab/results`` takes residents' tubes.

        Idempotent; per item ``recorded``, ``unchanged``, ``conflict`` or ``unknown_barcode`` (also a tube of a
        site the key does not serve). A positive result puts the worker in post-exposure isolation.
        """
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.upload_results(conn, principal, data), status_code=200)


ROUTES = [StaffLabController]
