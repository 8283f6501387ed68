"""Health test helpers: a site with residents admitted, check-in payloads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from service.sites import service as sites
from service.stays import service as stays
from service.stays.model import Stay
from tests.stays.helpers import admission, make_site, person, staff


async def ward(db, settings, *, residents: int = 2, floors: dict[int, tuple[int, int]] | None = None, days_ago: int = 0,
               households: list[str | None] | None = None, rooms: list[str] | None = None, code: str = "LJ-01",
               time_zone: str = "Asia/Shanghai") -> tuple[UUID, list[Stay]]:
    """A site with ``residents`` admitted ``days_ago`` days ago, in ``rooms`` (numbers) or where allocation puts them."""
    site_id = await make_site(db, code=code, floors=floors or {2: (max(residents, 1), 2)}, time_zone=time_zone)
    worker = staff(site_id)
    admitted = []
    async with db.transaction() as conn:
        by_number = {r.number: r.id for r in await sites.list_site_rooms(conn, worker, site_id)}
        for i in range(residents):
            household = households[i] if households else None
            room_id = by_number[rooms[i]] if rooms else None
            entry = admission(site_id, resident=person(household), room_id=room_id, admitted_at=datetime.now(UTC) - timedelta(days=days_ago))
            admitted.append(await stays.admit(conn, worker, settings, entry))
    return site_id, admitted


def checkin(stay_id: UUID, **fields: Any) -> dict[str, Any]:
    body = {"id": str(uuid.uuid4()), "stay_id": str(stay_id), "recorded_at": datetime.now(UTC).isoformat(), "temperature_c": 36.6, "spo2": 98, "pulse": 72}
    body.update(fields)
    return body
