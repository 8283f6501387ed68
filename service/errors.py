"""Domain errors and their one mapping to RFC 9457 problem+json and GraphQL userErrors.

Services raise a DomainError subclass; it carries its HTTP status and a stable
machine-readable ``code``. REST turns it into problem+json here; GraphQL turns it
into a ``userErrors`` entry (see service/api/graphql.py). Anything else is a bug:
it answers a generic 500 with the request id and no detail.

PostgreSQL being down, restarting, hung or saturated is neither: ``unavailable`` maps
those errors to ``Unavailable`` / ``Busy`` (503 with Retry-After, logged as a warning
with an event name, no traceback). ``Database`` raises them at the source; the edges
map any that arrive raw.

Database constraints are the last line of defence for invariants; a violation
of a named constraint is translated to a Conflict with the code registered for
that constraint in ``CONSTRAINT_CODES`` (domains add theirs in their store).
"""

from __future__ import annotations

import copy
import logging
import re
import uuid
from typing import Any, ClassVar

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException, ValidationException
from litestar.types import ExceptionHandlersMap

from service.observability import CLIENT_DISCONNECTED, STATUS_CLIENT_CLOSED, current_request_id

log = logging.getLogger("qsite.errors")

PROBLEM_JSON = "application/problem+json"


class DomainError(Exception):
    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.field = field
        self.extra = extra
        self.headers: dict[str, str] = {}


class InvalidInput(DomainError, ValueError):
    # Also a ValueError: msgspec wraps a ValueError raised by a Struct's validator (__post_init__)
    # in a ValidationError that says where in the input the Struct stands; ``input_error`` joins
    # that path to the field the validator named (``resident`` + ``document_number``).
    status, default_code, title = 422, "invalid_input", "Invalid input"


class Unauthorized(DomainError):
    status, default_code, title = 401, "unauthorized", "Authentication required"


class Forbidden(DomainError):
    status, default_code, title = 403, "forbidden", "Not allowed"


class NotFound(DomainError):
    status, default_code, title = 404, "not_found", "Not found"


class Conflict(DomainError):
    status, default_code, title = 409, "conflict", "Conflict"


class RuleViolated(DomainError):
    """The request is well-formed but a domain rule refuses it (e.g. release before the period is served)."""

    status, default_code, title = 422, "rule_violated", "Rule violated"


class Unavailable(DomainError):
    """PostgreSQL cannot serve the request now: down, restarting, hung, or every connection busy.

    Not the caller's fault and not a bug: 503 with ``Retry-After``, in GraphQL a top-level
    error with this code (never a mutation's userError: the app must retry, not give up).
    """

    status, default_code, title = 503, "database_unavailable", "Database unavailable"
    retry_after: ClassVar[int] = 2

    def __init__(self, message: str = "The database cannot be reached; retry shortly.", *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.headers["Retry-After"] = str(self.retry_after)


class Busy(Unavailable):
    """A statement ran past ``statement_timeout`` or waited too long for a lock.

    503 rather than 409: nothing about the request or the record is wrong, and the same
    request succeeds once the contention passes (a 409 asks the caller to change something).
    """

    default_code, title = "busy", "Database busy"
    retry_after = 1

    def __init__(self, message: str = "The database is busy with this record; retry shortly.", *, code: str | None = None) -> None:
        super().__init__(message, code=code)


class RateLimited(DomainError):
    status, default_code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, message: str, *, retry_after: int, **extra: Any) -> None:
        super().__init__(message, retry_after=retry_after, **extra)
        self.headers["Retry-After"] = str(retry_after)


# constraint name -> (code, message); filled by domain stores at import time.
CONSTRAINT_CODES: dict[str, tuple[str, str]] = {}


def register_constraint(name: str, code: str, message: str) -> None:
    CONSTRAINT_CODES[name] = (code, message)


# Errors asyncpg raises because of a value the caller sent: a NUL or unpaired
# surrogate in text, a number beyond its column, an impossible date.
_BAD_VALUE_ERRORS = (
    asyncpg.exceptions._base.DataError,  # client side: the value cannot be encoded for its parameter
    asyncpg.CharacterNotInRepertoireError,
    asyncpg.UntranslatableCharacterError,
    asyncpg.NumericValueOutOfRangeError,
    asyncpg.DatetimeFieldOverflowError,
    asyncpg.InvalidTimeZoneDisplacementValueError,  # an offset past ±15:59 in text PostgreSQL parses
    asyncpg.InvalidDatetimeFormatError,
    asyncpg.StringDataRightTruncationError,
    asyncpg.InvalidTextRepresentationError,
)
DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.exceptions._base.DataError, asyncpg.InterfaceError, asyncpg.InternalClientError)

