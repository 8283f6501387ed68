"""The REST contract: OpenAPI config, explicit operationIds, and every problem a route can answer.

Each operation documents, per 4xx status, the exact ``code`` values it can
answer (an ``enum`` on the Problem schema), read from the handler's code by
``service.errorcodes``: clients can switch on them and the contract tests hold
the API to them (an undocumented code fails ``response_schema_conformance``).
"""

from __future__ import annotations

import re
from typing import Any, get_type_hints

import msgspec
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, OpenAPI, OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Reference, Schema, SecurityScheme
from litestar.routes import HTTPRoute

from service import errorcodes, http, policy
from service.access.model import Role
from service.access.rest import EXCLUDE_FROM_AUTH, PUBLIC_PATHS, AuthMiddleware
from service.api import docs
from service.errors import PROBLEM_JSON, from_database

API_DESCRIPTION = """\
REST API of qsite for integrations: logistics systems, labs and hospitals.
Errors are RFC 9457 problem+json with a stable `code`; each operation lists the
codes it can answer per status. Every POST accepts an `Idempotency-Key` header.
Staff apps use GraphQL at `/graphql`.
"""

# (method, path) -> operationId: stable names for generated clients. A route
# missing here keeps Litestar's derived id, and tests/contract fails until it is named.
OPERATION_IDS: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/auth/login"): "login",
    ("POST", "/api/v1/auth/logout"): "logout",
    ("POST", "/api/v1/auth/refresh"): "refreshToken",
    ("GET", "/api/v1/staff"): "listStaff",
    ("POST", "/api/v1/staff"): "createStaff",
    ("GET", "/api/v1/staff/{staff_id}"): "getStaff",
    ("PATCH", "/api/v1/staff/{staff_id}"): "updateStaff",
    ("GET", "/api/v1/clients"): "listApiClients",
    ("POST", "/api/v1/clients"): "createApiClient",
    ("POST", "/api/v1/clients/{client_id}/revoke"): "revokeApiClient",
    ("GET", "/api/v1/audit"): "listAuditLog",
    ("GET", "/api/v1/sites"): "listSites",
    ("POST", "/api/v1/sites"): "createSite",
    ("GET", "/api/v1/sites/{site_id}"): "getSite",
    ("PATCH", "/api/v1/sites/{site_id}"): "updateSite",
    ("GET", "/api/v1/sites/{site_id}/rooms"): "listRooms",
    ("GET", "/api/v1/rooms/{room_id}"): "getRoom",
    ("GET", "/api/v1/occupancy"): "getOccupancy",
    ("GET", "/api/v1/sites/{site_id}/occupancy"): "getSiteOccupancy",
    ("GET", "/api/v1/stays/{stay_id}/handover"): "getHandover",
    ("GET", "/api/v1/stays/{stay_id}/certificate"): "getReleaseCertificate",
    ("GET", "/api/v1/certificates/{code}"): "verifyReleaseCertificate",
    ("POST", "/api/v1/checkins"): "recordCheckin",
    ("POST", "/api/v1/checkins/batch"): "recordCheckins",
    ("POST", "/api/v1/lab/results"): "uploadLabResults",
    ("GET", "/api/v1/alerts/{alert_id}"): "getAlert",
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): "acknowledgeAlert",
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): "resolveAlert",
    ("GET", "/api/v1/sites/{site_id}/alerts"): "listSiteAlerts",
    ("GET", "/api/v1/sites/{site_id}/exposure-reviews"): "listExposureReviews",
    ("POST", "/api/v1/exposure-reviews/{review_id}/decision"): "decideExposureReview",
    ("GET", "/api/v1/supplies/stock"): "listStockLevels",
    ("GET", "/api/v1/supplies/changes"): "listStockChanges",
    ("GET", "/api/v1/changes"): "listChanges",
    ("GET", "/api/v1/supplies/items"): "listSupplyItems",
    ("POST", "/api/v1/supplies/items"): "createSupplyItem",
    ("POST", "/api/v1/supplies/movements"): "recordStockMovement",
    ("POST", "/api/v1/supplies/transfers"): "transferStock",
    ("GET", "/api/v1/supplies/sites/{site_id}/movements"): "listStockMovements",
    ("PATCH", "/api/v1/supplies/sites/{site_id}/stock/{item_id}"): "setStockLevels",
    ("GET", "/api/v1/supplies/replenishments"): "listReplenishments",
    ("POST", "/api/v1/supplies/replenishments"): "raiseReplenishment",
    ("GET", "/api/v1/supplies/replenishments/{rep_id}"): "getReplenishment",
    ("POST", "/api/v1/supplies/replenishments/{rep_id}/acknowledge"): "acknowledgeReplenishment",
    ("POST", "/api/v1/supplies/replenishments/{rep_id}/dispatch"): "dispatchReplenishment",
    ("POST", "/api/v1/supplies/replenishments/{rep_id}/receive"): "receiveReplenishment",
    ("POST", "/api/v1/supplies/replenishments/{rep_id}/cancel"): "cancelReplenishment",
    ("GET", "/api/v1/supplies/webhooks"): "listWebhooks",
    ("POST", "/api/v1/supplies/webhooks"): "registerWebhook",
    ("DELETE", "/api/v1/supplies/webhooks/{webhook_id}"): "removeWebhook",
    ("GET", "/api/v1/supplies/webhooks/{webhook_id}/deliveries"): "listWebhookDeliveries",
    ("GET", "/api/v1/webhooks"): "listEventWebhooks",
    ("POST", "/api/v1/webhooks"): "registerEventWebhook",
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): "removeEventWebhook",
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): "listEventWebhookDeliveries",
    ("GET", "/api/v1/facilities"): "listFacilities",
    ("POST", "/api/v1/facilities"): "createFacility",
    ("GET", "/api/v1/facilities/{facility_id}"): "getFacility",
    ("PATCH", "/api/v1/facilities/{facility_id}"): "updateFacility",
    ("POST", "/api/v1/transfers"): "requestTransfer",
    ("GET", "/api/v1/transfers/{transfer_id}"): "getTransfer",
    ("GET", "/api/v1/transfers/{transfer_id}/transitions"): "listTransferTransitions",
    ("POST", "/api/v1/transfers/{transfer_id}/transitions"): "moveTransfer",
    ("GET", "/api/v1/sites/{site_id}/transfers"): "listSiteTransfers",
    ("GET", "/api/v1/sites/{site_id}/transfer-times"): "getTransferTimes",
    ("GET", "/api/v1/hospital/transfers"): "listIncomingTransfers",
    ("GET", "/api/v1/hospital/transfers/{transfer_id}"): "getIncomingTransfer",
    ("POST", "/api/v1/hospital/transfers/{transfer_id}/arrival"): "confirmArrival",
    ("POST", "/api/v1/hospital/transfers/{transfer_id}/refusal"): "refuseAtDoor",
    ("GET", "/api/v1/regions"): "listRegions",
    ("POST", "/api/v1/regions"): "createRegion",
    ("GET", "/api/v1/regions/{region_id}"): "getRegion",
    ("PATCH", "/api/v1/regions/{region_id}"): "updateRegion",
    ("PUT", "/api/v1/regions/{region_id}/sites/{site_id}"): "placeSite",
    ("GET", "/api/v1/command/rollup"): "getRollUp",
    ("GET", "/api/v1/command/daily"): "getDailySeries",
    ("GET", "/api/v1/command/daily/csv"): "getDailySeriesCsv",
    ("GET", "/api/v1/command/reports/{day}"): "getDailyReport",
    ("GET", "/api/v1/command/reports/{day}/csv"): "getDailyReportCsv",
    ("GET", "/api/v1/command/reports/{day}/html"): "getDailyReportHtml",
    ("POST", "/api/v1/hospital/transfers/{transfer_id}/acceptance"): "acceptIncomingTransfer",
    ("POST", "/api/v1/hospital/transfers/{transfer_id}/decline"): "declineIncomingTransfer",
    ("POST", "/api/v1/hospital/transfers/{transfer_id}/outcome"): "reportTransferOutcome",
    ("POST", "/api/v1/referrals"): "submitReferral",
    ("GET", "/api/v1/referrals/{referral_id}"): "getReferral",
    ("POST", "/api/v1/referrals/{referral_id}/cancel"): "cancelReferral",
    ("GET", "/api/v1/sites/{site_id}/referrals"): "listReferralQueue",
    ("GET", "/api/v1/sites/{site_id}/isolation-times"): "getIsolationTimes",
    ("GET", "/api/v1/risk-areas"): "listRiskAreas",
    ("POST", "/api/v1/lab/staff-results"): "uploadStaffLabResults",
    ("GET", "/api/v1/carrier/sites/{site_id}/waste"): "listCarrierWaste",
    ("GET", "/api/v1/carrier/waste/{waste_id}"): "getCarrierWaste",
    ("POST", "/api/v1/carrier/waste/{waste_id}/receipt"): "confirmWasteReceipt",
}

