"""Site data versions: what every cached read and ETag is keyed by.

Each site has one counter per topic (rooms, health, transfers, stock; data shared
by all sites is the ``catalog`` topic of the nil site). Triggers bump them in the
writing transaction (db/migrations/0008) and NOTIFY ``qsite_versions``;
PostgreSQL delivers the notification at commit, and only on commit.

Each instance keeps a copy in memory, fed by one LISTEN connection. The copy is
trusted only while that connection has been healthy since the copy was loaded:
when it ends or a health ping fails (a gap: notifications may have been lost),
the copy is dropped and every read asks PostgreSQL (one small indexed query)
until the listener is back, has LISTENed again and reloaded the table.
There is no publish after the commit that could fail and leave a copy behind.

Read-your-writes on the writing instance: after a local commit the next read
first makes one round trip on the listener connection. PostgreSQL sends a
listener its pending notifications before answering it, and the writer's commit
had already queued them, so the copy is then at least as new as that commit.
Other instances learn of a commit as fast as the notification travels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal
from uuid import UUID

import asyncpg

if TYPE_CHECKING:
    from service.db import Database

log = logging.getLogger("qsite.versions")

Topic = Literal["rooms", "health", "transfers", "stock", "catalog"]
CATALOG: Topic = "catalog"
NIL_SITE = UUID(int=0)  # the "site" of data every site shares (sites, regimes, facilities, items)
CHANNEL = "qsite_versions"
PING_S = 1.0
RECONNECT_S = 0.5

# A (site, topic) version is the sum of its stripes (migration 0018): the number of writing
# statements committed there, whichever connection made them.
_READ = """
SELECT site_id, topic, sum(version)::bigint AS version FROM site_data_versions
WHERE ($1::uuid[] IS NULL OR site_id = ANY($1::uuid[])) AND topic = ANY($2::text[])
GROUP BY site_id, topic
"""
_LOAD = "SELECT site_id, topic, stripe, version FROM site_data_versions"


async def read_versions(db: Database, sites: Iterable[UUID] | None, topics: Iterable[str]) -> dict[tuple[UUID, str], int]:
    """The versions from PostgreSQL (absent pairs 0; with ``sites`` None, only those that exist)."""
    topics = tuple(topics)
    sites = None if sites is None else list(sites)
    async with db.connection() as conn:
        rows = await conn.fetch(_READ, sites, list(topics))
    found = {(r["site_id"], r["topic"]): r["version"] for r in rows}
    if sites is None:
        return found
    return {(s, t): found.get((s, t), 0) for s in sites for t in topics}


class SiteVersions:
    """One per app instance (see ``service.app``)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.memory: dict[tuple[UUID, str], int] = {}  # (site, topic) -> the sum of its stripes
        self._stripes: dict[tuple[UUID, str, int], int] = {}
        self.trusted = False
        self.serial = 0  # moves whenever the copy changes: lets callers memoise what they derive from it
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._sync_needed = False
        self._sync_lock = asyncio.Lock()
        self._gap = asyncio.Event()

    # -- the copy ----------------------------------------------------------------

    def _merge(self, site: UUID, topic: str, stripe: int, version: int) -> None:
        # One connection at a time bumps a stripe (its row lock is held to commit), so a stripe's
        # values arrive in commit order and max is exact; the sum moves with every commit.
        seen = self._stripes.get((site, topic, stripe), 0)
        if version > seen:
            self._stripes[(site, topic, stripe)] = version
            self.memory[(site, topic)] = self.memory.get((site, topic), 0) + version - seen
            self.serial += 1

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            site, topic, stripe, version = str(payload).split(":")
            self._merge(UUID(site), topic, int(stripe), int(version))
        except ValueError:
            log.warning("unreadable version notification", extra={"event": "versions_bad_payload"})

    def _drop(self, reason: str) -> None:
        if self.trusted:
            log.warning("site versions copy dropped; reading them from PostgreSQL", extra={"event": "versions_gap", "subject": reason})
        self.trusted = False
        self.memory = {}
        self._stripes = {}
        self.serial += 1
        self._gap.set()

    def committed(self) -> None:
        """A transaction on this instance committed: its next read syncs with the listener first."""
        self._sync_needed = True

    # -- reading ---------------------------------------------------------------

    async def current(self, db: Database, sites: Iterable[UUID] | None, topics: Iterable[str]) -> dict[tuple[UUID, str], int]:
        """Versions of ``topics`` at ``sites`` (None: every site), never older than a commit acknowledged
        on this instance. Absent pairs are 0."""
        topics = tuple(topics)
        if self.trusted and self._sync_needed:
            await self._sync()
        if self.trusted:
            return self._from_memory(sites, topics)
        return await read_versions(db, sites, topics)

    def _from_memory(self, sites: Iterable[UUID] | None, topics: tuple[str, ...]) -> dict[tuple[UUID, str], int]:
        if sites is None:
            return {k: v for k, v in self.memory.items() if k[1] in topics}
        return {(s, t): self.memory.get((s, t), 0) for s in sites for t in topics}

    async def _sync(self) -> None:
        async with self._sync_lock:
            if not self._sync_needed:
                return  # another read synced while this one waited: its round trip covers our commit too
            self._sync_needed = False
            listener = self._listener
            try:
                if listener is None:
                    raise ConnectionError("no listener")
                await listener.fetchval("SELECT 1", timeout=PING_S)
            except (TimeoutError, asyncpg.PostgresError, OSError, ConnectionError, asyncpg.InterfaceError) as exc:
                self._drop(type(exc).__name__)
        # Notifications were handed to the loop before the answer; let them run.
        await asyncio.sleep(0)

    # -- the listener ------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        while True:
            self._gap.clear()
            try:
                conn = await asyncpg.connect(self.dsn, timeout=5, server_settings={"application_name": "qsite-versions"})
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                self._drop(type(exc).__name__)
                await asyncio.sleep(RECONNECT_S)
                continue
            try:
                conn.add_termination_listener(lambda _c: self._drop("listener_closed"))
                await conn.add_listener(CHANNEL, self._on_notify)
                # LISTEN first, then load: a commit in between is in both, merged by max.
                rows = await conn.fetch(_LOAD, timeout=5)
                if not self._gap.is_set():
                    # Merged into what notifications already brought (max per stripe): one that was
                    # handled before this line is newer than the snapshot and must not be lost.
                    for r in rows:
                        self._merge(r["site_id"], r["topic"], r["stripe"], r["version"])
                    self._listener = conn
                    self._sync_needed = False
                    self.trusted = True
                while not self._gap.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._gap.wait(), PING_S)
                    if not self._gap.is_set():
                        async with self._sync_lock:  # one statement at a time on this connection
                            await conn.fetchval("SELECT 1", timeout=PING_S)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._drop(type(exc).__name__)
            finally:
                self._listener = None
                self._drop("listener_restart")
                with contextlib.suppress(Exception):
                    conn.terminate()
            await asyncio.sleep(RECONNECT_S)

    async def close(self) -> None:
        self.trusted = False  # shutting down is no gap to report
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5)
        self.trusted = False
