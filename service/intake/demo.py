"""Demo seed step of intake (runs last): special beds (a cot, step-free, oxygen), risk areas of the demo's
origin areas, regime rules and a regime of three phases, and at each site a queue of referrals from the
tracing teams: waiting, assigned, admitted (the stay linked, hours to isolation measured), cancelled, one
person referred twice (merged), and a bus announced with beds reserved for the household on board (an
infant among them: a cot)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from stdnum.cn import ric

from service.access.service import SYSTEM_PRINCIPAL
from service.errors import DomainError
from service.intake import service
from service.intake.model import Assignment, Closing, ManifestCreate, ReferralAdmission, ReferralCreate, RiskAreaCreate
from service.sites import service as sites
from service.sites.model import RoomStatus
from service.stays import service as stays
from service.stays.model import BedPatch, RegimeCreate, RegimeRuleSet, ResidentCreate

AREAS = [("渝北区/回兴街道", "high"), ("江北区/观音桥街道", "high"), ("渝北区/龙塔街道", "medium"), ("两江新区/金山街道", "low")]
DEMO_REGIME = {
    "code": "other_high_7_7_7", "name": "高风险区其他人员 7天集中隔离+7天居家隔离+7天居家健康监测", "checkins_per_day": 2,
    "phases": [{"phase": "centralized", "days": 7, "test_days": [1, 2, 3, 5, 7]},
               {"phase": "home_isolation", "days": 7, "test_days": [1, 4, 7]}, {"phase": "home_monitoring", "days": 7, "test_days": [7]}],
}
PEOPLE = ["周晓梅", "吴建国", "郑丽华", "孙浩", "冯雨桐", "陈一鸣", "褚秀英"]


def _person(site_no: int, n: int) -> ResidentCreate:
    birth = date(1950, 1, 1) + timedelta(days=2917 * n + 97 * site_no)
    body = f"500112{birth:%Y%m%d}{(600 + 10 * site_no + n) % 1000:03d}"
    return ResidentCreate(
        name=PEOPLE[n % len(PEOPLE)],
        document_type="mainland_id",  # type: ignore[arg-type]
        document_number=body + ric.calc_check_digit(body + "0"),
        phone=f"1390{site_no:03d}{n:04d}",
        household_key=f"DEMO-R{site_no}-{n // 2}" if n in (4, 5) else None,
    )


async def _special_beds(conn: asyncpg.Connection, site_id: Any) -> None:
    """A cot beside a bed in an empty family room; a step-free bed and an oxygen bed in empty single rooms."""
    rooms = [r for r in await sites.list_site_rooms(conn, SYSTEM_PRINCIPAL, site_id) if r.status == RoomStatus.READY and not r.occupied]
    family = [r for r in rooms if r.beds >= 2][:1]
    singles = [r for r in rooms if r.beds == 1][:2]
    beds = await stays.room_beds(conn, SYSTEM_PRINCIPAL, [r.id for r in family + singles])
    wanted = [(family, 2, "cot"), (singles[:1], 1, "accessible"), (singles[1:2], 1, "oxygen")]
    for chosen, number, attribute in wanted:
        for room in chosen:
            bed = next(b for b in beds[room.id] if b.number == number)
            await stays.update_bed(conn, SYSTEM_PRINCIPAL, bed.id, msgspec.convert({"version": bed.version, attribute: True}, BedPatch))


async def seed_demo(conn: asyncpg.Connection, demo: dict[str, Any]) -> None:
    settings, now = demo["settings"], datetime.now(UTC)
    for code, level in AREAS:
        await service.declare_risk_area(conn, SYSTEM_PRINCIPAL, RiskAreaCreate(code=code, level=level, valid_from=now - timedelta(days=20)))  # type: ignore[arg-type]
    await stays.set_regime_rule(conn, SYSTEM_PRINCIPAL, RegimeRuleSet(category="secondary_contact", risk_level="high", regime_code="close_contact"))  # type: ignore[arg-type]
    # A regime of three phases for people of no listed category from high-risk areas.
    await stays.create_regime(conn, SYSTEM_PRINCIPAL, msgspec.convert(DEMO_REGIME, RegimeCreate))
    await stays.set_regime_rule(conn, SYSTEM_PRINCIPAL, RegimeRuleSet(category="other", risk_level="high", regime_code=DEMO_REGIME["code"]))  # type: ignore[arg-type]
    made: dict[Any, list[Any]] = {}
    for site_no, site_id in enumerate(demo.get("sites", []), start=1):
        await _special_beds(conn, site_id)
        ids = []
        for n in range(len(PEOPLE)):
            code, _ = AREAS[n % len(AREAS)]
            data = ReferralCreate(
                site_id=site_id,
                person=_person(site_no, n),
                category="secondary_contact" if n % 3 == 2 else "close_contact",  # type: ignore[arg-type]
                identified_at=now - timedelta(hours=3 + 5 * n),
                index_case_ref=f"渝北-病例{site_no}{n % 3:02d}",
                origin_area=code,
                risk_area_code=code,
                needs=["infant"] if n == 5 else [],  # type: ignore[list-item]
            )
            ids.append((await service.submit(conn, SYSTEM_PRINCIPAL, settings, data)).referral.id)
        # The same person traced from a second index case: merged into the first referral.
        again = ReferralCreate(site_id=site_id, person=_person(site_no, 0), category="close_contact", identified_at=now - timedelta(hours=30),  # type: ignore[arg-type]
                               index_case_ref=f"渝北-病例{site_no}99", origin_area=AREAS[0][0], risk_area_code=AREAS[0][0])
        await service.submit(conn, SYSTEM_PRINCIPAL, settings, again)
        await service.assign(conn, SYSTEM_PRINCIPAL, ids[1], Assignment(version=1))
        await service.cancel(conn, SYSTEM_PRINCIPAL, ids[6], Closing(version=1, reason="核酸阴性, 流调排除"))
        arrival = ReferralAdmission(arrival_batch="流调转运-1", admitted_at=now - timedelta(hours=1))
        for referral_id in ids[2:4]:
            try:
                async with conn.transaction():  # a savepoint: a full demo site keeps the referral waiting
                    await service.admit(conn, SYSTEM_PRINCIPAL, settings, referral_id, arrival)
            except DomainError:  # no free bed in the demo site: the referral keeps waiting
                continue
        # A bus announced with a household of two on board: their beds are reserved until it arrives.
        bus_data = ManifestCreate(site_id=site_id, vehicle_plate=f"渝A{site_no}2345", vehicle_kind="bus", escort="两江新区公安分局 转运组",  # type: ignore[arg-type]
                                  expected_at=now + timedelta(hours=2), referral_ids=ids[4:6])
        try:
            async with conn.transaction():
                await service.announce(conn, SYSTEM_PRINCIPAL, bus_data)
        except DomainError:  # no free bed in the demo site: the referrals keep waiting
            pass
        made[site_id] = ids
    demo["referrals"] = made
