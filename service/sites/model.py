"""Sites: read models, inputs and enums."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID
from zoneinfo import available_timezones

import msgspec

from service.errors import InvalidInput
from service.fields import Version


class SiteKind(StrEnum):
    HOTEL = "hotel"
    FACILITY = "facility"
    MAKESHIFT = "makeshift"
    OTHER = "other"


class SiteStatus(StrEnum):
    ACTIVE = "active"
    STANDBY = "standby"
    CLOSED = "closed"


Code = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{2,32}$", description="Short unique site code, e.g. LJ-01")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
RegionPath = Annotated[str, msgspec.Meta(max_length=300, description="district/street, e.g. 两江新区/礼嘉街道")]
Address = Annotated[str, msgspec.Meta(max_length=500)]
Contact = Annotated[str, msgspec.Meta(max_length=200)]
TimeZone = Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="IANA time zone")]


class Site(msgspec.Struct, kw_only=True):
    id: UUID
    code: str
    name: str
    region_path: str
    kind: SiteKind
    status: SiteStatus
    time_zone: str
    address: str
    contact: str
    version: int
    created_at: datetime
    updated_at: datetime


class SiteCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    code: Code
    name: Name
    region_path: RegionPath = ""
    kind: SiteKind = SiteKind.HOTEL
    status: SiteStatus = SiteStatus.ACTIVE
    time_zone: TimeZone = "Asia/Shanghai"
    address: Address = ""
    contact: Contact = ""

    def __post_init__(self) -> None:
        check_time_zone(self.time_zone)


class SitePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields to change; ``version`` must be the version the caller read (409 if stale)."""

    version: Version
    name: Name | msgspec.UnsetType = msgspec.UNSET
    region_path: RegionPath | msgspec.UnsetType = msgspec.UNSET
    kind: SiteKind | msgspec.UnsetType = msgspec.UNSET
    status: SiteStatus | msgspec.UnsetType = msgspec.UNSET
    time_zone: TimeZone | msgspec.UnsetType = msgspec.UNSET
    address: Address | msgspec.UnsetType = msgspec.UNSET
    contact: Contact | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if self.time_zone is not msgspec.UNSET:
            check_time_zone(self.time_zone)

    def changes(self) -> dict[str, object]:
        return {f: v for f in self.__struct_fields__ if f != "version" and (v := getattr(self, f)) is not msgspec.UNSET}


_ZONES = available_timezones()


def check_time_zone(name: str) -> None:
    if name not in _ZONES:
        raise InvalidInput(f"Unknown time zone {name!r}.", code="invalid_time_zone", field="time_zone")


# --- rooms and turnover -----------------------------------------------------


class RoomStatus(StrEnum):
    READY = "ready"
    OCCUPIED = "occupied"
    VACATED = "vacated"
    DISINFECTING = "disinfecting"
    AIRING = "airing"
    OUT_OF_SERVICE = "out_of_service"
    SEALED = "sealed"


class RoomAction(StrEnum):
    """What moves a room from one status to the next (the edges of the turnover graph)."""

    ADMIT = "admit"  # first resident in
    VACATE = "vacate"  # last resident out
    SEAL = "seal"  # positive case
    START_DISINFECTION = "start_disinfection"
    FINISH_DISINFECTION = "finish_disinfection"
    PASS_INSPECTION = "pass_inspection"
    FAIL_INSPECTION = "fail_inspection"
    TAKE_OUT_OF_SERVICE = "take_out_of_service"
    RETURN_TO_SERVICE = "return_to_service"


