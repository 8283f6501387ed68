"""The HTTP edge shared by every route: body limits before decoding, ETags and 304s, query parameters.

- ``BodyLimits`` (middleware, every REST route and /graphql, login included): a body
  larger than ``max_body_bytes`` answers 413 and JSON nested deeper than
  ``max_json_depth`` answers 400 ``json_too_deep``, before any decoder recurses into it.
- ``decode_json`` is the same check plus decoding, for code that decodes JSON itself
  (GraphQL variables in a query string, for instance).
- ``direct(answer)`` (a route option): a hot write route answered by ``BodyLimits`` from the body
  it has just checked and decoded, without Litestar's per-request handler layer.
"""

from __future__ import annotations

import hashlib
import re
import weakref
from collections.abc import Awaitable, Callable
from datetime import datetime
from itertools import accumulate
from typing import Any, overload
from urllib.parse import unquote_plus

import msgspec
from litestar import Request, Response
from litestar.exceptions import ValidationException
from litestar.params import Parameter as ParameterMarker
from litestar.types import ASGIApp, HTTPResponseStartEvent, Receive, Scope, Send

from service.errors import DomainError, InvalidInput, nested_input_error

ETAG_HEADER = "ETag"

# Query parameters of every list route, declared once.
LimitParam = ParameterMarker(query="limit", ge=1, le=100, default=50, description="Page size (1-100).")
CursorParam = ParameterMarker(
    query="cursor", default=None, max_length=512, description="Opaque cursor from the previous page's next_cursor."
)


# Instants in query strings: RFC 3339 with an offset, nothing looser. Litestar would
# also take a bare number as a Unix time, which the contract does not promise.
RFC3339 = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"


def instant_param(name: str, description: str, *, required: bool = False) -> Any:
    """A query parameter holding an instant; parse it with ``parse_instant``."""
    if required:
        return ParameterMarker(query=name, pattern=RFC3339, max_length=40, description=description)
    return ParameterMarker(query=name, pattern=RFC3339, max_length=40, description=description, default=None)


