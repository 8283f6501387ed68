"""Stock generations for the logistics poll's ETag, answered without PostgreSQL when possible.

Every change of a site's stock bumps ``supply_stock_generations`` in the same
transaction (trigger). The poll's ETag is derived from the generations of the
sites it covers, so ``If-None-Match`` can be answered from a copy of them:

1. in process memory -- trusted only while this instance is subscribed to the
   outbox channels (``<prefix>site:*``) and was so before the copy was loaded,
   so no change can have been missed; zero I/O;
2. in Redis (a hash, max-merged by writers after commit, with a TTL) -- one round trip;
3. in PostgreSQL -- one small query; the fallback when Redis is down.

Generations only grow, so every copy merges with ``max``: a late, older value
can never overwrite a newer one. A copy can lag a commit by the time an event
takes to arrive; it is never ahead of the database.

The 200 answer is cached per ETag too (the body is a function of the
generations and the hour), so a poll without ``If-None-Match`` also skips SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from uuid import UUID

import asyncpg
import msgspec
from redis.exceptions import RedisError

from service import bus
from service.cache import Cache
from service.db import Database

log = logging.getLogger("qsite.supplies")

REDIS_TTL_S = 300
BODY_CACHE_SIZE = 256
LOADED = "_loaded"
# Bump when the poll's JSON shape changes: old ETags must not match new bodies.
SHAPE_VERSION = "1"

# HSET field to max(current, value) for each pair; marks the hash complete when ARGV[1] == "1".
_MERGE = """
for i = 3, #ARGV, 2 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > cur then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], '_loaded', '1') end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class StockVersions:
    """One per Cache (i.e. per app instance)."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.key = cache.key("supplies", "generations")
        self.gens: dict[UUID, int] = {}
        self.complete = False  # memory holds every site's generation
        self.subscribed = False
        self.epoch = 0  # bumped on every (re)subscription; a load is trusted only within one epoch
        self.bodies: OrderedDict[str, bytes] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._pool: asyncpg.Pool | None = None
        self._closed = False

    # -- merging ---------------------------------------------------------------

    def merge(self, gens: dict[UUID, int]) -> None:
        for site, gen in gens.items():
            if gen > self.gens.get(site, 0):
                self.gens[site] = gen

    async def committed(self, gens: dict[UUID, int]) -> None:
        """After a commit on this instance: memory at once, Redis for the other instances."""
        self.merge(gens)
        await self._redis_merge(gens, loaded=False)

    async def _redis_merge(self, gens: dict[UUID, int], *, loaded: bool) -> None:
        args: list[object] = ["1" if loaded else "0", REDIS_TTL_S]
        for site, gen in gens.items():
            args += [str(site), gen]
        await self.cache.call("eval", _MERGE, 1, self.key, *args)

    # -- reading ---------------------------------------------------------------

    async def current(self, db: Database, site_ids: Iterable[UUID] | None) -> dict[UUID, int]:
        """Generations of ``site_ids`` (None: every site with stock); 0 for a site without stock."""
        self.ensure_listening(db)
        if not (self.subscribed and self.complete):
            epoch, listening = self.epoch, self.subscribed
            gens = await self._load(db)
            self.merge(gens)
            if listening and self.subscribed and epoch == self.epoch:
                self.complete = True
        source = self.gens
        if site_ids is None:
            return {s: g for s, g in source.items()}
        return {s: source.get(s, 0) for s in site_ids}

    async def _load(self, db: Database) -> dict[UUID, int]:
        raw = await self.cache.call("hgetall", self.key)
        if raw and raw.get(LOADED.encode()):
            return {UUID(k.decode()): int(v) for k, v in raw.items() if k != LOADED.encode()}
        from service.supplies import store

        async with db.connection() as conn:
            gens = await store.generations(conn, None)
        await self._redis_merge(gens, loaded=True)
        return gens

    # -- bodies ----------------------------------------------------------------

    def body(self, etag: str) -> bytes | None:
        found = self.bodies.get(etag)
        if found is not None:
            self.bodies.move_to_end(etag)
        return found

    def keep(self, etag: str, body: bytes) -> None:
        self.bodies[etag] = body
        while len(self.bodies) > BODY_CACHE_SIZE:
            self.bodies.popitem(last=False)

    # -- listening ---------------------------------------------------------------

    def ensure_listening(self, db: Database) -> None:
        """Start the subscriber on first use; it ends when the app's pool closes (app shutdown)."""
        if self._task is None and not self._closed:
            self._pool = db.pool
            self._task = asyncio.get_running_loop().create_task(self._listen())

    @property
    def _stopped(self) -> bool:
        return self._closed or self._pool is None or self._pool.is_closing()

    def _lost(self) -> None:
        self.subscribed = False
        self.complete = False

    async def _listen(self) -> None:
        pattern = self.cache.key("site", "*")
        while not self._stopped:
            pubsub = self.cache.client.pubsub()
            try:
                await pubsub.psubscribe(pattern)
                # The subscription is confirmed before any load this epoch starts.
                while not self._stopped:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg and msg["type"] == "psubscribe":
                        break
                else:
                    return
                self.epoch += 1
                self.subscribed = True
                while not self._stopped:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None:
                        self._on_message(msg["data"])
            except (RedisError, OSError, TimeoutError, RuntimeError):
                self._lost()
                await asyncio.sleep(1.0)
            finally:
                self._lost()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _on_message(self, data: bytes) -> None:
        try:
            event = msgspec.json.decode(data, type=bus.Event)
        except msgspec.DecodeError:
            return
        gen = event.data.get("generation") if event.type.startswith("supplies.") else None
        if isinstance(gen, int) and event.site_id is not None:
            self.merge({event.site_id: gen})

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


_BY_CACHE: weakref.WeakKeyDictionary[Cache, StockVersions] = weakref.WeakKeyDictionary()


def for_cache(cache: Cache) -> StockVersions:
    versions = _BY_CACHE.get(cache)
    if versions is None:
        versions = _BY_CACHE[cache] = StockVersions(cache)
    return versions


async def _after_commit(cache: Cache, events: list[bus.Event]) -> None:
    """bus observer: this instance's own writes update its copy before the response leaves."""
    gens: dict[UUID, int] = {}
    for event in events:
        gen = event.data.get("generation") if event.type.startswith("supplies.") else None
        if isinstance(gen, int) and event.site_id is not None and gen > gens.get(event.site_id, 0):
            gens[event.site_id] = gen
    if gens:
        await for_cache(cache).committed(gens)


bus.observe(_after_commit)


_ETAGS: dict[tuple[object, ...], str] = {}


def etag_for(gens: dict[UUID, int], *, query: str, bucket: str) -> str:
    """Strong ETag of a poll: the generations of the sites it covers, the kind of query and the hour.

    Memoized: polls repeat the same few combinations, and hashing is most of a 304's own cost.
    """
    key = (query, bucket, *sorted(gens.items()))
    etag = _ETAGS.get(key)
    if etag is None:
        digest = hashlib.blake2b(digest_size=16)
        for part in (SHAPE_VERSION, query, bucket, *(f"{s}={g}" for s, g in key[2:])):
            digest.update(str(part).encode())
            digest.update(b"\x00")
        etag = f'"s{digest.hexdigest()}"'
        if len(_ETAGS) > 4096:
            _ETAGS.clear()
        _ETAGS[key] = etag
    return etag
