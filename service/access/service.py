"""Authentication: turning a request's credential into a Principal.

Staff carry short-lived JWT access tokens (HS256, signed with
``QSITE_JWT_SECRET``) whose claims hold role and sites, so that checking one
costs no database round trip. Integration clients send API keys
(``qsk_...``).
"""

from __future__ import annotations

import time
import uuid
from uuid import UUID

import jwt

from service.access.model import Principal, PrincipalKind, Role
from service.errors import Unauthorized
from service.settings import Settings

JWT_ALGORITHM = "HS256"
API_KEY_PREFIX = "qsk_"


def issue_access_token(settings: Settings, principal: Principal, *, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "sub": str(principal.id),
        "kind": principal.kind.value,
        "role": principal.role.value,
        "sites": None if principal.site_ids is None else sorted(str(s) for s in principal.site_ids),
        "name": principal.name,
        "iat": issued,
        "exp": issued + settings.access_token_minutes * 60,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=JWT_ALGORITHM)


def principal_from_access_token(settings: Settings, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "exp", "iat", "role", "kind"]},
        )
        sites = claims.get("sites")
        return Principal(
            kind=PrincipalKind(claims["kind"]),
            id=UUID(claims["sub"]),
            role=Role(claims["role"]),
            site_ids=None if sites is None else frozenset(UUID(s) for s in sites),
            name=claims.get("name", ""),
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The access token has expired; refresh it.", code="token_expired") from None
    except (jwt.InvalidTokenError, ValueError, KeyError, TypeError):
        raise Unauthorized("The access token is not valid.", code="invalid_token") from None


def bearer_credential(authorization: str | None, api_key_header: str | None) -> str | None:
    """The credential a request presents: ``Authorization: Bearer ...`` or ``X-API-Key``."""
    if api_key_header:
        return api_key_header.strip()
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Use 'Authorization: Bearer <token>'.", code="invalid_credentials")
    return value.strip()


async def authenticate(db: object, settings: Settings, credential: str) -> Principal:
    """Resolve a presented credential; raises Unauthorized when it is not valid."""
    if credential.startswith(API_KEY_PREFIX):
        raise Unauthorized("API keys are not enabled yet.", code="invalid_api_key")
    return principal_from_access_token(settings, credential)
