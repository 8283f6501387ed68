"""Redis cost of live updates: connections per instance with N subscribers, and the CPU an idle
instance spends while another ingests (issue 18: it used to decode every event of every site).

Two server processes on the benchmark database and Redis. B serves N live subscribers of its own
site and one stock poll, then stays idle while A records batch check-ins at another site as fast as
two clients can send them. Printed: B's Redis connections (by its sockets), B's CPU during the
ingest as a share of one core, and A's check-ins per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import psutil
import websockets

from bench.context import BenchContext
from bench.harness import serve
from service.access.model import Role
from service.sites import service as sites
from service.sites.model import FloorCreate, SiteCreate
from service.stays import service as stays
from service.stays.model import BatchAdmission, BatchMember
from tests.conftest import make_principal
from tests.stays.helpers import person

SUBSCRIBERS = 50
RESIDENTS = 100
BATCH = 500
INGEST_S = 10.0
SUBSCRIPTION = "subscription($s: [UUID!]) { siteEvents(siteIds: $s) { id } }"


def _server_pid(port: int) -> int:
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return conn.pid
    raise RuntimeError(f"no process listens on {port}")


def run(ctx: BenchContext) -> None:
    command = make_principal(Role.COMMAND)

    async def setup(db):
        made = []
        async with db.transaction() as conn:
            for code, residents in (("busy", RESIDENTS), ("idle", 1)):
                site = await sites.create_site(conn, command, SiteCreate(code=f"R-{code}-{uuid.uuid4().hex[:4]}", name=code))
                for floor in range(2, 2 + max(1, residents // 50)):
                    await sites.create_floor(conn, command, site.id, FloorCreate(floor=floor, first=floor * 100 + 1, last=floor * 100 + 50))
                admitted = await stays.admit_batch(
                    conn, command, ctx.settings,
                    BatchAdmission(site_id=site.id, category="close_contact", arrival_batch="bench",
                                   members=[BatchMember(resident=person()) for _ in range(residents)]),
                )
                made.append((site.id, [s.id for s in admitted]))
        return made

    (busy_site, stay_ids), (idle_site, _) = asyncio.run(ctx.with_db(setup))
    redis_port = urlsplit(ctx.settings.redis_url or "").port or 6379
    writer = {"Authorization": f"Bearer {ctx.token(make_principal(Role.SITE_STAFF, [busy_site]))}"}
    idle_token = ctx.token(make_principal(Role.SITE_STAFF, [idle_site]))
    logistics = {"Authorization": f"Bearer {ctx.token(make_principal(Role.LOGISTICS, [idle_site]))}"}

    async def measure(a: str, b: str) -> None:
        pid = _server_pid(urlsplit(b).port or 0)
        idle = psutil.Process(pid)
        async with httpx.AsyncClient(base_url=a, timeout=60) as busy, httpx.AsyncClient(base_url=b, timeout=60) as quiet:
            assert (await quiet.get("/api/v1/supplies/stock", headers=logistics)).status_code == 200
            sockets = []
            for _ in range(SUBSCRIBERS):
                ws = await websockets.connect(b.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"])
                await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {idle_token}"}}))
                await ws.recv()
                await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                          "payload": {"query": SUBSCRIPTION, "variables": {"s": [str(idle_site)]}}}))
                sockets.append(ws)
            await asyncio.sleep(2)
            redis_conns = sum(1 for c in idle.net_connections("tcp") if c.raddr and c.raddr.port == redis_port)
            print(f"{'B: Redis connections, ' + str(SUBSCRIBERS) + ' subscribers':<38} {redis_conns:>9}", flush=True)

            now = datetime.now(UTC).isoformat()

            async def ingest(seconds: float) -> int:
                done, started = 0, time.monotonic()
                while time.monotonic() - started < seconds:
                    body = {"checkins": [{"id": str(uuid.uuid4()), "stay_id": str(stay_ids[i % len(stay_ids)]), "recorded_at": now,
                                          "temperature_c": 36.6, "spo2": 98, "pulse": 72} for i in range(BATCH)]}
                    response = await busy.post("/api/v1/checkins/batch", json=body, headers=writer)
                    assert response.status_code == 200, response.text[:200]
                    done += BATCH
                return done

            await ingest(2)  # warm-up
            before, started = idle.cpu_times(), time.monotonic()
            recorded = sum(await asyncio.gather(ingest(INGEST_S), ingest(INGEST_S)))
            after, elapsed = idle.cpu_times(), time.monotonic() - started
            share = (after.user - before.user + after.system - before.system) / elapsed
            print(f"{'A: batch check-ins per second':<38} {recorded / elapsed:>9.0f}", flush=True)
            print(f"{'B idle: CPU during A ingest (% core)':<38} {share * 100:>9.1f}", flush=True)
            for ws in sockets:
                with contextlib.suppress(Exception):
                    await ws.close()

    with serve(ctx.server_env) as a, serve(ctx.server_env) as b:
        asyncio.run(measure(a, b))
