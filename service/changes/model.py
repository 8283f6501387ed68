"""The change feed's records."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec


class Change(msgspec.Struct, kw_only=True):
    """One committed change, as the outbox recorded it.

    ``cursor`` resumes just after this change. ``id`` (the outbox event id) is unique: an app
    that may see a change twice (a catch-up page and the live stream) skips an id it applied.
    ``version`` is the record's own version after the change (the number a mutation takes back
    as ``version``) when the record has one and the event carries it; None otherwise.
    """

    cursor: str
    id: int
    type: str
    entity: str
    entity_id: UUID | None
    entity_ids: list[UUID]
    site_id: UUID | None
    version: int | None
    tombstone: bool
    data: dict[str, Any]
    at: datetime


class ChangePage(msgspec.Struct, kw_only=True):
    changes: list[Change]
    next_cursor: str
    has_more: bool
