"""Demo seed step of regions (runs last): the tree 重庆市 -> 两江新区 -> streets, the demo sites
placed under their streets (each site under its own street, so a site's staff never sees the
other's street), a district command account, and the daily snapshots of the history the
earlier steps wrote (backfilled from the ledgers, as ``backfill-snapshots`` does).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service.access import demo as access_demo
from service.access import service as access
from service.access.model import StaffCreate
from service.regions import service
from service.regions.model import RegionCreate, RegionLevel

# code, name, level, parent code
TREE = [
    ("CQ", "重庆市", RegionLevel.CITY, None),
    ("CQ-LJ", "两江新区", RegionLevel.DISTRICT, "CQ"),
    ("LJ-LIJIA", "礼嘉街道", RegionLevel.STREET, "CQ-LJ"),
    ("LJ-YUELAI", "悦来街道", RegionLevel.STREET, "CQ-LJ"),
    ("LJ-JINSHAN", "金山街道", RegionLevel.STREET, "CQ-LJ"),
    ("LJ-KANGMEI", "康美街道", RegionLevel.STREET, "CQ-LJ"),
]
# The n-th demo site goes under the n-th street.
SITE_STREETS = ["LJ-LIJIA", "LJ-YUELAI"]
HISTORY_DAYS = 14
DISTRICT_USER = "district-lj"


async def seed_demo(conn: asyncpg.Connection, demo: dict[str, Any]) -> None:
    principal = access.SYSTEM_PRINCIPAL
    regions: dict[str, UUID] = {}
    for code, name, level, parent in TREE:
        data = RegionCreate(code=code, name=name, level=level, parent_id=regions[parent] if parent else None)
        regions[code] = (await service.create_region(conn, principal, data)).id
    for site_id, street in zip(demo.get("sites", []), SITE_STREETS, strict=False):
        await service.place_site(conn, principal, regions[street], site_id)
    account = msgspec.convert(
        {"username": DISTRICT_USER, "display_name": "两江新区指挥部", "password": access_demo.DEMO_PASSWORD,
         "role": "command", "region_ids": [str(regions["CQ-LJ"])], "phone": "13800000900"},
        StaffCreate,
    )
    await access.create_staff(conn, demo["settings"], principal, account)
    today = datetime.now(UTC).date()
    await service.backfill(conn, None, today - timedelta(days=HISTORY_DAYS), today)
    demo["regions"] = regions
