"""Demo seed step of hand-overs (after regions: the streets): the latest released stay of each site's
history gets its hand-over record and release certificate, as release writes them."""

from __future__ import annotations

from typing import Any

import asyncpg

from service.access.service import SYSTEM_PRINCIPAL
from service.handover import service
from service.handover.model import HandoverCreate
from service.stays import service as stays

# The receiving street of the demo's hand-overs and its community worker (the contact is encrypted like any other).
STREET = "LJ-JINSHAN"
CONTACT = ("周网格", "13800000777")


async def seed_demo(conn: asyncpg.Connection, demo: dict[str, Any]) -> None:
    latest = await conn.fetch(
        "SELECT DISTINCT ON (site_id) id FROM stays WHERE id = ANY($1::uuid[]) AND outcome = 'released' ORDER BY site_id, ended_at DESC",
        demo.get("past_stays", []),
    )
    found = await stays.get_stays(conn, SYSTEM_PRINCIPAL, [r["id"] for r in latest])
    codes = {}
    for stay in found.values():
        regime = await stays.regime_of(conn, stay)
        data = HandoverCreate(region_id=demo["regions"][STREET], contact_name=CONTACT[0], contact_phone=CONTACT[1], note="演示 demo")
        issued = await service.record(conn, SYSTEM_PRINCIPAL, demo["settings"], stay, regime, data, released_at=stay.ended_at or stay.planned_release_at)
        codes[stay.id] = issued.certificate_code
    demo["certificates"] = codes
