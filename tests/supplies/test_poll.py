"""The logistics poll: strong ETag from stock generations, 304 without PostgreSQL, Redis optional."""

import asyncio
import uuid
from contextlib import asynccontextmanager

import msgspec
from litestar.testing import AsyncTestClient

from service.access.model import Role
from service.app import create_app
from tests.conftest import make_principal
from tests.supplies.helpers import make_item, make_site, move, staff

URL = "/api/v1/supplies/stock"


@asynccontextmanager
async def counting_statements(client):
    """Count every statement the app's pool runs (query loggers on all of its connections).

    The test client serves the app on its own event loop (a portal thread): the
    pool is driven there.
    """
    pool = client.app.state.db.pool
    statements: list[str] = []

    def logger(record) -> None:
        statements.append(record.query)

    async def attach() -> None:
        held = [await pool.acquire() for _ in range(pool.get_max_size())]
        for conn in held:
            conn.add_query_logger(logger)
        for conn in held:
            await pool.release(conn)

    async def detach() -> None:
        held = [await pool.acquire() for _ in range(pool.get_max_size())]
        for conn in held:
            conn.remove_query_logger(logger)
        for conn in held:
            await pool.release(conn)

    client.blocking_portal.call(attach)
    statements.clear()  # the pool's own reset on release above
    try:
        yield statements
    finally:
        client.blocking_portal.call(detach)


async def wait_until_listening(app) -> None:
    """The versions listener connects in the background; the test waits for it instead of sleeping blindly."""
    for _ in range(500):
        if app.state.db.versions.trusted:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the site versions listener never became healthy")


async def test_unchanged_stock_answers_304_without_sql(client, auth):
    site = await make_site(client, auth)
    item = await make_item(client, auth)
    worker = staff([site])
    await move(client, auth, worker, site, item, "receipt", 20)
    logistics = make_principal(Role.LOGISTICS, [uuid.UUID(site)])
    first = await client.get(URL, headers=auth(logistics))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["sites"][0]["items"][0]["quantity"] == 20
    etag = first.headers["etag"]
    await wait_until_listening(client.app)
    # One poll after subscribing makes the in-process copy complete (it may read Redis/PostgreSQL once).
    assert (await client.get(URL, headers={**auth(logistics), "If-None-Match": etag})).status_code == 304

    async with counting_statements(client) as statements:
        polls = [await client.get(URL, headers={**auth(logistics), "If-None-Match": etag}) for _ in range(5)]
        assert all(p.status_code == 304 and p.headers["etag"] == etag for p in polls)
        # A 200 without If-None-Match is served from the body cached for this ETag.
        plain = await client.get(URL, headers=auth(logistics))
        assert plain.status_code == 200 and plain.headers["etag"] == etag and plain.json() == body
    assert statements == []

    moved = await move(client, auth, worker, site, item, "issue", 3)
    assert moved.status_code == 201
    after = await client.get(URL, headers={**auth(logistics), "If-None-Match": etag})
    assert after.status_code == 200 and after.headers["etag"] != etag
    assert after.json()["sites"][0]["items"][0]["quantity"] == 17


async def test_etag_changes_on_every_kind_of_change(client, auth):
    a = await make_site(client, auth)
    b = await make_site(client, auth)
    item = await make_item(client, auth)
    manager = staff([a, b], Role.SITE_MANAGER)
    logistics = make_principal(Role.LOGISTICS, [uuid.UUID(a), uuid.UUID(b)])
    await move(client, auth, manager, a, item, "receipt", 10)
    seen = set()

    async def etag_now() -> str:
        response = await client.get(URL, headers=auth(logistics))
        assert response.status_code == 200
        return response.headers["etag"]

    seen.add(await etag_now())
    await move(client, auth, manager, a, item, "issue", 1)
    seen.add(await etag_now())
    await client.post("/api/v1/supplies/transfers", json={"id": str(uuid.uuid4()), "from_site_id": a, "to_site_id": b, "item_id": item, "quantity": 2}, headers=auth(manager))
    seen.add(await etag_now())
    current = (await client.get(URL, params={"site_id": a}, headers=auth(logistics))).json()["sites"][0]["items"][0]["version"]
    stale = await client.patch(f"/api/v1/supplies/sites/{a}/stock/{item}", json={"version": current - 1, "reorder_level": 2, "target_level": 30}, headers=auth(manager))
    assert stale.status_code == 409 and stale.json()["code"] == "stale_version"
    levels = await client.patch(f"/api/v1/supplies/sites/{a}/stock/{item}", json={"version": current, "reorder_level": 2, "target_level": 30}, headers=auth(manager))
    assert levels.status_code == 200, levels.text
    seen.add(await etag_now())
    assert len(seen) == 4
    # Only site b: unaffected by a's level change, but its own ETag.
    only_b = await client.get(URL, params={"site_id": b}, headers=auth(logistics))
    assert [s["site_id"] for s in only_b.json()["sites"]] == [b]
    # A site outside the caller's scope is left out, never disclosed.
    other = await make_site(client, auth)
    hidden = await client.get(URL, params={"site_id": other}, headers=auth(logistics))
    assert hidden.status_code == 200 and hidden.json()["sites"] == []


async def test_poll_correct_with_redis_down(settings, auth):
    dead = msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:1", redis_timeout_ms=50)
    async with AsyncTestClient(app=create_app(dead)) as client:
        site = await make_site(client, auth)
        item = await make_item(client, auth)
        worker = staff([site])
        logistics = make_principal(Role.LOGISTICS, [uuid.UUID(site)])
        await move(client, auth, worker, site, item, "receipt", 9)
        first = await client.get(URL, headers=auth(logistics))
        assert first.status_code == 200
        etag = first.headers["etag"]
        same = await client.get(URL, headers={**auth(logistics), "If-None-Match": etag})
        assert same.status_code == 304
        await move(client, auth, worker, site, item, "issue", 4)
        changed = await client.get(URL, headers={**auth(logistics), "If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag
        assert changed.json()["sites"][0]["items"][0]["quantity"] == 5


async def test_another_instance_sees_the_change(settings, auth, client):
    """Two app instances on one database and Redis: a write on one invalidates the other's copy."""
    site = await make_site(client, auth)
    item = await make_item(client, auth)
    worker = staff([site])
    logistics = make_principal(Role.LOGISTICS, [uuid.UUID(site)])
    await move(client, auth, worker, site, item, "receipt", 9)
    async with AsyncTestClient(app=create_app(settings)) as other:
        first = await other.get(URL, headers=auth(logistics))
        etag = first.headers["etag"]
        await wait_until_listening(other.app)
        assert (await other.get(URL, headers={**auth(logistics), "If-None-Match": etag})).status_code == 304
        await move(client, auth, worker, site, item, "issue", 1)
        # The other instance learns through Redis (pub/sub, or the hash when its copy is not complete).
        for _ in range(200):
            answer = await other.get(URL, headers={**auth(logistics), "If-None-Match": etag})
            if answer.status_code == 200:
                break
            await asyncio.sleep(0.01)
        assert answer.status_code == 200 and answer.json()["sites"][0]["items"][0]["quantity"] == 8