@overload
def parse_instant(value: str, field: str) -> datetime: ...
@overload
def parse_instant(value: None, field: str) -> None: ...
@overload
def parse_instant(value: str | None, field: str) -> datetime | None: ...
def parse_instant(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return msgspec.convert(value, datetime)
    except msgspec.ValidationError:
        raise InvalidInput(f"{field} is not an RFC 3339 instant.", code="invalid_instant", field=field) from None


# --- body limits ----------------------------------------------------------------

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_NOT_BRACKETS_OR_QUOTES = bytes(b for b in range(256) if b not in b'[]{}"')
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded")


def json_depth(text: bytes | str) -> int:
    """How deep arrays and objects nest in ``text``, without parsing it (no recursion, C-speed scans)."""
    raw = text.encode() if isinstance(text, str) else text
    if b"\\" not in raw and raw.count(b'"') % 2 == 0:
        # Without escapes, strings are what lies between a quote and the next: every other piece
        # between quotes. Same answer as the expression below, 3-4x faster on a batch body.
        brackets = b"".join(raw.translate(None, _NOT_BRACKETS_OR_QUOTES).split(b'"')[::2])
    else:
        brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def check_json_depth(text: bytes | str, max_depth: int) -> None:
    if json_depth(text) > max_depth:
        raise DomainError(f"JSON nests deeper than {max_depth} levels.", code="json_too_deep")


def decode_json(text: bytes | str, *, max_depth: int, type: Any = Any) -> Any:
    """Decode JSON received from a client: 400 ``json_too_deep`` / ``invalid_json`` instead of a RecursionError."""
    check_json_depth(text, max_depth)
    try:
        return msgspec.json.decode(text, type=type)
    except msgspec.DecodeError as exc:
        raise DomainError(f"The JSON cannot be decoded: {exc}", code="invalid_json") from None


# Route option (``opt=direct(answer)``): ``answer(scope, data)`` gets the body ``BodyLimits`` has
# just checked and decoded strictly into the handler's ``data`` type, and returns the encoded JSON
# answer (sent with the route's status code), or None to let the route's handler answer as usual.
DIRECT_OPT = "qsite.direct"
DirectAnswer = Callable[[Scope, Any], Awaitable[bytes | None]]
_JSON_HEADER = (b"content-type", b"application/json")


def direct(answer: DirectAnswer) -> dict[str, DirectAnswer]:
    """A hot route answered without Litestar's handler layer (signature model, dependencies, a
    second, lax decode of the body, Response and ASGIResponse objects): ~a fifth of a single
    check-in's server CPU. What the route's handler would have checked must be checked by
    ``answer`` (the authentication middleware has run, the body's types and validators too)."""
    return {DIRECT_OPT: answer}


class BodyLimits:
    """Reads the body once (Litestar keeps it for the handler) and refuses what is too big or too deep.

    Litestar enforces ``request_max_body_size`` while reading (413, before buffering more);
    the depth check covers every body but forms, whatever its declared content type, and
    the query string (GraphQL over GET carries JSON variables there). A route with a ``direct``
    answer is answered here once its body has passed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            max_depth = scope["app"].state.settings.max_json_depth
            if scope.get("query_string"):
                check_json_depth(unquote_plus(scope["query_string"].decode("latin-1")), max_depth)
            if scope.get("method") in ("POST", "PUT", "PATCH", "DELETE"):
                # The raw header (ASGI names are lower case): no Headers object for one lookup.
                content_type = next((value for name, value in scope["headers"] if name == b"content-type"), b"")
                if not content_type.startswith(_FORM_TYPES):
                    body = await Request(scope, receive).body()
                    check_json_depth(body, max_depth)
                    data = check_body_types(scope, body)
                    if data is not _UNDECODED and await _answered_directly(scope, send, data):
                        return
        await self.app(scope, receive, send)


async def _answered_directly(scope: Scope, send: Send, data: Any) -> bool:
    """Whether the route's ``direct`` answer (if it has one) answered the request."""
    handler: Any = scope.get("route_handler")
    answer = handler.opt.get(DIRECT_OPT) if handler is not None else None
    body = await answer(scope, data) if answer is not None else None
    if body is None:
        return False
    start: HTTPResponseStartEvent = {
        "type": "http.response.start", "status": handler.status_code, "headers": [_JSON_HEADER, (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return True


# --- strict body types --------------------------------------------------------------

# Keyed by the handler itself, weakly: an id() would be reused by the next app's handlers (tests build many).
_BODY_TYPES: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _body_type(handler: Any) -> Any:
    """The type a handler's ``data`` is declared as (None: it takes no JSON body)."""
    if handler is None:
        return None
    if handler not in _BODY_TYPES:
        data = handler.parsed_fn_signature.parameters.get("data")
        _BODY_TYPES[handler] = data.annotation if data is not None and not data.is_any else None
    return _BODY_TYPES[handler]


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


_UNDECODED = object()  # check_body_types: no typed body to hand on


def check_body_types(scope: Scope, body: bytes) -> Any:
    """A JSON body must match its declared types as the schema says: ``0`` is no boolean, ``"5"`` no integer.

    Litestar converts ``data`` in msgspec's lax mode (it must, for query strings), which would
    accept them; decoding strictly first refuses them with the 400 Litestar gives any bad body.
    A body that is not JSON at all is left to Litestar, which answers it the same way.
    Returns the decoded ``data`` (what Litestar's lax decoding gives for a body that passes the
    strict one), or ``_UNDECODED``.
    """
    target = _body_type(scope.get("route_handler"))
    if target is None or not body:
        return _UNDECODED
    try:
        try:
            return msgspec.json.decode(body, type=target, strict=True)
        except msgspec.ValidationError as exc:
            if "got `float`" not in str(exc):
                raise
            # JSON Schema counts 1.0 as an integer (msgspec's strict mode does not): judge again with
            # integral numbers as integers. Only on this rare path, so ordinary bodies pay one C decode.
            return msgspec.convert(_integral(msgspec.json.decode(body)), type=target, strict=True)
    except msgspec.ValidationError as exc:
        if (nested := nested_input_error(exc)) is not None:
            raise nested from None  # a validator's own code, at its path in the body
        message, _, where = str(exc).partition(" - at `$")
        key = where.rstrip("`").lstrip(".")
        raise ValidationException(
            detail=f"Validation failed for {scope.get('method')} {scope.get('path')}",
            extra=[{"message": message, "key": key or "data", "source": "body"}],
        ) from None
    except (msgspec.DecodeError, TypeError):
        return _UNDECODED  # not JSON, or a type only Litestar's decoders know: Litestar judges it as before


# --- ETags -------------------------------------------------------------------------


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag[:2] in ("W/", "w/") else tag


def if_none_match(request: Request[Any, Any, Any], etag: str) -> bool:
    """RFC 9110 13.1.2: If-None-Match uses the weak comparison, so ``W/"x"`` matches ``"x"``."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    return header.strip() == "*" or _opaque(etag) in (_opaque(tag) for tag in header.split(","))


def json_with_etag(request: Request[Any, Any, Any], value: Any) -> Response[Any]:
    """Encode ``value``; answer 304 when the caller already holds this representation."""
    body = msgspec.json.encode(value)
    etag = strong_etag(body)
    if if_none_match(request, etag):
        return Response(b"", status_code=304, headers={ETAG_HEADER: etag})
    return Response(body, media_type="application/json", headers={ETAG_HEADER: etag})


def answer_head_as_get(handler: ASGIApp) -> ASGIApp:
    """HEAD is GET without the body (RFC 9110 9.3.2: every server supports it).

    Litestar 2 routes HEAD only to explicit ``@head`` handlers, so a HEAD on any
    GET route answered 405. It wraps the app's router (after routing would be too
    late), so the GET route's authentication, policy, ETag and 304 apply as they are;
    the GET's headers (``Content-Length`` included) are kept and its body dropped.
    """

    async def head_as_get(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await handler(scope, receive, send)
            return

        async def headers_only(message: Any) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body"):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await handler({**scope, "method": "GET"}, receive, headers_only)  # type: ignore[arg-type]

    return head_as_get
