"""Schemathesis runs against a live server, as a client would see it.

The suite runs with a fixed seed and a small, time-bounded budget; ``make fuzz``
runs the same tests longer with a random seed. Environment (read by the tests
only, never by the service):

- ``QSITE_FUZZ_SEED``: the seed (default 20261129); printed with every failure.
- ``QSITE_FUZZ_EXAMPLES``: examples per operation and phase (default 10).
- ``QSITE_FUZZ_MAX_TIME``: seconds per run before it stops (default 25).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import schemathesis
import uvicorn
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from service.api.demo import seed_demo
from service.app import create_app
from service.settings import Settings

SEED = int(os.environ.get("QSITE_FUZZ_SEED", "20261129"))
EXAMPLES = int(os.environ.get("QSITE_FUZZ_EXAMPLES", "10"))
MAX_TIME = int(os.environ.get("QSITE_FUZZ_MAX_TIME", "25"))


def config(headers: dict[str, str], checks: dict[str, Any], *, stateful: bool = True) -> SchemathesisConfig:
    phases: dict[str, Any] = {"stateful": {"enabled": stateful}}
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "max-time": MAX_TIME,
            "headers": headers,
            "workers": 1,
            "generation": {"max-examples": EXAMPLES},
            "phases": phases,
            "checks": checks,
        }
    )


@contextmanager
def live_server(settings: Settings, *, serve: Settings | None = None) -> Iterator[str]:
    """The app on a free local port (demo data seeded, so that links find real records).

    ``serve``: other settings to serve with (e.g. production, where seeding is refused).
    """
    asyncio.run(seed_demo(settings, only_if_empty=False))
    settings = serve or settings
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def failures(schema: schemathesis.BaseSchema) -> tuple[list[str], int]:
    """Run every phase; (one line per distinct failure, number of test cases run)."""
    found: dict[tuple[str, str], str] = {}
    cases = 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases += len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        key = (failure.operation, failure.title)
                        found.setdefault(key, f"{failure.operation}: {failure.title}: {failure.message}\n  {check.failure_info.code_sample}")
        elif isinstance(event, events.FatalError):
            raise event.exception
    return [f"[seed {SEED}] {line}" for line in found.values()], cases
