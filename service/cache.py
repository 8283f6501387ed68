"""Redis, used as an accelerator that fails open.

Redis holds nothing of record: rate-limit counters, cached versions, pub/sub.
Every command here runs under a short deadline and returns a neutral value
when Redis cannot answer in time.

One circuit breaker per instance (per ``Cache``) decides whether Redis is
tried at all. The first failure (timeout, refused or lost connection) opens it
for every caller at once: commands already waiting on the hung server are cut
short there and then instead of each waiting out its own timeout, and new ones
return their default without I/O. While open, one background probe at a time
(a PUBLISH, so that a write pause is noticed as well as a stopped server) tries
Redis with growing back-off; its success closes the breaker. No request ever
pays for a probe.

Anything that may have lost a message -- the breaker opening, a publish that
did not go out, the shared subscription dropping -- counts as a *gap*:
``Cache.gaps`` grows and the callbacks given to ``on_gap`` run. A cache of
versions on this instance uses that to stop trusting what it holds.

``Cache.hub`` is the instance's one pub/sub connection, fanned out in process
(see ``Hub``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

log = logging.getLogger("qsite.cache")

_FAILURES = (RedisError, OSError, TimeoutError)
# Probe back-off while the breaker is open: first retry soon, then at most every PROBE_MAX_S
# (recovery is noticed within that). A breaker that trips again soon after closing resumes
# the back-off where it was, so a flapping Redis does not cost a timeout every few hundred ms.
PROBE_MIN_S = 0.25
PROBE_MAX_S = 2.0
FLAP_WINDOW_S = 10.0
# Messages waiting to be published (a slow Redis must not grow memory without bound), and per round trip.
MAX_OUTBOX = 50_000
MAX_BATCH = 500
# Pipelines sent without waiting (``send_soon``) that may be under way at once.
MAX_SOON = 64


class Cache:
    def __init__(self, url: str, *, prefix: str, timeout_ms: int) -> None:
        self.timeout = timeout_ms / 1000
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            # One reconnect, for a pooled connection the server closed while idle; the
            # deadline in _guarded bounds the whole call whatever happens inside.
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
            # Named after the key prefix: `CLIENT LIST` tells this deployment's connections (and
            # that an instance holds one pub/sub connection whatever its subscribers) from others'.
            client_name="qsite-" + re.sub(r"[^\w:.-]", "_", prefix)[:100],
        )
        self.prefix = prefix
        self.gaps = 0
        self.outages = 0
        self._open = False
        self._in_flight: set[asyncio.Timeout] = set()
        self._gap_callbacks: list[Callable[[], None]] = []
        self._probe: asyncio.Task[None] | None = None
        self._probe_delay = PROBE_MIN_S
        self._closed_at = -math.inf
        self._up: asyncio.Event | None = None
        self._outbox: list[tuple[str, bytes]] = []
        self._publisher: asyncio.Task[None] | None = None
        self._soon: set[asyncio.Task[Any]] = set()
        self.hub = Hub(self)

    def key(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    # -- the breaker -----------------------------------------------------------

    @property
    def available(self) -> bool:
        """The breaker is closed: Redis is tried."""
        return not self._open

    def on_gap(self, callback: Callable[[], None]) -> None:
        """Run ``callback()`` (synchronously, must not raise) whenever a message may have been missed."""
        self._gap_callbacks.append(callback)

    def gap(self, reason: str) -> None:
        """Something published or subscribed may be lost: tell everyone who keeps copies."""
        self.gaps += 1
        log.debug("redis gap", extra={"event": "redis_gap", "subject": reason})
        for callback in list(self._gap_callbacks):
            try:
                callback()
            except Exception:  # one bad listener must not keep the others uninformed
                log.exception("gap callback failed", extra={"event": "gap_callback_failed"})

    def failed(self, exc: BaseException | str) -> None:
        """Open the breaker (once per outage) and cut short every command still waiting."""
        if self._open:
            return
        self._open = True
        self.outages += 1
        if self._up is not None:
            self._up.clear()
        subject = exc if isinstance(exc, str) else type(exc).__name__
        log.warning("redis unavailable, failing open", extra={"event": "redis_down", "subject": subject})
        loop = asyncio.get_running_loop()
        for deadline in list(self._in_flight):
            if not deadline.expired():
                deadline.reschedule(loop.time())
        if loop.time() - self._closed_at > FLAP_WINDOW_S:
            self._probe_delay = PROBE_MIN_S
        self._probe = loop.create_task(self._probe_until_up())
        self.gap(subject)

    async def _probe_until_up(self) -> None:
        while True:
            await asyncio.sleep(self._probe_delay)
            self._probe_delay = min(self._probe_delay * 2, PROBE_MAX_S)
            try:
                async with asyncio.timeout(self.timeout):
                    await self.client.publish(self.key("probe"), b"")
            except _FAILURES:
                continue
            break
        self._open = False
        self._closed_at = asyncio.get_running_loop().time()
        if self._up is not None:
            self._up.set()
        log.warning("redis answers again", extra={"event": "redis_up"})

    async def wait_available(self) -> None:
        if self._up is None:
            self._up = asyncio.Event()
            if not self._open:
                self._up.set()
        await self._up.wait()

    async def _guarded(self, run: Callable[[], Any], default: Any, *, timeout: float | None = None) -> Any:
        if self._open:
            return default
        try:
            async with asyncio.timeout(timeout or self.timeout) as deadline:
                self._in_flight.add(deadline)
                try:
                    return await run()
                finally:
                    self._in_flight.discard(deadline)
        except ResponseError as exc:
            # Redis answered: the command is at fault, not the server. Loud, but no outage.
            log.error("redis refused a command", extra={"event": "redis_command_error", "subject": str(exc)[:200]})
            return default
        except _FAILURES as exc:
            self.failed(exc)
            return default

    # -- commands --------------------------------------------------------------

    async def call(self, method: str, *args: Any, default: Any = None, **kwargs: Any) -> Any:
        """Run one Redis command; ``default`` when Redis is unavailable or fails."""
        return await self._guarded(lambda: getattr(self.client, method)(*args, **kwargs), default)

    async def pipeline(
        self, commands: Iterable[tuple[str, tuple[Any, ...]]], default: Any = None, *, transaction: bool = True,
        timeout: float | None = None,
    ) -> list[Any] | Any:
        """Run several commands in one round trip (MULTI/EXEC unless ``transaction=False``); ``default`` on failure."""

        async def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=transaction)
            for method, args in commands:
                getattr(pipe, method)(*args)
            return await pipe.execute()

        return await self._guarded(run, default, timeout=timeout)

    def send_soon(self, commands: list[tuple[str, tuple[Any, ...]]]) -> bool:
        """Send ``commands`` (one pipelined round trip, in order) in the background; nobody waits.

        For writes whose loss costs only work (sharing a cached answer): while Redis is slow,
        at most MAX_SOON are under way and further ones are dropped (False).
        """
        if self._open or len(self._soon) >= MAX_SOON:
            return False
        task = asyncio.get_running_loop().create_task(self.pipeline(commands, transaction=False))
        self._soon.add(task)
        task.add_done_callback(self._soon.discard)
        return True

    def publish_soon(self, messages: list[tuple[str, bytes]]) -> None:
        """Queue ``(channel, message)`` pairs for PUBLISH, in order, without waiting for Redis.

        One background task sends whatever is queued in one pipelined round trip, so a commit's
        response never waits on Redis (nor does a hung Redis hold it), and a burst of commits
        shares round trips. What cannot be sent (breaker open, failure, backlog full) is a gap.
        """
        if len(self._outbox) + len(messages) > MAX_OUTBOX:
            self.gap("publish backlog full")
            return
        self._outbox.extend(messages)
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.get_running_loop().create_task(self._publish_queued())

    async def _publish_queued(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox[:MAX_BATCH], self._outbox[MAX_BATCH:]
            commands = [("publish", message) for message in batch]
            # No request waits on this: a longer deadline than the hot path's, so that a busy event
            # loop (a CPU-bound batch beside it) is not taken for a hung Redis.
            if await self.pipeline(commands, default=None, transaction=False, timeout=self.timeout * 4) is None:
                # Subscribers everywhere missed these (when the breaker opened it counted a gap too).
                self.gap("publish failed")

    async def ping(self) -> bool:
        return bool(await self.call("ping", default=False))

    async def close(self) -> None:
        if self._publisher is not None:  # what committed before shutdown still goes out, within a deadline
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._publisher), self.timeout * 4)
            self._publisher.cancel()
        if self._soon:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._soon, return_exceptions=True), self.timeout * 4)
        # Bounded like every shutdown step: closing must not hang on a connection that does.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.hub.close(), self.timeout * 8)
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._probe, self.timeout * 8)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.client.aclose(), self.timeout * 8)


# --- the shared subscription ------------------------------------------------------


class Listener(Protocol):
    """What the hub feeds. All three run in the hub's reader task: they must be quick and not raise."""

    def ready(self) -> None:
        """Every channel and pattern of this listener is subscribed (again, after a gap)."""

    def deliver(self, channel: bytes, data: bytes) -> None:
        """One published message."""

    def lost(self) -> None:
        """The subscription broke: messages may have been missed until the next ``ready``."""


