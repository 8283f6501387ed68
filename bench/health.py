"""Check-ins: the single POST against the bare route, and the offline batch in check-ins per second.

Measured side by side on one server process. Each single check-in carries a fresh client UUID
(``__N__``); each batch item too (every ``__N__`` of a batch body gets its own UUID, every wrk run its own prefix), so
every request inserts new rows, as phones replaying offline queues do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from bench import harness
from bench.context import BenchContext
from bench.harness import serve, wrk
from service.access.model import Role
from service.sites import service as sites
from service.sites.model import FloorCreate, SiteCreate
from service.stays import service as stays
from service.stays.model import BatchAdmission, BatchMember
from tests.conftest import make_principal
from tests.stays.helpers import person

RESIDENTS = 200
BATCH = 500  # a phone's offline queue, the most one request takes (issue 18 measures at 500)

# Lua's gsub with a function replacement is called per match: every __N__ gets its own UUID.
# Each wrk run gets its own random prefix: wrk's math.random is unseeded, so the harness's ids
# repeat from one run to the next (a warm-up's ids would come back as replays).
_PER_OCCURRENCE = """
counter = 0
request = function()
  local body = string.gsub(template, "__N__", function()
    counter = counter + 1
    return string.format("%s-0000-4000-8000-%012x", counter)
  end)
  return wrk.format(nil, nil, nil, body)
end
"""


@contextlib.contextmanager
def _fresh_uuids() -> Iterator[None]:
    saved = harness._LUA_UNIQUE
    harness._LUA_UNIQUE = _PER_OCCURRENCE.replace("%s", secrets.token_hex(4), 1)
    try:
        yield
    finally:
        harness._LUA_UNIQUE = saved


# What PostgreSQL takes for the same writes as a batch check-in (each row with its audit row and
# outbox event, set-based, 4 clients like the wrk run): the ceiling qsite's ingest is compared to.
_PGBENCH_BATCH = """
WITH c AS (
    INSERT INTO checkins (id, stay_id, site_id, recorded_at, temperature_c, spo2, pulse, recorded_by)
    SELECT gen_random_uuid(), '{stay}', '{site}', now(), 36.6, 98, 72, 'staff:bench' FROM generate_series(1, {n})
    RETURNING id, site_id
), a AS (
    INSERT INTO audit_log (actor, actor_role, action, site_id, subject_id, fields)
    SELECT 'staff:bench', 'site_staff', 'checkin.record', site_id, id, '{{}}' FROM c
)
INSERT INTO events (site_id, type, subject_id, data, actor)
SELECT site_id, 'health.checkin_recorded', id, '{{}}', 'staff:bench' FROM c;
"""


def _pgbench(ctx: BenchContext, site_id: uuid.UUID, stay_id: uuid.UUID) -> float:
    """Rows per second pgbench writes with the batch check-in's statements' shape (5 s, 4 clients)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(" ".join(_PGBENCH_BATCH.format(stay=stay_id, site=site_id, n=BATCH).split()) + "\n")
        script.flush()
        out = subprocess.run(
            ["pgbench", "-n", "-c", "4", "-T", "5", "-f", script.name, ctx.settings.database_url or ""],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return tps * BATCH


def run(ctx: BenchContext) -> None:
    command = make_principal(Role.COMMAND)

    async def setup(db):  # noqa: ANN001
        async with db.transaction() as conn:
            site = await sites.create_site(conn, command, SiteCreate(code=f"H-{uuid.uuid4().hex[:6]}", name="bench health"))
            for floor in range(2, 2 + RESIDENTS // 50):
                await sites.create_floor(conn, command, site.id, FloorCreate(floor=floor, first=floor * 100 + 1, last=floor * 100 + 50))
            admitted = await stays.admit_batch(
                conn, command, ctx.settings,
                BatchAdmission(site_id=site.id, category="close_contact", arrival_batch="bench", members=[BatchMember(resident=person()) for _ in range(RESIDENTS)]),
            )
        return site.id, [s.id for s in admitted]

    site_id, stay_ids = asyncio.run(ctx.with_db(setup))
    worker = make_principal(Role.SITE_STAFF, [site_id])
    headers = {"Authorization": f"Bearer {ctx.token(worker)}", "Content-Type": "application/json"}
    now = datetime.now(UTC).isoformat()

    def item(stay_id: uuid.UUID) -> dict[str, object]:
        return {"id": "__N__", "stay_id": str(stay_id), "recorded_at": now, "temperature_c": 36.6, "spo2": 98, "pulse": 72}

    single = json.dumps(item(stay_ids[0]))
    batch = json.dumps({"checkins": [item(stay_ids[i % len(stay_ids)]) for i in range(BATCH)]})
    with serve(ctx.server_env) as base:
        wrk("warm-up", f"{base}/bench/bare", seconds=1)
        with _fresh_uuids():
            wrk("warm-up", f"{base}/api/v1/checkins", seconds=1, method="POST", headers=headers, body=single, unique_body=True)
        bare = wrk("bare route", f"{base}/bench/bare")
        # any route that takes a pooled connection for one statement: the floor under a check-in
        read = wrk("GET /api/v1/sites/{id} (one SELECT)", f"{base}/api/v1/sites/{site_id}", headers=headers)
        with _fresh_uuids():
            one = wrk("POST /api/v1/checkins", f"{base}/api/v1/checkins", method="POST", headers=headers, body=single, unique_body=True)
        with _fresh_uuids():
            many = wrk(f"POST /api/v1/checkins/batch ({BATCH})", f"{base}/api/v1/checkins/batch", seconds=5, connections=4,
                       method="POST", headers=headers, body=batch, unique_body=True)
        print(bare.line(), flush=True)
        print(read.line(bare.rps), flush=True)
        print(one.line(bare.rps), flush=True)
        print(many.line(), flush=True)
        print(f"{'batch: check-ins per second':<38} {many.rps * BATCH:>9.0f}", flush=True)
        floor = _pgbench(ctx, site_id, stay_ids[0])
        print(f"{'pgbench, same rows (+audit +event)/s':<38} {floor:>9.0f}  qsite at {many.rps * BATCH / floor:.2f} of it", flush=True)

    async def count(db):  # noqa: ANN001
        async with db.connection() as conn:
            return await conn.fetchval("SELECT count(*) FROM checkins"), await conn.fetchval("SELECT count(DISTINCT id) FROM checkins")

    rows, distinct = asyncio.run(ctx.with_db(count))
    print(f"{'stored check-ins (distinct ids)':<38} {rows:>9} ({distinct})", flush=True)
