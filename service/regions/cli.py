"""CLI of regions: ``qsite backfill-snapshots`` recomputes past days' snapshots from the ledgers."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from service.access.cli import _run  # one transaction on a short-lived pool, as the other CLI commands
from service.regions import service
from service.settings import Settings


def backfill(settings: Settings, args: argparse.Namespace) -> str:
    if not 1 <= args.days <= 3660:
        raise SystemExit("qsite: --days must be 1-3660")
    today = datetime.now(UTC).date()

    async def work(conn: asyncpg.Connection) -> Any:
        site_ids = None
        if args.site:
            rows = await conn.fetch("SELECT id, code FROM sites WHERE code = ANY($1::text[])", args.site)
            unknown = set(args.site) - {r["code"] for r in rows}
            if unknown:
                raise SystemExit(f"qsite: no site with the code {sorted(unknown)[0]}")
            site_ids = [r["id"] for r in rows]
        return await service.backfill(conn, site_ids, today - timedelta(days=args.days), today)

    result = asyncio.run(_run(settings, work))
    return f"wrote {result.rows} snapshot(s): {result.sites} site(s), {result.days} day(s)"
