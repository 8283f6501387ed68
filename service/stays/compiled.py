"""Compiled persisted reads of the stays domain: one statement builds the response (see service/readpath.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

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
    list_of,
    one_site,
    str_value,
    uuid_value,
)
from service.stays.model import StayStatus

Q = queries("stays")


async def _room_board(conn: asyncpg.Connection, principal: Principal, args: dict[str, Any], now: datetime) -> str:
    return await Q.compiled_room_board(conn, site_id=args["siteId"], floor=args["floor"], site_ids=principal.site_scope, now=now)


ROOM_BOARD = compiled(
    Compiled(
        name="RoomBoard",
        operation="stays.read",
        document="""
query RoomBoard($siteId: UUID!, $floor: Int) {
  roomBoard(siteId: $siteId, floor: $floor) {
    room { id number floor beds occupied freeBeds status statusSince version }
    occupants {
      id bed category riskLevel arrivalBatch admittedAt plannedReleaseAt quarantineDay
      resident { id name sex birthYear }
    }
    reservedBeds { bed expiresAt }
  }
}""",
        params=(Param("siteId", uuid_value, required=True), Param("floor", int_value)),
        run=_room_board,
        topics=("rooms",),
        sites=one_site,
        bucket_s=900,
        compact=True,
    )
)


def _occupancy_scope(args: dict[str, Any], principal: Principal) -> list[Any] | None:
    if args["siteIds"] is None:
        return principal.site_scope
    return [s for s in args["siteIds"] if principal.can_access_site(s)]


async def _occupancy(conn: asyncpg.Connection, principal: Principal, args: dict[str, Any], now: datetime) -> str:
    return await Q.compiled_occupancy(conn, site_ids=_occupancy_scope(args, principal), now=now)


OCCUPANCY = compiled(
    Compiled(
        name="Occupancy",
        operation="occupancy.read",
        document="""
query Occupancy($siteIds: [UUID!]) {
  occupancy(siteIds: $siteIds) {
    sites { siteId rooms bedsTotal bedsOccupied bedsReady bedsInTurnover bedsOutOfService releasesDueToday releasesDueTomorrow }
    total { siteId rooms bedsTotal bedsOccupied bedsReady bedsInTurnover bedsOutOfService releasesDueToday releasesDueTomorrow }
  }
}""",
        params=(Param("siteIds", list_of(uuid_value)),),
        run=_occupancy,
        topics=("rooms",),
        sites=_occupancy_scope,
        bucket_s=900,
    )
)


async def _stays(conn: asyncpg.Connection, principal: Principal, args: dict[str, Any], now: datetime) -> str:
    after = args["after"] or (None, None)
    return await Q.compiled_stays(
        conn, site_id=args["siteId"], site_ids=principal.site_scope, status=args["status"], arrival_batch=args["arrivalBatch"],
        after_at=after[0], after_id=after[1], limit=args["first"], now=now,
    )


STAYS = compiled(
    Compiled(
        name="Stays",
        document="""
query Stays($siteId: UUID!, $status: StayStatus, $arrivalBatch: String, $first: Int! = 50, $after: String) {
  stays(siteId: $siteId, status: $status, arrivalBatch: $arrivalBatch, first: $first, after: $after) {
    edges {
      node {
        id residentId roomId roomNumber floor bed category riskLevel arrivalBatch regimeCode admittedAt plannedReleaseAt
        status endedAt outcome version quarantineDay
        resident { id name sex birthYear }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}""",
        params=(
            Param("siteId", uuid_value, required=True),
            Param("status", enum_value(StayStatus)),
            Param("arrivalBatch", str_value),
            Param("first", limit_value, required=True, default=50),
            Param("after", cursor_value([datetime, UUID])),
        ),
        run=_stays,
        topics=("rooms",),
        sites=one_site,
        operation="stays.read",
        bucket_s=900,
    )
)