# The server is gone, going, not yet back, or out of room: asyncpg reports it either as a
# SQLSTATE (class 08 connection exceptions, 57P01-57P05 shutdowns, 53 insufficient resources,
# 25P03 an idle transaction the server ended) or as a client-side error.
_UNAVAILABLE_ERRORS = (
    asyncpg.PostgresConnectionError,  # 08xxx, incl. "connection was closed in the middle of operation"
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,  # "the database system is starting up / shutting down"
    asyncpg.IdleSessionTimeoutError,
    asyncpg.InsufficientResourcesError,  # too many connections, disk full, out of memory
    asyncpg.IdleInTransactionSessionTimeoutError,
    OSError,  # refused, reset, unreachable; TimeoutError (connect, command_timeout) is an OSError too
)
_BUSY_ERRORS = (asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError)  # statement_timeout, lock_timeout
# asyncpg's own words for a connection it can no longer use: the server ended it (and the pool
# took it back from under its holder), or its protocol is stuck in an earlier operation (a
# FATAL message from a server going away, a cancelled statement still pending).
_LOST_CONNECTION_MESSAGES = (
    "connection is closed",
    "released back to the pool",
    "another operation",  # "... is in progress", "cannot switch to state N; another operation (M) ..."
    "pool is closing",
)


def unavailable(exc: BaseException) -> Unavailable | None:
    """The outage ``exc`` stands for, if it is one (Busy for timeouts of statements and locks)."""
    if isinstance(exc, _BUSY_ERRORS):
        return Busy()
    if isinstance(exc, _UNAVAILABLE_ERRORS):
        return Unavailable()
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError) and any(m in str(exc) for m in _LOST_CONNECTION_MESSAGES):
        return Unavailable()
    return None


def log_outage(outage: Unavailable, cause: BaseException) -> None:
    """One warning line per failed request, named by the error class: an outage is expected, not a bug."""
    event = "database_busy" if isinstance(outage, Busy) else "database_unavailable"
    log.warning("%s: %s", event, type(cause).__name__, extra={"event": event, "subject": type(cause).__name__})


def connection_lost(exc: BaseException) -> bool:
    """True when the connection that raised ``exc`` must not be used again."""
    return isinstance(exc, TimeoutError) or (unavailable(exc) is not None and not isinstance(exc, _BUSY_ERRORS))


def from_database(exc: BaseException) -> DomainError | None:
    """Translate an expected database error into a DomainError; None means it is a bug (500)."""
    if isinstance(exc, Unavailable):
        return exc
    outage = unavailable(exc)
    if outage is not None:
        return outage
    constraint = getattr(exc, "constraint_name", None)
    if constraint in CONSTRAINT_CODES:
        code, message = CONSTRAINT_CODES[constraint]
        return Conflict(message, code=code)
    if isinstance(exc, asyncpg.SerializationError | asyncpg.DeadlockDetectedError):
        return Conflict("The record changed while the request ran; retry.", code="concurrent_update")
    if isinstance(exc, asyncpg.UniqueViolationError | asyncpg.ExclusionViolationError):
        return Conflict("The record conflicts with one that already exists.", code="already_exists")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return InvalidInput("A referenced record does not exist.", code="unknown_reference")
    if isinstance(exc, asyncpg.CheckViolationError):
        return InvalidInput("A value is out of its allowed range.", code="out_of_range")
    if isinstance(exc, _BAD_VALUE_ERRORS) or type(exc) is asyncpg.DataError:
        # asyncpg.DataError itself (SQLSTATE 22000, no subclass): asyncpg's own wrapping of a value that
        # failed to encode for its parameter, e.g. a time before year 1 once in UTC (OverflowError)
        return InvalidInput("A value cannot be stored (invalid characters, or out of range).", code="invalid_value")
    return None


