"""Health: read models, inputs and enums (check-ins, samples, alerts, exposure reviews)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

import msgspec

from service.errors import InvalidInput
from service.fields import CLOCK_SKEW, Int32, Version


class Symptom(StrEnum):
    FEVER = "fever"
    COUGH = "cough"
    SORE_THROAT = "sore_throat"
    FATIGUE = "fatigue"
    LOSS_OF_TASTE_OR_SMELL = "loss_of_taste_or_smell"
    SHORTNESS_OF_BREATH = "shortness_of_breath"
    DIARRHOEA = "diarrhoea"
    OTHER = "other"


class SampleKind(StrEnum):
    PCR = "pcr"
    ANTIGEN = "antigen"


class SampleResult(StrEnum):
    PENDING = "pending"
    NEGATIVE = "negative"
    POSITIVE = "positive"
    INVALID = "invalid"
    RETEST = "retest"  # a member of a positive pool: an individual retest is open


class LabResultValue(StrEnum):
    NEGATIVE = "negative"
    POSITIVE = "positive"
    INVALID = "invalid"


class AlertKind(StrEnum):
    FEVER = "fever"
    LOW_SPO2 = "low_spo2"
    SYMPTOMS = "symptoms"
    MISSED_CHECKIN = "missed_checkin"
    POSITIVE = "positive"


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class ReviewState(StrEnum):
    OPEN = "open"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"


class ExposureSource(StrEnum):
    POSITIVE = "positive"
    TRANSFER = "transfer"
    MANUAL = "manual"


class Relation(StrEnum):
    ROOMMATE = "roommate"
    HOUSEHOLD = "household"
    FLOOR_NEIGHBOUR = "floor_neighbour"


# Physiologically possible ranges (the same bounds as the table's CHECKs). They are checked in
# __post_init__ rather than msgspec.Meta so that an impossible reading answers 422 with the
# field named (a typing error on a phone), not a generic 400.
RANGES: dict[str, tuple[float, float]] = {"temperature_c": (30.0, 45.0), "spo2": (50, 100), "pulse": (20, 250)}
Temperature = Annotated[float, msgspec.Meta(description="Degrees Celsius, 30.0-45.0")]
SpO2 = Annotated[Int32, msgspec.Meta(description="Oxygen saturation %, 50-100")]
Pulse = Annotated[Int32, msgspec.Meta(description="Beats per minute, 20-250")]
Note = Annotated[str, msgspec.Meta(max_length=1000)]
Barcode = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]{4,40}$", description="Tube barcode")]
CtValue = Annotated[float, msgspec.Meta(ge=0, le=50)]
MAX_BATCH = 500


def check_time(value: datetime, field: str) -> datetime:
    """``value`` as the same instant in UTC, refused when it has no offset or lies in the future.

    In UTC because a phone may send any offset RFC 3339 allows (up to ±23:59) and PostgreSQL
    parses only up to ±15:59 in the text the check-in statement reads its items from.
    """
    if value.tzinfo is None:
        raise InvalidInput(f"{field} needs a time zone offset.", code="naive_datetime", field=field)
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00, before the first representable instant
        raise InvalidInput(f"{field} is out of range.", code="invalid_value", field=field) from None
    if value > datetime.now(UTC) + CLOCK_SKEW:
        raise InvalidInput(f"{field} is in the future.", code="time_in_future", field=field)
    return value


class CheckinCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One check-in. ``id`` generated on the phone makes a replay a no-op returning the stored record."""

    stay_id: UUID
    recorded_at: datetime
    id: UUID | None = None
    temperature_c: Temperature | None = None
    spo2: SpO2 | None = None
    pulse: Pulse | None = None
    symptoms: Annotated[list[Symptom], msgspec.Meta(max_length=8)] = []
    note: Note = ""

    def __post_init__(self) -> None:
        for field, (low, high) in RANGES.items():
            value = getattr(self, field)
            if value is not None and not low <= value <= high:
                raise InvalidInput(f"{field} {value} is not physiologically possible ({low}-{high}).", code="implausible_value", field=field)
        self.recorded_at = check_time(self.recorded_at, "recorded_at")
        if "\x00" in self.note:  # PostgreSQL text cannot hold it: refused here, so that it fails its item alone
            raise InvalidInput("note holds a NUL character.", code="invalid_value", field="note")
        self.symptoms = sorted(set(self.symptoms))


class Checkin(msgspec.Struct, kw_only=True):
    id: UUID
    stay_id: UUID
    site_id: UUID
    recorded_at: datetime
    received_at: datetime
    temperature_c: float | None
    spo2: int | None
    pulse: int | None
    symptoms: list[Symptom]
    note: str
    recorded_by: str


class ItemStatus(StrEnum):
    CREATED = "created"
    REPLAYED = "replayed"  # the same id was stored before: the stored record is answered
    FAILED = "failed"


class ItemError(msgspec.Struct, kw_only=True):
    code: str
    message: str
    field: str | None = None


