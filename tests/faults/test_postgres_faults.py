"""PostgreSQL killed, down, restarted and hung under concurrent traffic (issue 11).

The app runs behind a real uvicorn server against a PostgreSQL of the test's own, while
workers poll the room board (GraphQL), record check-ins and poll stock. The server is
killed (-9), left down, restarted, then stopped (SIGSTOP: connections and statements hang)
and resumed. Throughout: only 200/201/304/503, every 503 with Retry-After, no request
past its deadline, no acknowledged check-in lost, service back within 10 s of the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import httpx
import msgspec
import pytest

from service.api.persisted import OPERATIONS_DIR, operation_document
from service.app import create_app
from service.cache import Cache
from service.db import Database, create_pool, migrate
from tests.faults.postgres import OwnPostgres
from tests.faults.server import serve
from tests.health.helpers import ward
from tests.stays.helpers import staff

DOWN_S = float(os.environ.get("QSITE_FAULT_DOWN_S", "4"))  # 20 reproduces the run
HANG_S = float(os.environ.get("QSITE_FAULT_HANG_S", "10"))
SLACK_S = 2.0  # the event loop of a loaded 2-core machine, on top of the database deadline
# What the staff app sends: the persisted RoomBoard operation by its hash (the compiled read path answers it).
BOARD_HASH = hashlib.sha256(operation_document(OPERATIONS_DIR / "RoomBoard.graphql").encode()).hexdigest()


@dataclass
class Call:
    kind: str
    started: float
    ended: float
    status: int | None  # None: no answer within the client's timeout, or the connection failed
    retry_after: str | None
    checkin_id: str | None = None
    graphql_errors: bool = False

    @property
    def latency(self) -> float:
        return self.ended - self.started


@pytest.fixture
async def own_postgres():
    server = OwnPostgres()
    try:
        await server.start()
        yield server
    finally:
        server.close()


async def _seed(settings) -> tuple[uuid.UUID, list[uuid.UUID]]:
    cache = Cache(settings.redis_url or "", prefix=settings.redis_prefix, timeout_ms=settings.redis_timeout_ms)
    pool = await create_pool(settings, settings.database_url or "")
    try:
        site_id, stays = await ward(Database(pool, cache), settings, residents=4)
    finally:
        await pool.close()
        await cache.close()
    return site_id, [s.id for s in stays]


async def _traffic(client: httpx.AsyncClient, headers, site_id, stay_ids, calls: list[Call], stop: asyncio.Event) -> None:
    async def call(kind: str, send, checkin_id: str | None = None) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = await send()
        except httpx.HTTPError:
            calls.append(Call(kind, started, time.monotonic(), None, None, checkin_id))
            return None
        errors = kind == "board" and response.status_code == 200 and bool(response.json().get("errors"))
        calls.append(Call(kind, started, time.monotonic(), response.status_code, response.headers.get("retry-after"), checkin_id, errors))
        return response

    async def board() -> None:
        while not stop.is_set():
            await call("board", lambda: client.post("/graphql", json={"extensions": {"persistedQuery": {"version": 1, "sha256Hash": BOARD_HASH}}, "variables": {"siteId": str(site_id)}}, headers=headers))
            await asyncio.sleep(0.05)

    async def checkins(n: int) -> None:
        while not stop.is_set():
            body = {"id": str(uuid.uuid4()), "stay_id": str(stay_ids[n % len(stay_ids)]), "recorded_at": datetime.now(UTC).isoformat(),
                    "temperature_c": 36.6, "spo2": 98, "pulse": 72}
            await call("checkin", lambda: client.post("/api/v1/checkins", json=body, headers=headers), body["id"])
            await asyncio.sleep(0.05)

    async def stock() -> None:
        etag = None
        while not stop.is_set():
            extra = {"If-None-Match": etag} if etag else {}
            response = await call("stock", lambda: client.get("/api/v1/supplies/stock", headers={**headers, **extra}))
            if response is not None and response.status_code == 200:
                etag = response.headers.get("etag")
            await asyncio.sleep(0.05)

    await asyncio.gather(*(board() for _ in range(4)), *(checkins(n) for n in range(4)), *(stock() for _ in range(4)))


def _first_success_after(calls: list[Call], kind: str, moment: float) -> float | None:
    ends = [c.ended for c in calls if c.kind == kind and c.started >= moment and c.status in (200, 201)]
    return min(ends) - moment if ends else None


def _by_status(calls: list[Call]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in calls:
        key = f"{c.kind}:{c.status}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


async def test_postgres_killed_restarted_and_hung_under_load(own_postgres, settings, auth, caplog):
    caplog.set_level(logging.WARNING)
    admin = await asyncpg.connect(own_postgres.dsn())
    await admin.execute("CREATE DATABASE qsite")
    await admin.close()
    dsn = own_postgres.dsn("qsite")
    await migrate(dsn)
    # Default pool and deadlines; background jobs on, as in production.
    settings = msgspec.structs.replace(settings, database_url=dsn, run_background_jobs=True)
    site_id, stay_ids = await _seed(settings)
    headers = auth(staff(site_id))
    deadline = settings.db_deadline_s

    calls: list[Call] = []
    stop = asyncio.Event()
    async with serve(create_app(settings), timeout=deadline + 20) as client:
        load = asyncio.create_task(_traffic(client, headers, site_id, stay_ids, calls, stop))
        await asyncio.sleep(2)

        await own_postgres.kill()
        # Taken once the kill returned: a check-in started just before (group commit answers in ~4 ms) may
        # rightly have been stored and acknowledged while the kill was under way.
        killed = time.monotonic()
        await asyncio.sleep(DOWN_S)
        restarted = await own_postgres.start()
        await asyncio.sleep(4)

        paused = time.monotonic()
        own_postgres.pause()
        await asyncio.sleep(HANG_S)
        own_postgres.resume()
        resumed = time.monotonic()
        await asyncio.sleep(5)
        stop.set()
        await load

    async with asyncpg.create_pool(dsn, min_size=1, max_size=1) as pool:
        stored = {str(r["id"]) for r in await pool.fetch("SELECT id FROM checkins")}

    statuses = {c.status for c in calls}
    failures = [c for c in calls if c.status == 503]
    during_down = [c for c in calls if killed <= c.started < restarted]
    during_hang = [c for c in calls if paused <= c.started < resumed]
    acknowledged = [c.checkin_id for c in calls if c.kind == "checkin" and c.status == 201]
    healthy = [c.latency for c in calls if c.ended < killed]
    down_503s = [c.latency for c in during_down if c.status == 503]
    writes_back = _first_success_after(calls, "checkin", restarted)
    board_back = _first_success_after(calls, "board", resumed)
    writes_back_after_hang = _first_success_after(calls, "checkin", resumed)
    print(
        f"\n[pg faults] calls={len(calls)} 503s={len(failures)} down={DOWN_S}s hang={HANG_S}s"
        f" | before the kill: p50 {_p(healthy, 0.5) * 1000:.0f} ms, p99 {_p(healthy, 0.99) * 1000:.0f} ms ({len(healthy)} calls)"
        f" | p99 of 503s {_p([c.latency for c in failures], 0.99) * 1000:.0f} ms"
        f" (while down: p50 {_p(down_503s, 0.5) * 1000:.0f} ms, p99 {_p(down_503s, 0.99) * 1000:.0f} ms, {len(down_503s)} calls)"
        f" | writes back {writes_back if writes_back is None else round(writes_back, 2)} s after restart"
        f" | max latency while hung {max((c.latency for c in during_hang), default=0):.2f} s (deadline {deadline} s)"
        f" | after the hang: board {board_back and round(board_back, 2)} s, writes {writes_back_after_hang and round(writes_back_after_hang, 2)} s"
        f" | acknowledged check-ins {len(acknowledged)}, lost {len(set(acknowledged) - stored)}"
        f" | while hung: {_by_status(during_hang)}"
        f" | phases: kill {killed:.2f} restart {restarted:.2f} pause {paused:.2f} resume {resumed:.2f}"
        f" | graphql errors at {[round(c.started, 2) for c in calls if c.graphql_errors]}"
    )

    assert statuses <= {200, 201, 304, 503}, sorted(statuses, key=str)
    assert all(c.retry_after for c in failures), "a 503 without Retry-After"
    assert not [c for c in calls if c.graphql_errors], "a GraphQL 200 carrying errors"
    assert max(c.latency for c in calls) <= deadline + SLACK_S, max(c.latency for c in calls)
    # Reads may still be answered from what the instance and Redis hold; a write needs PostgreSQL.
    assert during_down
    # The kill signals the postmaster; its backends notice a moment later, so a write may still commit
    # right after it. Such a write may be acknowledged only if it is stored; any other answer is a 503.
    assert [c for c in during_down if c.ended < restarted and c.kind == "checkin"
            and c.status != 503 and not (c.status == 201 and c.checkin_id in stored)] == []
    assert set(acknowledged) <= stored, "acknowledged check-ins lost"
    assert len(acknowledged) > 20
    assert writes_back is not None and writes_back < 10
    assert board_back is not None and board_back < 10 and writes_back_after_hang is not None and writes_back_after_hang < 10
    bugs = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("qsite")]
    assert not bugs, [r.getMessage() for r in bugs[:5]]
