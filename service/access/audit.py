"""The audit trail: who read unmasked personal data or wrote health data, and why.

Rows are append-only (a trigger refuses UPDATE, DELETE and TRUNCATE). Write
them in the same transaction as the read or write they describe.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from service.access.model import Principal
from service.observability import current_request_id

_INSERT = """
INSERT INTO audit_log (actor, actor_role, action, site_id, subject_id, fields, purpose, request_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""


async def record(
    conn: asyncpg.Connection,
    principal: Principal,
    action: str,
    *,
    site_id: UUID | None,
    subject_id: UUID | None,
    fields: Sequence[str] = (),
    purpose: str | None = None,
) -> None:
    """Append one audit row. ``action`` is ``<thing>.<verb>``, e.g. ``resident.unmask``."""
    await conn.execute(
        _INSERT, principal.ref, principal.role.value, action, site_id, subject_id, list(fields), purpose, current_request_id()
    )


async def record_many(
    conn: asyncpg.Connection,
    principal: Principal,
    action: str,
    rows: Sequence[tuple[UUID | None, UUID | None]],
    *,
    fields: Sequence[str] = (),
    purpose: str | None = None,
) -> None:
    """Append one row per (site_id, subject_id), in one statement (batch writes)."""
    if not rows:
        return
    await conn.executemany(
        _INSERT,
        [(principal.ref, principal.role.value, action, s, subj, list(fields), purpose, current_request_id()) for s, subj in rows],
    )
