"""Access rules: authentication, login and refresh tokens, staff and API clients, unmasking, audit.

Staff carry short-lived JWT access tokens (HS256, signed with
``QSITE_JWT_SECRET``) whose claims hold role and sites, so that checking one
costs no database round trip; refresh tokens rotate and are stored hashed.
Integration clients send API keys (``qsk_...``), verified once and then served
from a short in-process cache so that a poll costs no PostgreSQL statement.

Other domains call ``reveal`` / ``reveal_many`` before answering unmasked
personal data: it checks role and purpose and writes the audit row.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import secrets
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import jwt
import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from service import bus
from service.access import audit, crypto, store
from service.access.model import (
    STAFF_ADMIN_ROLES,
    UNMASK_ROLES,
    ApiClient,
    ApiClientCreate,
    ApiClientCreated,
    AuditEntry,
    Principal,
    PrincipalKind,
    Role,
    Staff,
    StaffCreate,
    StaffPatch,
    StaffRole,
    TokenPair,
)
from service.cache import Cache
from service.db import Database, purge_in_batches
from service.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited, Unauthorized
from service.pagination import Page, check_limit, decode_cursor, page_of
from service.regions import service as regions
from service.settings import Settings

log = logging.getLogger("qsite.access")

JWT_ALGORITHM = "HS256"
# The CLI and the demo seed act as this principal (command role, never over HTTP).
SYSTEM_PRINCIPAL = Principal(kind=PrincipalKind.SYSTEM, id=UUID(int=0), role=Role.COMMAND, site_ids=None, name="system")
API_KEY_PREFIX = "qsk_"


def issue_access_token(settings: Settings, principal: Principal, *, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "sub": str(principal.id),
        "kind": principal.kind.value,
        "role": principal.role.value,
        "sites": None if principal.site_ids is None else sorted(str(s) for s in principal.site_ids),
        "regions": None if principal.region_ids is None else sorted(str(r) for r in principal.region_ids),
        "name": principal.name,
        "iat": issued,
        "exp": issued + settings.access_token_minutes * 60,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=JWT_ALGORITHM)


# Verified access tokens, so that a client's next request skips the signature and
# claim checks. Equivalent to decoding again: an access token is valid exactly
# until its exp (no revocation list), and the key includes the signing secret.
_VERIFIED: dict[tuple[str, str], tuple[Principal, float]] = {}
_VERIFIED_MAX = 10_000


def principal_from_access_token(settings: Settings, token: str) -> Principal:
    return principal_and_expiry(settings, token)[0]


def principal_and_expiry(settings: Settings, token: str) -> tuple[Principal, float]:
    """The token's principal and its exp, verified once and then served from ``_VERIFIED``."""
    cached = _VERIFIED.get((settings.jwt_secret, token))
    if cached is not None and time.time() < cached[1]:
        return cached
    verified = _decode_access_token(settings, token)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[(settings.jwt_secret, token)] = verified
    return verified


def credential_expiry(settings: Settings, credential: str) -> float | None:
    """When an authenticated credential stops being valid (Unix time): an access token's exp;
    None for an API key, which lasts until revoked."""
    if credential.startswith(API_KEY_PREFIX):
        return None
    return principal_and_expiry(settings, credential)[1]


def _decode_access_token(settings: Settings, token: str) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "exp", "iat", "role", "kind"]},
        )
        sites = claims.get("sites")
        regions = claims.get("regions")
        principal = Principal(
            kind=_token_kind(claims["kind"]),
            id=UUID(claims["sub"]),
            role=Role(claims["role"]),
            site_ids=None if sites is None else frozenset(UUID(s) for s in sites),
            name=claims.get("name", ""),
            region_ids=None if regions is None else frozenset(UUID(r) for r in regions),
        )
        return principal, float(claims["exp"])
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The access token has expired; refresh it.", code="token_expired") from None
    except (jwt.InvalidTokenError, ValueError, KeyError, TypeError):
        raise Unauthorized("The access token is not valid.", code="invalid_token") from None


def _token_kind(value: str) -> PrincipalKind:
    kind = PrincipalKind(value)
    if kind is PrincipalKind.SYSTEM:
        raise ValueError("system principals never hold tokens")
    return kind


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


