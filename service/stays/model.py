"""Stays: residents, regimes, stays; read models, inputs and enums."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import msgspec
from stdnum.cn import ric
from stdnum.exceptions import ValidationError as NumberInvalid

from service.errors import InvalidInput
from service.fields import Version


class Category(StrEnum):
    CLOSE_CONTACT = "close_contact"
    SECONDARY_CONTACT = "secondary_contact"
    INBOUND_TRAVELLER = "inbound_traveller"
    KEY_AREA_ARRIVAL = "key_area_arrival"
    OTHER = "other"


class RiskLevel(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class StayStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


class Outcome(StrEnum):
    RELEASED = "released"
    TRANSFERRED = "transferred"
    MOVED = "moved"


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"
    UNKNOWN = "unknown"


class Need(StrEnum):
    """What a bed must offer a person: step-free access, a cot beside a parent, oxygen."""

    MOBILITY = "mobility"
    INFANT = "infant"
    OXYGEN = "oxygen"


# The bed attribute each need asks for (beds table columns).
NEED_ATTRIBUTE = {Need.MOBILITY: "accessible", Need.INFANT: "cot", Need.OXYGEN: "oxygen"}


def attributes_for(needs: list[Need] | tuple[Need, ...] | frozenset[Need]) -> frozenset[str]:
    return frozenset(NEED_ATTRIBUTE[Need(n)] for n in needs)


class DocumentType(StrEnum):
    MAINLAND_ID = "mainland_id"
    PASSPORT = "passport"
    OTHER = "other"


def check_mainland_id(number: str) -> str:
    """A mainland resident ID number (GB 11643): 18 characters, valid birth date and check digit.

    Returns the canonical form (upper-case X). The message never repeats the number.
    """
    # stdnum's ric.validate also requires the region code to be in its bundled list, which
    # lags behind new districts; the check digit and birth date are what GB 11643 fixes.
    try:
        number = ric.compact(number)
        if len(number) != 18 or not number[:17].isdigit() or number[17] != ric.calc_check_digit(number):
            raise NumberInvalid()
        ric.get_birth_date(number)
        return number
    except NumberInvalid:
        raise InvalidInput(
            "Not a valid mainland ID number (18 characters with a GB 11643 check digit).",
            code="invalid_id_number",
            field="document_number",
        ) from None


def mask_name(name: str) -> str:
    """``张三`` -> ``张*``, ``欧阳娜娜`` -> ``欧***``, ``Smith`` -> ``S****``."""
    return name[:1] + "*" * max(1, len(name) - 1)


# Masks: the stored tails only; the full numbers stay encrypted.
ID_MASK_LENGTH = {DocumentType.MAINLAND_ID: 18}


def mask_document(document_type: DocumentType, tail: str) -> str:
    """``**************1234``: as long as the document type's numbers, from the stored tail only."""
    return "*" * (ID_MASK_LENGTH.get(document_type, 8) - len(tail)) + tail


def mask_phone(tail: str | None) -> str | None:
    return None if tail is None else "*******" + tail


def masked_person(row: Any, prefix: str = "") -> dict[str, Any]:
    """A person's fields as every response shows them, masked, from a row of their columns (``name``,
    ``sex``, ``birth_date``, ``document_type``, ``document_tail``, ``phone_tail``, ``household_key``):
    residents and referred people alike. ``prefix`` for joined columns such as ``r_``."""
    doc_type = DocumentType(row[f"{prefix}document_type"])
    birth = row[f"{prefix}birth_date"]
    return dict(
        name=mask_name(row[f"{prefix}name"]),
        sex=row[f"{prefix}sex"],
        birth_year=birth.year if birth else None,
        document_type=doc_type,
        document_number=mask_document(doc_type, row[f"{prefix}document_tail"]),
        phone=mask_phone(row[f"{prefix}phone_tail"]),
        household_key=row[f"{prefix}household_key"],
    )


# --- regimes ----------------------------------------------------------------

Days = Annotated[int, msgspec.Meta(ge=0, le=60)]
TestDays = Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=90)]], msgspec.Meta(max_length=60)]
RegimeCode = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]{2,40}$", description="Lower-case letters, digits, underscores")]
RegimeName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
CheckinsPerDay = Annotated[int, msgspec.Meta(ge=0, le=24)]