S, A = RoomStatus, RoomAction
# The whole turnover graph (DESIGN.md, "Room turnover"); anything not listed is refused with 409.
TRANSITIONS: dict[tuple[RoomStatus, RoomAction], RoomStatus] = {
    (S.READY, A.ADMIT): S.OCCUPIED,
    (S.OCCUPIED, A.VACATE): S.VACATED,
    (S.OCCUPIED, A.SEAL): S.SEALED,
    (S.VACATED, A.SEAL): S.SEALED,
    (S.VACATED, A.START_DISINFECTION): S.DISINFECTING,
    (S.SEALED, A.START_DISINFECTION): S.DISINFECTING,
    (S.DISINFECTING, A.FINISH_DISINFECTION): S.AIRING,
    (S.AIRING, A.PASS_INSPECTION): S.READY,
    (S.AIRING, A.FAIL_INSPECTION): S.DISINFECTING,
    **{(s, A.TAKE_OUT_OF_SERVICE): S.OUT_OF_SERVICE for s in S if s not in (S.OCCUPIED, S.OUT_OF_SERVICE)},
    (S.OUT_OF_SERVICE, A.RETURN_TO_SERVICE): S.VACATED,
}
# Actions staff trigger by hand; ADMIT and VACATE follow admissions and departures only.
MANUAL_ACTIONS = frozenset(A) - {A.ADMIT, A.VACATE}
del S, A

RoomNumber = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]{1,16}$", description="Room number, e.g. 301")]
Floor = Annotated[int, msgspec.Meta(ge=-5, le=200)]
Beds = Annotated[int, msgspec.Meta(ge=1, le=20)]
Notes = Annotated[str, msgspec.Meta(max_length=1000)]
Reason = Annotated[str, msgspec.Meta(max_length=500)]


class Room(msgspec.Struct, kw_only=True):
    id: UUID
    site_id: UUID
    number: str
    floor: int
    beds: int
    occupied: int
    notes: str
    status: RoomStatus
    status_since: datetime
    status_by: str | None
    status_reason: str
    version: int
    created_at: datetime
    updated_at: datetime

    @property
    def free_beds(self) -> int:
        return self.beds - self.occupied


class RoomCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    number: RoomNumber
    floor: Floor
    beds: Beds = 1
    notes: Notes = ""


class FloorCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A floor's rooms at once: numbers ``first``..``last`` (e.g. 301-330), each with ``beds`` beds."""

    floor: Floor
    first: Annotated[int, msgspec.Meta(ge=0, le=99999)]
    last: Annotated[int, msgspec.Meta(ge=0, le=99999)]
    beds: Beds = 1
    prefix: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]{0,8}$")] = ""
    notes: Notes = ""

    def __post_init__(self) -> None:
        if not 0 <= self.last - self.first < 500:
            raise InvalidInput("'last' must be >= 'first' and at most 500 rooms at once.", code="invalid_room_range", field="last")

    def rooms(self) -> list[RoomCreate]:
        return [RoomCreate(number=f"{self.prefix}{n}", floor=self.floor, beds=self.beds, notes=self.notes) for n in range(self.first, self.last + 1)]


class RoomPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    version: Version
    beds: Beds | msgspec.UnsetType = msgspec.UNSET
    notes: Notes | msgspec.UnsetType = msgspec.UNSET


class RoomStatusChange(msgspec.Struct, kw_only=True):
    id: int
    room_id: UUID
    from_status: RoomStatus | None
    to_status: RoomStatus
    action: str
    actor: str | None
    reason: str
    at: datetime


class DisinfectionState(StrEnum):
    OPEN = "open"
    DISINFECTING = "disinfecting"
    AIRING = "airing"
    PASSED = "passed"
    CANCELLED = "cancelled"


class DisinfectionTask(msgspec.Struct, kw_only=True):
    id: UUID
    room_id: UUID
    site_id: UUID
    state: DisinfectionState
    opened_at: datetime
    opened_by: str | None
    started_at: datetime | None
    started_by: str | None
    finished_at: datetime | None
    finished_by: str | None
    airing_until: datetime | None
    inspected_at: datetime | None
    inspected_by: str | None
    failed_inspections: int
    notes: str


class BedSummary(msgspec.Struct, kw_only=True):
    """Beds of one site by the status of their room."""

    site_id: UUID
    rooms: int
    beds_total: int
    beds_occupied: int
    beds_ready: int
    beds_in_turnover: int
    beds_out_of_service: int
