"""Sites: read models, inputs and enums."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID
from zoneinfo import available_timezones

import msgspec

from service.errors import InvalidInput


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

    version: int
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