class PhaseKind(StrEnum):
    """The parts of a regime, in this order: 集中隔离, 居家隔离, 居家健康监测."""

    CENTRALIZED = "centralized"
    HOME_ISOLATION = "home_isolation"
    HOME_MONITORING = "home_monitoring"


PHASE_ORDER = list(PhaseKind)


class Phase(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One phase: its days and test days, numbered from the phase's own day 1 (centralized: quarantine day 1)."""

    phase: PhaseKind
    days: Days
    test_days: TestDays = []

    def __post_init__(self) -> None:
        self.test_days = sorted(set(self.test_days))
        if any(d > self.days for d in self.test_days):
            raise InvalidInput(f"A {self.phase} test day falls after the phase's {self.days} days.", code="invalid_test_day", field="test_days")


Phases = Annotated[list[Phase], msgspec.Meta(min_length=1, max_length=3)]


def check_phases(phases: list[Phase]) -> list[Phase]:
    """Centralized first, then home isolation and/or home monitoring, each at most once."""
    order = [PHASE_ORDER.index(PhaseKind(p.phase)) for p in phases]
    if not order or order[0] != 0 or order != sorted(set(order)):
        raise InvalidInput(
            "Phases run centralized, then home isolation, then home monitoring, each at most once.", code="invalid_phases", field="phases"
        )
    return phases


def phase_days(phases: list[Phase], kind: PhaseKind) -> int:
    return next((p.days for p in phases if p.phase == kind), 0)


class Regime(msgspec.Struct, kw_only=True):
    """One version of a regime: stays point at the version they serve."""

    id: UUID
    code: str
    name: str
    category: Category | None
    centralized_days: int
    home_isolation_days: int
    home_monitoring_days: int
    test_days: list[int]
    phases: list[Phase]
    checkins_per_day: int
    effective_from: datetime
    version: int
    updated_at: datetime


class RegimeCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new regime (version 1); ``category`` makes it that category's default regime."""

    code: RegimeCode
    name: RegimeName
    phases: Phases
    checkins_per_day: CheckinsPerDay
    category: Category | None = None
    effective_from: datetime | None = None

    def __post_init__(self) -> None:
        check_phases(self.phases)
        if self.effective_from is not None and self.effective_from.tzinfo is None:
            raise InvalidInput("effective_from needs a time zone offset.", code="naive_datetime", field="effective_from")


class RegimeChange(msgspec.Struct, kw_only=True):
    """The new version and how many open stays were re-planned onto it."""

    regime: Regime
    replanned: int


class RegimeRule(msgspec.Struct, kw_only=True):
    """Category x risk level (null: no risk area known) -> the regime served."""

    category: Category
    risk_level: RiskLevel | None
    regime_code: str
    updated_at: datetime
    updated_by: str


class RegimeRuleSet(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Set the regime of a category at a risk level (null: no risk area known)."""

    category: Category
    regime_code: Annotated[str, msgspec.Meta(min_length=2, max_length=40)]
    risk_level: RiskLevel | None = None


class RegimePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new version of a regime from ``effective_from`` (default now): stays admitted from then on serve
    it. ``replan_open_stays`` moves the open stays onto it too (their planned release recomputed).

    ``centralized_days``, ``test_days`` (centralized) and ``home_monitoring_days`` edit those phases;
    ``phases`` replaces them all.
    """

    version: Version
    name: RegimeName | msgspec.UnsetType = msgspec.UNSET
    phases: Phases | msgspec.UnsetType = msgspec.UNSET
    centralized_days: Days | msgspec.UnsetType = msgspec.UNSET
    home_monitoring_days: Days | msgspec.UnsetType = msgspec.UNSET
    test_days: TestDays | msgspec.UnsetType = msgspec.UNSET
    checkins_per_day: CheckinsPerDay | msgspec.UnsetType = msgspec.UNSET
    effective_from: datetime | msgspec.UnsetType = msgspec.UNSET
    replan_open_stays: bool = False

    def __post_init__(self) -> None:
        if self.test_days is not msgspec.UNSET:
            self.test_days = sorted(set(self.test_days))
        if self.phases is not msgspec.UNSET:
            check_phases(self.phases)
        if self.effective_from is not msgspec.UNSET and self.effective_from.tzinfo is None:
            raise InvalidInput("effective_from needs a time zone offset.", code="naive_datetime", field="effective_from")

    def changes(self) -> dict[str, object]:
        return {
            f: v for f in self.__struct_fields__ if f not in ("version", "replan_open_stays") and (v := getattr(self, f)) is not msgspec.UNSET
        }

    def phases_after(self, current: list[Phase]) -> list[Phase]:
        """The phases of the new version: ``phases`` if given, else the current ones with the day fields applied."""
        phases = list(self.phases) if self.phases is not msgspec.UNSET else [msgspec.structs.replace(p) for p in current]
        first = phases[0]
        days = first.days if self.centralized_days is msgspec.UNSET else self.centralized_days
        tests = first.test_days if self.test_days is msgspec.UNSET else self.test_days
        phases[0] = Phase(phase=PhaseKind.CENTRALIZED, days=days, test_days=tests)
        if self.home_monitoring_days is not msgspec.UNSET:
            phases = [p for p in phases if p.phase != PhaseKind.HOME_MONITORING]
            if self.home_monitoring_days:
                phases.append(Phase(phase=PhaseKind.HOME_MONITORING, days=self.home_monitoring_days))
        return check_phases(phases)


# --- residents --------------------------------------------------------------

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
DocumentNumber = Annotated[str, msgspec.Meta(min_length=3, max_length=40)]
Phone = Annotated[str, msgspec.Meta(pattern=r"^\+?[0-9][0-9 -]{4,19}$")]
HouseholdKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Purpose = Annotated[str, msgspec.Meta(min_length=3, max_length=300)]


class ResidentCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    document_type: DocumentType
    document_number: DocumentNumber
    sex: Sex = Sex.UNKNOWN
    birth_date: date | None = None
    phone: Phone | None = None
    household_key: HouseholdKey | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise InvalidInput("The name is empty.", code="invalid_name", field="name")
        if self.document_type == DocumentType.MAINLAND_ID:
            self.document_number = check_mainland_id(self.document_number)
            if self.birth_date is None:
                self.birth_date = ric.get_birth_date(self.document_number)


class Resident(msgspec.Struct, kw_only=True):
    """A resident as every response shows one: personal data masked."""

    id: UUID
    site_id: UUID
    name: str
    sex: Sex
    birth_year: int | None
    document_type: DocumentType
    document_number: str
    phone: str | None
    household_key: str | None
    created_at: datetime


class ResidentRevealed(msgspec.Struct, kw_only=True):
    """Unmasked personal data; each read leaves an audit row."""

    id: UUID
    name: str
    birth_date: date | None
    document_type: DocumentType
    document_number: str
    phone: str | None


# --- stays ------------------------------------------------------------------

Area = Annotated[str, msgspec.Meta(max_length=200, description="Origin risk area, e.g. 沙坪坝区/井口镇")]
Batch = Annotated[str, msgspec.Meta(max_length=64, description="Arrival batch, e.g. the bus or flight")]
Reason = Annotated[str, msgspec.Meta(max_length=500)]
Bed = Annotated[int, msgspec.Meta(ge=1, le=20)]


class Stay(msgspec.Struct, kw_only=True):
    id: UUID
    resident_id: UUID
    site_id: UUID
    room_id: UUID
    room_number: str
    floor: int
    bed: int
    category: Category
    origin_area: str
    risk_level: RiskLevel | None
    arrival_batch: str
    regime_id: UUID
    regime_code: str
    time_zone: str
    admitted_at: datetime
    day_one: date
    period_start: date
    planned_release_at: datetime
    status: StayStatus
    ended_at: datetime | None
    outcome: Outcome | None
    moved_to: UUID | None
    moved_from: UUID | None
    version: int
    created_at: datetime


class StayView(msgspec.Struct, kw_only=True):
    """A stay with its resident (masked) and its quarantine day today, for lists and the board."""

    stay: Stay
    resident: Resident
    quarantine_day: int


class Admission(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Admit one resident: a new one (``resident``) or a known one (``resident_id``).

    ``room_id`` (and optionally ``bed``) picks the room; without it qsite allocates one
    (``floor`` narrows the choice). ``id`` may be generated by the client: a replay is a no-op.
    """

    site_id: UUID
    category: Category
    resident: ResidentCreate | None = None
    resident_id: UUID | None = None
    id: UUID | None = None
    room_id: UUID | None = None
    bed: Bed | None = None
    floor: Annotated[int, msgspec.Meta(ge=-5, le=200)] | None = None
    origin_area: Area = ""
    risk_level: RiskLevel | None = None
    arrival_batch: Batch = ""
    regime_code: str | None = None
    admitted_at: datetime | None = None
    # Internal (not in the GraphQL input): the bed reservation this admission consumes (service/intake).
    reservation_id: UUID | None = None
    # What the bed must offer when qsite allocates one (a referral's needs).
    needs: list[Need] = []

    def __post_init__(self) -> None:
        if (self.resident is None) == (self.resident_id is None):
            raise InvalidInput("Give either 'resident' or 'resident_id'.", code="resident_required", field="resident")
        if self.bed is not None and self.room_id is None:
            raise InvalidInput("A bed needs a room.", code="bed_without_room", field="bed")


class ReservationState(StrEnum):
    HELD = "held"
    CONSUMED = "consumed"
    RELEASED = "released"
    EXPIRED = "expired"


class Reservation(msgspec.Struct, kw_only=True):
    """A bed held for a person expected to arrive (an arrival manifest's member)."""

    id: UUID
    site_id: UUID
    room_id: UUID
    room_number: str
    floor: int
    bed: int
    holder_id: UUID
    subject_id: UUID
    state: ReservationState
    expires_at: datetime
    stay_id: UUID | None


class BedRequest(msgspec.Struct, kw_only=True):
    """One person to reserve a bed for: the allocation rules' inputs."""

    subject_id: UUID
    category: Category
    household_key: str | None = None
    arrival_batch: str = ""
    needs: list[Need] = []


class BedEntity(msgspec.Struct, kw_only=True):
    """A bed of a room with its attributes, who lies there now and whether it is reserved."""

    id: UUID
    site_id: UUID
    room_id: UUID
    number: int
    accessible: bool
    cot: bool
    oxygen: bool
    version: int
    stay_id: UUID | None
    reserved_until: datetime | None


class BedPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    version: Version
    accessible: bool | msgspec.UnsetType = msgspec.UNSET
    cot: bool | msgspec.UnsetType = msgspec.UNSET
    oxygen: bool | msgspec.UnsetType = msgspec.UNSET


class BedOccupancy(msgspec.Struct, kw_only=True):
    """One stay on a bed: the bed's occupancy history."""

    stay_id: UUID
    resident_id: UUID
    admitted_at: datetime
    ended_at: datetime | None
    outcome: Outcome | None


class BatchMember(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    resident: ResidentCreate
    id: UUID | None = None
    room_id: UUID | None = None
    bed: Bed | None = None
    category: Category | None = None
    origin_area: Area | None = None
    risk_level: RiskLevel | None = None


class BatchAdmission(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An arriving batch (e.g. a bus of 40) admitted in one request: all or nothing."""

    site_id: UUID
    category: Category
    arrival_batch: Batch
    members: Annotated[list[BatchMember], msgspec.Meta(min_length=1, max_length=200)]
    origin_area: Area = ""
    risk_level: RiskLevel | None = None
    regime_code: str | None = None
    floor: Annotated[int, msgspec.Meta(ge=-5, le=200)] | None = None
    admitted_at: datetime | None = None


class Move(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    room_id: UUID
    bed: Bed | None = None
    reason: Reason = ""


class Blocker(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One reason a stay cannot be released yet; ``day``: the scheduled test's quarantine day it is about."""

    reason: str
    day: int | None = None


class Extension(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Exposure confirmed at ``exposed_at``: the centralized period restarts from that local date."""

    exposed_at: datetime
    reason: Reason = ""


class Suggestion(msgspec.Struct, kw_only=True):
    room_id: UUID
    number: str
    floor: int
    free_beds: int


class Contacts(msgspec.Struct, kw_only=True):
    """Active stays that shared air with a stay: same room, same household, same floor."""

    roommates: list[Stay]
    household: list[Stay]
    floor_neighbours: list[Stay]


class SiteOccupancy(msgspec.Struct, kw_only=True):
    """Beds by room status and releases due (site's local today/tomorrow); ``site_id`` is null in the total."""

    site_id: UUID | None
    rooms: int
    beds_total: int
    beds_occupied: int
    beds_ready: int
    beds_in_turnover: int
    beds_out_of_service: int
    releases_due_today: int
    releases_due_tomorrow: int


class Occupancy(msgspec.Struct, kw_only=True):
    sites: list[SiteOccupancy]
    total: SiteOccupancy
