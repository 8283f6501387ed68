"""Cost that does not grow: the same screens on a small and a 100x larger history, side by side.

Two databases on the same server, both with the demo data (what the screens show) plus a history of
closed stays generated set-based (``bench/scale_history.sql``): 1,000 stays for the small one, 100,000
(~1M check-ins, 300k swabs, 1.3M audit rows, 1M events) for the large one. Then:

1. latency: one server process per database, the same requests interleaved (small, large, three
   rounds) at 8 concurrent connections; p50 / p95 of each and their growth (large / small).
   Reads the apps repeat are answered from the version-keyed cache once warm; the EXPLAIN step below
   is what proves the SQL itself is bounded.
2. plans: every statement those requests run (captured from the app in process), EXPLAIN ANALYZE'd
   on both databases with the request's own arguments, custom and generic plan: rows read by the
   scans versus rows returned. A statement FAILS when on the large history it reads more than
   ``READ_FACTOR`` times what it returns (plus a small constant) and more than ``GROWTH_LIMIT`` times
   what it read on the small one. The step exits non-zero when one fails.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import msgspec
from litestar.testing import AsyncTestClient

import service.db
from bench.context import BenchContext, recreate_database
from bench.harness import serve
from service.access.model import Role
from service.api.demo import seed_demo
from service.api.persisted import operation_document
from service.app import create_app
from service.db import migrate
from service.settings import Settings
from service.stays import service as stays
from service.stays.model import Admission
from tests.conftest import make_principal
from tests.stays.helpers import person

SIZES = {"small": 1_000, "large": 100_000}
CONNECTIONS = 8
REQUESTS_PER_ROUND = 96
ROUNDS = 3
READ_FACTOR = 20
READ_SLACK = 2_000
GROWTH_LIMIT = 3.0
OPERATIONS = Path(__file__).resolve().parent.parent / "graphql" / "operations"
GENERATOR = Path(__file__).with_name("scale_history.sql")
MOVEMENTS = Path(__file__).with_name("scale_movements.sql")
MOVEMENT_BATCH = 2_000


@dataclass
class Fixture:
    """Ids the requests use: the demo's first site, its first floor, a room, an active stay, a document."""

    site_id: str
    floor: int
    room_id: str
    stay_id: str
    document_number: str


@dataclass
class Path_:
    label: str
    request: Callable[[Fixture], tuple[str, str, dict[str, Any] | None]]  # method, url, json body
    samples: dict[str, list[float]] = field(default_factory=lambda: {size: [] for size in SIZES})


def _gql(name: str, variables: Callable[[Fixture], dict[str, Any]]) -> Callable[[Fixture], tuple[str, str, dict[str, Any]]]:
    text = operation_document(OPERATIONS / f"{name}.graphql")
    return lambda f: ("POST", "/graphql", {"query": text, "operationName": name, "variables": variables(f)})


def _checkin(f: Fixture) -> tuple[str, str, dict[str, Any]]:
    body = {"id": str(uuid.uuid4()), "stay_id": f.stay_id, "recorded_at": datetime.now(UTC).isoformat(), "temperature_c": 36.6}
    return "POST", "/api/v1/checkins", body


PATHS = [
    Path_("site alerts, all states (GraphQL)", _gql("SiteAlerts", lambda f: {"siteId": f.site_id})),
    Path_("site alerts (REST)", lambda f: ("GET", f"/api/v1/sites/{f.site_id}/alerts", None)),
    Path_("residentsByDocument", _gql("ResidentsByDocument", lambda f: {"documentNumber": f.document_number})),
    Path_("room board, whole site", _gql("RoomBoard", lambda f: {"siteId": f.site_id})),
    Path_("room board, one floor", _gql("RoomBoard", lambda f: {"siteId": f.site_id, "floor": f.floor})),
    Path_("room detail with history", _gql("Room", lambda f: {"id": f.room_id})),
    Path_("health timeline", _gql("HealthTimeline", lambda f: {"stayId": f.stay_id})),
    Path_("stays, first page", _gql("Stays", lambda f: {"siteId": f.site_id})),
    Path_("check-ins due", _gql("CheckinsDue", lambda f: {"siteId": f.site_id})),
    Path_("swabs due", _gql("SwabsDue", lambda f: {"siteId": f.site_id})),
    Path_("transfer board", _gql("TransferBoard", lambda f: {"siteId": f.site_id})),
    Path_("site stock (GraphQL)", _gql("SiteStock", lambda f: {"siteId": f.site_id})),
    Path_("stock poll (REST)", lambda f: ("GET", f"/api/v1/supplies/stock?site_id={f.site_id}", None)),
    Path_("supply changes feed", lambda f: ("GET", f"/api/v1/supplies/changes?site_id={f.site_id}", None)),
    Path_("single check-in", _checkin),
]


