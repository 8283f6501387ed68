"""Cursor pagination shared by REST (``limit``/``cursor``) and GraphQL (``first``/``after``).

A cursor is the opaque encoding of the sort key of the last item returned; a
store query resumes with ``WHERE (sort key) > (cursor values)``. Clients must
treat cursors as opaque strings.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import msgspec

from service.errors import InvalidInput

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 100


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(list(values))).decode().rstrip("=")


def decode_cursor(cursor: str | None, types: Sequence[type]) -> list[Any] | None:
    """The sort-key values in ``cursor`` converted to ``types``; None for the first page."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = msgspec.json.decode(raw)
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError
        return [msgspec.convert(v, t, strict=False) for v, t in zip(values, types, strict=True)]
    except (ValueError, msgspec.ValidationError, msgspec.DecodeError):
        raise InvalidInput("The cursor is not one this API issued.", code="invalid_cursor", field="cursor") from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}.", code="invalid_limit", field="limit")
    return limit


def page_of(rows: list[T], limit: int, sort_key: Callable[[T], Sequence[Any]]) -> Page[T]:
    """Build a page from ``limit + 1`` fetched rows: the extra row only says there is more."""
    items = rows[:limit]
    more = len(rows) > limit
    return Page(items=items, next_cursor=encode_cursor(sort_key(items[-1])) if more and items else None)
