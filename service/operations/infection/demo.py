"""Demo seed step of infection control (after stays and access): at every site an inspection with two
findings (one overdue, one resolved), surface swabs (one positive, one pending), and the medical-waste
log (batches handed to the carrier, one sealed and waiting). Reads ``demo["sites"]`` and ``demo["staff"]``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from service.access.demo import demo_staff
from service.access.model import Role
from service.operations.infection import service
from service.operations.infection.model import (
    EnvironmentalResult,
    EnvironmentalSampleCreate,
    FindingCreate,
    FindingResolution,
    InspectionCreate,
    WasteCreate,
    WasteHandover,
)


async def seed_demo(conn: asyncpg.Connection, demo: dict[str, Any]) -> None:
    now = datetime.now().astimezone().replace(microsecond=0)
    for n, site_id in enumerate(demo.get("sites", []), start=1):
        medic = demo_staff(demo, f"medic-{n}", Role.MEDIC, site_id)
        staff = demo_staff(demo, f"staff-{n}", Role.SITE_STAFF, site_id)
        inspection = await service.record_inspection(conn, medic, msgspec.convert({
            "site_id": str(site_id), "inspected_at": (now - timedelta(days=3)).isoformat(), "zoning_ok": False, "ppe_ok": True,
            "disinfection_records_ok": False, "waste_ok": True, "note": "三区两通道标识不清；消毒记录缺 2 天",
        }, InspectionCreate))
        # overdue: due yesterday, still open
        await service.record_finding(conn, medic, msgspec.convert({
            "inspection_id": str(inspection.id), "area": "zoning", "severity": "high", "description": "缓冲区与清洁区之间无明显标识",
            "corrective_action": "张贴分区标识并拉设隔离带", "due_on": (now - timedelta(days=1)).date().isoformat(),
        }, FindingCreate))
        done = await service.record_finding(conn, medic, msgspec.convert({
            "inspection_id": str(inspection.id), "area": "disinfection_records", "severity": "medium", "description": "3 楼消毒记录缺失两天",
            "corrective_action": "补记并由楼层长每日签字", "due_on": (now + timedelta(days=2)).date().isoformat(),
        }, FindingCreate))
        await service.resolve_finding(conn, medic, done.id, FindingResolution(version=done.version, resolution="已补记，楼层长每日签字"))
        for i, (location, floor) in enumerate((("3 楼走廊门把手", 3), ("电梯按钮", None), ("污物间地面", 1))):
            swab = await service.record_env_sample(conn, medic, EnvironmentalSampleCreate(
                site_id=site_id, location=location, floor=floor, barcode=f"ENV-{n}-{i}", collected_at=now - timedelta(hours=20 - i)
            ))
            if i < 2:
                result = "positive" if i == 0 else "negative"
                await service.record_env_result(conn, medic, EnvironmentalResult(environmental_sample_id=swab.id, result=result))  # type: ignore[arg-type]
        for day in range(3, 0, -1):
            batch = await service.record_waste(conn, staff, WasteCreate(
                site_id=site_id, bags=6 + day, weight_kg=18.5 + day, sealed_by="孙保洁", sealed_at=now - timedelta(days=day, hours=2)
            ))
            await service.hand_over_waste(conn, staff, batch.id, WasteHandover(
                version=batch.version, carrier="重庆市医疗废物处置中心", carrier_receipt=f"YF-{n}{day:03d}", handed_over_at=now - timedelta(days=day)
            ))
        await service.record_waste(conn, staff, WasteCreate(site_id=site_id, bags=5, weight_kg=12.0, sealed_by="孙保洁", sealed_at=now - timedelta(hours=1)))
