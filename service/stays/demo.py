"""Demo seed step of sites and stays (runs first): two Liangjiang sites, 8 floors x 30 rooms each,
the seeded regimes, and residents of every category admitted over the last nine days.

Set-based: rooms by floor, residents and stays each in one INSERT ... unnest, room states in one UPDATE.
Fills ``demo["sites"]`` (site ids), ``demo["rooms"]`` ({site id: [room ids]}) and ``demo["stays"]``
(active stay ids, oldest admission first) for the later steps.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from stdnum.cn import ric

from service import bus
from service.access import crypto
from service.access.service import SYSTEM_PRINCIPAL
from service.sites import service as sites
from service.sites.model import FloorCreate, Room, RoomStatus, Site, SiteCreate
from service.stays import store
from service.stays.model import Category, Regime
from service.stays.service import local_date, release_at

SITES = [
    SiteCreate(code="LJ-LIJIA", name="礼嘉隔离酒店", region_path="两江新区/礼嘉街道", address="重庆市两江新区礼嘉街道金渝大道88号", contact="023-6700 0101"),
    SiteCreate(code="LJ-YUELAI", name="悦来国际会议酒店隔离点", region_path="两江新区/悦来街道", address="重庆市两江新区悦来大道66号", contact="023-6700 0202"),
]
FLOORS = range(2, 10)  # 8 floors
ROOMS_PER_FLOOR = 30
FAMILY_ROOMS = range(26, 31)  # the last five rooms of a floor have two beds
# floor -> (category, arrival batch prefix, origin area, risk level); floor 9 is kept for turnover.
FLOOR_PLAN = {
    2: ("close_contact", "渝北-流调-A", "渝北区/回兴街道", "high"),
    3: ("close_contact", "江北-流调-B", "江北区/观音桥街道", "high"),
    4: ("secondary_contact", "渝北-次密-C", "渝北区/龙塔街道", "medium"),
    5: ("inbound_traveller", "CA-438", "境外/法兰克福", None),
    6: ("key_area_arrival", "G1762", "上海市/浦东新区", "high"),
    7: ("key_area_arrival", "G2218", "西安市/雁塔区", "medium"),
    8: ("other", "社区转送", "两江新区/金山街道", "low"),
}
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁"
    "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = [
    "伟",
    "芳",
    "娜",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀英",
    "霞",
    "平",
    "刚",
    "桂英",
    "建华",
    "小红",
    "志强",
    "文",
    "俊",
    "欣怡",
    "子涵",
    "浩然",
]
REGION_CODES = ["500112", "500105", "500109", "500106", "500103"]


def _id_number(rng: random.Random, birth: datetime) -> str:
    body = f"{rng.choice(REGION_CODES)}{birth:%Y%m%d}{rng.randrange(1000):03d}"
    return body + ric.calc_check_digit(body + "0")  # stdnum expects the check position present


def _resident_and_stay(
    rng: random.Random, settings: Any, site: Site, room: Room, bed: int, admitted_at: datetime, regime: Regime, household: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A made-up resident (encrypted as the service would) and their stay in ``room``'s ``bed``."""
    category, batch, area, risk = FLOOR_PLAN[room.floor]
    resident_id = uuid4()
    birth = datetime(1950, 1, 1) + timedelta(days=rng.randrange(0, 26000))
    passport = category == "inbound_traveller" and bed == 1
    number = f"E{rng.randrange(10**8):08d}" if passport else _id_number(rng, birth)
    phone = f"139{rng.randrange(10**8):08d}"
    day_one = local_date(admitted_at, site.time_zone)
    resident = {
        "id": resident_id,
        "site_id": site.id,
        "name": rng.choice(SURNAMES) + rng.choice(GIVEN),
        "sex": rng.choice(["female", "male"]),
        "birth_date": birth.date(),
        "document_type": "passport" if passport else "mainland_id",
        "document_enc": crypto.encrypt(settings, number, record_id=resident_id.bytes),
        "document_index": crypto.blind_index(settings, number),
        "document_tail": number[-4:],
        "phone_enc": crypto.encrypt(settings, phone, record_id=resident_id.bytes),
        "phone_tail": phone[-4:],
        "household_key": household,
    }
    stay = {
        "id": uuid4(),
        "resident_id": resident_id,
        "site_id": site.id,
        "room_id": room.id,
        "room_number": room.number,
        "floor": room.floor,
        "bed": bed,
        "category": category,
        "origin_area": area,
        "risk_level": risk,
        "arrival_batch": f"{batch}-{day_one:%m%d}",
        "regime_id": regime.id,
        "time_zone": site.time_zone,
        "admitted_at": admitted_at,
        "day_one": day_one,
        "planned_release_at": release_at(day_one, regime.centralized_days, site.time_zone),
    }
    return resident, stay


