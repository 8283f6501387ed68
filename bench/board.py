"""The room board over GraphQL, one server process: Strawberry vs compiled (cold, warm, 304).

A site of 240 rooms (8 floors x 30, one bed), 88 % occupied. Measured side by side,
interleaved rounds, median:
- generic: the same selection sent as text under another operation name (Strawberry executes it);
- compiled cold: a second server with QSITE_READ_CACHE_MB=0 (every request runs the statement);
- compiled warm: persisted GET, answer from the in-process cache;
- 304: persisted GET with If-None-Match.
Targets (issue 10, against PostGraphile's figures there): cold >= 1.5x, warm >= 20x.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import urlencode

import httpx

from bench import harness
from bench.context import BenchContext
from bench.graphql import _rss_mb
from bench.harness import serve, wrk
from service import readpath
from service.access.model import Role
from service.sites import service as sites
from service.sites.model import FloorCreate, SiteCreate
from service.stays import service as stays
from service.stays.model import BatchAdmission, BatchMember
from tests.conftest import make_principal
from tests.stays.helpers import person

ROUNDS = 3
SECONDS = 3


def run(ctx: BenchContext) -> None:
    command = make_principal(Role.COMMAND)

    async def setup(db):
        async with db.transaction() as conn:
            site = await sites.create_site(conn, command, SiteCreate(code=f"B-{uuid.uuid4().hex[:6]}", name="board"))
            for floor in range(2, 10):
                await sites.create_floor(conn, command, site.id, FloorCreate(floor=floor, first=floor * 100 + 1, last=floor * 100 + 30, beds=1))
        for start in range(0, 211, 100):
            members = [BatchMember(resident=person()) for _ in range(min(100, 211 - start))]
            async with db.transaction() as conn:
                await stays.admit_batch(
                    conn, command, ctx.settings, BatchAdmission(site_id=site.id, category="close_contact", arrival_batch=f"b{start}", members=members)
                )
        return site.id

    site_id = asyncio.run(ctx.with_db(setup))
    token = ctx.token(make_principal(Role.SITE_STAFF, [site_id]))
    headers = {"Authorization": f"Bearer {token}"}
    digest = next(d for d, op in readpath.registry().by_hash.values() if op.name == "RoomBoard")
    text = next(t for t, (d, _) in readpath.registry().by_text.items() if d == digest)
    params = {
        "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": digest}}),
        "variables": json.dumps({"siteId": str(site_id)}),
    }
    generic_body = json.dumps({"query": text.replace("query RoomBoard(", "query RoomBoardGeneric("), "variables": {"siteId": str(site_id)}})
    with serve(ctx.server_env) as base, serve({**ctx.server_env, "QSITE_READ_CACHE_MB": "0"}) as cold_base:
        url = f"{base}/graphql?{urlencode(params)}"
        cold_url = f"{cold_base}/graphql?{urlencode(params)}"
        first = httpx.get(url, headers=headers, timeout=30)
        first.raise_for_status()
        etag = first.headers["etag"]
        generic = httpx.post(f"{base}/graphql", content=generic_body, headers={**headers, "Content-Type": "application/json"}, timeout=30)
        assert generic.json()["data"] == first.json()["data"], "compiled and generic boards differ"
        print(f"board: {len(first.content)} bytes compiled, {len(generic.content)} bytes generic, ETag {etag}", flush=True)
        lua_etag = etag.replace('"', '\\"')
        post = {**headers, "Content-Type": "application/json"}
        for u in (url, cold_url):
            wrk("warm-up", u, seconds=1, headers=headers)
        wrk("warm-up", f"{base}/graphql", seconds=1, method="POST", headers=post, body=generic_body)
        rounds: dict[str, list] = {"generic": [], "cold": [], "warm": [], "304": []}
        for _ in range(ROUNDS):
            rounds["generic"].append(wrk("RoomBoard site, Strawberry", f"{base}/graphql", seconds=SECONDS, method="POST", headers=post, body=generic_body))
            rounds["cold"].append(wrk("RoomBoard site, compiled cold", cold_url, seconds=SECONDS, headers=headers))
            rounds["warm"].append(wrk("RoomBoard site, compiled warm", url, seconds=SECONDS, headers=headers))
            rounds["304"].append(wrk("RoomBoard site, 304", url, seconds=SECONDS, headers={**headers, "If-None-Match": lua_etag}))
        median = {k: sorted(v, key=lambda r: r.rps)[ROUNDS // 2] for k, v in rounds.items()}
        print(f"median of {ROUNDS} interleaved rounds of {SECONDS} s, 16 connections:", flush=True)
        print(median["generic"].line(), flush=True)
        for k in ("cold", "warm", "304"):
            print(median[k].line(median["generic"].rps), flush=True)
        print(f"RSS after the load: {_rss_mb(harness.server_pid(base)):.0f} MB (cache on), "
              f"{_rss_mb(harness.server_pid(cold_base)):.0f} MB (cache off)", flush=True)
