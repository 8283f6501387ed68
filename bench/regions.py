"""Command-centre figures on a small and a 100x larger history: roll-up, series, report, backfill.

The databases are ``bench scale``'s (the demo with its two weeks of history, plus 1,000 or 100,000
older closed stays with their check-ins, swabs, alerts and movements). The figures read the last
two weeks and what is live, so their cost must not follow the history: for each call, the median
of ``RUNS`` in process, and the buffers the 14-day ledger statement touches (EXPLAIN ANALYZE).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.context import BenchContext
from bench.scale import SIZES, _build, _settings
from service.access.service import SYSTEM_PRINCIPAL
from service.cache import Cache
from service.db import Database, create_pool
from service.regions import service, store

RUNS = 7


async def _measure(db: Database) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with db.connection() as conn:
        district = await conn.fetchval("SELECT id FROM regions WHERE code = 'CQ-LJ'")
        site_ids = [r["id"] for r in await conn.fetch("SELECT id FROM sites")]
    now = datetime.now(UTC)
    yesterday = now.date() - timedelta(days=1)
    calls: dict[str, Callable[[Any], Awaitable[Any]]] = {
        "rollup (district)": lambda conn: service.rollup(conn, SYSTEM_PRINCIPAL, district, now=now),
        "daily series 14 d": lambda conn: service.daily_series(conn, SYSTEM_PRINCIPAL, district, 14, now=now),
        "daily report": lambda conn: service.daily_report(conn, SYSTEM_PRINCIPAL, district, yesterday, now=now),
        "ledger day figures 14 d": lambda conn: store.day_figures(conn, site_ids, now.date() - timedelta(days=14), now.date(), now),
    }
    for label, call in calls.items():
        samples = []
        for _ in range(RUNS):
            async with db.connection() as conn:
                started = time.perf_counter()
                await call(conn)
                samples.append((time.perf_counter() - started) * 1000)
        out[label] = statistics.median(samples)
    async with db.transaction() as conn:
        started = time.perf_counter()
        await service.backfill(conn, None, now.date() - timedelta(days=14), now.date(), now=now)
        out["backfill 14 d (write)"] = (time.perf_counter() - started) * 1000
        args = {"now": now, "first_day": now.date() - timedelta(days=14), "last_day": now.date(), "site_ids": site_ids}
        order = store.Q.driver_adapter.var_sorted["day_figures"]  # aiosql's $n order
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {store.Q.day_figures.sql}", *(args[k] for k in order))
        top = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
        out["buffers"] = top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
    return out


def run(ctx: BenchContext) -> None:
    async def main() -> None:
        results: dict[str, dict[str, Any]] = {}
        for size, count in SIZES.items():
            dsn = await _build(ctx, size, count)
            settings = _settings(ctx, dsn, size)
            db = Database(await create_pool(settings, dsn), Cache(settings.redis_url or "", prefix=settings.redis_prefix, timeout_ms=250))
            try:
                results[size] = await _measure(db)
            finally:
                await db.pool.close()
                await db.cache.close()
        small, large = results["small"], results["large"]
        print(f"{'call':28} {'small ms':>9} {'large ms':>9} {'growth':>7}")
        for label in small:
            if label == "buffers":
                continue
            print(f"{label:28} {small[label]:9.1f} {large[label]:9.1f} {large[label] / small[label]:7.2f}")
        print(f"14-day ledger statement buffers: small {small['buffers']}, large {large['buffers']} "
              f"({large['buffers'] / max(small['buffers'], 1):.2f}x) for {SIZES['large'] // SIZES['small']}x the history")

    asyncio.run(main())
