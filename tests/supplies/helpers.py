"""Shared helpers of the supplies tests: sites, items and movements through the public API."""

from __future__ import annotations

import uuid
from typing import Any

from service.access.model import Role
from tests.conftest import make_principal

COMMAND = make_principal(Role.COMMAND)


async def make_site(client: Any, auth: Any, code: str | None = None) -> str:
    code = code or f"S-{uuid.uuid4().hex[:6]}"
    response = await client.post("/api/v1/sites", json={"code": code, "name": code}, headers=auth(COMMAND))
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def make_item(client: Any, auth: Any, sku: str | None = None, **fields: Any) -> str:
    body = {
        "sku": sku or f"SKU-{uuid.uuid4().hex[:6]}",
        "name": "N95 mask",
        "unit": "piece",
        "category": "ppe",
        "usage_rule": "fixed_per_day",
        "usage_rate": 0,
        **fields,
    }
    response = await client.post("/api/v1/supplies/items", json=body, headers=auth(COMMAND))
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def move(client: Any, auth: Any, principal: Any, site_id: str, item_id: str, kind: str, quantity: int | None = None, **extra: Any) -> Any:
    body = {"id": str(extra.pop("id", uuid.uuid4())), "site_id": site_id, "item_id": item_id, "kind": kind, **extra}
    if quantity is not None:
        body["quantity"] = quantity
    return await client.post("/api/v1/supplies/movements", json=body, headers=auth(principal))


def staff(site_ids: list[str], role: Role = Role.SITE_STAFF) -> Any:
    return make_principal(role, [uuid.UUID(s) for s in site_ids])
