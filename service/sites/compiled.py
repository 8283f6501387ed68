"""Compiled persisted reads of the sites domain: one statement builds the response (see service/readpath.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from service.access.model import Principal
from service.db import queries
from service.readpath import (
    Compiled,
    Param,
    compiled,
    cursor_value,
    enum_value,
    int_value,
    limit_value,
    one_site,
    uuid_value,
)
from service.sites.model import RoomStatus

R = queries("rooms")


async def _rooms(conn: asyncpg.Connection, principal: Principal, args: dict[str, Any], now: datetime) -> str:
    after = args["after"] or (None, None)
    return await R.compiled_rooms(
        conn, site_id=args["siteId"], site_ids=principal.site_scope, floor=args["floor"], status=args["status"],
        after_floor=after[0], after_number=after[1], limit=args["first"],
    )


ROOMS = compiled(
    Compiled(
        name="Rooms",
        document="""
query Rooms($siteId: UUID!, $floor: Int, $status: RoomStatus, $first: Int! = 50, $after: String) {
  rooms(siteId: $siteId, floor: $floor, status: $status, first: $first, after: $after) {
    edges {
      node {
        id number floor beds occupied freeBeds status statusSince statusReason version
        disinfection { id state startedAt finishedAt airingUntil failedInspections }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}""",
        params=(
            Param("siteId", uuid_value, required=True),
            Param("floor", int_value),
            Param("status", enum_value(RoomStatus)),
            Param("first", limit_value, required=True, default=50),
            Param("after", cursor_value([int, str])),
        ),
        run=_rooms,
        topics=("rooms",),
        sites=one_site,
        operation="rooms.read",
    )
)
