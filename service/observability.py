"""Request ids, JSON logs and Prometheus metrics.

Every log line is one JSON object carrying the request id of the request that
wrote it. Log messages name records by id only: personal data (names, document
numbers, phones) never goes into a log call.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import time
import uuid
from contextvars import ContextVar

import msgspec
from litestar import Response, get
from litestar._asgi.utils import wrap_in_exception_handler
from litestar.datastructures import State
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
access_log = logging.getLogger("qsite.access")
# Set in a request's ASGI scope when the client went away before its response: the error that
# follows (a body read cut short) is the client's doing, not an unhandled error.
CLIENT_DISCONNECTED = "qsite.client_disconnected"
# nginx's convention for "the client closed the connection": what the access log and metrics count.
STATUS_CLIENT_CLOSED = 499


def current_request_id() -> str | None:
    return _request_id.get()


class RequestIdMiddleware:
    """Takes X-Request-ID from the caller (if sane) or makes one; echoes it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isascii() and incoming.isprintable() else uuid.uuid4().hex
        token = _request_id.set(request_id)
        header = (b"x-request-id", request_id.encode())
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        async def receive_watching() -> ReceiveMessage:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope[CLIENT_DISCONNECTED] = True  # type: ignore[literal-required]
            return message

        try:
            await self.app(scope, receive_watching, send_with_id)
        finally:
            if scope.get(CLIENT_DISCONNECTED) and status >= 500:
                status = STATUS_CLIENT_CLOSED
            # The route template, never the raw path or query: those can carry ids and document numbers.
            ACCESS.record(str(scope.get("method", "?")), scope.get("path_template", "?"), status, round((time.perf_counter() - started) * 1000, 2))
            _request_id.reset(token)


class AccessLog:
    """One access line per request, in the shape of every other log line.

    Through ``logging`` (a LogRecord, a handler lock, a write and a flush per line) the
    access line cost ~30 % of a bare route's throughput. Served by ``qsite serve``, lines
    are encoded straight into a buffer written at most every ``FLUSH_S`` (or when it
    fills): a few microseconds each, reaching stderr up to ``FLUSH_S`` late. Elsewhere
    (tests, tools) they go through the ``qsite.access`` logger as any other line.
    ``QSITE_LOG_LEVEL`` above INFO turns them off either way.
    """

    FLUSH_S = 0.25
    LIMIT = 64 * 1024

    def __init__(self) -> None:
        self.fd: int | None = None
        self._buffer = bytearray()
        self._flush_scheduled = False
        self._encoder = msgspec.json.Encoder()
        self._second = -1
        self._stamp = ""

    def record(self, method: str, route: str, status: int, duration_ms: float) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        if self.fd is None:
            access_log.info("%s %s", method, route, extra={"status": status, "duration_ms": duration_ms})
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry: dict[str, object] = {
            "ts": f"{self._stamp}.{int((now - second) * 1000):03d}Z",
            "level": "INFO",
            "logger": access_log.name,
            "msg": f"{method} {route}",
        }
        request_id = current_request_id()
        if request_id:
            entry["request_id"] = request_id
        entry["duration_ms"] = duration_ms
        entry["status"] = status
        self._encoder.encode_into(entry, self._buffer, len(self._buffer))
        self._buffer += b"\n"
        if len(self._buffer) >= self.LIMIT:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(self.FLUSH_S, self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self.fd is None or not self._buffer:
            return
        pending = memoryview(bytes(self._buffer))
        self._buffer.clear()
        while pending:
            pending = pending[os.write(self.fd, pending) :]


ACCESS = AccessLog()


def early_exit_problems(app: ASGIApp) -> ASGIApp:
    """Middleware: turn what inner middleware raises (authentication, body limits) into problem+json here.

    Litestar otherwise renders those exceptions outside every middleware: the access log
    then saw no response (status 500), the problem got a fresh request id, and Prometheus
    counted its default 200. This is the handler stack Litestar puts around each route.
    """
    return wrap_in_exception_handler(app)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id:
            entry["request_id"] = request_id
        for key in ("event", "site_id", "subject", "duration_ms", "status"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry).decode()


def setup_logging(level: str) -> None:
    ACCESS.flush()
    ACCESS.fd = sys.stderr.fileno()
    atexit.register(ACCESS.flush)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log would print query strings; our own metrics cover access.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # embedded PostgreSQL narrates every pg_ctl call


prometheus = PrometheusConfig(app_name="qsite", prefix="qsite", group_path=True, exclude=["/metrics"])


class MetricsController(PrometheusController):
    path = "/metrics"
    include_in_schema = False


# --- probes -----------------------------------------------------------------

class Readiness(msgspec.Struct):
    ready: bool
    # "ok", "degraded" (Redis down: every request is still served, only slower and without live
    # updates) or "unavailable" (PostgreSQL down).
    status: str
    postgres: bool
    redis: bool


@get("/healthz", include_in_schema=False, sync_to_thread=False)
def healthz() -> dict[str, str]:
    """Alive: the process answers."""
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(state: State) -> Response[Readiness]:
    """Ready while PostgreSQL answers (503 otherwise). Redis is an accelerator: without it the
    instance still serves every request, so Redis down is reported as degraded, not as unready
    (a load balancer would otherwise take every instance out during a Redis outage)."""
    postgres = False
    try:
        async with state.db.pool.acquire(timeout=2) as conn:
            postgres = await conn.fetchval("SELECT true", timeout=2)
    except Exception:  # noqa: BLE001 - any failure means "not ready"; the probe must not raise
        postgres = False
    redis_ok = await state.cache.ping()  # no I/O while the breaker is open
    status = "ok" if postgres and redis_ok else "degraded" if postgres else "unavailable"
    body = Readiness(ready=postgres, status=status, postgres=postgres, redis=redis_ok)
    return Response(body, status_code=200 if postgres else 503)


PROBES = [healthz, readyz]
