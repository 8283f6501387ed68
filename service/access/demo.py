"""Demo seed step of access: one command user, three staff per site, the logistics, lab, tracing and carrier clients.

Passwords and API keys are predictable on purpose (a demo database only) and
listed in ``DEMO_LOGIN_HINT``; nothing is logged.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service.access import service
from service.access.model import ApiClientCreate, Principal, PrincipalKind, Role, StaffCreate

DEMO_PASSWORD = "qsite-demo"
DEMO_KEYS = {role: f"qsk_demo-{role}-key" for role in ("logistics", "lab", "tracing", "carrier")}
# The hospital key comes with the facilities it speaks for (service/transfers/demo.py).
HINT = f"command / {DEMO_PASSWORD} (also manager-1, staff-1, medic-1 ... per site, same password)"


def demo_staff(demo: dict[str, Any], username: str, role: Role, site_id: UUID) -> Principal:
    """The demo account ``username`` acting at ``site_id`` (the system principal when accounts were not seeded)."""
    staff_id = demo.get("staff", {}).get(username)
    if staff_id is None:
        return service.SYSTEM_PRINCIPAL
    return Principal(kind=PrincipalKind.STAFF, id=staff_id, role=role, site_ids=frozenset({site_id}))


async def seed_demo(conn: asyncpg.Connection, demo: dict[str, Any]) -> None:
    settings = demo["settings"]
    sites = list(demo.get("sites", []))
    password = await service.hash_password(DEMO_PASSWORD)  # once: argon2 is slow by design
    staff: dict[str, Any] = {}

    async def add(username: str, display_name: str, role: str, site_ids: list[Any], phone: str) -> None:
        data = msgspec.convert(
            {"username": username, "display_name": display_name, "password": DEMO_PASSWORD, "role": role, "site_ids": site_ids, "phone": phone},
            StaffCreate,
        )
        created = await service.create_staff(conn, settings, service.SYSTEM_PRINCIPAL, data, password_hash=password)
        staff[username] = created.id

    await add("command", "指挥部值班", "command", [], "13800000000")
    for n, site_id in enumerate(sites, start=1):
        await add(f"manager-{n}", f"隔离点负责人{n}", "site_manager", [site_id], f"1380000{n:02d}01")
        await add(f"staff-{n}", f"隔离点工作人员{n}", "site_staff", [site_id], f"1380000{n:02d}02")
        await add(f"medic-{n}", f"驻点医生{n}", "medic", [site_id], f"1380000{n:02d}03")
    clients: dict[str, Any] = {}
    for role, key in DEMO_KEYS.items():
        data = msgspec.convert({"name": f"Demo {role}", "role": role, "site_ids": sites or None}, ApiClientCreate)
        clients[role] = (await service.create_client(conn, service.SYSTEM_PRINCIPAL, data, preset_key=key)).id
    demo["staff"] = staff
    demo["clients"] = clients
