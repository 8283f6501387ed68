"""Shared test helpers for sites/rooms/stays: a site with floors, valid ID numbers, admissions."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from uuid import UUID

import msgspec
from stdnum.cn import ric

from service.access.model import Principal, Role
from service.sites import service as sites
from service.sites.model import FloorCreate, SiteCreate
from service.stays.model import Admission, ResidentCreate
from tests.conftest import make_principal

COMMAND = make_principal(Role.COMMAND)
_serial = itertools.count(1)


def id_number(birth: date = date(1990, 1, 1), serial: int | None = None) -> str:
    """A valid mainland ID number (Chongqing Yubei region code), unique per call."""
    serial = next(_serial) if serial is None else serial
    body = f"500112{birth:%Y%m%d}{serial % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")  # stdnum expects a placeholder check character


def person(household: str | None = None, **fields: object) -> ResidentCreate:
    n = next(_serial)
    birth = date(1960, 1, 1) + timedelta(days=n * 37)
    return ResidentCreate(
        name=fields.pop("name", "张三"),  # type: ignore[arg-type]
        document_type="mainland_id",  # type: ignore[arg-type]
        document_number=id_number(birth, n),
        phone=fields.pop("phone", f"1380000{n:04d}"),  # type: ignore[arg-type]
        household_key=household,
        **fields,  # type: ignore[arg-type]
    )


async def make_site(db, code: str = "LJ-01", floors: dict[int, tuple[int, int]] | None = None, time_zone: str = "Asia/Shanghai") -> UUID:
    """A site with floors {floor: (rooms, beds per room)}; rooms numbered floor*100 + 1..n."""
    async with db.transaction() as conn:
        site = await sites.create_site(conn, COMMAND, SiteCreate(code=code, name=f"礼嘉隔离点 {code}", time_zone=time_zone))
        for floor, (count, beds) in (floors or {}).items():
            await sites.create_floor(conn, COMMAND, site.id, FloorCreate(floor=floor, first=floor * 100 + 1, last=floor * 100 + count, beds=beds))
    return site.id


def staff(site_id: UUID, role: Role = Role.SITE_STAFF) -> Principal:
    return make_principal(role, [site_id])


def admission(site_id: UUID, category: str = "close_contact", **fields: object) -> Admission:
    fields.setdefault("resident", person())
    return Admission(site_id=site_id, category=category, **fields)  # type: ignore[arg-type]


def without_health_blockers(monkeypatch) -> None:
    """Release tests of the stays rule alone: the health domain's test-result rule answers none."""
    from service.health import service as health

    async def none(*_: object, **__: object) -> list[str]:
        return []

    monkeypatch.setattr(health, "release_blockers", none)


async def make_street(db, code: str = "LJ-LIJIA", name: str = "礼嘉街道") -> UUID:
    """A street of a fresh city -> district -> street chain (codes derived from ``code``)."""
    from service.regions import service as regions
    from service.regions.model import RegionCreate

    def region(**fields: object) -> RegionCreate:
        return msgspec.convert(fields, RegionCreate)

    async with db.transaction() as conn:
        city = await regions.create_region(conn, COMMAND, region(code=f"{code}-C", name=f"重庆市 {code}", level="city"))
        district = await regions.create_region(conn, COMMAND, region(code=f"{code}-D", name="两江新区", level="district", parent_id=str(city.id)))
        street = await regions.create_region(conn, COMMAND, region(code=code, name=name, level="street", parent_id=str(district.id)))
    return street.id


def handover_to(region_id: UUID, **fields: object):
    """A hand-over to ``region_id`` with a contact (name and phone given or made up)."""
    from service.handover.model import HandoverCreate

    return HandoverCreate(
        region_id=region_id,
        contact_name=fields.pop("contact_name", "李社区"),  # type: ignore[arg-type]
        contact_phone=fields.pop("contact_phone", "13900001111"),  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )
