"""HTTP side of access: the authentication middleware, route roles, the principal dependency, controllers."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware
from litestar.params import Body, Parameter

from service import idempotency, policy
from service.access import service
from service.access.model import (
    ApiClient,
    ApiClientCreate,
    ApiClientCreated,
    AuditEntry,
    LoginRequest,
    Principal,
    RefreshRequest,
    Staff,
    StaffCreate,
    StaffPatch,
    TokenPair,
)
from service.access.service import authenticate, bearer_credential
from service.db import Database
from service.errors import Forbidden, Unauthorized
from service.http import CursorParam, LimitParam, instant_param, json_with_etag, parse_instant
from service.pagination import Page
from service.settings import Settings

# Routes that answer without a credential: probes, docs, and the GraphQL
# endpoint (it authenticates per field so that `login` works anonymously).
PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics", "/docs", "/graphql", "/api/v1/auth"}
# Routes that authenticate otherwise: the command dashboard's pages take a browser session
# (service/command/rest.py, same policy), never a bearer token.
SESSION_PATHS = {"/command"}
EXCLUDE_FROM_AUTH = "exclude_from_auth"


class AuthMiddleware(AbstractAuthenticationMiddleware):
    """Authenticates every non-public request, then enforces the route's operation (``opt=policy.rest(...)``).

    A route that names no operation is refused to everyone: new routes are closed until
    the policy says who may call them.
    """

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        credential = bearer_credential(connection.headers.get("authorization"), connection.headers.get("x-api-key"))
        if credential is None:
            raise Unauthorized("Authentication required.", code="unauthenticated")
        state = connection.app.state
        principal = await authenticate(state.db, state.settings, credential)
        operation = connection.scope["route_handler"].opt.get(policy.OPERATION_OPT)
        if operation is None:
            raise Forbidden(f"Not allowed for the role {principal.role}.", code="role_not_allowed")
        policy.require(principal, operation)
        return AuthenticationResult(user=principal, auth=credential)


auth_middleware = DefineMiddleware(
    AuthMiddleware,
    exclude=[rf"^{p}(/|$)" for p in PUBLIC_PATHS | SESSION_PATHS],
    exclude_from_auth_key=EXCLUDE_FROM_AUTH,
)


def principal_of(scope: Any) -> Principal:
    """The caller the authentication middleware put in the ASGI scope."""
    principal = scope.get("user")
    if not isinstance(principal, Principal):
        raise Unauthorized("Authentication required.", code="unauthenticated")
    return principal


def provide_principal(request: Any) -> Principal:
    return principal_of(request.scope)


# --- controllers ------------------------------------------------------------------

PurposeParam = Parameter(
    query="purpose",
    default=None,
    min_length=3,
    max_length=200,
    description="Why personal data is needed unmasked (command, medic, site manager; audited). Omit for masked data.",
)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class AuthController(Controller):
    """Login, refresh and logout (no credential needed: they issue or end one).

    These POSTs do not take Idempotency-Key: they mint secrets, which must not
    be stored for replay; a retried refresh counts as reuse and ends the login.
    """

    path = "/auth"
    tags = ["auth"]
    security = [{}]

    @post("/login", status_code=200, exclude_from_auth=True)
    async def login(self, request: Request, db: Database, settings: Settings, data: Annotated[LoginRequest, Body()]) -> TokenPair:
        """Staff login: a 15-minute access token and a rotating refresh token. 429 with Retry-After when rate limited."""
        return await service.login(db, settings, username=data.username, password=data.password, address=client_address(request))

    @post("/refresh", status_code=200, exclude_from_auth=True)
    async def refresh(self, db: Database, settings: Settings, data: Annotated[RefreshRequest, Body()]) -> TokenPair:
        """Exchange a refresh token for a new pair; a reused (already rotated) token revokes the whole login."""
        return await service.refresh(db, settings, data.refresh_token)

    @post("/logout", status_code=204, exclude_from_auth=True)
    async def logout(self, db: Database, data: Annotated[RefreshRequest, Body()]) -> None:
        """End the login this refresh token belongs to."""
        await service.logout(db, data.refresh_token)


class StaffController(Controller):
    path = "/staff"
    tags = ["staff"]
    opt = policy.rest("staff.read")

    @get("/")
    async def list_staff(
        self,
        request: Request,
        db: Database,
        settings: Settings,
        principal: Principal,
        site_id: Annotated[UUID | None, Parameter(query="site_id", default=None)] = None,
        purpose: Annotated[str | None, PurposeParam] = None,
        limit: Annotated[int, LimitParam] = 50,
        cursor: Annotated[str | None, CursorParam] = None,
    ) -> Response[Page[Staff]]:
        """Staff of the caller's sites, by username; phones masked unless ``purpose`` is given."""
        async with db.connection() as conn:
            page = await service.list_staff(conn, settings, principal, site_id=site_id, cursor=cursor, limit=limit, purpose=purpose)
        return json_with_etag(request, page)

    @get("/{staff_id:uuid}")
    async def get_staff(
        self,
        request: Request,
        db: Database,
        settings: Settings,
        principal: Principal,
        staff_id: UUID,
        purpose: Annotated[str | None, PurposeParam] = None,
    ) -> Response[Staff]:
        """One staff account (404 when not at one of the caller's sites)."""
        async with db.connection() as conn:
            staff = await service.get_staff(conn, settings, principal, staff_id, purpose=purpose)
        return json_with_etag(request, staff)

    @post("/", status_code=201, opt=policy.rest("staff.manage"))
    async def create_staff(
        self, request: Request, db: Database, settings: Settings, principal: Principal, data: Annotated[StaffCreate, Body()]
    ) -> Response[Staff]:
        """Create a staff account. Site managers: only for their sites, never the command role."""
        return await idempotency.respond(request, db, principal.ref, lambda conn: service.create_staff(conn, settings, principal, data))

    @patch("/{staff_id:uuid}", opt=policy.rest("staff.manage"))
    async def update_staff(
        self, db: Database, settings: Settings, principal: Principal, staff_id: UUID, data: Annotated[StaffPatch, Body()]
    ) -> Staff:
        """Change an account (role, sites, active, password, profile); ``version`` must match (409 ``stale_version``)."""
        async with db.transaction() as conn:
            return await service.update_staff(conn, settings, principal, staff_id, data)


