"""Redis, used as an accelerator that fails open.

Redis holds nothing of record: rate-limit counters, cached versions, pub/sub.
Every call here has a short timeout and returns a neutral value when Redis is
unreachable. After a failure the client stays "open" (skips Redis entirely)
for a short cool-down so that a dead Redis costs nothing per request rather
than one timeout per call.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger("qsite.cache")

COOL_DOWN_S = 2.0
_FAILURES = (RedisError, OSError, TimeoutError)


class Cache:
    def __init__(self, url: str, *, prefix: str, timeout_ms: int) -> None:
        timeout = timeout_ms / 1000
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
        self.prefix = prefix
        self._down_until = 0.0

    def key(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        if self.available:
            log.warning("redis unavailable, failing open", extra={"event": "redis_down", "subject": type(exc).__name__})
        self._down_until = time.monotonic() + COOL_DOWN_S

    async def call(self, method: str, *args: Any, default: Any = None, **kwargs: Any) -> Any:
        """Run one Redis command; on failure return ``default`` and skip Redis for a while."""
        if not self.available:
            return default
        try:
            return await getattr(self.client, method)(*args, **kwargs)
        except _FAILURES as exc:
            self._failed(exc)
            return default

    async def pipeline(self, commands: list[tuple[str, tuple[Any, ...]]], default: Any = None) -> list[Any] | Any:
        """Run several commands in one round trip (MULTI/EXEC); ``default`` on failure."""
        if not self.available:
            return default
        try:
            pipe = self.client.pipeline(transaction=True)
            for method, args in commands:
                getattr(pipe, method)(*args)
            return await pipe.execute()
        except _FAILURES as exc:
            self._failed(exc)
            return default

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except _FAILURES:
            return False

    async def close(self) -> None:
        await self.client.aclose()
