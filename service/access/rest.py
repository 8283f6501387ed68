"""HTTP side of access: the authentication middleware, role guards, the principal dependency."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware
from litestar.types import Guard

from service.access.model import Principal, Role
from service.access.service import authenticate, bearer_credential
from service.errors import Forbidden, Unauthorized

# Routes that answer without a credential: probes, docs, and the GraphQL
# endpoint (it authenticates per field so that `login` works anonymously).
PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics", "/docs", "/graphql", "/api/v1/auth"}
EXCLUDE_FROM_AUTH = "exclude_from_auth"


class AuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        credential = bearer_credential(connection.headers.get("authorization"), connection.headers.get("x-api-key"))
        if credential is None:
            raise Unauthorized("Authentication required.", code="unauthenticated")
        state = connection.app.state
        principal = await authenticate(state.db, state.settings, credential)
        return AuthenticationResult(user=principal, auth=credential)


auth_middleware = DefineMiddleware(
    AuthMiddleware,
    exclude=[rf"^{p}(/|$)" for p in PUBLIC_PATHS],
    exclude_from_auth_key=EXCLUDE_FROM_AUTH,
)


def requires(*roles: Role) -> Guard:
    """Guard: the caller must hold one of ``roles`` (403 otherwise)."""
    allowed = frozenset(roles)

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = connection.scope.get("user")
        if not isinstance(principal, Principal):
            raise Unauthorized("Authentication required.", code="unauthenticated")
        if principal.role not in allowed:
            raise Forbidden(f"The role {principal.role} may not do this.", code="role_not_allowed")

    guard.__name__ = f"requires_{'_'.join(sorted(allowed))}"
    return guard


async def provide_principal(request: Any) -> Principal:
    principal = request.scope.get("user")
    if not isinstance(principal, Principal):
        raise Unauthorized("Authentication required.", code="unauthenticated")
    return principal