# Codes chosen at run time, which reading the code cannot see (``raise cls(...,
# code=error.code)`` over a batch outcome; a constraint registered by another domain).
DYNAMIC_CODES: dict[str, errorcodes.Codes] = {
    "recordCheckin": {  # health.service._raise_for over the check-in statement's outcome
        404: {"stay_not_found"},
        409: {"stay_closed", "checkin_id_conflict", "failed"},
        422: {"recorded_before_admission"},
    },
    "createApiClient": {409: {"facility_not_found"}},
    "recordStockMovement": {422: {"invalid_quantity", "invalid_delta"}},  # code=f"invalid_{name}"
    "submitReferral": {422: {"invalid_id_number", "invalid_name"}},  # the person's __post_init__ (shared with residents)
}

_STATUS_TITLES = {
    400: "Malformed request",
    401: "Missing or invalid credentials",
    403: "The caller may not do this",
    404: "Not found, or not one of the caller's",
    409: "Conflict with the current state",
    413: "Request body too large",
    422: "Well-formed but refused by a rule",
    429: "Too many requests; see Retry-After",
}

# Answered by the framework before a handler runs: a body or parameter that
# does not match its schema, an id in the path that is not a UUID, a body over
# ``max_body_bytes`` (Litestar's request_max_body_size). The edge's own checks
# (``BodyLimits``) are read like a handler.
_EDGE_CODES: errorcodes.Codes = {400: {"invalid_request"}}
_PATH_CODES: errorcodes.Codes = {404: {"not_found"}}
_BODY_CODES: errorcodes.Codes = {413: {"payload_too_large"}}


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="qsite",
        version="1.0.0",
        description=API_DESCRIPTION,
        path="/docs",
        render_plugins=[docs.swagger_plugin()],  # assets served by qsite, not a CDN
        components=Components(
            security_schemes={
                "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
                "ApiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header"),
            }
        ),
        security=[{"BearerToken": []}, {"ApiKey": []}],
        use_handler_docstrings=True,
    )