def _sha256(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


# --- passwords ---------------------------------------------------------------

_hasher = PasswordHasher()
# Verified against when the username is unknown, so that both answers take as long.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


async def hash_password(password: str) -> str:
    # argon2 is deliberately slow: keep it off the event loop.
    return await asyncio.to_thread(_hasher.hash, password)


async def _verify_password(stored: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


# --- login rate limits -------------------------------------------------------


class _LocalWindows:
    """Fixed one-minute windows in process memory: the fallback while Redis is down."""

    def __init__(self) -> None:
        self.counts: dict[str, tuple[int, float]] = {}

    def hit(self, key: str, window_s: int) -> tuple[int, int]:
        now = time.monotonic()
        count, end = self.counts.get(key, (0, now + window_s))
        if end <= now:
            count, end = 0, now + window_s
        self.counts[key] = (count + 1, end)
        if len(self.counts) > 50_000:
            self.counts = {k: v for k, v in self.counts.items() if v[1] > now}
        return count + 1, max(1, math.ceil(end - now))

    def reset(self, key: str) -> None:
        self.counts.pop(key, None)


_local_windows: weakref.WeakKeyDictionary[Cache, _LocalWindows] = weakref.WeakKeyDictionary()
WINDOW_S = 60


# Count one attempt and make sure the window ends: the first hit (or a key left without a TTL)
# sets it. A script rather than EXPIRE ... NX, which Redis 6.2 (the embedded server) lacks.
_HIT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


async def hit_window(cache: Cache, key: str) -> tuple[int, int]:
    """Count one attempt in ``key``'s window: (attempts so far, seconds until the window ends)."""
    result = await cache.call("eval", _HIT, 1, key, WINDOW_S)
    if result is None:
        return _local_windows.setdefault(cache, _LocalWindows()).hit(key, WINDOW_S)
    count, ttl = result
    return int(count), max(1, int(ttl))


async def _reset(cache: Cache, key: str) -> None:
    await cache.call("delete", key)
    if cache in _local_windows:
        _local_windows[cache].reset(key)


async def _check_login_rate(cache: Cache, settings: Settings, username: str, address: str) -> str:
    """Count this attempt per account and per address (429 past either limit); returns the account key.

    Attempts are counted before the password is checked, so concurrent guesses
    cannot slip past the limit; a successful login clears its account window.
    The per-address limit is looser so that one account's failures do not lock
    out colleagues behind the same site gateway.
    """
    account_key = cache.key("login", "account", _sha256(username.lower()).hex()[:32])
    address_key = cache.key("login", "address", address)
    address_count, address_ttl = await hit_window(cache, address_key)
    if address_count > settings.login_attempts_per_address_per_minute:
        raise RateLimited("Too many login attempts from this address; retry later.", retry_after=address_ttl)
    account_count, account_ttl = await hit_window(cache, account_key)
    if account_count > settings.login_attempts_per_minute:
        raise RateLimited("Too many login attempts for this account; retry later.", retry_after=account_ttl)
    return account_key


# --- login, refresh, logout ----------------------------------------------------


def staff_principal(row: dict[str, Any]) -> Principal:
    """The principal of a staff row; region grants must already be expanded (``with_region_sites``)."""
    role = Role(row["role"])
    regions = row.get("region_ids") or []
    return Principal(
        kind=PrincipalKind.STAFF,
        id=row["id"],
        role=role,
        # Only a command account without regions sees every site.
        site_ids=None if role is Role.COMMAND and not regions else frozenset(row.get("scope_site_ids", row["site_ids"])),
        name=row["display_name"],
        region_ids=frozenset(regions) if regions else None,
    )


async def with_region_sites(conn: asyncpg.Connection, row: dict[str, Any]) -> dict[str, Any]:
    """The row with ``scope_site_ids``: its own sites plus every site under its regions.

    Expanded when a token is issued, so every domain's site scope honours region grants; a
    site placed in a region later reaches the region's staff at their next refresh.
    """
    if row.get("region_ids"):
        row["scope_site_ids"] = sorted(set(row["site_ids"]) | set(await regions.sites_under(conn, row["region_ids"])))
    return row


async def _issue_pair(conn: asyncpg.Connection, settings: Settings, principal: Principal, family_id: UUID) -> TokenPair:
    refresh_token = secrets.token_urlsafe(32)
    await store.insert_refresh_token(conn, family_id, principal.id, _sha256(refresh_token), settings.refresh_token_days)
    return TokenPair(
        access_token=issue_access_token(settings, principal),
        refresh_token=refresh_token,
        token_type="Bearer",
        expires_in=settings.access_token_minutes * 60,
        staff_id=principal.id,
        role=StaffRole(principal.role.value),
        site_ids=principal.site_scope,
    )


async def check_password(db: Any, settings: Settings, *, username: str, password: str, address: str) -> Principal:
    """The principal of the staff account these credentials open (rate limited; 401 ``invalid_credentials``
    alike for an unknown username, a wrong password and a disabled account). Token logins and the command
    dashboard's session logins (service/command) both start here."""
    username = username.strip().lower()
    account_key = await _check_login_rate(db.cache, settings, username, address)
    async with db.connection() as conn:
        row = await store.get_staff_by_username(conn, username)
        if row is not None:
            row = await with_region_sites(conn, row)
    ok = await _verify_password(row["password_hash"] if row else _DUMMY_HASH, password)
    if row is None or not ok or not row["active"]:
        raise Unauthorized("Unknown username or wrong password.", code="invalid_credentials")
    await _reset(db.cache, account_key)
    return staff_principal(row)


async def current_staff_principal(conn: asyncpg.Connection, staff_id: UUID) -> Principal | None:
    """The principal of an active staff account as it is now (None: gone or disabled). A long-lived
    browser session reads it on every request, so a change of role or sites applies at once."""
    row = await store.get_staff_for_token(conn, staff_id)
    return staff_principal(await with_region_sites(conn, row)) if row is not None and row["active"] else None


async def login(db: Any, settings: Settings, *, username: str, password: str, address: str) -> TokenPair:
    """Check the password (rate limited) and start a new refresh-token family."""
    principal = await check_password(db, settings, username=username, password=password, address=address)
    async with db.transaction() as conn:
        family_id = uuid.uuid4()
        pair = await _issue_pair(conn, settings, principal, family_id)
        await bus.emit(conn, "access.staff_logged_in", site_id=None, subject_id=principal.id, actor=principal.ref)
    return pair


async def refresh(db: Any, settings: Settings, refresh_token: str) -> TokenPair:
    """Rotate a refresh token. A rotated token presented again revokes its whole family."""
    refusal: Unauthorized | None = None
    pair: TokenPair | None = None
    async with db.transaction() as conn:
        token = await store.lock_refresh_token(conn, _sha256(refresh_token))
        if token is None:
            raise Unauthorized("The refresh token is not valid.", code="invalid_refresh_token")
        if token["revoked"]:
            raise Unauthorized("The refresh token was revoked; log in again.", code="refresh_token_revoked")
        if token["expired"]:
            raise Unauthorized("The refresh token has expired; log in again.", code="refresh_token_expired")
        staff = await store.get_staff_for_token(conn, token["staff_id"])
        actor = f"{PrincipalKind.STAFF}:{token['staff_id']}"
        if token["rotated"]:
            # Someone holds a copy of an old token: end every session of this login.
            await store.revoke_refresh_family(conn, token["family_id"])
            await bus.emit(conn, "access.refresh_token_reused", site_id=None, subject_id=token["staff_id"], actor=actor)
            refusal = Unauthorized("The refresh token was already used; log in again.", code="refresh_token_reused")
        elif staff is None or not staff["active"]:
            await store.revoke_refresh_family(conn, token["family_id"])
            refusal = Unauthorized("The account is disabled.", code="account_disabled")
        else:
            await store.mark_refresh_token_rotated(conn, token["id"])
            # Role and sites are read afresh: changes reach the caller at the next refresh.
            pair = await _issue_pair(conn, settings, staff_principal(await with_region_sites(conn, staff)), token["family_id"])
            await bus.emit(conn, "access.token_refreshed", site_id=None, subject_id=staff["id"], actor=actor)
    # Raised after the commit: the revocation must persist although the call fails.
    if refusal is not None:
        raise refusal
    assert pair is not None
    return pair


async def logout(db: Any, refresh_token: str) -> None:
    """Revoke the login (the token's whole family). Unknown or already revoked tokens are fine."""
    async with db.transaction() as conn:
        token = await store.lock_refresh_token(conn, _sha256(refresh_token))
        if token is not None and not token["revoked"]:
            await store.revoke_refresh_family(conn, token["family_id"])
            actor = f"{PrincipalKind.STAFF}:{token['staff_id']}"
            await bus.emit(conn, "access.staff_logged_out", site_id=None, subject_id=token["staff_id"], actor=actor)


# --- API keys ----------------------------------------------------------------

_NEGATIVE_TTL_S = 5.0
_MAX_KEY_LENGTH = 128
CLIENT_REVOKED = "access.client_revoked"
_CLIENT_REVOKED_BYTES = CLIENT_REVOKED.encode()


class ApiKeyCache:
    """Verified API keys per app instance, by SHA-256 of the key, for ``api_key_cache_seconds``.

    Revocation evicts at once on the revoking instance and, through the
    ``access.client_revoked`` event that the outbox publishes on Redis after
    commit, on every instance listening; without Redis the TTL bounds it.
    """

    def __init__(self) -> None:
        self.entries: dict[bytes, tuple[Principal, float]] = {}
        self.misses: dict[bytes, float] = {}
        self.listening = False

    async def principal(self, db: Any, settings: Settings, key: str) -> Principal:
        digest = _sha256(key)
        now = time.monotonic()
        hit = self.entries.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        if len(key) > _MAX_KEY_LENGTH or self.misses.get(digest, 0.0) > now:
            raise Unauthorized("The API key is not valid.", code="invalid_api_key")
        async with db.connection() as conn:
            row = await store.get_client_by_key_hash(conn, digest)
        if row is None:
            if len(self.misses) > 10_000:
                self.misses.clear()
            self.misses[digest] = now + _NEGATIVE_TTL_S
            raise Unauthorized("The API key is not valid.", code="invalid_api_key")
        principal = Principal(
            kind=PrincipalKind.CLIENT,
            id=row["id"],
            role=Role(row["role"]),
            site_ids=None if row["all_sites"] else frozenset(row["site_ids"]),
            name=row["name"],
            facility_id=row["facility_id"],
        )
        if len(self.entries) > 10_000:
            self.entries = {k: v for k, v in self.entries.items() if v[1] > now}
        self.entries[digest] = (principal, now + settings.api_key_cache_seconds)
        await self._listen(db)
        return principal

    def evict(self, client_id: UUID) -> None:
        self.entries = {k: v for k, v in self.entries.items() if v[0].id != client_id}

    async def _listen(self, db: Any) -> None:
        if not self.listening:
            self.listening = True
            await db.cache.hub.join(self, channels=[bus.channel(db.cache, None)])

    # The instance's shared subscription (service.cache.Hub) feeds these.
    def ready(self) -> None:
        pass

    def deliver(self, channel: bytes, data: bytes) -> None:
        if _CLIENT_REVOKED_BYTES not in data:  # most global events are logins: skip decoding them
            return
        try:
            events = bus.decode_message(data)
        except msgspec.DecodeError:  # not one of ours (the hub's listeners must not raise)
            return
        for event in events:
            if event.type == CLIENT_REVOKED and event.subject_id:
                self.evict(event.subject_id)

    def lost(self) -> None:
        # A revocation may have gone by unheard: verify every key afresh.
        self.entries.clear()


_key_caches: weakref.WeakKeyDictionary[Any, ApiKeyCache] = weakref.WeakKeyDictionary()


async def purge_refresh_tokens(db: Database, settings: Settings) -> int:
    """Retention: refresh tokens that expired more than ``refresh_token_retention_days`` ago."""
    days = settings.refresh_token_retention_days
    return await purge_in_batches(db, settings.retention_batch_size, lambda conn, n: store.purge_refresh_tokens(conn, days, n))


def api_key_cache(db: Any) -> ApiKeyCache:
    """The API-key cache of this app instance (one per Database)."""
    cache = _key_caches.get(db)
    if cache is None:
        cache = _key_caches[db] = ApiKeyCache()
    return cache


async def authenticate(db: Any, settings: Settings, credential: str) -> Principal:
    """Resolve a presented credential; raises Unauthorized when it is not valid."""
    if credential.startswith(API_KEY_PREFIX):
        return await api_key_cache(db).principal(db, settings, credential)
    return principal_from_access_token(settings, credential)


# --- personal data: unmasking ----------------------------------------------------


async def reveal(
    conn: asyncpg.Connection,
    principal: Principal,
    *,
    purpose: str | None,
    site_id: UUID | None,
    subject_id: UUID | None,
    fields: Sequence[str],
    action: str = "pii.unmask",
) -> bool:
    """Whether to answer ``fields`` of ``subject_id`` unmasked; audits it when so.

    No purpose: False (answer masked). With a purpose: the role must be one of
    command, medic, site_manager (403 ``unmask_not_allowed``), the purpose 3-200
    characters (422 ``invalid_purpose``); an audit row is written in ``conn``.
    """
    return await reveal_many(conn, principal, purpose=purpose, rows=[(site_id, subject_id)], fields=fields, action=action)


async def reveal_many(
    conn: asyncpg.Connection,
    principal: Principal,
    *,
    purpose: str | None,
    rows: Sequence[tuple[UUID | None, UUID | None]],
    fields: Sequence[str],
    action: str = "pii.unmask",
) -> bool:
    """``reveal`` for a list: one audit row per (site_id, subject_id), in one statement."""
    if purpose is None:
        return False
    if principal.role not in UNMASK_ROLES:
        raise Forbidden(f"The role {principal.role} may not unmask personal data.", code="unmask_not_allowed")
    purpose = purpose.strip()
    if not 3 <= len(purpose) <= 200:
        raise InvalidInput("Give the purpose of unmasking in 3-200 characters.", code="invalid_purpose", field="purpose")
    if any(site_id is not None and not principal.can_access_site(site_id) for site_id, _ in rows):
        raise NotFound("No such record.", code="not_found")
    await audit.record_many(conn, principal, action, list(rows), fields=fields, purpose=purpose)
    return True


# --- staff -----------------------------------------------------------------------


def _staff(settings: Settings, row: dict[str, Any], *, unmask: bool) -> Staff:
    phone = None
    if row["phone_enc"] is not None:
        plain = crypto.decrypt(settings, row["phone_enc"], record_id=row["id"].bytes)
        phone = plain if unmask else crypto.mask_phone(plain)
    return Staff(
        id=row["id"],
        username=row["username"],
        display_name=row["display_name"],
        phone=phone,
        role=StaffRole(row["role"]),
        site_ids=list(row["site_ids"]),
        region_ids=list(row.get("region_ids", [])),
        active=row["active"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _require_admin(principal: Principal) -> None:
    if principal.role not in STAFF_ADMIN_ROLES:
        raise Forbidden("Only the command centre and site managers manage staff.", code="role_not_allowed")


async def _check_grant(
    conn: asyncpg.Connection, principal: Principal, role: StaffRole, site_ids: list[UUID], region_ids: list[UUID]
) -> None:
    """Whether ``principal`` may give an account ``role`` on ``site_ids`` and ``region_ids``."""
    await regions.check_grantable(conn, principal, region_ids)
    if role is StaffRole.COMMAND:
        if principal.role is not Role.COMMAND or (not region_ids and not principal.all_sites):
            raise Forbidden("Only the command centre grants the command role (over every site: only an unlimited one).", code="cannot_grant_command")
        if site_ids:
            raise InvalidInput("Command accounts see every site or their regions' sites; give no site_ids.", code="command_has_all_sites", field="site_ids")
        return
    if not site_ids and not region_ids:
        raise InvalidInput("Give at least one site or region for this role.", code="sites_required", field="site_ids")
    if any(not principal.can_access_site(s) for s in site_ids):
        # Same answer as for an unknown site: another site's existence is not disclosed.
        raise NotFound("No such site.", code="site_not_found", field="site_ids")


async def _grantable(conn: asyncpg.Connection, principal: Principal, region_ids: list[UUID]) -> bool:
    try:
        await regions.check_grantable(conn, principal, region_ids)
    except (NotFound, Forbidden):
        return False
    return True


def _phone_columns(settings: Settings, staff_id: UUID, phone: str | None) -> dict[str, Any]:
    if phone is None:
        return {"phone_enc": None, "phone_index": None}
    return {
        "phone_enc": crypto.encrypt(settings, phone, record_id=staff_id.bytes),
        "phone_index": crypto.blind_index(settings, phone),
    }


async def _visible_rows(conn: asyncpg.Connection, principal: Principal, ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
    """Rows among ``ids`` the caller may see: their own account, and for admins staff sharing a site."""
    others = [i for i in ids if i != principal.id] if principal.role in STAFF_ADMIN_ROLES else []
    rows = {r["id"]: r for r in await store.get_staff_by_ids(conn, others, principal.site_scope)} if others else {}
    if principal.id in ids and principal.kind is PrincipalKind.STAFF:
        rows.update({r["id"]: r for r in await store.get_staff_by_ids(conn, [principal.id], None)})
    return rows


async def _reload(conn: asyncpg.Connection, settings: Settings, staff_id: UUID) -> Staff:
    return _staff(settings, (await store.get_staff_by_ids(conn, [staff_id], None))[0], unmask=False)


async def get_staff_many(
    conn: asyncpg.Connection, settings: Settings, principal: Principal, ids: list[UUID]
) -> dict[UUID, Staff]:
    """Staff accounts the caller may see among ``ids`` (masked); others are absent. For dataloaders."""
    return {i: _staff(settings, r, unmask=False) for i, r in (await _visible_rows(conn, principal, ids)).items()}


async def get_staff(
    conn: asyncpg.Connection, settings: Settings, principal: Principal, staff_id: UUID, *, purpose: str | None = None
) -> Staff:
    rows = await _visible_rows(conn, principal, [staff_id])
    if staff_id not in rows:
        raise NotFound("No such staff account.", code="staff_not_found")
    unmask = await reveal(
        conn, principal, purpose=purpose, site_id=None, subject_id=staff_id, fields=["phone"], action="staff.unmask"
    )
    return _staff(settings, rows[staff_id], unmask=unmask)


async def list_staff(
    conn: asyncpg.Connection,
    settings: Settings,
    principal: Principal,
    *,
    site_id: UUID | None = None,
    cursor: str | None,
    limit: int,
    purpose: str | None = None,
) -> Page[Staff]:
    _require_admin(principal)
    check_limit(limit)
    after = decode_cursor(cursor, [str])
    if site_id is not None and not principal.can_access_site(site_id):
        return Page(items=[], next_cursor=None)
    rows = await store.list_staff(conn, principal.site_scope, site_id, after[0] if after else None, limit + 1)
    page = page_of(rows, limit, lambda r: [r["username"]])
    unmask = await reveal_many(
        conn, principal, purpose=purpose, rows=[(None, r["id"]) for r in page.items], fields=["phone"], action="staff.unmask"
    ) if page.items else False
    return Page(items=[_staff(settings, r, unmask=unmask) for r in page.items], next_cursor=page.next_cursor)


async def find_staff_by_phone(conn: asyncpg.Connection, settings: Settings, principal: Principal, phone: str) -> list[UUID]:
    """Exact lookup through the blind index (the number itself is never compared in SQL)."""
    _require_admin(principal)
    return await store.find_staff_by_phone_index(conn, crypto.blind_index(settings, phone), principal.site_scope)


async def create_staff(
    conn: asyncpg.Connection, settings: Settings, principal: Principal, data: StaffCreate, *, password_hash: str | None = None
) -> Staff:
    """A new staff account. ``password_hash`` (demo seed only) skips hashing ``data.password`` again."""
    _require_admin(principal)
    site_ids = sorted(set(data.site_ids))
    region_ids = sorted(set(data.region_ids))
    await _check_grant(conn, principal, data.role, site_ids, region_ids)
    staff_id = data.id or uuid.uuid4()
    await store.insert_staff(
        conn,
        id=staff_id,
        username=data.username,
        display_name=data.display_name,
        role=data.role.value,
        password_hash=password_hash or await hash_password(data.password),
        **_phone_columns(settings, staff_id, data.phone),
    )
    if site_ids:
        await store.set_staff_sites(conn, staff_id, site_ids)
    if region_ids:
        await store.set_staff_regions(conn, staff_id, region_ids)
    await bus.emit(
        conn,
        "access.staff_created",
        site_id=site_ids[0] if site_ids else None,
        subject_id=staff_id,
        actor=principal.ref,
        data={"role": data.role.value, "site_ids": [str(s) for s in site_ids]},
    )
    return await _reload(conn, settings, staff_id)


async def update_staff(
    conn: asyncpg.Connection, settings: Settings, principal: Principal, staff_id: UUID, patch: StaffPatch
) -> Staff:
    _require_admin(principal)
    rows = await _visible_rows(conn, principal, [staff_id])
    if staff_id not in rows:
        raise NotFound("No such staff account.", code="staff_not_found")
    current = rows[staff_id]
    if not principal.all_sites and (
        (current["role"] == Role.COMMAND and (principal.role is not Role.COMMAND or not current["region_ids"]))
        or any(not principal.can_access_site(s) for s in current["site_ids"])
        or not await _grantable(conn, principal, current["region_ids"])
    ):
        raise Forbidden("This account also works at sites that are not yours.", code="staff_outside_scope")
    changes = patch.changes()
    role = StaffRole(changes.get("role", current["role"]))
    site_ids = sorted(set(changes["site_ids"])) if "site_ids" in changes else list(current["site_ids"])
    region_ids = sorted(set(changes["region_ids"])) if "region_ids" in changes else list(current["region_ids"])
    if role is StaffRole.COMMAND and "site_ids" not in changes:
        site_ids = []
    if "role" in changes or "site_ids" in changes or "region_ids" in changes:
        await _check_grant(conn, principal, role, site_ids, region_ids)
    if await store.lock_staff(conn, staff_id) != patch.version:
        raise Conflict(
            f"The account changed since version {patch.version}.", code="stale_version", current_version=current["version"]
        )
    phone = _phone_columns(settings, staff_id, changes.get("phone")) if "phone" in changes else {"phone_enc": None, "phone_index": None}
    await store.update_staff(
        conn,
        id=staff_id,
        version=patch.version,
        display_name=changes.get("display_name"),
        role=role.value if "role" in changes else None,
        active=changes.get("active"),
        password_hash=await hash_password(changes["password"]) if "password" in changes else None,
        set_phone="phone" in changes,
        **phone,
    )
    if "site_ids" in changes or "role" in changes:
        await store.set_staff_sites(conn, staff_id, site_ids)
    if "region_ids" in changes:
        await store.set_staff_regions(conn, staff_id, region_ids)
    if changes.get("active") is False or "password" in changes:
        # Existing logins end; access tokens already issued lapse within their lifetime.
        await store.revoke_staff_refresh_tokens(conn, staff_id)
    await bus.emit(
        conn,
        "access.staff_updated",
        site_id=site_ids[0] if site_ids else None,
        subject_id=staff_id,
        actor=principal.ref,
        data={"fields": sorted(changes)},
    )
    return await _reload(conn, settings, staff_id)


# --- API clients ---------------------------------------------------------------------


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def _check_client_scope(principal: Principal, data: ApiClientCreate, site_ids: list[UUID] | None) -> None:
    """A client must have a scope: sites for logistics and lab, a facility for a hospital.

    A key without one would see nothing (``Principal.site_scope``), so it is refused
    rather than handed out. A hospital's scope is its facility; its sites, if given,
    narrow the transfers it sees to those from these sites (null: from every site).
    """
    if data.role == "hospital":
        if data.facility_id is None:
            raise InvalidInput("A hospital client speaks for a facility: give facility_id.", code="facility_required", field="facility_id")
    elif data.facility_id is not None:
        raise InvalidInput("Only hospital clients speak for a facility.", code="facility_only_for_hospital", field="facility_id")
    elif site_ids is None:
        raise InvalidInput("Give the sites this client serves.", code="sites_required", field="site_ids")
    if site_ids is None:
        if not principal.all_sites:
            raise Forbidden("Only the command centre creates clients for every site.", code="all_sites_not_allowed")
        return
    if not site_ids:
        raise InvalidInput("Give at least one site, or null for every site.", code="sites_required", field="site_ids")
    if any(not principal.can_access_site(s) for s in site_ids):
        raise NotFound("No such site.", code="site_not_found", field="site_ids")


async def create_client(
    conn: asyncpg.Connection, principal: Principal, data: ApiClientCreate, *, preset_key: str | None = None
) -> ApiClientCreated:
    """A new integration client and its API key (returned once, stored only hashed).

    ``preset_key`` is for the demo seed only (predictable keys on a demo database).
    """
    _require_admin(principal)
    site_ids = None if data.site_ids is None else sorted(set(data.site_ids))
    _check_client_scope(principal, data, site_ids)
    key = preset_key or new_api_key()
    client_id = await store.insert_client(
        conn,
        site_ids,
        id=uuid.uuid4(),
        name=data.name,
        role=data.role.value,
        key_hash=_sha256(key),
        key_prefix=key[:12],
        facility_id=data.facility_id,
        created_by=principal.ref,
    )
    await bus.emit(
        conn,
        "access.client_created",
        site_id=site_ids[0] if site_ids else None,
        subject_id=client_id,
        actor=principal.ref,
        data={"role": data.role.value, "site_ids": None if site_ids is None else [str(s) for s in site_ids]},
    )
    client = (await store.list_clients(conn, None, ids=[client_id], after_id=None, limit=1))[0]
    return ApiClientCreated(**msgspec.structs.asdict(client), api_key=key)


def client_creation(
    principal: Principal, data: ApiClientCreate
) -> tuple[Callable[[asyncpg.Connection], Awaitable[ApiClientCreated]], Callable[[ApiClientCreated], ApiClientCreated]]:
    """(work, with_key) for the idempotent write paths.

    ``work`` answers the client without its key, so the response stored for
    Idempotency-Key replays never holds the secret; ``with_key`` puts the key
    back when this very call created the client (a replay answers ``api_key: null``).
    """
    keys: dict[UUID, str | None] = {}

    async def work(conn: asyncpg.Connection) -> ApiClientCreated:
        client = await create_client(conn, principal, data)
        keys[client.id] = client.api_key
        return msgspec.structs.replace(client, api_key=None)

    def with_key(stored: ApiClientCreated) -> ApiClientCreated:
        return msgspec.structs.replace(stored, api_key=keys.get(stored.id))

    return work, with_key


async def list_clients(conn: asyncpg.Connection, principal: Principal, *, cursor: str | None, limit: int) -> Page[ApiClient]:
    _require_admin(principal)
    check_limit(limit)
    after = decode_cursor(cursor, [UUID])
    rows = await store.list_clients(conn, principal.site_scope, ids=None, after_id=after[0] if after else None, limit=limit + 1)
    return page_of(rows, limit, lambda c: [str(c.id)])


async def get_clients(conn: asyncpg.Connection, principal: Principal, ids: list[UUID]) -> dict[UUID, ApiClient]:
    if principal.role not in STAFF_ADMIN_ROLES:
        return {}
    return {c.id: c for c in await store.list_clients(conn, principal.site_scope, ids=ids, after_id=None, limit=len(ids) or 1)}


async def revoke_client(db: Any, conn: asyncpg.Connection, principal: Principal, client_id: UUID) -> ApiClient:
    """Revoke an API key: at once on this instance, on others when the event arrives (or the cache TTL)."""
    _require_admin(principal)
    if client_id not in await get_clients(conn, principal, [client_id]):
        raise NotFound("No such API client.", code="client_not_found")
    await store.revoke_client(conn, client_id)
    await bus.emit(conn, CLIENT_REVOKED, site_id=None, subject_id=client_id, actor=principal.ref)
    if db is not None:
        api_key_cache(db).evict(client_id)
    return (await store.list_clients(conn, None, ids=[client_id], after_id=None, limit=1))[0]


# --- audit log --------------------------------------------------------------------------


async def list_audit(
    conn: asyncpg.Connection,
    principal: Principal,
    *,
    site_id: UUID | None = None,
    subject_id: UUID | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None,
    limit: int,
) -> Page[AuditEntry]:
    """Audit rows, newest first (command centre only)."""
    if principal.role is not Role.COMMAND:
        raise Forbidden("Only the command centre reads the audit log.", code="role_not_allowed")
    check_limit(limit)
    after = decode_cursor(cursor, [int])
    rows = await store.list_audit(
        conn,
        principal.site_scope,
        site_id=site_id,
        subject_id=subject_id,
        actor=actor,
        since=since,
        until=until,
        before_id=after[0] if after else None,
        limit=limit + 1,
    )
    return page_of(rows, limit, lambda e: [e.id])
