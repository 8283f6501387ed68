"""``python -m bench [scenario ...]``: run load scenarios and print their figures.

Each scenario is a module in bench/ with ``run(ctx: BenchContext) -> None``
that prints its lines. Add yours to SCENARIOS. The benchmark database is
``qsite_bench`` on DATABASE_URL's server (or an embedded one), rebuilt per run.
"""

from __future__ import annotations

import asyncio
import importlib
import sys

from bench.context import BenchContext

SCENARIOS = {
    "server": "bench.server_choice",
    "supplies": "bench.supplies_poll",
    "health": "bench.health",
    "board": "bench.board",
    "scale": "bench.scale",
    "logging": "bench.access_log",
    "graphql": "bench.graphql",
    "redis": "bench.redis_fanout",
    "regions": "bench.regions",
    "live": "bench.live",
    "edge": "bench.edge",
}


def main(argv: list[str]) -> None:
    names = argv or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {sorted(SCENARIOS)}")
    ctx = asyncio.run(BenchContext.create())
    for name in names:
        print(f"\n== {name}", flush=True)
        importlib.import_module(SCENARIOS[name]).run(ctx)


if __name__ == "__main__":
    main(sys.argv[1:])
