"""The app behind a real uvicorn server in the test's own event loop, on a free port.

Concurrent requests really run concurrently (the in-process test client serialises them),
and the app's pool lives in the test's loop, so a test may use ``app.state.db`` directly.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from litestar import Litestar


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def serve(app: Litestar, *, timeout: float = 30.0) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``; yields an httpx client pointed at it (``timeout`` per request)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on", access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # start-up failed: raise its error
        await asyncio.sleep(0.02)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=timeout, limits=limits) as client:
            yield client
    finally:
        server.should_exit = True
        await task
