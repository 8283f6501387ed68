"""Demo seed step of resident care (after stays, access and supplies): vulnerability flags on a few
stays, and at every site care requests of each kind in every state, one of them overdue, with stock
issued against the medicine and daily-necessities requests. Reads ``demo["sites"]``, ``demo["stays"]``,
``demo["staff"]``, ``demo["items"]`` and ``demo["settings"]``; fills ``demo["care_requests"]``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec

from service.access.demo import demo_staff
from service.access.model import Role
from service.access.service import SYSTEM_PRINCIPAL
from service.operations.care import service, store
from service.operations.care.model import CareIssueCreate, CareProfileSet, CareRequestCreate, CareRequestMove
from service.stays import service as stays
from service.stays.model import StayStatus

FLAGS = [(["elderly", "chronic_disease", "medication_needs"], "高血压，每日服药"), (["child"], "随父母隔离，8 岁"),
         (["pregnant"], "孕 20 周"), (["mental_health"], "焦虑，需心理疏导")]
# kind, detail, final state, requested minutes ago, (sku, quantity) issued
PLAN: list[tuple[str, str, str, int, tuple[str, int] | None]] = [
    ("meal", "清真餐", "open", 20, None),
    ("meal", "少盐饮食", "done", 60 * 5, None),
    ("medicine", "降压药（自备药已用完）", "in_progress", 90, ("MED-PARA", 1)),
    ("daily_necessities", "毛巾、牙刷", "done", 60 * 26, ("DAY-TOWEL", 2)),
    ("psychological_support", "失眠，情绪低落", "open", 60 * 6, None),  # past its 4 h: overdue
    ("other", "需要手机充电线", "declined", 60 * 3, None),
]
PATH = {"open": [], "in_progress": ["start"], "done": ["start", "complete"], "declined": ["decline"]}
RESOLUTION = {"complete": "已送达", "decline": "隔离点无此物品，已告知家属送来"}


async def seed_demo(conn: asyncpg.Connection, demo: dict[str, Any]) -> None:
    settings = demo["settings"]
    items: dict[str, UUID] = demo.get("items", {})
    found = await stays.get_stays(conn, SYSTEM_PRINCIPAL, list(demo.get("stays", [])))
    by_site: dict[UUID, list[UUID]] = {}
    for stay_id in demo.get("stays", []):
        stay = found.get(stay_id)
        if stay is not None and stay.status is StayStatus.ACTIVE:
            by_site.setdefault(stay.site_id, []).append(stay_id)
    made: list[UUID] = []
    now = datetime.now().astimezone()
    for n, site_id in enumerate(demo.get("sites", []), start=1):
        staff = demo_staff(demo, f"staff-{n}", Role.SITE_STAFF, site_id)
        medic = demo_staff(demo, f"medic-{n}", Role.MEDIC, site_id)
        candidates = by_site.get(site_id, [])
        for (flags, note), stay_id in zip(FLAGS, candidates, strict=False):
            await service.set_profile(conn, medic, msgspec.convert({"stay_id": stay_id, "flags": flags, "note": note}, CareProfileSet))
        for (kind, detail, state, ago, issued), stay_id in zip(PLAN, candidates, strict=False):
            request = await service.create_request(
                conn, staff, msgspec.convert({"stay_id": stay_id, "kind": kind, "detail": detail, "id": str(uuid4())}, CareRequestCreate)
            )
            for action in PATH[state]:
                if action == "complete" and issued and issued[0] in items:
                    sku, quantity = issued
                    await service.issue_stock(
                        conn, staff, settings, CareIssueCreate(care_request_id=request.id, item_id=items[sku], quantity=quantity, id=uuid4())
                    )
                move = CareRequestMove(action=action, version=request.version, resolution=RESOLUTION.get(action, ""))  # type: ignore[arg-type]
                request = await service.move_request(conn, staff, request.id, move)
            if state == "in_progress" and issued and issued[0] in items:
                sku, quantity = issued
                await service.issue_stock(
                    conn, staff, settings, CareIssueCreate(care_request_id=request.id, item_id=items[sku], quantity=quantity, id=uuid4())
                )
            requested_at = now - timedelta(minutes=ago)
            await store.demo_backdate(
                conn, request.id,
                {"requested_at": requested_at, "started_at": requested_at + timedelta(minutes=10),
                 "closed_at": requested_at + timedelta(minutes=40)},
            )
            made.append(request.id)
    demo["care_requests"] = made
