"""Compiled persisted reads of the stays domain: one statement builds the response (see service/readpath.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from service.access.model import Principal
from service.db import queries
from service.readpath import Compiled, Param, compiled, int_value, list_of, uuid_value

Q = queries("stays")


def _one_site(args: dict[str, Any], principal: Principal) -> list[Any]:
    # Another site's answer is a constant null: no version of it may enter the key.
    return [args["siteId"]] if principal.can_access_site(args["siteId"]) else []


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
  }
}""",
        params=(Param("siteId", uuid_value, required=True), Param("floor", int_value)),
        run=_room_board,
        topics=("rooms",),
        sites=_one_site,
        bucket_s=900,
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
