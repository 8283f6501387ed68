"""Check-ins: the single POST against the bare route, and the offline batch in check-ins per second.

Measured side by side on one server process. Each single check-in carries a fresh client UUID
(``__N__``); each batch item too (every ``__N__`` of a batch body gets its own UUID, every wrk run its own prefix), so
every request inserts new rows, as phones replaying offline queues do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import statistics
import subprocess
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
ROUNDS = 3
SLICE_S = 3
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


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backends(database: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving ``database`` on this machine (its process title names it)."""
    name = database.encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().split(b" ")
            except OSError:
                continue
            # "postgres: [<cluster name>:] <user> <database> <client> <state>"
            words = title[2:] if len(title) > 1 and title[1].endswith(b":") else title[1:]
            if title[0] == b"postgres:" and len(words) > 1 and words[1] == name:
                found[int(entry.name)] = _cpu_s(int(entry.name))
    return found


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU the backends used between two readings (one born since counts from 0)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


@dataclass
class Slice:
    rate: float  # requests (or rows) per second
    cpu_ms: float  # CPU per request (or row): the server process plus its PostgreSQL backends
    server_ms: float  # the server process's share


def _measure(server_pid: int, database: str, units: int, load: Callable[[], float], seconds: float) -> Slice:
    """Run ``load`` (answering its requests per second) and charge it the server's and the database's CPU."""
    server, backends = _cpu_s(server_pid), _backends(database)
    rate = load()
    done = rate * seconds * units
    server_s = _cpu_s(server_pid) - server
    return Slice(rate * units, (server_s + _spent(backends, _backends(database))) * 1000 / max(done, 1), server_s * 1000 / max(done, 1))


