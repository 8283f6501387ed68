"""Compiled persisted reads of the health domain: one statement builds the response (see service/readpath.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from service.access.model import Principal
from service.db import queries
from service.health.model import AlertState
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
    uuid_value,
)

Q = queries("health")


async def _site_alerts(conn: asyncpg.Connection, principal: Principal, args: dict[str, Any], now: datetime) -> str | None:
    after = args["after"] or (None, None)
    # As the resolver: no states (absent or null) means open ones; an empty list means every state.
    states = [AlertState.OPEN.value] if args["states"] is None else (args["states"] or None)
    return await Q.compiled_site_alerts(
        conn, site_id=args["siteId"], site_ids=principal.site_scope, states=states,
        after_at=after[0], after_id=after[1], limit=args["first"], now=now,
    )


SITE_ALERTS = compiled(
    Compiled(
        name="SiteAlerts",
        document="""
query SiteAlerts($siteId: UUID!, $states: [HealthAlertState!], $first: Int! = 50, $after: String) {
  siteAlerts(siteId: $siteId, states: $states, first: $first, after: $after) {
    edges {
      node {
        id stayId kind detail state raisedAt acknowledgedAt acknowledgedBy resolvedAt resolvedBy note version
        stay { id roomNumber floor bed quarantineDay resident { id name } }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}""",
        params=(
            Param("siteId", uuid_value, required=True),
            Param("states", list_of(enum_value(AlertState))),
            Param("first", limit_value, required=True, default=50),
            Param("after", cursor_value([datetime, UUID])),
        ),
        run=_site_alerts,
        topics=("health", "rooms"),
        sites=one_site,
        operation="health.read",
        bucket_s=900,
    )
)


async def _swabs_due(conn: asyncpg.Connection, principal: Principal, args: dict[str, Any], now: datetime) -> str | None:
    return await Q.compiled_swabs_due(conn, site_id=args["siteId"], site_ids=principal.site_scope, floor=args["floor"], now=now)


SWABS_DUE = compiled(
    Compiled(
        name="SwabsDue",
        document="""
query SwabsDue($siteId: UUID!, $floor: Int) {
  swabsDue(siteId: $siteId, floor: $floor) {
    stayId residentId floor roomNumber bed quarantineDay retest
    stay { id resident { id name } }
  }
}""",
        params=(Param("siteId", uuid_value, required=True), Param("floor", int_value)),
        run=_swabs_due,
        topics=("health", "rooms"),
        sites=one_site,
        operation="health.read",
        bucket_s=900,
    )
)


async def _checkins_due(conn: asyncpg.Connection, principal: Principal, args: dict[str, Any], now: datetime) -> str | None:
    return await Q.compiled_checkins_due(conn, site_id=args["siteId"], site_ids=principal.site_scope, floor=args["floor"], now=now)


CHECKINS_DUE = compiled(
    Compiled(
        name="CheckinsDue",
        document="""
query CheckinsDue($siteId: UUID!, $floor: Int) {
  checkinsDue(siteId: $siteId, floor: $floor) {
    stayId residentId floor roomNumber bed slotStart slotEnd lastCheckinAt overdue
    stay { id quarantineDay resident { id name } }
  }
}""",
        params=(Param("siteId", uuid_value, required=True), Param("floor", int_value)),
        run=_checkins_due,
        topics=("health", "rooms"),
        sites=one_site,
        operation="health.read",
        bucket_s=None,  # "overdue" and the slot move with the clock: compiled, never cached
    )
)
