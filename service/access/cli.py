"""CLI commands of access: ``qsite create-user`` and ``qsite create-client``.

They act as the system principal (command role). The password is read from
the terminal (or one line of stdin when piped), never from arguments, so it
stays out of shell history and process lists. The API key is printed once.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

import msgspec

from service.access import service
from service.access.model import ApiClientCreate, ClientRole, StaffCreate
from service.cache import Cache
from service.db import Database, create_pool
from service.errors import DomainError
from service.settings import Settings


def add_user_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("username", help="login name (lower case)")
    parser.add_argument("--display-name", help="shown in the apps (default: the username)")
    parser.add_argument("--role", default="command", choices=["command", "site_manager", "site_staff", "medic"])
    parser.add_argument("--site", action="append", default=[], help="site id (repeat; not for command)")
    parser.add_argument("--phone", help="phone number (stored encrypted)")


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the integration's name")
    parser.add_argument("--role", required=True, choices=[r.value for r in ClientRole])
    parser.add_argument(
        "--site", action="append", default=[], help="site id (repeat; required but for a hospital; a hospital: only transfers from these sites)"
    )
    parser.add_argument("--facility", help="hospital clients (required): the destination facility id")


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Repeat password: "):
            raise SystemExit("qsite: the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


async def _run(settings: Settings, work: Any) -> Any:
    pool = await create_pool(settings, settings.database_url or "")
    cache = Cache(settings.redis_url or "", prefix=settings.redis_prefix, timeout_ms=settings.redis_timeout_ms)
    try:
        async with Database(pool, cache).transaction() as conn:
            return await work(conn)
    finally:
        await pool.close()
        await cache.close()


def _convert(value: dict[str, Any], kind: type) -> Any:
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise SystemExit(f"qsite: {exc}") from None


def create_user(settings: Settings, args: argparse.Namespace) -> None:
    data = _convert(
        {
            "username": args.username,
            "display_name": args.display_name or args.username,
            "password": _read_password(),
            "role": args.role,
            "site_ids": args.site,
            "phone": args.phone,
        },
        StaffCreate,
    )
    try:
        staff = asyncio.run(_run(settings, lambda conn: service.create_staff(conn, settings, service.SYSTEM_PRINCIPAL, data)))
    except DomainError as exc:
        raise SystemExit(f"qsite: {exc.code}: {exc.message}") from None
    print(f"created {staff.role} account {staff.username} ({staff.id})")


def create_client(settings: Settings, args: argparse.Namespace) -> None:
    data = _convert({"name": args.name, "role": args.role, "site_ids": args.site or None, "facility_id": args.facility}, ApiClientCreate)
    try:
        client = asyncio.run(_run(settings, lambda conn: service.create_client(conn, service.SYSTEM_PRINCIPAL, data)))
    except DomainError as exc:
        raise SystemExit(f"qsite: {exc.code}: {exc.message}") from None
    print(f"created {client.role} client {client.id}\nAPI key (shown once, store it now): {client.api_key}")
