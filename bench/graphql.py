"""GraphQL: the room board against PostGraphile 4 on the same rows, and what the edge costs.

Data: the demo (2 sites x 240 rooms) filled to >= 85 % of beds, with 10 days of twice-daily check-ins.
PostGraphile 4 (npm, into bench/.peers/, ignored by git) serves views over the same tables exposing
the fields of graphql/operations/RoomBoard.graphql; both servers get one worker (one process each).

Printed, interleaved in each of 3 rounds, median of the rounds:
- board, one floor and whole site: qsite warm (unchanged data), 304 (If-None-Match), PostGraphile,
  by wrk at 16 connections; and cold (each read right after a write to the rooms it shows, once its
  notification has had 10 ms to reach qsite; every answer is checked to show the write), one
  connection, for both servers alike, taking turns read by read;
- trivial query ``{ apiVersion }`` against ``/healthz`` on the same qsite process, in alternating
  one-second slices (median of the slices);
- a single REST check-in against the bare route;
- the qsite worker's RSS after the board load.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import harness
from bench.context import BenchContext
from bench.harness import Result, free_port, serve, wrk
from bench.health import _fresh_uuids
from service.access.model import Role
from service.api.demo import seed_demo
from service.api.persisted import OPERATIONS_DIR, operation_document
from service.errors import DomainError
from service.health import service as health
from service.stays import service as stays
from service.stays.model import BatchAdmission, BatchMember
from tests.conftest import make_principal
from tests.stays.helpers import person

ROUNDS = 3
SECONDS = 4
OCCUPANCY = 0.85
CHECKIN_DAYS = 10
COLD_READS = 40
# After the (untimed) write, before the timed read: time for the commit's notification to reach the
# qsite instance (it learns of other processes' commits that way; see service/versions.py).
SETTLE_S = 0.01
PEERS = Path(__file__).resolve().parent / ".peers"
POSTGRAPHILE = "postgraphile@4.14.1"  # v5 needs node 22
BOARD = operation_document(OPERATIONS_DIR / "RoomBoard.graphql")
BOARD_HASH = hashlib.sha256(BOARD.encode()).hexdigest()

# The RoomBoard's fields as views over the same tables; smart comments give PostGraphile the relations.
VIEWS = """
DROP SCHEMA IF EXISTS bench_pg CASCADE;
CREATE SCHEMA bench_pg;
CREATE VIEW bench_pg.rooms AS
  SELECT id, site_id, number, floor, beds, occupied, beds - occupied AS free_beds, status, status_since, version FROM public.rooms;
CREATE VIEW bench_pg.residents AS
  SELECT id, name, sex, extract(year FROM birth_date)::int AS birth_year FROM public.residents;
CREATE VIEW bench_pg.occupants AS
  SELECT id, room_id, resident_id, bed, category, risk_level, arrival_batch, admitted_at, planned_release_at,
         (now() AT TIME ZONE time_zone)::date - day_one + 1 AS quarantine_day
  FROM public.stays WHERE status = 'active';
COMMENT ON VIEW bench_pg.rooms IS E'@primaryKey id';
COMMENT ON VIEW bench_pg.residents IS E'@primaryKey id';
COMMENT ON VIEW bench_pg.occupants IS
  E'@primaryKey id\\n@foreignKey (room_id) references bench_pg.rooms (id)\\n@foreignKey (resident_id) references bench_pg.residents (id)';