class CheckinOutcome(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One item of a batch: its position, what happened, the stored record or the error."""

    index: int
    status: ItemStatus
    id: UUID | None = None
    checkin: Checkin | None = None
    error: ItemError | None = None


class CheckinBatch(msgspec.Struct, kw_only=True):
    created: int
    replayed: int
    failed: int
    items: list[CheckinOutcome]


class SampleCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A swab of one resident in its own tube; ``scheduled_day`` defaults to today's quarantine day."""

    stay_id: UUID
    barcode: Barcode
    collected_at: datetime
    id: UUID | None = None
    kind: SampleKind = SampleKind.PCR
    scheduled_day: Annotated[int, msgspec.Meta(ge=1, le=90)] | None = None

    def __post_init__(self) -> None:
        self.collected_at = check_time(self.collected_at, "collected_at")


class SampleOutcome(msgspec.Struct, kw_only=True, omit_defaults=True):
    index: int
    status: ItemStatus
    sample: Sample | None = None
    error: ItemError | None = None


class PoolMember(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    stay_id: UUID
    id: UUID | None = None


class PoolCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Up to 10 residents' swabs in one tube (10合1)."""

    site_id: UUID
    barcode: Barcode
    collected_at: datetime
    members: Annotated[list[PoolMember], msgspec.Meta(min_length=1, max_length=10)]
    id: UUID | None = None
    kind: SampleKind = SampleKind.PCR

    def __post_init__(self) -> None:
        self.collected_at = check_time(self.collected_at, "collected_at")


class Sample(msgspec.Struct, kw_only=True):
    id: UUID
    site_id: UUID
    stay_id: UUID | None
    pool_id: UUID | None
    barcode: str | None
    kind: SampleKind
    scheduled_day: int | None
    members: int
    collected_at: datetime
    collected_by: str
    result: SampleResult
    ct_values: list[float]
    resulted_at: datetime | None


class LabResult(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    barcode: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    result: LabResultValue
    resulted_at: datetime
    ct_values: Annotated[list[CtValue], msgspec.Meta(max_length=4)] = []


class LabUpload(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    results: Annotated[list[LabResult], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class LabItemStatus(StrEnum):
    RECORDED = "recorded"
    UNCHANGED = "unchanged"  # the same result was uploaded before
    UNKNOWN_BARCODE = "unknown_barcode"
    CONFLICT = "conflict"  # a different result is already stored


class LabOutcome(msgspec.Struct, kw_only=True, omit_defaults=True):
    index: int
    barcode: str
    status: LabItemStatus
    sample_id: UUID | None = None
    retests_opened: int = 0


class LabUploadResult(msgspec.Struct, kw_only=True):
    recorded: int
    unchanged: int
    unknown: int
    conflicts: int
    items: list[LabOutcome]

    @classmethod
    def of(cls, items: list[LabOutcome]) -> LabUploadResult:
        """The answer to an upload: its items and how many of each status."""
        count = {s: sum(i.status is s for i in items) for s in LabItemStatus}
        return cls(
            recorded=count[LabItemStatus.RECORDED],
            unchanged=count[LabItemStatus.UNCHANGED],
            unknown=count[LabItemStatus.UNKNOWN_BARCODE],
            conflicts=count[LabItemStatus.CONFLICT],
            items=items,
        )


class Alert(msgspec.Struct, kw_only=True):
    id: UUID
    site_id: UUID
    stay_id: UUID
    kind: AlertKind
    detail: dict[str, object]
    state: AlertState
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    note: str
    version: int


class AlertAction(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    version: Version
    note: Note = ""


class ExposureReview(msgspec.Struct, kw_only=True):
    id: UUID
    site_id: UUID
    stay_id: UUID
    source_stay_id: UUID
    relation: Relation
    source: ExposureSource
    reason: str
    exposed_at: datetime
    state: ReviewState
    opened_at: datetime
    opened_by: str | None
    decided_at: datetime | None
    decided_by: str | None
    note: str
    version: int


class ReviewDecision(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    version: Version
    confirm: bool
    note: Note = ""


class CheckinDue(msgspec.Struct, kw_only=True):
    """A resident whose check-in of the current slot (a half-day for two a day) is not in yet."""

    stay_id: UUID
    resident_id: UUID
    floor: int
    room_number: str
    bed: int
    slot_start: datetime
    slot_end: datetime
    last_checkin_at: datetime | None
    overdue: bool  # the previous slot was missed too


class SwabDue(msgspec.Struct, kw_only=True):
    """A stay to swab: a test day so far without a usable swab (today's, or ``overdue_days``), or a retest."""

    stay_id: UUID
    resident_id: UUID
    floor: int
    room_number: str
    bed: int
    quarantine_day: int
    retest: bool
    overdue_days: list[int]


class Timeline(msgspec.Struct, kw_only=True):
    stay_id: UUID
    checkins: list[Checkin]
    samples: list[Sample]
    alerts: list[Alert]
