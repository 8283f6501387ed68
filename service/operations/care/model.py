"""Resident care: vulnerability flags, care requests and their states, stock issued against a request."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated
from uuid import UUID

import msgspec

from service.fields import Version


class Vulnerability(StrEnum):
    """Why a resident needs closer care; health data (role-limited, writes audited)."""

    ELDERLY = "elderly"
    CHILD = "child"
    PREGNANT = "pregnant"
    CHRONIC_DISEASE = "chronic_disease"
    DISABILITY = "disability"
    MENTAL_HEALTH = "mental_health"
    MEDICATION_NEEDS = "medication_needs"


class CareKind(StrEnum):
    MEAL = "meal"
    MEDICINE = "medicine"
    DAILY_NECESSITIES = "daily_necessities"
    PSYCHOLOGICAL_SUPPORT = "psychological_support"
    OTHER = "other"


# How long a request of each kind may wait before it is overdue (from the request to done or declined).
# Fixed into ``due_at`` when the request opens, so a later change here does not move old deadlines.
SLA: dict[CareKind, timedelta] = {
    CareKind.MEAL: timedelta(hours=1),
    CareKind.MEDICINE: timedelta(hours=2),
    CareKind.DAILY_NECESSITIES: timedelta(hours=4),
    CareKind.PSYCHOLOGICAL_SUPPORT: timedelta(hours=4),
    CareKind.OTHER: timedelta(hours=8),
}


class CareState(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    DECLINED = "declined"


OPEN_STATES = (CareState.OPEN, CareState.IN_PROGRESS)


class CareAction(StrEnum):
    START = "start"
    COMPLETE = "complete"
    DECLINE = "decline"


# (action) -> (states it may start from, state it leads to); the trigger in 0043_care.sql enforces the same.
TRANSITIONS: dict[CareAction, tuple[frozenset[CareState], CareState]] = {
    CareAction.START: (frozenset({CareState.OPEN}), CareState.IN_PROGRESS),
    CareAction.COMPLETE: (frozenset({CareState.IN_PROGRESS}), CareState.DONE),
    CareAction.DECLINE: (frozenset({CareState.OPEN, CareState.IN_PROGRESS}), CareState.DECLINED),
}

Detail = Annotated[str, msgspec.Meta(max_length=1000)]
Note = Annotated[str, msgspec.Meta(max_length=2000)]
Resolution = Annotated[str, msgspec.Meta(max_length=1000)]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=10_000)]


class CareProfile(msgspec.Struct, kw_only=True):
    """A stay's vulnerability flags and note (health data: medics, site managers, command)."""

    stay_id: UUID
    site_id: UUID
    flags: list[Vulnerability]
    note: str
    version: int
    updated_by: str
    updated_at: datetime


class CareProfileSet(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Replace a stay's flags and note. ``version``: the profile's version read (omit for a stay without one)."""

    stay_id: UUID
    flags: list[Vulnerability]
    note: Note = ""
    version: Version | None = None


class CareRequest(msgspec.Struct, kw_only=True):
    id: UUID
    site_id: UUID
    stay_id: UUID
    kind: CareKind
    detail: str
    state: CareState
    version: int
    requested_by: str
    requested_at: datetime
    due_at: datetime
    started_by: str | None
    started_at: datetime | None
    closed_by: str | None
    closed_at: datetime | None
    resolution: str
    # Open (or in progress) past due_at now, or closed after due_at.
    overdue: bool


class CareRequestCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A resident's request, taken by staff. ``id`` may come from the phone: a replay is a no-op."""

    stay_id: UUID
    kind: CareKind
    detail: Detail = ""
    id: UUID | None = None


class CareRequestMove(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """start / complete / decline; ``version`` is the one read (409 ``stale_version``); decline needs ``resolution``."""

    action: CareAction
    version: Version
    resolution: Resolution = ""


class CareIssue(msgspec.Struct, kw_only=True):
    """Stock issued against a request: the supplies ledger's movement it made."""

    movement_id: UUID
    request_id: UUID
    site_id: UUID
    item_id: UUID
    quantity: int
    actor: str
    at: datetime


class CareIssueCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Issue stock for a request from the site's store; ``id`` (client UUID) names the ledger movement."""

    care_request_id: UUID
    item_id: UUID
    quantity: Quantity
    id: UUID
