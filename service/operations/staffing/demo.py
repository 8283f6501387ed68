"""Demo seed step of the staff closed loop (after stays, access, health): at every site a roster of
workers of each post (some in the red zone), shifts over the last three days by floor, staff check-ins
(one with a fever), swabs (one pending, the red zone's due again), a worker in post-shift isolation,
and an open exposure review of the staff of a floor where a resident turned positive. Reads
``demo["sites"]``, ``demo["stays"]`` and ``demo["staff"]``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import msgspec

from service.access.demo import demo_staff
from service.access.model import Role
from service.access.service import SYSTEM_PRINCIPAL
from service.operations.staffing import service
from service.operations.staffing.model import (
    ShiftCreate,
    StaffCheckinCreate,
    StaffResultEntry,
    StaffSampleCreate,
    StatusChange,
    WorkerCreate,
)
from service.stays import service as stays
from service.stays.model import StayStatus

# name, post, red zone
WORKERS = [("刘医生", "medical", True), ("陈护士", "medical", True), ("赵保安", "security", False), ("孙保洁", "cleaning", True),
           ("周厨师", "catering", False), ("吴司机", "logistics", False)]


async def seed_demo(conn: asyncpg.Connection, demo: dict[str, Any]) -> None:
    found = await stays.get_stays(conn, SYSTEM_PRINCIPAL, list(demo.get("stays", [])))
    active = [s for s in found.values() if s.status is StayStatus.ACTIVE]
    now = datetime.now().astimezone().replace(minute=0, second=0, microsecond=0)
    for n, site_id in enumerate(demo.get("sites", []), start=1):
        manager = demo_staff(demo, f"manager-{n}", Role.SITE_MANAGER, site_id)
        medic = demo_staff(demo, f"medic-{n}", Role.MEDIC, site_id)
        floors: list[int | None] = [*sorted({s.floor for s in active if s.site_id == site_id})] or [None]
        workers = [
            await service.add_worker(conn, manager, WorkerCreate(site_id=site_id, name=name, post=post, red_zone=red))  # type: ignore[arg-type]
            for name, post, red in WORKERS
        ]
        for i, worker in enumerate(workers):
            for day in range(3):  # 8-hour shifts ending before now, on the site's floors in turn
                starts = now - timedelta(days=day, hours=10 + (i % 3))
                await service.add_shift(conn, manager, ShiftCreate(
                    worker_id=worker.id, starts_at=starts, ends_at=starts + timedelta(hours=8), floor=floors[(i + day) % len(floors)]
                ))
            fever = i == 2
            await service.record_checkin(conn, medic, msgspec.convert({
                "worker_id": str(worker.id), "temperature_c": 37.8 if fever else 36.5, "recorded_at": (now - timedelta(hours=1)).isoformat(),
                "spo2": 98, "symptoms": ["cough", "fever"] if fever else [], "id": str(uuid4()),
            }, StaffCheckinCreate))
            # everyone swabbed yesterday (negative); the first worker also today, still pending
            swab = await service.record_sample(conn, medic, StaffSampleCreate(
                worker_id=worker.id, barcode=f"ST-{n}-{i}-1", collected_at=now - timedelta(days=1)
            ))
            await service.record_result(conn, medic, StaffResultEntry(staff_sample_id=swab.id, result="negative"))  # type: ignore[arg-type]
            if i == 0:
                await service.record_sample(conn, medic, StaffSampleCreate(worker_id=worker.id, barcode=f"ST-{n}-{i}-2", collected_at=now))
        # the cleaner's red-zone rotation ended: post-shift isolation
        cleaner = (await service.loops(conn, medic, [workers[3].id]))[workers[3].id]
        await service.set_status(conn, medic, StatusChange(
            worker_id=workers[3].id, status="isolating", version=cleaner.version, isolation_until=(now + timedelta(days=7)).date()  # type: ignore[arg-type]
        ))
        # a resident on a floor the staff worked turned positive: their exposure review is open
        case = next((s for s in active if s.site_id == site_id and s.floor == floors[0]), None)
        if case is not None:
            await service.open_exposure_reviews(conn, medic, case, reason="demo: resident positive")