def run(ctx: BenchContext) -> None:
    dsns = {size: asyncio.run(_build(ctx, size, stays)) for size, stays in SIZES.items()}
    fixtures = {size: asyncio.run(_fixture(ctx, dsn)) for size, dsn in dsns.items()}
    token = ctx.token(make_principal(Role.COMMAND))
    _latency(ctx, dsns, fixtures, token)
    failures = asyncio.run(_plans(ctx, dsns, fixtures, token))
    if failures:
        raise SystemExit(f"{failures} statement(s) read more than their results justify on the large history")


# --- data ---------------------------------------------------------------------


async def _build(ctx: BenchContext, size: str, stays_count: int) -> str:
    name = f"{ctx.settings.bench_database}_{size}"
    server = ctx.settings.database_url or ""
    admin = await asyncpg.connect(server)
    try:
        await recreate_database(admin, name)
    finally:
        await admin.close()
    dsn = urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    await migrate(dsn)
    settings = _settings(ctx, dsn, size)
    await seed_demo(settings, only_if_empty=False)
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(GENERATOR.read_text().replace("$1::int", str(int(stays_count))))
        for first in range(0, stays_count, MOVEMENT_BATCH):
            async with conn.transaction():
                await conn.execute(MOVEMENTS.read_text().replace("$1::int", str(first)).replace("$2::int", str(first + MOVEMENT_BATCH)))
        await conn.execute("DROP TABLE bench_stays")
        await conn.execute("ANALYZE")
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM stays) AS stays, (SELECT count(*) FROM checkins) AS checkins,"
            " (SELECT count(*) FROM samples) AS samples, (SELECT count(*) FROM alerts) AS alerts,"
            " (SELECT count(*) FROM supply_movements) AS movements, (SELECT count(*) FROM audit_log) AS audit,"
            " (SELECT count(*) FROM events) AS events, pg_size_pretty(pg_database_size(current_database())) AS size"
        )
    finally:
        await conn.close()
    print(f"{size:<6} {dict(counts)} (history generated in {time.perf_counter() - started:.0f} s)", flush=True)
    return dsn


def _settings(ctx: BenchContext, dsn: str, size: str) -> Settings:
    return msgspec.structs.replace(
        ctx.settings, database_url=dsn, redis_prefix=f"{ctx.settings.redis_prefix}{size}:", run_background_jobs=False
    )


async def _fixture(ctx: BenchContext, dsn: str) -> Fixture:
    async def pick(db: Any) -> Fixture:
        command = make_principal(Role.COMMAND)
        async with db.transaction() as conn:
            site = await conn.fetchrow("SELECT id FROM sites ORDER BY code LIMIT 1")
            known = person()
            stay = await stays.admit(conn, command, ctx.settings, Admission(site_id=site["id"], category="close_contact", resident=known))
            room = await conn.fetchrow(
                "SELECT id, floor FROM rooms WHERE site_id = $1 ORDER BY floor, number LIMIT 1", site["id"]
            )
        return Fixture(str(site["id"]), room["floor"], str(room["id"]), str(stay.id), known.document_number)

    return await ctx.with_db(pick, database_url=dsn)


# --- latency ------------------------------------------------------------------


