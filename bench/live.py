"""Live updates at scale (issue 14): 1,000 subscribers over 2 instances, 50 writes/s, and catch-up by cursor.

Two server processes on the benchmark database and Redis. SUBSCRIBERS WebSocket subscriptions
(graphql-transport-ws, ``siteEvents``), half on each instance, spread over SITES sites (site staff
of one site each). Writers send WRITES_PER_S single check-ins per second (REST, to both instances
in turn, sites in turn) for SECONDS; every subscriber of the site must receive each of them.

Printed:
- delivery latency p50 / p99 / max, from the write request's start to the subscriber's receipt
  (all subscribers, all writes; the clients run in this one process, so this includes its own
  scheduling), and deliveries missing;
- Redis connections of each instance (its sockets to the Redis port) with a few subscribers and
  with all of them: constant, not per subscriber;
- catch-up: CATCH_UP changes committed at a site (batch check-ins), then read by cursor from the
  start of the burst, REST ``/api/v1/changes`` and GraphQL ``changes`` in pages of 1,000, and
  ``siteEvents(after:)`` replaying them over a WebSocket; each must take < 1 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import websockets

from bench.context import BenchContext
from bench.harness import serve, server_pid
from service.access.model import Role
from service.sites import service as sites
from service.sites.model import FloorCreate, SiteCreate
from service.stays import service as stays
from service.stays.model import BatchAdmission, BatchMember
from tests.conftest import make_principal
from tests.stays.helpers import person

# The figures; QSITE_BENCH_LIVE_SUBSCRIBERS / _WRITES_PER_S / _SECONDS run a lighter variant on a loaded machine.
SUBSCRIBERS = int(os.environ.get("QSITE_BENCH_LIVE_SUBSCRIBERS", "1000"))
SITES = 10
RESIDENTS = 20  # per site
WRITES_PER_S = float(os.environ.get("QSITE_BENCH_LIVE_WRITES_PER_S", "50"))
SECONDS = float(os.environ.get("QSITE_BENCH_LIVE_SECONDS", "20"))
CATCH_UP = 10_000
SUBSCRIPTION = "subscription($s: [UUID!], $a: String) { siteEvents(siteIds: $s, after: $a, types: [\"health\"]) { id subjectId cursor } }"
CHANGES = "query($s: [UUID!], $a: String) { changes(siteIds: $s, after: $a, first: 1000) { edges { node { id } } pageInfo { endCursor hasNextPage } } }"


class Subscriber:
    def __init__(self, base: str, token: str, site: str, received: dict[str, list[float]]) -> None:
        self.url = base.replace("http", "ws") + "/graphql"
        self.token, self.site, self.received = token, site, received
        self.ws: Any = None
        self.errors: list[Any] = []
        self.task: asyncio.Task[None] | None = None
        self.count = 0
        self.target: int | None = None
        self.reached = asyncio.Event()

    async def connect(self, after: str | None = None) -> None:
        self.ws = await websockets.connect(self.url, subprotocols=["graphql-transport-ws"], max_queue=None, open_timeout=60)
        await self.ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {self.token}"}}))
        assert json.loads(await self.ws.recv())["type"] == "connection_ack"
        payload = {"query": SUBSCRIPTION, "variables": {"s": [self.site], "a": after}}
        await self.ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                now = time.monotonic()
                message = json.loads(raw)
                if message["type"] == "next" and "errors" not in message["payload"]:
                    self.received.setdefault(message["payload"]["data"]["siteEvents"]["subjectId"], []).append(now)
                    self.count += 1
                    if self.count == self.target:
                        self.reached.set()
                else:
                    self.errors.append(message)
                    self.reached.set()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close()


def _redis_connections(base: str, redis_port: int) -> int:
    process = psutil.Process(server_pid(base))
    return sum(1 for c in process.net_connections("tcp") if c.raddr and c.raddr.port == redis_port)


def _cpu(base: str) -> float:
    times = psutil.Process(server_pid(base)).cpu_times()
    return times.user + times.system


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def run(ctx: BenchContext) -> None:
    command = make_principal(Role.COMMAND)

    async def setup(db: Any) -> list[tuple[uuid.UUID, list[uuid.UUID]]]:
        made = []
        async with db.transaction() as conn:
            for n in range(SITES + 1):  # the last site takes the catch-up burst
                site = await sites.create_site(conn, command, SiteCreate(code=f"LIVE-{n}-{uuid.uuid4().hex[:4]}", name=f"live {n}"))
                await sites.create_floor(conn, command, site.id, FloorCreate(floor=2, first=201, last=200 + RESIDENTS))
                admitted = await stays.admit_batch(
                    conn, command, ctx.settings,
                    BatchAdmission(site_id=site.id, category="close_contact", arrival_batch="bench",
                                   members=[BatchMember(resident=person()) for _ in range(RESIDENTS)]),
                )
                made.append((site.id, [s.id for s in admitted]))
        return made

    made = asyncio.run(ctx.with_db(setup))
    live_sites, (burst_site, burst_stays) = made[:SITES], made[SITES]
    redis_port = urlsplit(ctx.settings.redis_url or "").port or 6379

    results: dict[str, dict[str, str]] = {}

    def report(mode: str, label: str, value: str) -> None:
        results.setdefault(label, {})[mode] = value
        print(f"[{mode}] {label:<52} {value}", flush=True)

    async def measure(bases: list[str], mode: str) -> None:
        received: dict[str, list[float]] = {}
        tokens = {site: ctx.token(make_principal(Role.SITE_STAFF, [site])) for site, _ in made}
        subscribers = [Subscriber(bases[i % 2], tokens[live_sites[i % SITES][0]], str(live_sites[i % SITES][0]), received)
                       for i in range(SUBSCRIBERS)]
        few = 2 * SITES
        for s in subscribers[:few]:
            await s.connect()
        await asyncio.sleep(2)
        conns_few = [_redis_connections(b, redis_port) for b in bases]
        for i in range(few, SUBSCRIBERS, 50):
            await asyncio.gather(*(s.connect() for s in subscribers[i:i + 50]))
        await asyncio.sleep(3)
        conns_all = [_redis_connections(b, redis_port) for b in bases]
        report(mode, f"Redis connections per instance, {few} subscribers", str(conns_few))
        report(mode, f"Redis connections per instance, {SUBSCRIBERS} subscribers", str(conns_all))

        clients = [httpx.AsyncClient(base_url=b, timeout=30, limits=httpx.Limits(max_connections=20)) for b in bases]
        sent: dict[str, tuple[float, int]] = {}  # check-in id -> (request start, site index)
        done: dict[str, float] = {}  # check-in id -> its answer (committed)
        now = datetime.now(UTC).isoformat()

        async def write(n: int) -> None:
            site_index = n % SITES
            site, stay_ids = live_sites[site_index]
            body = {"id": str(uuid.uuid4()), "stay_id": str(stay_ids[(n // SITES) % len(stay_ids)]), "recorded_at": now,
                    "temperature_c": 36.6, "spo2": 98, "pulse": 72}
            sent[body["id"]] = (time.monotonic(), site_index)
            response = await clients[n % 2].post("/api/v1/checkins", json=body, headers={"Authorization": f"Bearer {tokens[site]}"})
            assert response.status_code == 201, response.text[:200]
            done[body["id"]] = time.monotonic()

        cpu_before = [_cpu(b) for b in bases]
        writes, started, pending = 0, time.monotonic(), set()
        while time.monotonic() - started < SECONDS:
            due = int((time.monotonic() - started) * WRITES_PER_S)
            while writes < due:
                pending.add(asyncio.create_task(write(writes)))
                writes += 1
            pending = {t for t in pending if not t.done()}
            await asyncio.sleep(0.005)
        await asyncio.gather(*pending)
        await asyncio.sleep(3)  # the last deliveries
        per_site = SUBSCRIBERS // SITES
        latencies = [t - sent[cid][0] for cid, times in received.items() if cid in sent for t in times]
        expected = len(sent) * per_site
        errors = sum(len(s.errors) for s in subscribers)
        codes = sorted({str(((m.get("payload") or {}).get("errors") or [m.get("payload")])[0]) [:120] for s in subscribers for m in s.errors
                        if m.get("type") != "complete"})
        report(mode, "subscribers, writes (single check-ins) per second",
               f"{SUBSCRIBERS}, {len(sent) / SECONDS:.1f} ({len(sent)} in {SECONDS:.0f} s, each to {per_site} subscribers)")
        report(mode, "deliveries received / expected, errors", f"{len(latencies)} / {expected}, {errors} {codes[:3]}")
        answered = [done[cid] - start for cid, (start, _) in sent.items() if cid in done]
        after_commit = [t - done[cid] for cid, times in received.items() if cid in done for t in times]
        report(mode, "write request p50 / p99 (ms)", f"{_pct(answered, 0.5):.0f} / {_pct(answered, 0.99):.0f}")
        if latencies:
            report(mode, "delivery latency from the write, p50 / p99 / max (ms)",
                   f"{_pct(latencies, 0.5):.0f} / {_pct(latencies, 0.99):.0f} / {max(latencies) * 1000:.0f}")
            report(mode, "delivery after the write was answered, p50 / p99 (ms)", f"{_pct(after_commit, 0.5):.0f} / {_pct(after_commit, 0.99):.0f}")
        cpu = [_cpu(b) - cpu_before[i] for i, b in enumerate(bases)]
        report(mode, "server CPU during the writes, per instance (s)", " / ".join(f"{c:.1f}" for c in cpu))
        for s in subscribers:
            await s.close()

        # Catch-up: CATCH_UP changes at the burst site, then read by cursor.
        burst_token = tokens[burst_site]
        headers = {"Authorization": f"Bearer {burst_token}"}
        start_cursor = (await clients[0].get("/api/v1/changes", params={"site_id": str(burst_site), "limit": 1000}, headers=headers)).json()
        cursor = start_cursor["next_cursor"]
        while start_cursor["has_more"]:
            start_cursor = (await clients[0].get("/api/v1/changes", params={"site_id": str(burst_site), "limit": 1000, "after": cursor},
                                                 headers=headers)).json()
            cursor = start_cursor["next_cursor"]
        for batch in range(CATCH_UP // 500):
            body = {"checkins": [{"id": str(uuid.uuid4()), "stay_id": str(burst_stays[i % len(burst_stays)]), "recorded_at": now,
                                  "temperature_c": 36.6, "spo2": 98, "pulse": 72} for i in range(500)]}
            response = await clients[batch % 2].post("/api/v1/checkins/batch", json=body, headers=headers)
            assert response.status_code == 200, response.text[:200]

        async def rest_catch_up() -> int:
            after, more, count = cursor, True, 0
            while more:
                page = (await clients[0].get("/api/v1/changes", params={"site_id": str(burst_site), "limit": 1000, "after": after},
                                             headers=headers)).json()
                count += len(page["changes"])
                after, more = page["next_cursor"], page["has_more"]
            return count

        async def graphql_catch_up() -> int:
            after, more, count = cursor, True, 0
            while more:
                answer = (await clients[1].post("/graphql", json={"query": CHANGES, "variables": {"s": [str(burst_site)], "a": after}},
                                                headers=headers)).json()["data"]["changes"]
                count += len(answer["edges"])
                after, more = answer["pageInfo"]["endCursor"], answer["pageInfo"]["hasNextPage"]
            return count

        async def subscription_catch_up() -> int:
            got: dict[str, list[float]] = {}
            sub = Subscriber(bases[0], burst_token, str(burst_site), got)
            sub.target = CATCH_UP
            await sub.connect(after=cursor)
            async with asyncio.timeout(60):
                await sub.reached.wait()
            await sub.close()
            return sub.count

        for label, catch_up in (("REST /api/v1/changes", rest_catch_up), ("GraphQL changes", graphql_catch_up),
                                ("siteEvents(after:) replay", subscription_catch_up)):
            runs = []
            for _ in range(3):
                t0 = time.monotonic()
                count = await catch_up()
                runs.append(time.monotonic() - t0)
            report(mode, f"catch-up of {count} changes, {label} (median of 3, s)", f"{statistics.median(runs):.2f}")
        for c in clients:
            await c.aclose()

    # Both paths in one run, same database and machine: GraphQL executed per subscriber, then shared frames.
    modes = os.environ.get("QSITE_BENCH_LIVE_MODES", "per-subscriber,shared").split(",")
    for mode in modes:
        env = {**ctx.server_env, "QSITE_LIVE_SHARED_FRAMES": "true" if mode == "shared" else "false"}
        with serve(env) as a, serve(env) as b:
            asyncio.run(measure([a, b], mode))
    print(f"\n{'':<60}" + "".join(f"{m:>28}" for m in modes), flush=True)
    for label, values in results.items():
        print(f"{label:<60}" + "".join(f"{values.get(m, ''):>28}" for m in modes), flush=True)