async def seed_demo(conn: asyncpg.Connection, demo: dict[str, Any]) -> None:
    settings = demo["settings"]
    rng = random.Random(20220501)
    now = datetime.now(UTC)
    principal = SYSTEM_PRINCIPAL
    actor = principal.ref
    regimes = {r.category: r for r in await store.list_regimes(conn) if r.category}
    site_ids: list[UUID] = []
    rooms_by_site: dict[UUID, list[UUID]] = {}
    residents: list[dict[str, Any]] = []
    stays: list[dict[str, Any]] = []
    room_states: dict[UUID, tuple[RoomStatus, int]] = {}
    for site_data in SITES:
        site = await sites.create_site(conn, principal, site_data)
        site_ids.append(site.id)
        rooms = []
        for floor in FLOORS:
            singles = await sites.create_floor(
                conn, principal, site.id, FloorCreate(floor=floor, first=floor * 100 + 1, last=floor * 100 + FAMILY_ROOMS[0] - 1)
            )
            doubles = await sites.create_floor(
                conn, principal, site.id, FloorCreate(floor=floor, first=floor * 100 + FAMILY_ROOMS[0], last=floor * 100 + FAMILY_ROOMS[-1], beds=2)
            )
            rooms += singles + doubles
        rooms_by_site[site.id] = [r.id for r in rooms]
        for room in rooms:
            if room.floor == 9:  # the turnover floor: a few rooms in each stage
                n = int(room.number) % 100
                status = {1: RoomStatus.VACATED, 2: RoomStatus.VACATED, 3: RoomStatus.DISINFECTING, 4: RoomStatus.AIRING, 5: RoomStatus.OUT_OF_SERVICE}
                if n in status:
                    room_states[room.id] = (status[n], 0)
                continue
            category = FLOOR_PLAN[room.floor][0]
            if rng.random() > 0.7:  # ~70% of rooms on a floor are taken
                continue
            days_ago = rng.randrange(0, 9)
            admitted_at = now - timedelta(days=days_ago, hours=rng.randrange(0, 12), minutes=rng.randrange(60))
            household = f"HH-{site.code}-{room.number}" if room.beds > 1 else None
            regime = regimes[Category.CLOSE_CONTACT if category == "other" else Category(category)]
            for bed in range(1, room.beds + 1):
                resident, stay = _resident_and_stay(rng, settings, site, room, bed, admitted_at, regime, household)
                residents.append(resident)
                stays.append(stay)
            room_states[room.id] = (RoomStatus.OCCUPIED, room.beds)
    await store.bulk_insert_residents(conn, residents, actor)
    await store.bulk_insert_stays(conn, stays, actor)
    await sites.seed_room_states(conn, principal, room_states)
    for site_id in site_ids:
        mine = [s for s in stays if s["site_id"] == site_id]
        await bus.emit(conn, "stays.demo_seeded", site_id=site_id, actor=actor, data={"stays": len(mine)})
    demo["sites"] = site_ids
    demo["rooms"] = rooms_by_site
    demo["stays"] = [s["id"] for s in sorted(stays, key=lambda s: s["admitted_at"])]


HISTORY_DAYS = 14


async def seed_history(conn: asyncpg.Connection, demo: dict[str, Any]) -> None:
    """Demo step after ``seed_demo``: two weeks of past stays, so that daily figures have a shape.

    Residents admitted 14 to 8 days ago (10-21 a day and site, in the rooms of floors 2-8) left
    at the end of their centralized period, a few earlier by transfer. Their beds are free
    again: only closed stays are added. Fills ``demo["past_stays"]``.
    """
    settings = demo["settings"]
    rng = random.Random(20220415)
    now = datetime.now(UTC)
    principal = SYSTEM_PRINCIPAL
    regimes = {r.category: r for r in await store.list_regimes(conn) if r.category}
    found = await sites.get_sites(conn, principal, list(demo.get("sites", [])))
    residents: list[dict[str, Any]] = []
    stays: list[dict[str, Any]] = []
    for site_id, site in found.items():
        rooms = [r for r in (await sites.get_rooms(conn, principal, demo["rooms"][site_id])).values() if r.floor in FLOOR_PLAN]
        for days_ago in range(HISTORY_DAYS, 7, -1):
            for _ in range(rng.randrange(10, 22)):
                room = rng.choice(rooms)
                category = FLOOR_PLAN[room.floor][0]
                regime = regimes[Category.CLOSE_CONTACT if category == "other" else Category(category)]
                admitted_at = now - timedelta(days=days_ago, hours=rng.randrange(0, 12), minutes=rng.randrange(60))
                resident, stay = _resident_and_stay(rng, settings, site, room, 1, admitted_at, regime, None)
                residents.append(resident)
                stays.append(stay)
                if rng.random() < 0.04:  # a positive test, then off to hospital
                    stay |= {"outcome": "transferred", "ended_at": admitted_at + timedelta(days=rng.randrange(2, 5), hours=rng.randrange(0, 8))}
                else:
                    stay |= {"outcome": "released", "ended_at": stay["planned_release_at"] + timedelta(hours=rng.randrange(1, 6))}
    await store.bulk_insert_residents(conn, residents, principal.ref)
    await store.bulk_insert_stays(conn, stays, principal.ref)
    demo["past_stays"] = [s["id"] for s in stays]
