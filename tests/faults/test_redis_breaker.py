"""The instance's Redis circuit breaker and shared subscription against a stopped (SIGSTOP) Redis of the test's own.

Bounds are generous (a hang is seconds; the bound is well under one): the test catches callers
that each wait out their own timeout, never asserts a tight duration.
"""

from __future__ import annotations

import asyncio
import time

from service.cache import Cache
from tests.faults.redis_process import redis_process

BOUND_S = 1.5
RECOVERY_S = 10.0


class Watch:
    def __init__(self) -> None:
        self.states: list[str] = []
        self.messages: list[bytes] = []

    def ready(self) -> None:
        self.states.append("ready")

    def deliver(self, channel: bytes, data: bytes) -> None:
        self.messages.append(data)

    def lost(self) -> None:
        self.states.append("lost")


async def until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return bool(condition())


async def timed(coro) -> tuple[object, float]:
    started = time.perf_counter()
    result = await coro
    return result, time.perf_counter() - started


async def test_hung_redis_opens_the_breaker_for_every_caller_and_it_closes_again():
    with redis_process() as server:
        cache = Cache(server.url, prefix="b:", timeout_ms=250)
        watch = Watch()
        gaps: list[int] = []
        cache.on_gap(lambda: gaps.append(cache.gaps))
        try:
            await cache.hub.join(watch, channels=["b:site:x"])
            assert await until(lambda: watch.states == ["ready"], 5)
            assert await cache.call("set", "b:k", "v") is True

            server.stop()
            # Concurrent callers on the hung server: all fail open together, none waits a timeout of its own
            # after the first one ran out (they are cut short when the breaker opens).
            results = await asyncio.gather(*(timed(cache.call("get", "b:k", default="fallback")) for _ in range(50)))
            assert all(value == "fallback" for value, _ in results)
            assert max(seconds for _, seconds in results) < BOUND_S
            assert not cache.available and cache.outages == 1 and gaps

            # While open, Redis is not touched at all.
            touched = []
            real_get = cache.client.get
            cache.client.get = lambda *a, **k: touched.append(a) or real_get(*a, **k)
            assert await cache.call("get", "b:k", default="fallback") == "fallback" and not touched
            cache.client.get = real_get

            # The shared subscription heard of the outage (its pings would have told it alone).
            assert await until(lambda: "lost" in watch.states, 3)
            # Probes keep failing while the server is stopped: still one outage, not one per probe.
            await asyncio.sleep(1.0)
            assert cache.outages == 1

            server.resume()
            assert await until(lambda: cache.available, RECOVERY_S), "breaker not closed after Redis came back"
            assert await cache.call("get", "b:k") == b"v"
            assert await until(lambda: watch.states[-1] == "ready", RECOVERY_S), watch.states
            await cache.call("publish", "b:site:x", b"after")
            assert await until(lambda: watch.messages == [b"after"], 5)
        finally:
            await cache.close()


async def test_subscription_alone_detects_a_hang():
    """No command traffic at all: the hub's health ping notices the stopped server and opens the breaker."""
    with redis_process() as server:
        cache = Cache(server.url, prefix="b:", timeout_ms=250)
        watch = Watch()
        try:
            await cache.hub.join(watch, patterns=["b:site:*"])
            assert await until(lambda: watch.states == ["ready"], 5)
            server.stop()
            assert await until(lambda: "lost" in watch.states, 5), "a hung Redis went unnoticed by the subscription"
            assert not cache.available
            server.resume()
            assert await until(lambda: watch.states[-1] == "ready", RECOVERY_S)
        finally:
            await cache.close()