def graphql_outage(data: dict[str, Any] | None, errors: list[Any]) -> Unavailable | None:
    """The outage to answer with HTTP 503 when it kept every root field of a GraphQL response from being served.

    A response that served any root field stays 200 (GraphQL over HTTP: partial data is data);
    one where every error is an outage and nothing was served is the REST 503, Retry-After included.
    """
    if data and any(value is not None for value in data.values()):
        return None
    outages = [getattr(e, "original_error", None) for e in errors]
    if not outages or not all(isinstance(o, Unavailable) for o in outages):
        return None
    return outages[0]


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details, with qsite's stable ``code`` and the request id."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    field: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None
    extra: dict[str, Any] | None = None


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str | None,
    *,
    field: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    request_id = current_request_id()
    if request_id is None:
        # Raised outside the route middleware (e.g. no route matched): still give the caller an id to quote.
        request_id = uuid.uuid4().hex
        headers = {**(headers or {}), "X-Request-ID": request_id}
    problem = Problem(
        type=f"https://qsite.dev/problems/{code}",
        title=title,
        status=status,
        code=code,
        detail=detail,
        field=field,
        request_id=request_id,
        errors=errors,
        extra=extra or None,
    )
    return Response(msgspec.json.encode(problem), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def domain_error_to_response(_: Request, exc: DomainError) -> Response[bytes]:
    return problem_response(
        exc.status, exc.code, exc.title, exc.message, field=exc.field, extra=exc.extra, headers=exc.headers
    )


def _database_error_to_response(request: Request, exc: Exception) -> Response[bytes]:
    mapped = from_database(exc)
    if mapped is None:
        return _unexpected_to_response(request, exc)
    if isinstance(mapped, Unavailable):
        log_outage(mapped, exc)
    return domain_error_to_response(request, mapped)


_MISSING_FIELD = re.compile(r"Object missing required field `([^`]+)`")
_AT_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


def validation_field(message: str, at: str | None = None) -> str | None:
    """The input a msgspec validation message is about, as a path such as ``members[0].resident.name``.

    ``at`` is where the error was found when the message does not say (Litestar strips
    " - at `$...`" into its ``key``, ``data`` meaning the body itself); a missing field is
    named by its own path, not by the object that lacks it.
    """
    found = _AT_PATH.search(message)
    where = found.group(1) if found else ("" if at in (None, "data") else at)
    missing = _MISSING_FIELD.match(message)
    if missing:
        where = f"{where}.{missing.group(1)}" if where else missing.group(1)
    return where or None


def input_error(exc: msgspec.ValidationError) -> DomainError:
    """The one mapping of a msgspec validation failure of client input to a DomainError.

    A validator's own error keeps its code with its full path (``nested_input_error``); any
    other failure is ``invalid_input`` naming the field msgspec names.
    """
    message = str(exc)
    return nested_input_error(exc) or InvalidInput(message.split(" - at ")[0], code="invalid_input", field=validation_field(message))


def nested_input_error(exc: BaseException) -> DomainError | None:
    """A validator's DomainError behind ``exc`` (msgspec's ValidationError, or Litestar's exception raised
    from one), its field prefixed with where its Struct stands in the input (``members[0].resident`` +
    ``document_number``); None when the failure is msgspec's own."""
    seen: BaseException | None = exc
    while seen is not None:
        cause = seen.__cause__
        if isinstance(seen, msgspec.ValidationError) and isinstance(cause, DomainError):
            found = _AT_PATH.search(str(seen))
            error = copy.copy(cause)  # the cause keeps its own field: mapping twice never prefixes twice
            error.field = ".".join(part for part in (found.group(1) if found else "", cause.field) if part) or None
            return error
        seen = cause
    return None


def _validation_to_response(request: Request, exc: ValidationException) -> Response[bytes]:
    nested = nested_input_error(exc)
    if nested is not None:
        return domain_error_to_response(request, nested)
    errors = exc.extra if isinstance(exc.extra, list) else None
    field = None
    if errors and isinstance(errors[0], dict):
        field = validation_field(str(errors[0].get("message", "")), errors[0].get("key"))
    return problem_response(400, "invalid_request", "Invalid request", exc.detail, field=field, errors=errors)


def _msgspec_validation_to_response(request: Request, exc: msgspec.ValidationError) -> Response[bytes]:
    # Only a validator's error is the client's doing; any other failure to convert is a bug (500).
    nested = nested_input_error(exc)
    return _unexpected_to_response(request, exc) if nested is None else domain_error_to_response(request, nested)


_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _http_to_response(_: Request, exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if status >= 500:
        return _unexpected_to_response(_, exc)
    code = _HTTP_CODES.get(status, "http_error")
    return problem_response(status, code, code.replace("_", " ").capitalize(), exc.detail, headers=exc.headers)


def _unexpected_to_response(request: Request, exc: Exception) -> Response[bytes]:
    if request.scope.get(CLIENT_DISCONNECTED):
        # A body read cut short by a client that went away: its doing, and nobody reads this answer.
        log.info("client disconnected before the response", extra={"event": "client_disconnected"})
        return problem_response(STATUS_CLIENT_CLOSED, "client_disconnected", "Client disconnected", "The client closed the connection.")
    log.exception("unhandled error", exc_info=exc)
    return problem_response(500, "internal_error", "Internal error", "An unexpected error occurred; quote the request id.")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DomainError: domain_error_to_response,
    asyncpg.PostgresError: _database_error_to_response,
    asyncpg.exceptions._base.DataError: _database_error_to_response,
    asyncpg.InterfaceError: _database_error_to_response,
    asyncpg.InternalClientError: _database_error_to_response,
    ValidationException: _validation_to_response,
    msgspec.ValidationError: _msgspec_validation_to_response,
    NotAuthorizedException: _http_to_response,
    PermissionDeniedException: _http_to_response,
    HTTPException: _http_to_response,
    Exception: _unexpected_to_response,
}

__all__ = [
    "CONSTRAINT_CODES",
    "DATABASE_ERRORS",
    "Busy",
    "Conflict",
    "DomainError",
    "EXCEPTION_HANDLERS",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "RateLimited",
    "RuleViolated",
    "Unauthorized",
    "Unavailable",
    "connection_lost",
    "graphql_outage",
    "log_outage",
    "from_database",
    "input_error",
    "nested_input_error",
    "register_constraint",
    "unavailable",
]
