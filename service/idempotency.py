"""Idempotency-Key: a retried write answers what the first attempt answered.

Phones on poor networks resend; integrations retry on timeouts. A write that
carries an ``Idempotency-Key`` header is run through ``run_once``:

- first time: the work runs and its response is stored in the *same*
  transaction, so either both persist or neither does;
- same key and same request again: the stored status and body, untouched;
- same key, different request: 422 ``idempotency_key_reused``;
- same key while the first is still running: 409 ``idempotency_in_progress``.

This is the ONE mechanism, for REST and GraphQL alike; what differs is only what
identifies "the request" (its fingerprint):

- REST (``respond``): method, path with its ids, query, and the body as canonical
  JSON (so a re-serialised retry with keys in another order still replays);
- GraphQL (``service.gql.mutate``): the root field and its FULL argument values
  after variable substitution, whether sent inline or as variables. The key is
  scoped per root field (response name), so one document may carry several.

Answers that must not be kept (an unmasked resident) use ``replay=False``: the key
still binds to one input (other input: 422; in flight: 409), but a retry with the
same input runs again instead of reading a stored copy.

Keys are scoped to the caller (another principal's key never replays) and kept
``idempotency_ttl_days`` (at least 7) before the sweep removes them. A refused
attempt (a DomainError, a constraint) stores no answer, so a retry runs anew; but
its key stays bound to its request, so the key sent with another request is refused.
Only login, refresh and logout take no key: they mint or end credentials, and an
anonymous key has no owner to scope it to.

Queued offline writes (``syncWrites``, service/offline.py) use the same mechanism with one
key per item and ``wait=True``: an item whose key another instance is running waits for that
attempt to finish (then answers its stored result) instead of answering ``idempotency_in_progress``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import asyncpg
import msgspec
from litestar import Request, Response

from service.db import Database, purge_in_batches
from service.errors import DATABASE_ERRORS, Conflict, DomainError, InvalidInput, Unavailable

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255

Work = Callable[[asyncpg.Connection], Awaitable[Any]]

# Two statements, in this order: the lookup must take its snapshot after the lock
# is held, or it could miss the row of an attempt that committed in between.
_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 0))"
# The same lock, waited for (bounded by statement_timeout: a stuck holder answers Busy).
_WAIT = "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 0)) IS NOT NULL"
_LOOKUP = "SELECT request_hash, status_code, response FROM idempotency_keys WHERE principal = $1 AND key = $2"
# Stores the answer, also over a key bound by an earlier refused attempt of the same request;
# no row back means another attempt stored its answer meanwhile.
_STORE = """
INSERT INTO idempotency_keys AS k (principal, key, request_hash, status_code, response)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (principal, key) DO UPDATE SET status_code = excluded.status_code, response = excluded.response
    WHERE k.status_code = 0 AND k.request_hash = excluded.request_hash
