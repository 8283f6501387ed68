"""Compiled persisted reads of the transfers domain: one statement builds the response (see service/readpath.py)."""

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
    limit_value,
    one_site,
    uuid_value,
)

Q = queries("transfers")


async def _transfer_board(conn: asyncpg.Connection, principal: Principal, args: dict[str, Any], now: datetime) -> str:
    after = args["after"] or (None, None, None)
    return await Q.compiled_transfer_board(
        conn, site_id=args["siteId"], site_ids=principal.site_scope, after_rank=after[0], after_at=after[1], after_id=after[2],
        limit=args["first"], now=now,
    )


TRANSFER_BOARD = compiled(
    Compiled(
        name="TransferBoard",
        document="""
query TransferBoard($siteId: UUID!, $first: Int! = 50, $after: String) {
  transferBoard(siteId: $siteId, first: $first, after: $after) {
    edges {
      node {
        id stayId reason infectious urgency state version requestedAt approvedAt dispatchedAt departedAt vehiclePlate ageMinutes
        destination { id name }
        stay { id roomNumber floor bed resident { id name } }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}""",
        params=(
            Param("siteId", uuid_value, required=True),
            Param("first", limit_value, required=True, default=50),
            Param("after", cursor_value([int, datetime, UUID])),
        ),
        run=_transfer_board,
        topics=("transfers", "rooms"),
        sites=one_site,
        bucket_s=None,  # ageMinutes moves with the clock: compiled, never cached
        operation="transfers.read",
    )
)