def _strict_struct_names() -> set[str]:
    """Input Structs declared ``forbid_unknown_fields``: their schemas must say so too."""
    names, pending = set(), [msgspec.Struct]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("service.") and cls.__struct_config__.forbid_unknown_fields:
            names.add(cls.__name__)
    return names


def _input_structs(handler: HTTPRouteHandler) -> list[type]:
    """Struct types in the handler's signature: decoding them runs their ``__post_init__``."""
    try:
        hints = get_type_hints(handler.fn, include_extras=True)
    except Exception:  # noqa: BLE001 - a hint we cannot resolve only costs documentation
        return []
    found: list[type] = []
    pending = list(hints.values())
    while pending:
        hint = pending.pop()
        if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
            found.append(hint)
        pending.extend(getattr(hint, "__args__", ()) or ())
    return found


def problem_codes(handler: HTTPRouteHandler, method: str, path: str) -> errorcodes.Codes:
    """Every code ``method path`` can answer, by status."""
    writes = method != "GET"
    parts: list[errorcodes.Codes] = [
        _EDGE_CODES,
        errorcodes.raised_by(http.BodyLimits.__call__, writes=False),
        errorcodes.raised_by(handler.fn, *_input_structs(handler), writes=writes),
    ]
    if method in ("POST", "PUT", "PATCH"):
        parts.append(_BODY_CODES)
    if "{" in path:
        parts.append(_PATH_CODES)
    public = handler.opt.get(EXCLUDE_FROM_AUTH) or any(re.match(rf"^{p}(/|$)", path) for p in PUBLIC_PATHS)
    if not public:
        auth = errorcodes.raised_by(AuthMiddleware.authenticate_request, writes=False)
        operation = handler.opt.get(policy.OPERATION_OPT)
        if operation is not None and policy.rule(operation).roles >= frozenset(Role):
            auth.pop(403, None)  # the middleware's only refusal after authentication: a role the operation does not grant
        parts.append(auth)
    parts.append(DYNAMIC_CODES.get(OPERATION_IDS.get((method, path), ""), {}))
    database = errorcodes.raised_by(from_database)
    parts.append(database if writes else errorcodes.READ_DATABASE_CODES)
    return errorcodes.merge(*parts)