RETURNING true
"""
_BIND = """
INSERT INTO idempotency_keys (principal, key, request_hash, status_code, response)
VALUES ($1, $2, $3, $4, '')
ON CONFLICT (principal, key) DO NOTHING
"""


# status_code of a key whose answer was not kept (replay=False): bound to its request only.
_NOT_KEPT = 0


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


def canonical_json(body: bytes) -> bytes:
    """The body re-encoded with sorted keys and no spacing; bytes that are not JSON stay as they are."""
    try:
        return msgspec.json.encode(msgspec.json.decode(body), order="sorted")
    except (msgspec.DecodeError, RecursionError):
        return body


def request_fingerprint(*parts: bytes | str) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.digest()


class Answer(NamedTuple):
    status: int
    body: bytes
    replayed: bool  # True: the stored answer of an earlier attempt; ``work`` did not run


async def run_once(
    db: Database,
    *,
    caller: str,
    key: str | None,
    fingerprint: bytes,
    work: Work,
    encode: Callable[[Any], bytes] = msgspec.json.encode,
    status_code: int = 201,
    replay: bool = True,
) -> tuple[int, bytes]:
    """Run ``work`` in one transaction, at most once per (caller, key); returns (status, body).

    ``replay=False``: the key is bound to the fingerprint, but the answer is not stored;
    the same request again runs ``work`` again.
    """
    answer = await answer_once(
        db, caller=caller, key=key, fingerprint=fingerprint, work=work, encode=encode, status_code=status_code, replay=replay
    )
    return answer.status, answer.body


async def answer_once(
    db: Database,
    *,
    caller: str,
    key: str | None,
    fingerprint: bytes,
    work: Work,
    encode: Callable[[Any], bytes] = msgspec.json.encode,
    status_code: int = 201,
    replay: bool = True,
    wait: bool = False,
) -> Answer:
    """``run_once`` that also says whether the answer was replayed; ``wait``: wait for an attempt in flight."""
    if key is None:
        async with db.transaction() as conn:
            return Answer(status_code, encode(await work(conn)), False)
    for _ in range(2):
        work_failed = False
        try:
            async with db.transaction() as conn:
                locked = await conn.fetchval(_WAIT if wait else _LOCK, caller, key)
                stored = await conn.fetchrow(_LOOKUP, caller, key)
                if stored is not None:
                    stored_hash, stored_status, stored_body = stored
                    if bytes(stored_hash) != fingerprint:
                        raise InvalidInput(
                            "This Idempotency-Key was already used with a different request.",
                            code="idempotency_key_reused",
                            field=HEADER,
                        )
                    if stored_status != _NOT_KEPT:
                        return Answer(stored_status, bytes(stored_body), True)
                if not locked:
                    raise Conflict(
                        "A request with this Idempotency-Key is still being processed; retry shortly.",
                        code="idempotency_in_progress",
                    )
                work_failed = True
                body = encode(await work(conn))
                work_failed = False
                kept = (status_code, body) if replay else (_NOT_KEPT, b"")
                if await conn.fetchval(_STORE, caller, key, fingerprint, *kept) is None:
                    raise _StoredMeanwhile
                return Answer(status_code, body, False)
        except _StoredMeanwhile:
            continue
        except (DomainError, *DATABASE_ERRORS) as exc:
            if work_failed and not isinstance(exc, Unavailable):  # in an outage binding would fail too
                await _bind(db, caller, key, fingerprint)
            raise
    raise Conflict("A request with this Idempotency-Key is still being processed; retry shortly.", code="idempotency_in_progress")


async def _bind(db: Database, caller: str, key: str, fingerprint: bytes) -> None:
    """After a refused attempt: keep the key bound to its request (nothing to replay), so that
    reusing it for another request answers idempotency_key_reused whether or not the first succeeded."""
    with contextlib.suppress(*DATABASE_ERRORS, OSError, Unavailable):
        async with db.transaction() as conn:
            await conn.execute(_BIND, caller, key, fingerprint, _NOT_KEPT)


async def request_key(request: Request) -> tuple[str | None, bytes | None]:
    """The request's Idempotency-Key (validated) and the fingerprint of what it was sent with."""
    key = validate_key(request.headers.get(HEADER))
    if key is None:
        return None, None
    return key, request_fingerprint(request.method, request.url.path, request.url.query, canonical_json(await request.body()))


async def respond(
    request: Request, db: Database, caller: str, work: Work, *, status_code: int = 201, replay: bool = True
) -> Response[Any]:  # the JSON of work's result: the route declares its type
    """The REST write path: run ``work`` once per Idempotency-Key and answer its JSON."""
    key, fingerprint = await request_key(request)
    status, body = await run_once(
        db, caller=caller, key=key, fingerprint=fingerprint or b"", work=work, status_code=status_code, replay=replay
    )
    return Response(body, status_code=status, media_type="application/json")


_PURGE = """
DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(days => $1)
    LIMIT $2 FOR UPDATE SKIP LOCKED))
"""


async def purge_expired(db: Database, days: int, batch: int) -> int:
    """Retention: keys older than ``days`` (``idempotency_ttl_days``), in batches."""
    return await purge_in_batches(db, batch, lambda conn, n: conn.execute(_PURGE, days, n))
