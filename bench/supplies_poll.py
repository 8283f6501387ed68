"""Logistics stock poll: 304 (If-None-Match) and 200 against the bare route, one server process.

Targets: 304 at >= 0.8 of the bare route's rate, 200 at >= 0.6. Both answers come
from the in-process copy of the stock generations (and the body cached per ETag),
so neither should touch PostgreSQL while the stock is unchanged.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx

from bench.context import BenchContext
from bench.harness import serve, wrk
from service.access import service as access
from service.access.model import ApiClientCreate, ClientRole, Role
from service.sites import service as sites
from service.sites.model import SiteCreate
from service.supplies import demo
from tests.conftest import make_principal

ROUNDS = 3
SECONDS = 3


def run(ctx: BenchContext) -> None:
    command = make_principal(Role.COMMAND)

    async def setup(db):  # noqa: ANN001
        async with db.transaction() as conn:
            made = [await sites.create_site(conn, command, SiteCreate(code=f"P-{uuid.uuid4().hex[:6]}", name="poll")) for _ in range(2)]
            await demo.seed_demo(conn, {"sites": [s.id for s in made]})
            # Logistics systems authenticate with API keys (verified once, then cached in process).
            client = await access.create_client(
                conn, command, ApiClientCreate(name="bench logistics", role=ClientRole.LOGISTICS, site_ids=[s.id for s in made])
            )
            return [s.id for s in made], client.api_key

    site_ids, api_key = asyncio.run(ctx.with_db(setup))
    headers = {"X-API-Key": api_key}
    with serve(ctx.server_env) as base:
        url = f"{base}/api/v1/supplies/stock"
        first = httpx.get(url, headers=headers, timeout=10)
        first.raise_for_status()
        etag = first.headers["etag"]
        lua_etag = etag.replace('"', '\\"')  # the harness writes header values into a Lua string
        items = sum(len(s["items"]) for s in first.json()["sites"])
        print(f"poll body: {len(first.content)} bytes, {items} stock rows at {len(site_ids)} sites", flush=True)
        wrk("warm-up", f"{base}/bench/bare", seconds=1)
        wrk("warm-up", url, seconds=1, headers={**headers, "If-None-Match": lua_etag})
        # Interleaved rounds, median of each: the machine is shared, a burst of someone else's load
        # should not land on one route only.
        rounds: dict[str, list] = {"bare": [], "304": [], "200": []}
        for _ in range(ROUNDS):
            rounds["bare"].append(wrk("bare route", f"{base}/bench/bare", seconds=SECONDS))
            rounds["304"].append(wrk("GET /supplies/stock -> 304", url, seconds=SECONDS, headers={**headers, "If-None-Match": lua_etag}))
            rounds["200"].append(wrk("GET /supplies/stock -> 200", url, seconds=SECONDS, headers=headers))
        bare = sorted(rounds["bare"], key=lambda x: x.rps)[ROUNDS // 2]
        not_modified = sorted(rounds["304"], key=lambda x: x.rps)[ROUNDS // 2]
        full = sorted(rounds["200"], key=lambda x: x.rps)[ROUNDS // 2]
        check = httpx.get(url, headers={**headers, "If-None-Match": etag}, timeout=10)
        print(f"median of {ROUNDS} interleaved rounds of {SECONDS} s:", flush=True)
        print(bare.line(), flush=True)
        print(not_modified.line(bare.rps) + ("" if check.status_code == 304 else "  (ETag changed during the run)"), flush=True)
        print(full.line(bare.rps), flush=True)
        print(f"targets: 304 >= 0.80 -> {not_modified.rps / bare.rps:.2f}, 200 >= 0.60 -> {full.rps / bare.rps:.2f}", flush=True)