class _Entry:
    __slots__ = ("channels", "patterns", "ready")

    def __init__(self, channels: frozenset[bytes], patterns: frozenset[bytes]) -> None:
        self.channels = channels
        self.patterns = patterns
        self.ready = False


# Health pings on the subscription: a stopped Redis sends nothing, and silence alone
# cannot tell "no events" from "hung". One PING a second, and no PONG within a second
# means hung: the breaker opens and every listener hears ``lost``.
PING_INTERVAL_S = 1.0
PONG_TIMEOUT_S = 1.0
_P = b"\x00"  # marks a pattern among the subscribed names (no channel of ours holds a NUL)


class Hub:
    """One Redis pub/sub connection per instance, fanned out in process.

    Listeners ``join`` with the channels and patterns they need; the hub
    subscribes to the union (each channel once, whatever the number of
    listeners) and unsubscribes a channel when its last listener leaves, so an
    instance receives only what its listeners serve. The connection is opened
    on the first join and kept until ``close``. When it breaks or hangs, or the
    breaker opens, every listener is told ``lost``; once Redis answers again
    the hub reconnects, resubscribes and tells each listener ``ready``.
    """

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.connected = False
        self.epoch = 0  # bumped at every (re)connection
        self._entries: dict[Listener, _Entry] = {}
        self._channels: dict[bytes, int] = {}  # channel -> listeners needing it
        self._patterns: dict[bytes, int] = {}
        self._pending: dict[bytes, int] = {}  # (p)subscribe commands awaiting their reply
        self._confirmed: set[bytes] = set()
        self._conn: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._pong: asyncio.Future[None] | None = None
        self._closing = False
        cache.on_gap(self._on_gap)

    # -- listeners -------------------------------------------------------------

    async def join(self, listener: Listener, channels: Iterable[str] = (), patterns: Iterable[str] = ()) -> None:
        """Start feeding ``listener``; ``ready()`` is called once its subscriptions are confirmed."""
        entry = _Entry(frozenset(c.encode() for c in channels), frozenset(p.encode() for p in patterns))
        self._entries[listener] = entry
        new_channels = [c for c in entry.channels if self._count(self._channels, c, +1) == 1]
        new_patterns = [p for p in entry.patterns if self._count(self._patterns, _P + p, +1) == 1]
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._run())
        elif self.connected:
            try:
                await self._send_subscribe(new_channels, new_patterns)
            except _FAILURES as exc:
                self._broken(exc)
        self._check_ready(listener, entry)

    async def leave(self, listener: Listener) -> None:
        entry = self._entries.pop(listener, None)
        if entry is None:
            return
        gone_channels = [c for c in entry.channels if self._count(self._channels, c, -1) == 0]
        gone_patterns = [p for p in entry.patterns if self._count(self._patterns, _P + p, -1) == 0]
        self._confirmed.difference_update(gone_channels)
        self._confirmed.difference_update(_P + p for p in gone_patterns)
        if self.connected and self._conn is not None:
            with contextlib.suppress(*_FAILURES):
                async with asyncio.timeout(self.cache.timeout):
                    if gone_channels:
                        await self._conn.send_command("UNSUBSCRIBE", *gone_channels, check_health=False)
                    if gone_patterns:
                        await self._conn.send_command("PUNSUBSCRIBE", *gone_patterns, check_health=False)

    @staticmethod
    def _count(counts: dict[bytes, int], name: bytes, step: int) -> int:
        n = counts.get(name, 0) + step
        if n > 0:
            counts[name] = n
        else:
            counts.pop(name, None)
        return n

    def _check_ready(self, listener: Listener, entry: _Entry) -> None:
        if entry.ready or not self.connected:
            return
        if entry.channels <= self._confirmed and all(_P + p in self._confirmed for p in entry.patterns):
            entry.ready = True
            listener.ready()

    @property
    def channel_count(self) -> int:
        """Distinct channels and patterns this instance is subscribed to."""
        return len(self._channels) + len(self._patterns)

    # -- the connection ----------------------------------------------------------

    async def _send_subscribe(self, channels: list[bytes], patterns: list[bytes]) -> None:
        conn = self._conn
        if conn is None or not (channels or patterns):
            return
        for c in channels:
            self._pending[c] = self._pending.get(c, 0) + 1
        for p in patterns:
            self._pending[_P + p] = self._pending.get(_P + p, 0) + 1
        async with asyncio.timeout(self.cache.timeout):
            if channels:
                await conn.send_command("SUBSCRIBE", *channels, check_health=False)
            if patterns:
                await conn.send_command("PSUBSCRIBE", *patterns, check_health=False)

    def _broken(self, exc: BaseException | str) -> None:
        """The subscription cannot be trusted: open the breaker (which ends this session)."""
        self.cache.failed(exc)
        self._on_gap()  # also when the breaker was open already

    def _on_gap(self) -> None:
        task = self._task
        if task is not None and self.connected and task is not asyncio.current_task() and not task.cancelling():
            task.cancel()  # _run reconnects; listeners hear `lost` on the way out

    async def _run(self) -> None:
        while not self._closing:
            await self.cache.wait_available()
            try:
                await self._session()
            except asyncio.CancelledError:
                if self._closing:
                    raise
                # Cancelled by a gap (not by close): reconnect once the breaker is closed.
                current = asyncio.current_task()
                while current is not None and current.uncancel():
                    pass
            except _FAILURES as exc:
                self._broken(exc)
            except Exception:  # a bug here must not end live updates for the life of the process
                log.exception("pub/sub session failed", extra={"event": "hub_failed"})
            finally:
                await self._end_session()
            if not self.cache.available:
                continue
            await asyncio.sleep(PROBE_MIN_S)  # lost without an outage (e.g. a refused publish): retry soon

    async def _session(self) -> None:
        async with asyncio.timeout(self.cache.timeout):
            self._conn = await self.cache.client.connection_pool.get_connection()
        self.connected = True
        self.epoch += 1
        self._pending.clear()
        self._confirmed.clear()
        await self._send_subscribe(list(self._channels), [p[1:] for p in self._patterns])
        for listener, entry in list(self._entries.items()):
            self._check_ready(listener, entry)  # listeners without channels are ready at once
        watchdog = asyncio.get_running_loop().create_task(self._watchdog())
        try:
            await self._read()
        finally:
            watchdog.cancel()

    async def _read(self) -> None:
        conn = self._conn
        assert conn is not None
        while True:
            reply = await conn.read_response(timeout=math.inf, disconnect_on_error=False, push_request=True)
            kind = reply[0] if isinstance(reply, list) else reply
            if kind == b"message":
                self._fan_out(reply[1], reply[2], self._channels_of)
            elif kind == b"pmessage":
                self._fan_out(reply[1], reply[3], self._patterns_of, channel=reply[2])
            elif kind in (b"pong", b"PONG"):
                if self._pong is not None and not self._pong.done():
                    self._pong.set_result(None)
            elif kind in (b"subscribe", b"psubscribe"):
                name = reply[1] if kind == b"subscribe" else _P + reply[1]
                left = self._pending.get(name, 0) - 1
                if left > 0:
                    self._pending[name] = left
                    continue
                self._pending.pop(name, None)
                if name in self._channels or name in self._patterns:
                    self._confirmed.add(name)
                    for listener, entry in list(self._entries.items()):
                        self._check_ready(listener, entry)

    @staticmethod
    def _channels_of(entry: _Entry, name: bytes) -> bool:
        return name in entry.channels

    @staticmethod
    def _patterns_of(entry: _Entry, name: bytes) -> bool:
        return name in entry.patterns

    def _fan_out(self, name: bytes, data: bytes, wants: Callable[[_Entry, bytes], bool], *, channel: bytes | None = None) -> None:
        for listener, entry in list(self._entries.items()):
            if entry.ready and wants(entry, name):
                listener.deliver(channel or name, data)

    async def _watchdog(self) -> None:
        conn = self._conn
        assert conn is not None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PING_INTERVAL_S)
            self._pong = loop.create_future()
            try:
                async with asyncio.timeout(PONG_TIMEOUT_S):
                    await conn.send_command("PING", check_health=False)
                    await self._pong
            except TimeoutError:
                self._broken("subscription ping timed out")
                return

    async def _end_session(self) -> None:
        self.connected = False
        conn, self._conn = self._conn, None
        self._confirmed.clear()
        self._pending.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            with contextlib.suppress(Exception):
                await self.cache.client.connection_pool.release(conn)
        # Also when the connection never came up: a listener waiting for `ready` learns it failed.
        for listener, entry in list(self._entries.items()):
            entry.ready = False
            listener.lost()

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