class ClientController(Controller):
    path = "/clients"
    tags = ["clients"]
    opt = policy.rest("clients.manage")

    @get("/")
    async def list_clients(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        limit: Annotated[int, LimitParam] = 50,
        cursor: Annotated[str | None, CursorParam] = None,
    ) -> Response[Page[ApiClient]]:
        """Integration clients whose sites are all the caller's (keys are never shown again)."""
        async with db.connection() as conn:
            page = await service.list_clients(conn, principal, cursor=cursor, limit=limit)
        return json_with_etag(request, page)

    @post("/", status_code=201)
    async def create_client(
        self, request: Request, db: Database, principal: Principal, data: Annotated[ApiClientCreate, Body()]
    ) -> Response[ApiClientCreated]:
        """Create an integration client; the answer holds its API key, shown this once (a replay answers ``api_key: null``)."""
        work, with_key = service.client_creation(principal, data)
        stored = await idempotency.respond(request, db, principal.ref, work)
        client = with_key(msgspec.json.decode(stored.content, type=ApiClientCreated))
        return Response(client, status_code=stored.status_code)

    @post("/{client_id:uuid}/revoke", status_code=200)
    async def revoke_client(self, request: Request, db: Database, principal: Principal, client_id: UUID) -> Response[ApiClient]:
        """Revoke a client's API key (effective at once here, within the key cache TTL everywhere)."""
        return await idempotency.respond(
            request, db, principal.ref, lambda conn: service.revoke_client(db, conn, principal, client_id), status_code=200
        )


class AuditController(Controller):
    path = "/audit"
    tags = ["audit"]
    opt = policy.rest("audit.read")

    @get("/")
    async def list_audit(
        self,
        request: Request,
        db: Database,
        principal: Principal,
        site_id: Annotated[UUID | None, Parameter(query="site_id", default=None)] = None,
        subject_id: Annotated[UUID | None, Parameter(query="subject_id", default=None)] = None,
        actor: Annotated[str | None, Parameter(query="actor", default=None, max_length=100)] = None,
        since: Annotated[str | None, instant_param("since", "Rows at or after this instant (RFC 3339).")] = None,
        until: Annotated[str | None, instant_param("until", "Rows before this instant (RFC 3339).")] = None,
        limit: Annotated[int, LimitParam] = 50,
        cursor: Annotated[str | None, CursorParam] = None,
    ) -> Response[Page[AuditEntry]]:
        """Audit rows (unmasked reads, health-data writes), newest first; command centre only."""
        async with db.connection() as conn:
            page = await service.list_audit(
                conn,
                principal,
                site_id=site_id,
                subject_id=subject_id,
                actor=actor,
                since=parse_instant(since, "since"),
                until=parse_instant(until, "until"),
                cursor=cursor,
                limit=limit,
            )
        return json_with_etag(request, page)


ROUTES = [AuthController, StaffController, ClientController, AuditController]