def _problem_response(status: int, codes: set[str]) -> OpenAPIResponse:
    ordered = sorted(codes)
    schema = Schema(
        all_of=[
            Reference("#/components/schemas/Problem"),
            Schema(type=OpenAPIType.OBJECT, properties={"code": Schema(type=OpenAPIType.STRING, enum=ordered)}),
        ]
    )
    description = f"{_STATUS_TITLES.get(status, 'Refused')}: " + ", ".join(f"`{c}`" for c in ordered)
    return OpenAPIResponse(description=description, content={PROBLEM_JSON: OpenAPIMediaType(schema=schema)})


def _answers_304(handler: HTTPRouteHandler) -> bool:
    return errorcodes.reaches(handler.fn, http.if_none_match)


def _operations(app: Litestar) -> dict[tuple[str, str], HTTPRouteHandler]:
    routes: dict[tuple[str, str], HTTPRouteHandler] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.path)
            for handler in route.route_handlers:
                for method in handler.http_methods:
                    routes[(method, path)] = handler
    return routes


# The completed contract of each set of routes: every app of a process with the same routes has the same one.
_CONTRACTS: dict[tuple[tuple[str, tuple[str, ...]], ...], OpenAPI] = {}


def document_contract(app: Litestar) -> None:
    """Complete the generated OpenAPI: Problem schema, strict inputs, operationIds, per-route problems.

    Built and completed once per process and set of routes (~0.5 s; the test suite builds hundreds
    of apps): a later app with the same routes is handed the same contract.
    """
    routes = tuple(sorted((r.path, tuple(sorted(r.methods))) for r in app.routes if isinstance(r, HTTPRoute)))
    known = _CONTRACTS.get(routes)
    if known is not None:
        app.plugins.get(OpenAPIPlugin)._openapi = known  # what provide_openapi() would have built
        return
    _CONTRACTS[routes] = app.openapi_schema
    _complete(app, app.openapi_schema)


def _complete(app: Litestar, schema: OpenAPI) -> None:
    assert schema.components.schemas is not None
    schema.components.schemas["Problem"] = Schema(
        type=OpenAPIType.OBJECT,
        required=["type", "title", "status", "code"],
        properties={
            "type": Schema(type=OpenAPIType.STRING),
            "title": Schema(type=OpenAPIType.STRING),
            "status": Schema(type=OpenAPIType.INTEGER),
            "code": Schema(type=OpenAPIType.STRING, description="Stable machine-readable error code"),
            "detail": Schema(type=OpenAPIType.STRING),
            "field": Schema(type=OpenAPIType.STRING, description="The input at fault, if one"),
            "request_id": Schema(type=OpenAPIType.STRING),
            "errors": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.OBJECT)),
            "extra": Schema(type=OpenAPIType.OBJECT),
        },
    )
    for name in _strict_struct_names():
        for key, component in schema.components.schemas.items():
            if isinstance(component, Schema) and (key == name or key.endswith(f"_{name}")):
                component.additional_properties = False
    handlers = _operations(app)
    for path, path_item in (schema.paths or {}).items():
        for method in ("get", "post", "put", "patch", "delete"):
            operation: Operation | None = getattr(path_item, method, None)
            handler = handlers.get((method.upper(), path))
            if operation is None or handler is None:
                continue
            operation.operation_id = OPERATION_IDS.get((method.upper(), path), operation.operation_id)
            responses = operation.responses or {}
            for status, codes in sorted(problem_codes(handler, method.upper(), path).items()):
                if status >= 500:
                    continue  # a server fault, not a refusal the client can act on
                responses[str(status)] = _problem_response(status, codes)
            if method == "get" and _answers_304(handler):
                responses["304"] = OpenAPIResponse(description="Not modified (If-None-Match matched the ETag)")
            operation.responses = responses


def fix_options_allow(app: Litestar) -> None:
    """OPTIONS answers every method of its path (litestar-org/litestar#4169, fixed in Litestar 3).

    Litestar 2 builds a path's OPTIONS handler with the first route registered
    for it; handlers added later under the same path (another controller, or
    another method) make a new route, but ``Allow`` still lists the first one's
    methods. Point each OPTIONS handler at the route that serves it.
    """
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            fn: Any = handler.fn
            closure = getattr(fn, "__closure__", None) or ()
            names = getattr(getattr(fn, "__code__", None), "co_freevars", ())
            if handler.handler_name == "options_handler" and "self" in names:
                closure[names.index("self")].cell_contents = route
