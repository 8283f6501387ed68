"""The staff closed loop: workers, shifts, staff check-ins and swabs, closed-loop status, exposure reviews."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

import msgspec

from service.fields import Version
from service.health.model import SampleKind, Symptom


class Post(StrEnum):
    MEDICAL = "medical"
    SECURITY = "security"
    CLEANING = "cleaning"
    CATERING = "catering"
    LOGISTICS = "logistics"


# Days between a worker's swabs by post; a red-zone worker is tested every day whatever the post.
TEST_EVERY_DAYS: dict[Post, int] = {Post.MEDICAL: 1, Post.CLEANING: 1, Post.SECURITY: 2, Post.CATERING: 2, Post.LOGISTICS: 3}
RED_ZONE_EVERY_DAYS = 1


def test_interval(post: Post, red_zone: bool) -> int:
    return RED_ZONE_EVERY_DAYS if red_zone else TEST_EVERY_DAYS[post]


class LoopStatus(StrEnum):
    ON_DUTY = "on_duty"
    RESTING = "resting"  # in the staff area, between shifts
    ISOLATING = "isolating"  # post-shift isolation or after an exposure; until a date


class StaffResult(StrEnum):
    PENDING = "pending"
    NEGATIVE = "negative"
    POSITIVE = "positive"
    INVALID = "invalid"


class ExposureState(StrEnum):
    OPEN = "open"
    CLEARED = "cleared"
    ISOLATED = "isolated"


# A positive worker isolates this many days from the result (then a manager sets them resting).
POSITIVE_ISOLATION_DAYS = 14
# A resident turning positive exposes the workers of shifts on their floor in this many past days.
EXPOSURE_LOOKBACK_DAYS = 3

WorkerName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Floor = Annotated[int, msgspec.Meta(ge=-5, le=200)]
Barcode = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Note = Annotated[str, msgspec.Meta(max_length=500)]
DecisionNote = Annotated[str, msgspec.Meta(max_length=1000)]
Temperature = Annotated[float, msgspec.Meta(ge=30, le=45)]
SpO2 = Annotated[int, msgspec.Meta(ge=50, le=100)]


class Worker(msgspec.Struct, kw_only=True):
    """Someone who works at a site (roster data); cleaners, guards and cooks need no qsite account."""

    id: UUID
    site_id: UUID
    name: str
    post: Post
    red_zone: bool
    active: bool
    test_every_days: int
    version: int
    created_at: datetime


class WorkerLoop(msgspec.Struct, kw_only=True):
    """A worker's closed-loop status (staff health data: medics and site managers of the site)."""

    worker_id: UUID
    site_id: UUID
    status: LoopStatus
    isolation_until: date | None
    version: int
    last_swab_at: datetime | None
    last_result: StaffResult | None
    next_test_due: date


class WorkerCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    site_id: UUID
    name: WorkerName
    post: Post
    red_zone: bool = False
    id: UUID | None = None


class Shift(msgspec.Struct, kw_only=True):
    id: UUID
    site_id: UUID
    worker_id: UUID
    post: Post
    red_zone: bool
    floor: int | None
    starts_at: datetime
    ends_at: datetime
    created_by: str
    created_at: datetime


class ShiftCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A worker's shift; post and zone default to the worker's. ``id`` (client UUID): a replay is a no-op."""

    worker_id: UUID
    starts_at: datetime
    ends_at: datetime
    floor: Floor | None = None
    post: Post | None = None
    red_zone: bool | None = None
    id: UUID | None = None


class StatusChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Set a worker's closed-loop status; ``isolating`` needs ``isolation_until``. ``version``: the one read."""

    worker_id: UUID
    status: LoopStatus
    version: Version
    isolation_until: date | None = None


class StaffCheckin(msgspec.Struct, kw_only=True):
    id: UUID
    site_id: UUID
    worker_id: UUID
    recorded_at: datetime
    temperature_c: float
    spo2: int | None
    symptoms: list[Symptom]
    note: str
    findings: list[str]
    recorded_by: str
    received_at: datetime


class StaffCheckinCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    worker_id: UUID
    temperature_c: Temperature
    recorded_at: datetime
    spo2: SpO2 | None = None
    symptoms: list[Symptom] = msgspec.field(default_factory=list)
    note: Note = ""
    id: UUID | None = None


class StaffSample(msgspec.Struct, kw_only=True):
    id: UUID
    site_id: UUID
    worker_id: UUID
    barcode: str
    kind: SampleKind
    collected_at: datetime
    result: StaffResult
    resulted_at: datetime | None
    recorded_by: str


class StaffSampleCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    worker_id: UUID
    barcode: Barcode
    collected_at: datetime
    kind: SampleKind = SampleKind.PCR
    id: UUID | None = None


class StaffResultEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A staff swab's result; the same result again changes nothing, another one is 409."""

    staff_sample_id: UUID
    result: Annotated[StaffResult, msgspec.Meta(description="negative, positive or invalid")]


class StaffTestDue(msgspec.Struct, kw_only=True):
    """A worker whose next swab is due today or earlier (the staff testing worklist)."""

    worker_id: UUID
    name: str
    post: Post
    red_zone: bool
    test_every_days: int
    last_swab_at: datetime | None
    due_on: date
    status: LoopStatus


class StaffExposure(msgspec.Struct, kw_only=True):
    id: UUID
    site_id: UUID
    worker_id: UUID
    source_stay_id: UUID
    floor: int
    state: ExposureState
    opened_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    note: str
    version: int


class ExposureDecision(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """clear, or isolate until a date (the worker's status becomes isolating)."""

    state: Annotated[ExposureState, msgspec.Meta(description="cleared or isolated")]
    version: Version
    isolation_until: date | None = None
    note: DecisionNote = ""
