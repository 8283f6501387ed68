"""The trivial query ``{ apiVersion }`` against ``/healthz`` on the same process, in paired one-second slices.

``python -m bench graphql`` measures the same pair among its board loads, but needs PostGraphile and
minutes of set-up; this runs in half a minute. A slice's rate moves with the machine's load (by 2-4x
from one second to the next on the shared machine) while the CPU per request does not, so each
trivial slice is compared with the /healthz slice just before it, and the worker's CPU per request
is printed beside (the steadier figure).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench import harness
from bench.context import BenchContext
from bench.graphql import _cpu_s
from bench.harness import serve, wrk
from service.access.model import Role
from tests.conftest import make_principal

PAIRS = 12


def run(ctx: BenchContext) -> None:
    trivial = json.dumps({"query": "{ apiVersion }"})
    lines = {
        "/healthz": {},
        "{ apiVersion } anonymous": {"method": "POST", "headers": {"Content-Type": "application/json"}, "body": trivial},
        "{ apiVersion } with a token": {
            "method": "POST",
            "headers": {"Authorization": f"Bearer {ctx.token(make_principal(Role.COMMAND))}", "Content-Type": "application/json"},
            "body": trivial,
        },
    }
    rates: dict[str, list[float]] = {label: [] for label in lines}
    cpu_ms: dict[str, list[float]] = {label: [] for label in lines}
    with serve(ctx.server_env) as base:
        pid = harness.server_pid(base)
        for label, options in lines.items():
            wrk("warm-up", f"{base}/{'healthz' if label == '/healthz' else 'graphql'}", seconds=1, **options)
        print(f"load average before: {Path('/proc/loadavg').read_text().split()[0]}", flush=True)
        for _ in range(PAIRS):
            for label, options in lines.items():
                before = _cpu_s(pid)
                result = wrk(label, f"{base}/{'healthz' if label == '/healthz' else 'graphql'}", seconds=1, **options)
                rates[label].append(result.rps)
                cpu_ms[label].append((_cpu_s(pid) - before) * 1000 / max(result.rps, 1))
        print(f"load average after: {Path('/proc/loadavg').read_text().split()[0]}", flush=True)
    healthz_cpu = statistics.median(cpu_ms["/healthz"])
    for label in lines:
        line = (f"{label:<30} {statistics.median(rates[label]):>7.0f} req/s (slices {min(rates[label]):.0f}-{max(rates[label]):.0f})"
                f"  CPU {statistics.median(cpu_ms[label]):.3f} ms/req")
        if label != "/healthz":
            paired = [q / h for h, q in zip(rates["/healthz"], rates[label], strict=True)]
            line += (f"  ratio {statistics.median(paired):.2f} (median of {PAIRS} adjacent pairs; single pairs "
                     f"{min(paired):.2f}-{max(paired):.2f}), CPU ratio {healthz_cpu / statistics.median(cpu_ms[label]):.2f}")
        print(line, flush=True)
