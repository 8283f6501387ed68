"""Infection control: inspections with a checklist, findings and corrective actions, surface swabs, medical waste."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

import msgspec

from service.fields import Version


class Area(StrEnum):
    """The checklist of an inspection."""

    ZONING = "zoning"
    PPE = "ppe"
    DISINFECTION_RECORDS = "disinfection_records"
    WASTE = "waste"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class FindingState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class SwabResult(StrEnum):
    PENDING = "pending"
    NEGATIVE = "negative"
    POSITIVE = "positive"
    INVALID = "invalid"


class WasteState(StrEnum):
    SEALED = "sealed"
    HANDED_OVER = "handed_over"


Note = Annotated[str, msgspec.Meta(max_length=2000)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
Location = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Barcode = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Floor = Annotated[int, msgspec.Meta(ge=-5, le=200)]
Bags = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
Weight = Annotated[float, msgspec.Meta(gt=0, le=100_000)]
PersonName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Carrier = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Receipt = Annotated[str, msgspec.Meta(min_length=1, max_length=100, description="The carrier's receipt (transfer manifest) number")]


class Inspection(msgspec.Struct, kw_only=True):
    id: UUID
    site_id: UUID
    inspected_at: datetime
    inspector: str
    zoning_ok: bool
    ppe_ok: bool
    disinfection_records_ok: bool
    waste_ok: bool
    note: str
    open_findings: int


class InspectionCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An inspection and its checklist (true = satisfactory). ``id`` (client UUID): a replay is a no-op."""

    site_id: UUID
    inspected_at: datetime
    zoning_ok: bool
    ppe_ok: bool
    disinfection_records_ok: bool
    waste_ok: bool
    note: Note = ""
    id: UUID | None = None


class Finding(msgspec.Struct, kw_only=True):
    id: UUID
    inspection_id: UUID
    site_id: UUID
    area: Area
    severity: Severity
    description: str
    corrective_action: str
    due_on: date
    state: FindingState
    resolution: str
    resolved_by: str | None
    resolved_at: datetime | None
    version: int
    overdue: bool


class FindingCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A finding of an inspection with the corrective action and its due date."""

    inspection_id: UUID
    area: Area
    severity: Severity
    description: Text
    corrective_action: Text
    due_on: date
    id: UUID | None = None


class FindingResolution(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    version: Version
    resolution: Text


class EnvironmentalSample(msgspec.Struct, kw_only=True):
    id: UUID
    site_id: UUID
    location: str
    floor: int | None
    barcode: str
    collected_at: datetime
    result: SwabResult
    resulted_at: datetime | None
    recorded_by: str


class EnvironmentalSampleCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    site_id: UUID
    location: Location
    barcode: Barcode
    collected_at: datetime
    floor: Floor | None = None
    id: UUID | None = None


class EnvironmentalResult(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A surface swab's result; the same again changes nothing, another one is 409 ``result_conflict``."""

    environmental_sample_id: UUID
    result: SwabResult


class WasteBatch(msgspec.Struct, kw_only=True):
    id: UUID
    site_id: UUID
    bags: int
    weight_kg: float
    sealed_by: str
    sealed_at: datetime
    recorded_by: str
    state: WasteState
    carrier: str | None
    carrier_receipt: str | None
    handed_over_at: datetime | None
    version: int


class WasteCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Sealed medical-waste bags waiting for the carrier. ``id`` (client UUID): a replay is a no-op."""

    site_id: UUID
    bags: Bags
    weight_kg: Weight
    sealed_by: PersonName
    sealed_at: datetime
    id: UUID | None = None


class CarrierWaste(msgspec.Struct, kw_only=True):
    """A waste batch as its carrier sees it: what it collects, without who sealed or logged it."""

    id: UUID
    site_id: UUID
    bags: int
    weight_kg: float
    sealed_at: datetime
    state: WasteState
    carrier: str | None
    carrier_receipt: str | None
    handed_over_at: datetime | None
    version: int

    @classmethod
    def of(cls, batch: WasteBatch) -> CarrierWaste:
        return cls(**{name: getattr(batch, name) for name in cls.__struct_fields__})


class WasteReceipt(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The carrier confirms it took the batch (``version`` as read), with its receipt number."""

    version: Version
    carrier_receipt: Receipt
    received_at: datetime


class WasteHandover(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The carrier took the batch; its receipt number. The same handover again changes nothing."""

    version: Version
    carrier: Carrier
    carrier_receipt: Receipt
    handed_over_at: datetime
