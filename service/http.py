"""REST helpers shared by every controller: JSON with a strong ETag and 304 on If-None-Match."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.params import Parameter as ParameterMarker

from service.errors import InvalidInput

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
    extra = {} if required else {"default": None}
    return ParameterMarker(query=name, pattern=RFC3339, max_length=40, description=description, **extra)


def parse_instant(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return msgspec.convert(value, datetime)
    except msgspec.ValidationError:
        raise InvalidInput(f"{field} is not an RFC 3339 instant.", code="invalid_instant", field=field) from None


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def if_none_match(request: Request[Any, Any, Any], etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    return header.strip() == "*" or etag in (tag.strip() for tag in header.split(","))


def json_with_etag(request: Request[Any, Any, Any], value: Any) -> Response[Any]:
    """Encode ``value``; answer 304 when the caller already holds this representation."""
    body = msgspec.json.encode(value)
    etag = strong_etag(body)
    if if_none_match(request, etag):
        return Response(b"", status_code=304, headers={ETAG_HEADER: etag})
    return Response(body, media_type="application/json", headers={ETAG_HEADER: etag})
