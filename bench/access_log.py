"""What the access line costs: the bare route on a default server (INFO, one line per request)
against the same app at WARNING (no access lines), two processes side by side, interleaved rounds,
median ratio. Also the cost of one line written through ``logging`` and through the served path.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time

from bench.context import BenchContext
from bench.harness import serve, wrk
from service.observability import AccessLog, access_log, setup_logging

ROUNDS = 3
SECONDS = 4
LINES = 20_000


def run(ctx: BenchContext) -> None:
    with serve(ctx.server_env) as info, serve({**ctx.server_env, "QSITE_LOG_LEVEL": "WARNING"}) as quiet:
        wrk("warm-up", f"{info}/bench/bare", seconds=1)
        wrk("warm-up", f"{quiet}/bench/bare", seconds=1)
        logged, silent = [], []
        for _ in range(ROUNDS):
            logged.append(wrk("bare route, INFO (access lines)", f"{info}/bench/bare", seconds=SECONDS))
            silent.append(wrk("bare route, WARNING (none)", f"{quiet}/bench/bare", seconds=SECONDS))
    a, b = (statistics.median(r.rps for r in rs) for rs in (logged, silent))
    print(f"{'bare route, INFO (access lines)':<38} {a:>9.0f} req/s", flush=True)
    print(f"{'bare route, WARNING (none)':<38} {b:>9.0f} req/s", flush=True)
    print(f"{'access line cost (1 - ratio)':<38} {1 - a / b:>9.1%}", flush=True)
    _per_line()


def _per_line() -> None:
    """Microseconds per line: through logging (StreamHandler + JsonFormatter) and the served path."""
    with tempfile.TemporaryFile() as sink:
        handler = logging.StreamHandler(open(sink.fileno(), "w", closefd=False))  # noqa: SIM115
        setup_logging("INFO")
        logging.getLogger().handlers[0].setStream(handler.stream)
        started = time.perf_counter()
        for _ in range(LINES):
            access_log.info("%s %s", "GET", "/bench/bare", extra={"status": 200, "duration_ms": 0.07})
        through_logging = (time.perf_counter() - started) / LINES * 1e6
        served = AccessLog()
        served.fd = sink.fileno()
        started = time.perf_counter()
        for _ in range(LINES):
            served.record("GET", "/bench/bare", 200, 0.07)
        served.flush()
        buffered = (time.perf_counter() - started) / LINES * 1e6
    print(f"{'one line through logging':<38} {through_logging:>9.1f} us", flush=True)
    print(f"{'one line, served path':<38} {buffered:>9.1f} us", flush=True)