"""

_PG_BOARD = """
query($siteId: UUID!%(floor_var)s) {
  allRooms(condition: {siteId: $siteId%(floor_cond)s}, orderBy: [FLOOR_ASC, NUMBER_ASC]) {
    nodes {
      id number floor beds occupied freeBeds status statusSince version
      occupantsByRoomId(orderBy: BED_ASC) {
        nodes {
          id bed category riskLevel arrivalBatch admittedAt plannedReleaseAt quarantineDay
          residentByResidentId { id name sex birthYear }
        }
      }
    }
  }
}
"""
PG_BOARD_FLOOR = _PG_BOARD % {"floor_var": ", $floor: Int!", "floor_cond": ", floor: $floor"}
PG_BOARD_SITE = _PG_BOARD % {"floor_var": "", "floor_cond": ""}


# --- data --------------------------------------------------------------------------------


async def _fill(db: Any, settings: Any) -> tuple[list[Any], float, int]:
    """Demo data, then admissions until >= 85 % of beds are taken, then 10 days of check-ins."""
    command = make_principal(Role.COMMAND)
    async with db.connection() as conn:
        site_ids = [r["id"] for r in await conn.fetch("SELECT id FROM sites ORDER BY code")]
    for site_id in site_ids:
        for _ in range(50):
            async with db.connection() as conn:
                beds, taken = await conn.fetchrow("SELECT sum(beds), sum(occupied) FROM rooms WHERE site_id = $1", site_id)
            missing = int(beds * OCCUPANCY) + 1 - taken
            if missing <= 0:
                break
            members = [BatchMember(resident=person()) for _ in range(min(missing, 20))]
            try:
                async with db.transaction() as conn:
                    await stays.admit_batch(conn, command, settings, BatchAdmission(
                        site_id=site_id, category="close_contact", arrival_batch="bench-fill", members=members))
            except DomainError as exc:  # no ready room left: the turnover floor is not bookable
                print(f"  fill stopped at site {site_id}: {type(exc).__name__}", flush=True)
                break
    async with db.connection() as conn:
        beds, taken = await conn.fetchrow("SELECT sum(beds), sum(occupied) FROM rooms")
        active = await conn.fetch("SELECT id, admitted_at FROM stays WHERE status = 'active'")
    now = datetime.now(UTC)
    items = [
        {"stay_id": str(s["id"]), "recorded_at": at.isoformat(), "temperature_c": 36.5, "spo2": 98, "pulse": 75}
        for s in active
        for day in range(CHECKIN_DAYS)
        for hours in (2, 14)
        if (at := now - timedelta(days=day, hours=hours)) > s["admitted_at"]
    ]
    created = 0
    for start in range(0, len(items), 500):
        async with db.transaction() as conn:
            batch = await health.record_checkin_batch(conn, command, items[start : start + 500])
        created += batch.created
    return site_ids, taken / beds, created


# --- PostGraphile ------------------------------------------------------------------------


def _postgraphile() -> Path:
    binary = PEERS / "node_modules" / ".bin" / "postgraphile"
    if not binary.exists():
        if not shutil.which("npm"):
            raise SystemExit("npm is needed to install PostGraphile 4 (node >= 18)")
        PEERS.mkdir(exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(PEERS), "--no-audit", "--no-fund", "--loglevel=error", POSTGRAPHILE], check=True)
    return binary


@contextlib.contextmanager
def _serve_postgraphile(dsn: str) -> Iterator[str]:
    port = free_port()
    cmd = [str(_postgraphile()), "--connection", dsn, "--schema", "bench_pg", "--host", "127.0.0.1", "--port", str(port),
           "--disable-query-log", "--disable-graphiql", "--max-pool-size", "10"]
    proc = subprocess.Popen(cmd, env={**os.environ, "NODE_ENV": "production"}, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.post(f"{base}/graphql", json={"query": "{ __typename }"}, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("postgraphile did not start")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        if proc.poll() is None:
            proc.kill()


# --- measuring ---------------------------------------------------------------------------


@dataclass
class ColdReader:
    label: str
    read: Callable[[], httpx.Response]
    fresh: Callable[[Any, int], bool]  # the answer shows the write of this version


def _cold(readers: list[ColdReader], write: Callable[[], int]) -> list[Result]:
    """One connection each: a write, then a timed read, COLD_READS times per reader (the write is not
    timed). The readers take turns read by read, so that a burst of load on the shared machine falls
    on both servers alike.

    Every answer must show the write: a cached answer from before it would not be a cold read. Such
    answers are counted and printed, never hidden.
    """
    times: dict[str, list[float]] = {r.label: [] for r in readers}
    stale = dict.fromkeys(times, 0)
    for _ in range(COLD_READS):
        for reader in readers:
            version = write()
            time.sleep(SETTLE_S)
            started = time.perf_counter()
            response = reader.read()
            times[reader.label].append(time.perf_counter() - started)
            assert response.status_code == 200 and "errors" not in response.json(), response.text[:300]
            stale[reader.label] += not reader.fresh(response.json()["data"], version)
    results = []
    for label, taken in times.items():
        if stale[label]:
            print(f"  {label}: {stale[label]} of {COLD_READS} answers did not show the write", flush=True)
        p50 = statistics.median(taken)
        results.append(Result(label, 1 / p50, p50 * 1000, sorted(taken)[int(len(taken) * 0.99) - 1] * 1000, 0))
    return results


@contextlib.contextmanager
def _sql(dsn: str) -> Iterator[Callable[[str], Any]]:
    """A blocking SQL executor for the measuring loop (one connection, its own event loop): the first value."""
    with asyncio.Runner() as runner:
        conn = runner.run(asyncpg.connect(dsn))
        try:
            yield lambda sql: runner.run(conn.fetchval(sql))
        finally:
            runner.run(conn.close())


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


def run(ctx: BenchContext) -> None:
    asyncio.run(seed_demo(ctx.settings, only_if_empty=False))

    async def setup(db: Any) -> tuple[list[Any], float, int, list[Any]]:
        site_ids, occupancy, checkins = await _fill(db, ctx.settings)
        async with db.connection() as conn:
            await conn.execute(VIEWS)
            # Planner statistics, as autovacuum keeps them in production (the test server runs without it).
            await conn.execute("ANALYZE")
            rooms = [r["id"] for r in await conn.fetch("SELECT id FROM rooms WHERE site_id = $1 AND floor = 3 ORDER BY number", site_ids[0])]
        return site_ids, occupancy, checkins, rooms

    site_ids, occupancy, checkins, floor_rooms = asyncio.run(ctx.with_db(setup))
    site = str(site_ids[0])
    print(f"data: {len(site_ids)} sites, {occupancy:.0%} of beds occupied, {checkins} check-ins over {CHECKIN_DAYS} days", flush=True)

    staff = make_principal(Role.COMMAND)
    token = ctx.token(staff)
    auth = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    json_auth = {**auth, "Content-Type": "application/json"}
    board = {"floor": {"siteId": site, "floor": 3}, "site": {"siteId": site}}

    def board_url(base: str, scope: str) -> str:
        extensions = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": BOARD_HASH}})
        return str(httpx.URL(f"{base}/graphql", params={"extensions": extensions, "variables": json.dumps(board[scope])}))

    pg_body = {"floor": json.dumps({"query": PG_BOARD_FLOOR, "variables": board["floor"]}),
               "site": json.dumps({"query": PG_BOARD_SITE, "variables": board["site"]})}
    trivial = json.dumps({"query": "{ apiVersion }"})

    async def stay_for_checkins(db: Any) -> str:
        async with db.connection() as conn:
            return str(await conn.fetchval("SELECT id FROM stays WHERE status = 'active' AND site_id = $1 LIMIT 1", site_ids[0]))

    stay_id = asyncio.run(ctx.with_db(stay_for_checkins))
    single = json.dumps({"id": "__N__", "stay_id": stay_id, "recorded_at": datetime.now(UTC).isoformat(),
                         "temperature_c": 36.6, "spo2": 98, "pulse": 72})

    results: dict[str, list[Result]] = defaultdict(list)
    rss: list[float] = []
    cpu_ms: dict[str, list[float]] = defaultdict(list)  # server CPU per request
    writes = iter(range(10**9))

    with serve(ctx.server_env) as qsite, _serve_postgraphile(ctx.settings.database_url or "") as peer, \
            httpx.Client(headers=auth, timeout=60) as q_client, httpx.Client(timeout=60) as pg_client, _sql(ctx.settings.database_url or "") as write_sql:

        def touch_rooms() -> int:
            # A write to what the board shows (a note on a room of the floor): versions move.
            return int(write_sql(
                f"UPDATE rooms SET notes = 'bench {next(writes)}', version = version + 1 WHERE id = '{floor_rooms[0]}' RETURNING version"))

        def qsite_fresh(data: Any, version: int) -> bool:
            return any(r["room"]["id"] == str(floor_rooms[0]) and r["room"]["version"] == version for r in data["roomBoard"])

        def peer_fresh(data: Any, version: int) -> bool:
            return any(r["id"] == str(floor_rooms[0]) and r["version"] == version for r in data["allRooms"]["nodes"])

        pid = harness.server_pid(qsite)

        def measure(label: str, url: str, seconds: int = SECONDS, **options: Any) -> None:
            """wrk against qsite, noting the worker's CPU per request (steadier than req/s on a shared machine)."""
            before = _cpu_s(pid)
            result = wrk(label, url, seconds=seconds, **options)
            results[label].append(result)
            cpu_ms[label].append((_cpu_s(pid) - before) * 1000 / max(result.rps * seconds, 1))

        wrk("warm-up", f"{qsite}/bench/bare", seconds=1)
        for scope in ("floor", "site"):
            wrk("warm-up", board_url(qsite, scope), seconds=1, headers=auth)
            wrk("warm-up", f"{peer}/graphql", seconds=1, method="POST", headers={"Content-Type": "application/json"}, body=pg_body[scope])
        for round_no in range(ROUNDS):
            print(f"round {round_no + 1}/{ROUNDS}", flush=True)
            for scope in ("floor", "site"):
                url = board_url(qsite, scope)
                touch_rooms()
                body = pg_body[scope]
                cold = _cold([
                    ColdReader(f"qsite board {scope}, cold", functools.partial(q_client.get, url), qsite_fresh),
                    ColdReader(f"PostGraphile board {scope}, cold",
                               functools.partial(pg_client.post, f"{peer}/graphql", content=body, headers={"Content-Type": "application/json"}), peer_fresh),
                ], touch_rooms)
                for result in cold:
                    results[result.label].append(result)
                measure(f"qsite board {scope}, warm", url, headers=auth)
                if scope == "site":
                    rss.append(_rss_mb(harness.server_pid(qsite)))
                etag = q_client.get(url).headers.get("etag", "")
                measure(f"qsite board {scope}, 304", url, headers={**auth, "If-None-Match": etag})
                results[f"PostGraphile board {scope}"].append(wrk(
                    f"PostGraphile board {scope}", f"{peer}/graphql", seconds=SECONDS, method="POST",
                    headers={"Content-Type": "application/json"}, body=pg_body[scope]))
            # The trivial query and its reference take turns second by second (load bursts fall on both).
            for _ in range(SECONDS):
                measure("/healthz", f"{qsite}/healthz", seconds=1)
                measure("{ apiVersion } anonymous", f"{qsite}/graphql", seconds=1, method="POST", headers={"Content-Type": "application/json"}, body=trivial)
                measure("{ apiVersion } with a token", f"{qsite}/graphql", seconds=1, method="POST", headers=json_auth, body=trivial)
            measure("bare route", f"{qsite}/bench/bare")
            with _fresh_uuids():
                measure("POST /api/v1/checkins", f"{qsite}/api/v1/checkins", method="POST", headers=json_auth, body=single, unique_body=True)

    def median(label: str) -> Result:
        runs = results[label]
        rps = statistics.median(r.rps for r in runs)
        return Result(label, rps, statistics.median(r.p50_ms for r in runs), statistics.median(r.p99_ms for r in runs), sum(r.non_2xx for r in runs))

    print(f"\nmedian of {ROUNDS} rounds (ratio: to the line's reference)", flush=True)
    for scope in ("floor", "site"):
        peer_warm = median(f"PostGraphile board {scope}")
        peer_cold = median(f"PostGraphile board {scope}, cold")
        print(peer_warm.line(), flush=True)
        print(median(f"qsite board {scope}, warm").line(peer_warm.rps), flush=True)
        print(median(f"qsite board {scope}, 304").line(peer_warm.rps), flush=True)
        print(peer_cold.line(), flush=True)
        print(median(f"qsite board {scope}, cold").line(peer_cold.rps), flush=True)
    healthz = median("/healthz")
    print(healthz.line(), flush=True)
    print(median("{ apiVersion } anonymous").line(healthz.rps), flush=True)
    print(median("{ apiVersion } with a token").line(healthz.rps), flush=True)
    # Each slice's rate moves with the machine's load (up to 4x from one second to the next on the
    # shared machine) while the CPU per request does not: a ratio of adjacent slices is steadier than
    # the ratio of two medians taken over different seconds.
    for label in ("{ apiVersion } anonymous", "{ apiVersion } with a token"):
        paired = statistics.median(q.rps / h.rps for h, q in zip(results["/healthz"], results[label], strict=True))
        print(f"{label + ', paired slices':<38} ratio {paired:.2f} (median of {len(results[label])} adjacent pairs)", flush=True)
    bare = median("bare route")
    print(bare.line(), flush=True)
    print(median("POST /api/v1/checkins").line(bare.rps), flush=True)
    print("\nqsite worker CPU per request (median; ratio: the reference's CPU over this line's)", flush=True)
    references = {"{ apiVersion } anonymous": "/healthz", "{ apiVersion } with a token": "/healthz", "POST /api/v1/checkins": "bare route"}
    for label, values in cpu_ms.items():
        cost = statistics.median(values)
        reference = references.get(label)
        ratio = f"  ratio {statistics.median(cpu_ms[reference]) / cost:.2f}" if reference else ""
        print(f"{label:<38} {cost:>9.3f} ms{ratio}", flush=True)
    print(f"{'qsite worker RSS after board load':<38} {max(rss):>9.0f} MB", flush=True)
