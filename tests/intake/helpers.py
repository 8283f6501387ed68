"""Shared test helpers for intake: referrals built from the stays helpers' valid people, a tracing key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec

from service.access import service as access
from service.access.model import ApiClientCreate, Principal, Role
from service.access.service import SYSTEM_PRINCIPAL
from service.intake import service as intake
from service.intake.model import ReferralCreate, ReferralSubmitted
from service.stays.model import ResidentCreate
from tests.conftest import make_principal
from tests.stays.helpers import person


def tracer(site_ids: list[UUID]) -> Principal:
    return make_principal(Role.TRACING, site_ids)


def referral(site_id: UUID, who: ResidentCreate | None = None, *, hours_ago: float = 6, **fields: Any) -> ReferralCreate:
    fields.setdefault("category", "close_contact")
    fields.setdefault("index_case_ref", "IC-1")
    fields.setdefault("identified_at", datetime.now(UTC) - timedelta(hours=hours_ago))
    return ReferralCreate(site_id=site_id, person=who or person(), **fields)


async def submit(db: Any, settings: Any, principal: Principal, data: ReferralCreate) -> ReferralSubmitted:
    async with db.transaction() as conn:
        return await intake.submit(conn, principal, settings, data)


async def tracing_key(db: Any, site_ids: list[UUID]) -> str:
    async with db.transaction() as conn:
        client = await access.create_client(
            conn, SYSTEM_PRINCIPAL, msgspec.convert({"name": "流调 A", "role": "tracing", "site_ids": [str(s) for s in site_ids]}, ApiClientCreate)
        )
    return client.api_key or ""
