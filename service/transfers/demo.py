"""Demo seed step of transfers (after stays/access/health): destination facilities (one accepts each
transfer before dispatch), a hospital client linked to one of them, and at every site transfers in every
state with response times spread over the past days, and arrivals with the hospital's outcomes (admitted,
discharged, returned to the site: a new stay there). Reads ``demo["sites"]``, ``demo["stays"]`` and ``demo["staff"]``; fills ``demo["facilities"]``
and ``demo["transfers"]``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service.access import service as access
from service.access.demo import demo_staff
from service.access.model import ApiClientCreate, Principal, PrincipalKind, Role
from service.access.service import SYSTEM_PRINCIPAL
from service.settings import Settings
from service.stays import service as stays
from service.stays.model import StayStatus
from service.transfers import service, store
from service.transfers.model import FacilityCreate, OutcomeReport, TransferMove, TransferRequest

FACILITIES = msgspec.convert(
    [
        {"code": "CQ-PHMTC", "name": "重庆市公共卫生医疗救治中心", "kind": "designated_hospital",
         "region_path": "重庆市/沙坪坝区", "contact": "023-6530 0000", "capacity_note": "负压病房 60 张"},
        {"code": "LJ-FANGCANG", "name": "两江新区方舱医院", "kind": "makeshift_hospital",
         "region_path": "重庆市/两江新区", "contact": "023-6700 9999", "capacity_note": "轻症及无症状 1200 床"},
        {"code": "CQMU-1", "name": "重庆医科大学附属第一医院", "kind": "designated_hospital",
         "region_path": "重庆市/渝中区", "contact": "023-8901 1111", "capacity_note": "发热门诊、重症",
         "requires_acceptance": True},
    ],
    list[FacilityCreate],
)
HOSPITAL_KEY = "qsk_demo-hospital-key"  # linked to CQ-PHMTC: a hospital key needs its facility
VEHICLE = {"plate": "渝A·J0120", "kind": "negative_pressure_ambulance", "driver": "王建国", "escort": "李医生、护士张"}

# Per site: (final state, reason, urgency, requested minutes ago, minutes to dispatch, minutes dispatch -> arrival).
PLAN: list[tuple[str, str, str, int, int, int]] = [
    ("requested", "symptoms", "emergency", 12, 0, 0),
    ("requested", "family_request", "routine", 95, 0, 0),
    ("approved", "other_medical", "urgent", 40, 0, 0),
    ("destination_approved", "symptoms", "urgent", 30, 0, 0),
    ("dispatched", "positive_test", "urgent", 55, 28, 0),
    ("departed", "positive_test", "emergency", 70, 18, 0),
    ("arrived", "positive_test", "urgent", 60 * 26, 35, 50),
    ("arrived", "symptoms", "emergency", 60 * 50, 15, 40),
    ("arrived", "other_medical", "routine", 60 * 75, 90, 65),
    ("rejected", "family_request", "routine", 60 * 30, 0, 0),
    ("cancelled", "symptoms", "urgent", 60 * 20, 0, 0),
]
PATH = {
    "requested": [],
    "approved": ["approve"],
    "destination_approved": ["approve", "accept"],
    "dispatched": ["approve", "dispatch"],
    "departed": ["approve", "dispatch", "depart"],
    "arrived": ["approve", "dispatch", "depart", "arrive"],
    "rejected": ["reject"],
    "cancelled": ["approve", "cancel"],
}
NOTES = {"reject": "经评估无需转运，留观", "cancel": "复测体温正常，取消转运", "arrive": "已交接至感染科隔离病区",
         "accept": "医院电话确认接收"}
# The hospital's outcomes of the arrivals (PLAN order), sent by the demo hospital key's facility.
OUTCOMES: list[list[str]] = [["admitted"], ["admitted", "discharged"], ["admitted", "returned"]]


async def seed_demo(conn: asyncpg.Connection, demo: dict[str, Any]) -> None:
    facilities = [await service.create_facility(conn, SYSTEM_PRINCIPAL, f) for f in FACILITIES]
    demo["facilities"] = [f.id for f in facilities]
    client = await access.create_client(
        conn,
        SYSTEM_PRINCIPAL,
        msgspec.convert(
            {"name": "重庆市公共卫生医疗救治中心 接收系统", "role": "hospital", "site_ids": demo.get("sites") or None, "facility_id": facilities[0].id},
            ApiClientCreate,
        ),
        preset_key=HOSPITAL_KEY,
    )
    sites = demo.get("sites") or None
    hospital = Principal(kind=PrincipalKind.CLIENT, id=client.id, role=Role.HOSPITAL,
                         site_ids=frozenset(sites) if sites else None, facility_id=facilities[0].id)
    settings: Settings = demo["settings"]
    found = await stays.get_stays(conn, SYSTEM_PRINCIPAL, list(demo.get("stays", [])))
    by_site: dict[UUID, list[UUID]] = {}
    # The most recent admissions: far from release, so nothing else in the demo touches them.
    for stay_id in reversed(demo.get("stays", [])):
        stay = found.get(stay_id)
        if stay is not None and stay.status is StayStatus.ACTIVE:
            by_site.setdefault(stay.site_id, []).append(stay_id)
    made: list[UUID] = []
    now = datetime.now().astimezone()
    for n, site_id in enumerate(demo.get("sites", []), start=1):
        requester = demo_staff(demo, f"staff-{n}", Role.SITE_STAFF, site_id)
        medic = demo_staff(demo, f"medic-{n}", Role.MEDIC, site_id)
        candidates = by_site.get(site_id, [])
        outcomes = iter(OUTCOMES)
        for (state, reason, urgency, ago, to_dispatch, to_arrival), stay_id in zip(PLAN, candidates, strict=False):
            transfer = await service.request_transfer(
                conn, requester, msgspec.convert({"stay_id": stay_id, "reason": reason, "urgency": urgency}, TransferRequest)
            )
            reports = next(outcomes, []) if state == "arrived" else []
            # Arrivals with outcomes go to the demo hospital key's facility; the accepted one to the one that accepts.
            destination = facilities[2 if state == "destination_approved" else 0 if reports else len(made) % 2].id
            for action in PATH[state]:
                fields: dict[str, Any] = {"action": action, "version": transfer.version, "note": NOTES.get(action, "")}
                if action == "approve":
                    fields["destination_id"] = destination
                if action == "dispatch":
                    fields["vehicle"] = VEHICLE
                transfer = await service.move_transfer(conn, medic, transfer.id, msgspec.convert(fields, TransferMove))
            requested_at = now - timedelta(minutes=ago)
            dispatched_at = requested_at + timedelta(minutes=to_dispatch or 20)
            await store.demo_backdate(
                conn,
                transfer.id,
                {
                    "requested_at": requested_at,
                    "approved_at": requested_at + timedelta(minutes=min(6, ago // 2)),
                    "dispatched_at": dispatched_at,
                    "departed_at": dispatched_at + timedelta(minutes=8),
                    "arrived_at": dispatched_at + timedelta(minutes=to_arrival or 45),
                    "closed_at": requested_at + timedelta(minutes=30),
                },
            )
            for outcome in reports:
                report = msgspec.convert({"outcome": outcome}, OutcomeReport)
                transfer = await service.report_outcome(conn, hospital, settings, transfer.id, report)
            made.append(transfer.id)
    demo["transfers"] = made
