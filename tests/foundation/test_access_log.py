"""The access line: written without `logging` when served, same shape; a client that goes away is not a 500."""

from __future__ import annotations

import asyncio
import json
import logging
import os

from litestar.testing import AsyncTestClient

from service.access.model import Role
from service.app import create_app
from service.observability import AccessLog, _request_id
from tests.conftest import make_principal


def _sink(tmp_path) -> tuple[int, object]:
    """A file descriptor to write the lines to, and how to read what reached it."""
    path = tmp_path / "access.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    return fd, path.read_bytes


async def test_served_access_lines_are_buffered_json_flushed_on_a_timer(caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="qsite.access")
    write_fd, read = _sink(tmp_path)
    log = AccessLog()
    log.fd = write_fd
    token = _request_id.set("req-1")
    try:
        log.record("POST", "/api/v1/checkins", 201, 1.25)
        log.record("GET", "/healthz", 200, 0.1)
    finally:
        _request_id.reset(token)
    assert read() == b""  # buffered: no write per line
    await asyncio.sleep(AccessLog.FLUSH_S + 0.2)
    lines = [json.loads(line) for line in read().splitlines()]
    log.fd = None  # before closing: a pending timer must not write into a reused descriptor
    os.close(write_fd)
    assert [(e["msg"], e["status"], e["duration_ms"], e["request_id"], e["logger"], e["level"]) for e in lines] == [
        ("POST /api/v1/checkins", 201, 1.25, "req-1", "qsite.access", "INFO"),
        ("GET /healthz", 200, 0.1, "req-1", "qsite.access", "INFO"),
    ]
    assert lines[0]["ts"].endswith("Z") and len(lines[0]["ts"]) == len("2026-01-01T00:00:00.000Z")


async def test_a_full_buffer_is_written_at_once(caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="qsite.access")
    write_fd, read = _sink(tmp_path)
    log = AccessLog()
    log.fd = write_fd
    for _ in range(AccessLog.LIMIT // 100 + 1):
        log.record("GET", "/healthz", 200, 0.1)
    written = read()
    log.fd = None
    os.close(write_fd)
    assert len(written) >= AccessLog.LIMIT and written.endswith(b"\n")
    assert not caplog.records  # served lines bypass logging


async def test_no_access_lines_above_info(caplog, tmp_path):
    caplog.set_level(logging.WARNING, logger="qsite.access")
    write_fd, read = _sink(tmp_path)
    log = AccessLog()
    log.fd = write_fd
    log.record("GET", "/healthz", 200, 0.1)
    log.flush()
    assert read() == b""
    log.fd = None
    os.close(write_fd)


async def test_a_client_that_disconnects_mid_body_is_logged_as_such_not_as_an_error(settings, auth, caplog):
    app = create_app(settings)
    headers = auth(make_principal(Role.SITE_STAFF, []))
    messages = [{"type": "http.request", "body": b'{"stay_id": ', "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/v1/checkins", "raw_path": b"/api/v1/checkins", "root_path": "", "query_string": b"",
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000),
        "headers": [(b"authorization", headers["Authorization"].encode()), (b"content-type", b"application/json"), (b"content-length", b"1000")],
    }
    async with AsyncTestClient(app=app):
        with caplog.at_level(logging.INFO):
            await app(scope, receive, send)  # type: ignore[arg-type]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "client_disconnected"]
    access = [r for r in caplog.records if r.name == "qsite.access"]
    assert [(r.getMessage(), r.status) for r in access] == [("POST /api/v1/checkins", 499)]  # type: ignore[attr-defined]