def _latency(ctx: BenchContext, dsns: dict[str, str], fixtures: dict[str, Fixture], token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    envs = {size: {**ctx.server_env, "DATABASE_URL": dsn, "QSITE_REDIS_PREFIX": f"{ctx.settings.redis_prefix}{size}:"} for size, dsn in dsns.items()}
    with serve(envs["small"]) as small, serve(envs["large"]) as large:
        bases = {"small": small, "large": large}
        for _ in range(ROUNDS):
            for path in PATHS:
                for size in SIZES:
                    path.samples[size] += asyncio.run(_drive(bases[size], path, fixtures[size], headers))
    print(f"\n{'path':<36} {'p50 small':>9} {'p50 large':>9} {'growth':>7}   {'p95 small':>9} {'p95 large':>9} {'growth':>7}")
    for path in PATHS:
        p50 = {s: statistics.median(path.samples[s]) for s in SIZES}
        p95 = {s: statistics.quantiles(path.samples[s], n=20)[-1] for s in SIZES}
        print(
            f"{path.label:<36} {p50['small']:8.2f}ms {p50['large']:8.2f}ms {p50['large'] / p50['small']:6.2f}x"
            f"   {p95['small']:8.2f}ms {p95['large']:8.2f}ms {p95['large'] / p95['small']:6.2f}x",
            flush=True,
        )


async def _drive(base: str, path: Path_, fixture: Fixture, headers: dict[str, str]) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:

        async def worker() -> None:
            for _ in range(REQUESTS_PER_ROUND // CONNECTIONS):
                method, url, body = path.request(fixture)
                started = time.perf_counter()
                response = await client.request(method, url, json=body)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code >= 300 or (url == "/graphql" and response.json().get("errors")):
                    raise SystemExit(f"{path.label}: {response.status_code} {response.text[:300]}")

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return latencies


# --- plans --------------------------------------------------------------------


@dataclass
class Plan:
    read: int
    returned: int


async def _plans(ctx: BenchContext, dsns: dict[str, str], fixtures: dict[str, Fixture], token: str) -> int:
    statements = {size: await _statements(ctx, dsn, fixtures[size], token) for size, dsn in dsns.items()}
    failures = 0
    print(f"\n{'statement':<72} {'small read/ret':>15} {'large read/ret':>17}  verdict")
    for text, (label, args) in statements["large"].items():
        large = await _explain(dsns["large"], text, args)
        small_args = statements["small"].get(text, (label, None))[1]
        small = await _explain(dsns["small"], text, small_args) if small_args is not None else None
        bounded = large.read <= READ_FACTOR * large.returned + READ_SLACK or (small is not None and large.read <= GROWTH_LIMIT * max(small.read, 1))
        failures += not bounded
        shown = " ".join(text.split())[:70]
        small_text = f"{small.read}/{small.returned}" if small else "-"
        print(f"{shown:<72} {small_text:>15} {f'{large.read}/{large.returned}':>17}  {'ok' if bounded else 'FAIL'}  ({label})", flush=True)
    return failures


async def _statements(ctx: BenchContext, dsn: str, fixture: Fixture, token: str) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """Each distinct statement the paths run, with the arguments of its first run."""
    seen: dict[str, tuple[str, tuple[Any, ...]]] = {}
    current = [""]

    def record(logged: Any) -> None:
        text = logged.query.strip()
        if text.split(None, 1)[0].upper() in ("SELECT", "WITH", "INSERT", "UPDATE", "DELETE") and text not in seen:
            seen[text] = (current[0], tuple(logged.args or ()))

    original = service.db._init_connection

    async def init(conn: asyncpg.Connection) -> None:
        await original(conn)
        conn.add_query_logger(record)

    service.db._init_connection = init  # the bench's own instrument: every pooled connection reports its statements
    try:
        async with AsyncTestClient(app=create_app(_settings(ctx, dsn, "plans"))) as client:
            for path in PATHS:
                current[0] = path.label
                method, url, body = path.request(fixture)
                await client.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"})
    finally:
        service.db._init_connection = original
    return seen


async def _explain(dsn: str, text: str, args: tuple[Any, ...]) -> Plan:
    """Rows read and returned by the worse of the custom and the generic plan (writes rolled back)."""
    conn = await asyncpg.connect(dsn)
    await service.db._init_connection(conn)
    worst = Plan(0, 0)
    try:
        for mode in ("force_custom_plan", "force_generic_plan"):
            tx = conn.transaction()
            await tx.start()
            try:
                await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
                raw = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {text}", *args)
            finally:
                await tx.rollback()
            root = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
            plan = Plan(_read(root), int(root.get("Actual Rows", 0) * root.get("Actual Loops", 1)))
            if plan.read > worst.read:
                worst = plan
    finally:
        await conn.close()
    return worst


_SCANS = ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Tid Scan")


def _read(node: dict[str, Any]) -> int:
    """Rows the plan's table scans looked at: kept plus removed by filters, over every loop."""
    own = 0
    if node.get("Node Type") in _SCANS:
        per_loop = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
        own = int(per_loop * node.get("Actual Loops", 1))
    return own + sum(_read(child) for child in node.get("Plans", []))

