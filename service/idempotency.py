"""Idempotency-Key: a retried write answers what the first attempt answered.

Phones on poor networks resend; integrations retry on timeouts. A write that
carries an ``Idempotency-Key`` header is run through ``run_once``:

- first time: the work runs and its response is stored in the *same*
  transaction, so either both persist or neither does;
- same key and same request again: the stored status and body, untouched;
- same key, different request: 422 ``idempotency_key_reused``;
- same key while the first is still running: 409 ``idempotency_in_progress``.

Keys are scoped to the caller (another principal's key never replays) and kept
``idempotency_ttl_days`` (at least 7) before the sweep removes them. Failed
attempts are not stored: their transaction rolled back, so a retry runs anew.
REST POST handlers use ``respond``; GraphQL mutations use ``run_once`` through
their context with the key header of the GraphQL request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response

from service.db import Database, purge_in_batches
from service.errors import Conflict, InvalidInput

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255

Work = Callable[[asyncpg.Connection], Awaitable[Any]]

# Two statements, in this order: the lookup must take its snapshot after the lock
# is held, or it could miss the row of an attempt that committed in between.
_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 0))"
_LOOKUP = "SELECT request_hash, status_code, response FROM idempotency_keys WHERE principal = $1 AND key = $2"
_STORE = """
INSERT INTO idempotency_keys (principal, key, request_hash, status_code, response)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (principal, key) DO NOTHING
RETURNING true
"""


class _StoredMeanwhile(Exception):
    """Another attempt committed between our lookup and our insert; look again."""


def validate_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidInput(
            f"{HEADER} must be 1-{MAX_KEY_LENGTH} printable ASCII characters.", code="invalid_idempotency_key", field=HEADER
        )
    return key


def request_fingerprint(*parts: bytes | str) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.digest()


async def run_once(
    db: Database,
    *,
    caller: str,
    key: str | None,
    fingerprint: bytes,
    work: Work,
    encode: Callable[[Any], bytes] = msgspec.json.encode,
    status_code: int = 201,
) -> tuple[int, bytes]:
    """Run ``work`` in one transaction, at most once per (caller, key); returns (status, body)."""
    if key is None:
        async with db.transaction() as conn:
            return status_code, encode(await work(conn))
    for _ in range(2):
        try:
            async with db.transaction() as conn:
                locked = await conn.fetchval(_LOCK, caller, key)
                stored = await conn.fetchrow(_LOOKUP, caller, key)
                if stored is not None:
                    stored_hash, stored_status, stored_body = stored
                    if bytes(stored_hash) != fingerprint:
                        raise InvalidInput(
                            "This Idempotency-Key was already used with a different request.",
                            code="idempotency_key_reused",
                            field=HEADER,
                        )
                    return stored_status, bytes(stored_body)
                if not locked:
                    raise Conflict(
                        "A request with this Idempotency-Key is still being processed; retry shortly.",
                        code="idempotency_in_progress",
                    )
                body = encode(await work(conn))
                if await conn.fetchval(_STORE, caller, key, fingerprint, status_code, body) is None:
                    raise _StoredMeanwhile
                return status_code, body
        except _StoredMeanwhile:
            continue
    raise Conflict("A request with this Idempotency-Key is still being processed; retry shortly.", code="idempotency_in_progress")


async def request_key(request: Request) -> tuple[str | None, bytes | None]:
    """The request's Idempotency-Key (validated) and the fingerprint of what it was sent with."""
    key = validate_key(request.headers.get(HEADER))
    if key is None:
        return None, None
    return key, request_fingerprint(request.method, request.url.path, request.url.query, await request.body())


async def respond(request: Request, db: Database, caller: str, work: Work, *, status_code: int = 201) -> Response[bytes]:
    """The REST write path: run ``work`` once per Idempotency-Key and answer its JSON."""
    key, fingerprint = await request_key(request)
    status, body = await run_once(db, caller=caller, key=key, fingerprint=fingerprint or b"", work=work, status_code=status_code)
    return Response(body, status_code=status, media_type="application/json")


_PURGE = """
DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(days => $1)
    LIMIT $2 FOR UPDATE SKIP LOCKED))
"""


async def purge_expired(db: Database, days: int, batch: int) -> int:
    """Retention: keys older than ``days`` (``idempotency_ttl_days``), in batches."""
    return await purge_in_batches(db, batch, lambda conn, n: conn.execute(_PURGE, days, n))
