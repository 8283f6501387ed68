"""REST helpers shared by every controller: JSON with a strong ETag and 304 on If-None-Match."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.params import Parameter as ParameterMarker

ETAG_HEADER = "ETag"

# Query parameters of every list route, declared once.
LimitParam = ParameterMarker(query="limit", ge=1, le=100, default=50, description="Page size (1-100).")
CursorParam = ParameterMarker(
    query="cursor", default=None, max_length=512, description="Opaque cursor from the previous page's next_cursor."
)


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
