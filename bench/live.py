"""Live updates at scale (issue 14): 1,000 subscribers over 2 instances, 50 writes/s, and catch-up by cursor.

Two server processes on the benchmark database and Redis. SUBSCRIBERS WebSocket subscriptions
(graphql-transport-ws, ``siteEvents``), half on each instance, spread over SITES sites (site staff
of one site each). Writers send WRITES_PER_S single check-ins per second (REST, to both instances
in turn, sites in turn) for SECONDS; every subscriber of the site must receive each of them.

Printed:
- delivery latency p50 / p99 / max, from the write request's start to the subscriber's receipt
  (all subscribers, all writes), and deliveries missing. The subscribers run in PROCESSES client
  processes and the writer in one more (CLOCK_MONOTONIC is system-wide, so their clocks compare),
  so that the load generator is not one event loop serving 1,000 sockets; wire bytes per delivered
  frame (socket bytes the client processes read, over deliveries);
- Redis connections of each instance (its sockets to the Redis port) with a few subscribers and
  with all of them: constant, not per subscriber;
- catch-up: CATCH_UP changes committed at a site (batch check-ins), then read by cursor from the
  start of the burst, REST ``/api/v1/changes`` and GraphQL ``changes`` in pages of 1,000, and
  ``siteEvents(after:)`` replaying them over a WebSocket; each must take < 1 s;
- the machine's load average before and after each mode (the machine is shared).

Modes (QSITE_BENCH_LIVE_MODES, comma-separated, parts joined by ``+``): ``deflate`` / ``no-deflate``
(QSITE_WS_PER_MESSAGE_DEFLATE), ``per-subscriber`` / ``shared`` (QSITE_LIVE_SHARED_FRAMES).
QSITE_BENCH_LIVE_ONLY=catchup measures the catch-up alone (no subscribers, no writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import psutil
import websockets
from websockets.asyncio.client import ClientConnection

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
ONLY = os.environ.get("QSITE_BENCH_LIVE_ONLY", "")  # "catchup": skip the subscribers and writes (iterate on the catch-up alone)
PROCESSES = int(os.environ.get("QSITE_BENCH_LIVE_PROCESSES", "4"))
MODE_ENV = {
    "deflate": {"QSITE_WS_PER_MESSAGE_DEFLATE": "true"}, "no-deflate": {"QSITE_WS_PER_MESSAGE_DEFLATE": "false"},
    "shared": {"QSITE_LIVE_SHARED_FRAMES": "true"}, "per-subscriber": {"QSITE_LIVE_SHARED_FRAMES": "false"},
}
SUBSCRIPTION = "subscription($s: [UUID!], $a: String) { siteEvents(siteIds: $s, after: $a, types: [\"health\"]) { id subjectId cursor } }"
CHANGES = "query($s: [UUID!], $a: String) { changes(siteIds: $s, after: $a, first: 1000) { edges { node { id } } pageInfo { endCursor hasNextPage } } }"


_decode = msgspec.json.Decoder().decode  # the client's own cost per frame, kept small (the figures are the server's)


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
        self.ws = await websockets.connect(self.url, subprotocols=["graphql-transport-ws"], max_queue=None, open_timeout=60,
                                           create_connection=_CountingConnection)
        await self.ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {self.token}"}}))
        assert json.loads(await self.ws.recv())["type"] == "connection_ack"
        payload = {"query": SUBSCRIPTION, "variables": {"s": [self.site], "a": after}}
        await self.ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                now = time.monotonic()
                message = _decode(raw)
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


_WIRE = [0]  # bytes the WebSocket clients of this process received off their sockets


class _CountingConnection(ClientConnection):
    def data_received(self, data: bytes) -> None:
        _WIRE[0] += len(data)
        super().data_received(data)


def _read_bytes() -> int:
    return _WIRE[0]


def _subscriber_process(conn: Any, assignments: list[tuple[str, str, str]]) -> None:
    asyncio.run(_subscribers(conn, assignments))


async def _subscribers(conn: Any, assignments: list[tuple[str, str, str]]) -> None:
    """One client process: its share of subscribers, driven by commands over ``conn``."""
    received: dict[str, list[float]] = {}
    subscribers = [Subscriber(base, token, site, received) for base, token, site in assignments]
    connected, read_before = 0, 0
    loop = asyncio.get_running_loop()
    while True:
        command, arg = await loop.run_in_executor(None, conn.recv)
        if command == "connect":
            for i in range(connected, arg, 50):
                await asyncio.gather(*(s.connect() for s in subscribers[i:min(i + 50, arg)]))
            connected = max(connected, arg)
            conn.send(connected)
        elif command == "mark":
            read_before = _read_bytes()
            conn.send(None)
        else:  # collect
            read = _read_bytes() - read_before
            errors = [m for s in subscribers for m in s.errors]
            conn.send((received, errors, read))
            for s in subscribers:
                await s.close()
            return


def _writer_process(conn: Any, bases: list[str], live_sites: list[tuple[str, list[str]]], tokens: dict[str, str],
                    now: str) -> None:
    conn.recv()  # go
    conn.send(asyncio.run(_write(bases, live_sites, tokens, now)))


async def _write(bases: list[str], live_sites: list[tuple[str, list[str]]], tokens: dict[str, str],
                 now: str) -> tuple[dict[str, float], dict[str, float]]:
    """WRITES_PER_S single check-ins for SECONDS; (check-in id -> request start, -> its answer)."""
    clients = [httpx.AsyncClient(base_url=b, timeout=30, limits=httpx.Limits(max_connections=20)) for b in bases]
    sent: dict[str, float] = {}
    done: dict[str, float] = {}

    async def write(n: int) -> None:
        site, stay_ids = live_sites[n % SITES]
        body = {"id": str(uuid.uuid4()), "stay_id": stay_ids[(n // SITES) % len(stay_ids)], "recorded_at": now,
                "temperature_c": 36.6, "spo2": 98, "pulse": 72}
        sent[body["id"]] = time.monotonic()
        response = await clients[n % 2].post("/api/v1/checkins", json=body, headers={"Authorization": f"Bearer {tokens[site]}"})
        assert response.status_code == 201, response.text[:200]
        done[body["id"]] = time.monotonic()

    writes, started, pending = 0, time.monotonic(), set()
    while time.monotonic() - started < SECONDS:
        due = int((time.monotonic() - started) * WRITES_PER_S)
        while writes < due:
            pending.add(asyncio.create_task(write(writes)))
            writes += 1
        pending = {t for t in pending if not t.done()}
        await asyncio.sleep(0.005)
    await asyncio.gather(*pending)
    for c in clients:
        await c.aclose()
    return sent, done


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
        tokens = {site: ctx.token(make_principal(Role.SITE_STAFF, [site])) for site, _ in made}
        if ONLY != "catchup":
            await fan_out(bases, mode, tokens)
        await catch_up(bases, mode, tokens)

    async def fan_out(bases: list[str], mode: str, tokens: dict[uuid.UUID, str]) -> None:
        assignments = [(bases[i % 2], tokens[live_sites[i % SITES][0]], str(live_sites[i % SITES][0])) for i in range(SUBSCRIBERS)]
        spawn = multiprocessing.get_context("spawn")
        pipes, workers = [], []
        for w in range(PROCESSES):
            ours, theirs = spawn.Pipe()
            share = assignments[w::PROCESSES]
            workers.append((spawn.Process(target=_subscriber_process, args=(theirs, share), daemon=True), len(share)))
            pipes.append(ours)
        for process, _ in workers:
            process.start()
        loop = asyncio.get_running_loop()

        async def ask(pipe: Any, command: str, arg: Any = None) -> Any:
            pipe.send((command, arg))
            return await loop.run_in_executor(None, pipe.recv)

        few_each = max(1, 2 * SITES // PROCESSES)
        few = sum(await asyncio.gather(*(ask(p, "connect", few_each) for p in pipes)))
        await asyncio.sleep(2)
        conns_few = [_redis_connections(b, redis_port) for b in bases]
        await asyncio.gather(*(ask(p, "connect", n) for p, (_, n) in zip(pipes, workers, strict=True)))
        await asyncio.sleep(3)
        conns_all = [_redis_connections(b, redis_port) for b in bases]
        report(mode, f"Redis connections per instance, {few} subscribers", str(conns_few))
        report(mode, f"Redis connections per instance, {SUBSCRIBERS} subscribers", str(conns_all))

        now = datetime.now(UTC).isoformat()
        writer_pipe, theirs = spawn.Pipe()
        writer = spawn.Process(target=_writer_process, daemon=True, args=(
            theirs, bases, [(str(site), [str(s) for s in stay_ids]) for site, stay_ids in live_sites],
            {str(site): token for site, token in tokens.items()}, now))
        writer.start()
        await asyncio.gather(*(ask(p, "mark") for p in pipes))
        cpu_before = [_cpu(b) for b in bases]
        writer_pipe.send("go")
        sent, done = await loop.run_in_executor(None, writer_pipe.recv)
        writer.join()
        await asyncio.sleep(3)  # the last deliveries
        cpu = [_cpu(b) - cpu_before[i] for i, b in enumerate(bases)]
        received: dict[str, list[float]] = {}
        errors_seen: list[Any] = []
        wire = 0
        for received_here, errors_here, read in await asyncio.gather(*(ask(p, "collect") for p in pipes)):
            for cid, times in received_here.items():
                received.setdefault(cid, []).extend(times)
            errors_seen += errors_here
            wire += read
        for process, _ in workers:
            process.join(timeout=30)
        per_site = SUBSCRIBERS // SITES
        latencies = [t - sent[cid] for cid, times in received.items() if cid in sent for t in times]
        expected = len(sent) * per_site
        codes = sorted({str(((m.get("payload") or {}).get("errors") or [m.get("payload")])[0]) [:120] for m in errors_seen
                        if m.get("type") != "complete"})
        report(mode, "subscribers, writes (single check-ins) per second",
               f"{SUBSCRIBERS} in {PROCESSES} processes, {len(sent) / SECONDS:.1f} ({len(sent)} in {SECONDS:.0f} s, each to {per_site})")
        report(mode, "deliveries received / expected, errors", f"{len(latencies)} / {expected}, {len(errors_seen)} {codes[:3]}")
        if latencies:
            report(mode, "wire bytes read per delivered frame (client processes)", f"{wire / len(latencies):.0f}")
        answered = [done[cid] - start for cid, start in sent.items() if cid in done]
        after_commit = [t - done[cid] for cid, times in received.items() if cid in done for t in times]
        report(mode, "write request p50 / p99 (ms)", f"{_pct(answered, 0.5):.0f} / {_pct(answered, 0.99):.0f}")
        if latencies:
            report(mode, "delivery latency from the write, p50 / p99 / max (ms)",
                   f"{_pct(latencies, 0.5):.0f} / {_pct(latencies, 0.99):.0f} / {max(latencies) * 1000:.0f}")
            report(mode, "delivery after the write was answered, p50 / p99 (ms)", f"{_pct(after_commit, 0.5):.0f} / {_pct(after_commit, 0.99):.0f}")
        report(mode, "server CPU during the writes, per instance (s)", " / ".join(f"{c:.1f}" for c in cpu))

    async def catch_up(bases: list[str], mode: str, tokens: dict[uuid.UUID, str]) -> None:
        """CATCH_UP changes at the burst site, then read by cursor."""
        clients = [httpx.AsyncClient(base_url=b, timeout=30, limits=httpx.Limits(max_connections=20)) for b in bases]
        now = datetime.now(UTC).isoformat()
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

        replay_bytes: list[int] = []

        async def subscription_catch_up() -> int:
            got: dict[str, list[float]] = {}
            sub = Subscriber(bases[0], burst_token, str(burst_site), got)
            sub.target = CATCH_UP
            read_before = _read_bytes()
            await sub.connect(after=cursor)
            async with asyncio.timeout(60):
                await sub.reached.wait()
            replay_bytes.append(_read_bytes() - read_before)
            await sub.close()
            return sub.count

        for label, read, base in (("REST /api/v1/changes", rest_catch_up, bases[0]), ("GraphQL changes", graphql_catch_up, bases[1]),
                                  ("siteEvents(after:) replay", subscription_catch_up, bases[0])):
            runs = []
            server_before, client_before = _cpu(base), time.process_time()
            for _ in range(3):
                t0 = time.monotonic()
                count = await read()
                runs.append(time.monotonic() - t0)
            server_cpu, client_cpu = (_cpu(base) - server_before) / 3, (time.process_time() - client_before) / 3
            report(mode, f"catch-up of {count} changes, {label} (median of 3, s)", f"{statistics.median(runs):.2f}")
            report(mode, f"{label}: CPU per catch-up, server / bench client (s)", f"{server_cpu:.2f} / {client_cpu:.2f}")
        report(mode, f"replay bytes read per frame (of {CATCH_UP})", f"{statistics.median(replay_bytes) / CATCH_UP:.0f}")
        for c in clients:
            await c.aclose()

    # The modes one after the other in one run, same database and machine.
    modes = os.environ.get("QSITE_BENCH_LIVE_MODES", "deflate,no-deflate").split(",")
    for mode in modes:
        env = dict(ctx.server_env)
        for part in mode.split("+"):
            env.update(MODE_ENV[part])
        report(mode, "load average (1 min) before", f"{os.getloadavg()[0]:.1f}")
        with serve(env) as a, serve(env) as b:
            asyncio.run(measure([a, b], mode))
        report(mode, "load average (1 min) after", f"{os.getloadavg()[0]:.1f}")
    print(f"\n{'':<60}" + "".join(f"{m:>28}" for m in modes), flush=True)
    for label, values in results.items():
        print(f"{label:<60}" + "".join(f"{values.get(m, ''):>28}" for m in modes), flush=True)