def _pgbench(ctx: BenchContext, site_id: uuid.UUID, stay_id: uuid.UUID) -> Slice:
    """Rows per second pgbench writes with the batch check-in's statements' shape (4 clients), and its backends' CPU per row.

    pgbench's backends live only as long as the run: read every 50 ms, their last reading counts.
    """
    database = ctx.settings.bench_database
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(" ".join(_PGBENCH_BATCH.format(stay=stay_id, site=site_id, n=BATCH).split()) + "\n")
        script.flush()
        existing = set(_backends(database))
        seen: dict[int, float] = {}
        proc = subprocess.Popen(
            ["pgbench", "-n", "-c", "4", "-T", str(SLICE_S), "-f", script.name, ctx.settings.database_url or ""],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        while proc.poll() is None:
            for pid, cpu in _backends(database).items():
                if pid not in existing:
                    seen[pid] = max(cpu, seen.get(pid, 0.0))
            time.sleep(0.05)
        out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed: {out}")
    rows = float(re.search(r"tps = ([\d.]+)", out).group(1)) * BATCH  # type: ignore[union-attr]
    return Slice(rows, sum(seen.values()) * 1000 / max(rows * SLICE_S, 1), 0.0)


def run(ctx: BenchContext) -> None:
    command = make_principal(Role.COMMAND)

    async def setup(db):  # noqa: ANN001
        async with db.transaction() as conn:
            site = await sites.create_site(conn, command, SiteCreate(code=f"H-{uuid.uuid4().hex[:6]}", name="bench health"))
            for floor in range(2, 2 + RESIDENTS // 50):
                await sites.create_floor(conn, command, site.id, FloorCreate(floor=floor, first=floor * 100 + 1, last=floor * 100 + 50))
            admitted = await stays.admit_batch(
                conn, command, ctx.settings,
                BatchAdmission(site_id=site.id, category="close_contact", arrival_batch="bench",
                               members=[BatchMember(resident=person()) for _ in range(RESIDENTS)]),
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
    database = ctx.settings.bench_database
    slices: dict[str, list[Slice]] = defaultdict(list)
    with serve(ctx.server_env) as base:
        pid = harness.server_pid(base)

        def rate(label: str, url: str, **options: Any) -> Callable[[], float]:
            def load() -> float:
                with _fresh_uuids():
                    return wrk(label, url, seconds=SLICE_S, **options).rps
            return load

        loads = {
            "bare route": (1, rate("bare", f"{base}/bench/bare")),
            "GET /api/v1/sites/{id} (one SELECT)": (1, rate("read", f"{base}/api/v1/sites/{site_id}", headers=headers)),
            "POST /api/v1/checkins (one)": (1, rate("one", f"{base}/api/v1/checkins", method="POST", headers=headers, body=single, unique_body=True)),
            f"POST /api/v1/checkins/batch ({BATCH})": (
                BATCH, rate("batch", f"{base}/api/v1/checkins/batch", connections=4, method="POST", headers=headers, body=batch, unique_body=True)),
        }
        wrk("warm-up", f"{base}/bench/bare", seconds=1)
        with _fresh_uuids():
            wrk("warm-up", f"{base}/api/v1/checkins", seconds=1, method="POST", headers=headers, body=single, unique_body=True)
        # Rounds of short slices, each line next to its reference: the machine's load moves rates by
        # 2-4x within a minute, so ratios are taken slice by slice (adjacent in time), then the median.
        for round_no in range(ROUNDS):
            print(f"round {round_no + 1}/{ROUNDS}  load average {Path('/proc/loadavg').read_text().split()[0]}", flush=True)
            for label, (units, load) in loads.items():
                slices[label].append(_measure(pid, database, units, load, SLICE_S))
            slices["pgbench"].append(_pgbench(ctx, site_id, stay_ids[0]))

    def median(label: str, field: str) -> float:
        return statistics.median(getattr(x, field) for x in slices[label])

    def paired(label: str, reference: str, field: str) -> float:
        if field == "rate":
            return statistics.median(x.rate / r.rate for x, r in zip(slices[label], slices[reference], strict=True))
        return statistics.median(r.cpu_ms / x.cpu_ms for x, r in zip(slices[label], slices[reference], strict=True))

    print(f"\nmedian of {ROUNDS} rounds of {SLICE_S} s slices; ratio = to the reference in the same round (rate), "
          "and the reference's CPU per unit over the line's (server process + its PostgreSQL backends)", flush=True)
    batch_label = f"POST /api/v1/checkins/batch ({BATCH})"
    for label, reference in (("bare route", None), ("GET /api/v1/sites/{id} (one SELECT)", "bare route"),
                             ("POST /api/v1/checkins (one)", "bare route"), (batch_label, None), ("pgbench", None)):
        unit = "rows/s" if label == "pgbench" else "items/s" if label == batch_label else "req/s"
        per = "row" if label in ("pgbench", batch_label) else "req"
        line = (f"{label:<38} {median(label, 'rate'):>9.0f} {unit:<7} CPU {median(label, 'cpu_ms'):6.3f} ms/{per} "
                f"(server {median(label, 'server_ms'):.3f})")
        if reference:
            line += f"  ratio {paired(label, reference, 'rate'):.2f}, CPU ratio {paired(label, reference, 'cpu_ms'):.2f}"
        print(line, flush=True)
    print(f"{'batch vs pgbench (same rows +audit +event)':<38} ratio {paired(batch_label, 'pgbench', 'rate'):.2f}, "
          f"CPU ratio {paired(batch_label, 'pgbench', 'cpu_ms'):.2f}  (per round: "
          + ", ".join(f"{b.rate / g.rate:.2f}" for b, g in zip(slices[batch_label], slices["pgbench"], strict=True)) + ")", flush=True)

    async def count(db):  # noqa: ANN001
        async with db.connection() as conn:
            return await conn.fetchval("SELECT count(*) FROM checkins"), await conn.fetchval("SELECT count(DISTINCT id) FROM checkins")

    rows, distinct = asyncio.run(ctx.with_db(count))
    print(f"{'stored check-ins (distinct ids)':<38} {rows:>9} ({distinct})", flush=True)
