"""Webhooks' records: what a caller registers, what it reads back, each delivery's state."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

Url = Annotated[str, msgspec.Meta(min_length=8, max_length=2000)]
class EventWebhookCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: Url
    # Event types (`transfers.dispatched`) or domains (`transfers`), as the change feed's `types`; checked by the
    # service (422 `invalid_input`): the OpenAPI cannot carry a pattern for a list's items.
    events: Annotated[list[str], msgspec.Meta(min_length=1, max_length=50)]


class EventWebhook(msgspec.Struct, kw_only=True):
    """A webhook: ``events`` are the event types or domains it hears (of those its owner may read)."""

    id: UUID
    url: str
    events: list[str]
    active: bool
    created_at: datetime


class EventWebhookCreated(msgspec.Struct, kw_only=True):
    """The new webhook and its signing secret: shown this once, never again."""

    webhook: EventWebhook
    secret: str


class Delivery(msgspec.Struct, kw_only=True):
    id: int
    event_id: int
    event_type: str
    state: str
    attempts: int
    last_status: int | None
    created_at: datetime
    delivered_at: datetime | None
