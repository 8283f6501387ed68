"""Shared helpers for access tests: sites through the REST API, staff through the service."""

from __future__ import annotations

import uuid

import msgspec
from uuid import UUID

from service.access import service
from service.access.model import ApiClientCreate, Role, StaffCreate
from service.access.service import SYSTEM_PRINCIPAL
from tests.conftest import make_principal

PASSWORD = "correct-horse-1"


async def make_site(client, auth, code: str | None = None) -> UUID:
    code = code or f"S-{uuid.uuid4().hex[:6]}"
    response = await client.post("/api/v1/sites", json={"code": code, "name": code}, headers=auth(make_principal(Role.COMMAND)))
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"])


async def make_staff(db, settings, username: str, role: str, site_ids=(), phone: str | None = None, password: str = PASSWORD):
    async with db.transaction() as conn:
        return await service.create_staff(
            conn,
            settings,
            SYSTEM_PRINCIPAL,
            msgspec.convert(
                {"username": username, "display_name": username.title(), "password": password, "role": role, "site_ids": list(site_ids), "phone": phone},
                StaffCreate,
            ),
        )


async def make_client(db, role: str, site_ids):
    async with db.transaction() as conn:
        return await service.create_client(
            conn,
            SYSTEM_PRINCIPAL,
            msgspec.convert({"name": f"{role} client", "role": role, "site_ids": None if site_ids is None else list(site_ids)}, ApiClientCreate),
        )
