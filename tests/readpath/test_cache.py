"""The version-keyed cache over HTTP: strong ETag and 304, fresh after any write on any instance,
correct with Redis down or stalled and across a gap in the version notifications."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import uuid
from contextlib import asynccontextmanager

import msgspec
from litestar.testing import AsyncTestClient

from service import readpath
from service.access.model import Role
from service.app import create_app
from tests.conftest import make_principal
from tests.stays.helpers import COMMAND, id_number, make_site
from tests.supplies.helpers import make_item, move
from tests.supplies.helpers import make_site as make_supply_site
from tests.supplies.helpers import staff as supply_staff
from tests.supplies.test_poll import URL as POLL
from tests.supplies.test_poll import wait_until_listening


def board_hash() -> str:
    return next(d for d, op in readpath.registry().by_hash.values() if op.name == "RoomBoard")


def board_params(site: uuid.UUID) -> dict[str, str]:
    return {
        "extensions": msgspec.json.encode({"persistedQuery": {"version": 1, "sha256Hash": board_hash()}}).decode(),
        "variables": msgspec.json.encode({"siteId": str(site)}).decode(),
    }


async def board(client, auth, principal, site, etag: str | None = None):
    headers = {**auth(principal), **({"If-None-Match": etag} if etag else {})}
    return await client.get("/graphql", params=board_params(site), headers=headers)


ADMIT = """mutation($input: AdmitInput!) { admitResident(input: $input) { stay { id } userErrors { code } } }"""


async def admit(client, auth, site) -> None:
    """An admission through the app (GraphQL, generic path) on that instance."""
    resident = {"name": "张三", "documentType": "MAINLAND_ID", "documentNumber": id_number()}
    variables = {"input": {"siteId": str(site), "category": "CLOSE_CONTACT", "resident": resident}}
    answer = await client.post("/graphql", json={"query": ADMIT, "variables": variables}, headers=auth(COMMAND))
    assert answer.json()["data"]["admitResident"]["userErrors"] == [], answer.text


async def settled(read) -> str:
    """The ETag once this instance has heard of the set-up writes (other instances' or the test's own
    pool's reach it by notification, within milliseconds): it answers 304 to its own last ETag.
    ``read(etag)`` sends the request, with If-None-Match when ``etag`` is given."""
    etag = (await read(None)).headers["etag"]
    for _ in range(300):
        again = await read(etag)
        if again.status_code == 304:
            return etag
        etag = again.headers["etag"]
        await asyncio.sleep(0.01)
    raise AssertionError("the ETag never settled")


def board_of(client, auth, principal, site):
    return lambda etag: board(client, auth, principal, site, etag)


def occupants(response) -> int:
    return sum(len(r["occupants"]) for r in response.json()["data"]["roomBoard"])


async def fresh_within(read, predicate, seconds: float = 3.0):
    """The other instance learns of a commit when the notification arrives: poll briefly, never sleep blindly."""
    for _ in range(int(seconds / 0.01)):
        answer = await read()
        if predicate(answer):
            return answer
        await asyncio.sleep(0.01)
    raise AssertionError("never fresh")


async def test_persisted_get_answers_etag_304_and_changes_on_write(client, db, auth):
    site = await make_site(db, "C-1", floors={2: (4, 2)})
    worker = make_principal(Role.SITE_STAFF, [site])
    await wait_until_listening(client.app)
    etag = await settled(board_of(client, auth, worker, site))
    first = await board(client, auth, worker, site)
    assert first.status_code == 200 and first.headers["etag"] == etag and etag.startswith('"c')
    assert occupants(first) == 0
    again = await board(client, auth, worker, site, etag)
    assert again.status_code == 304 and again.headers["etag"] == etag
    # Another caller scope never shares the entry (another site's id: null, not the board).
    other = make_principal(Role.SITE_STAFF, [uuid.uuid4()])
    hidden = await board(client, auth, other, site)
    assert hidden.json() == {"data": {"roomBoard": None}} and hidden.headers["etag"] != etag

    await admit(client, auth, site)  # a write on this instance: the very next read sees it
    after = await board(client, auth, worker, site, etag)
    assert after.status_code == 200 and after.headers["etag"] != etag and occupants(after) == 1


async def test_a_write_on_one_instance_is_seen_by_the_other(client, db, settings, auth):
    site = await make_site(db, "C-2", floors={2: (4, 2)})
    worker = make_principal(Role.SITE_STAFF, [site])
    async with AsyncTestClient(app=create_app(settings)) as other:
        await wait_until_listening(other.app)
        await wait_until_listening(client.app)
        etag = await settled(board_of(other, auth, worker, site))
        assert etag == await settled(board_of(client, auth, worker, site))  # same key on both instances
        await admit(client, auth, site)
        seen = await fresh_within(lambda: board(other, auth, worker, site, etag), lambda r: r.status_code == 200)
        assert occupants(seen) == 1
        # And the writer's instance at once, both now on the same new ETag.
        mine = await board(client, auth, worker, site)
        assert mine.headers["etag"] == seen.headers["etag"]


async def test_redis_down_reads_stay_fresh(db, settings, auth):
    dead = msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:1", redis_timeout_ms=50)
    async with AsyncTestClient(app=create_app(dead)) as client, AsyncTestClient(app=create_app(dead)) as other:
        site = await make_site(db, "C-3", floors={2: (3, 1)})
        worker = make_principal(Role.SITE_STAFF, [site])
        etag = await settled(board_of(other, auth, worker, site))
        await admit(client, auth, site)
        seen = await fresh_within(lambda: board(other, auth, worker, site, etag), lambda r: r.status_code == 200)
        assert occupants(seen) == 1


async def test_a_gap_in_notifications_drops_the_copy_and_reads_postgresql(client, db, auth):
    """The listener's connection is cut; a write lands before it is back: no instance may answer 304."""
    versions = client.app.state.db.versions
    site = await make_site(db, "C-4", floors={2: (3, 1)})
    worker = make_principal(Role.SITE_STAFF, [site])
    await wait_until_listening(client.app)
    etag = await settled(board_of(client, auth, worker, site))
    killed = await db.pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'qsite-versions' AND datname = current_database()"
    )
    assert killed == 1
    for _ in range(100):
        if not versions.trusted:
            break
        await asyncio.sleep(0.01)
    assert not versions.trusted
    # A write by another process (no local commit hint), while the copy is untrusted.
    await db.pool.execute("UPDATE rooms SET notes = 'gap' WHERE site_id = $1", site)
    await db.pool.execute("UPDATE rooms SET status = 'out_of_service' WHERE site_id = $1 AND number = '201'", site)
    during = await board(client, auth, worker, site, etag)
    assert during.status_code == 200
    assert [r["room"]["status"] for r in during.json()["data"]["roomBoard"]][0] == "OUT_OF_SERVICE"
    await wait_until_listening(client.app)  # reconnected, reloaded
    assert (await board(client, auth, worker, site, during.headers["etag"])).status_code == 304


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def own_redis():
    """A redis-server of this test's own, to stall with SIGSTOP (never the machine's Redis)."""
    port = _free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            await asyncio.sleep(0.01)
        yield proc, f"redis://127.0.0.1:{port}/0"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(5)


async def test_stalled_redis_during_a_stock_write_leaves_no_stale_304(settings, auth):
    """Issue 11 item 4: Redis paused 700 ms during a stock write; the other instance must not keep the old ETag."""
    async with own_redis() as (redis_proc, url):
        shared = msgspec.structs.replace(settings, redis_url=url, redis_timeout_ms=100)
        async with AsyncTestClient(app=create_app(shared)) as client, AsyncTestClient(app=create_app(shared)) as other:
            site = uuid.UUID(await make_supply_site(client, auth))
            item = await make_item(client, auth)
            worker = supply_staff([str(site)])
            logistics = make_principal(Role.LOGISTICS, [site])
            await move(client, auth, worker, str(site), item, "receipt", 10)
            await wait_until_listening(other.app)
            poll = lambda etag: other.get(POLL, headers={**auth(logistics), **({"If-None-Match": etag} if etag else {})})
            etag = await settled(poll)
            assert (await poll(None)).json()["sites"][0]["items"][0]["quantity"] == 10
            os.kill(redis_proc.pid, signal.SIGSTOP)
            try:
                moved = await move(client, auth, worker, str(site), item, "issue", 4)
                assert moved.status_code == 201
                await asyncio.sleep(0.7)
            finally:
                os.kill(redis_proc.pid, signal.SIGCONT)
            seen = await fresh_within(lambda: other.get(POLL, headers={**auth(logistics), "If-None-Match": etag}), lambda r: r.status_code == 200)
            assert seen.json()["sites"][0]["items"][0]["quantity"] == 6
            # And it stays fresh: never the old ETag again.
            for _ in range(20):
                again = await other.get(POLL, headers={**auth(logistics), "If-None-Match": etag})
                assert again.status_code == 200


async def _silently(db, sql: str, *args) -> None:
    """A change that moves no data version (triggers off): a cached answer no longer matches the rows."""
    async with db.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql, *args)


def names(response) -> list[str]:
    return [o["resident"]["name"] for r in response.json()["data"]["roomBoard"] for o in r["occupants"]]


async def test_an_answer_is_shared_through_redis_once_announced(client, db, settings, auth):
    """An instance asks Redis for an answer only when another announced storing it: a miss after a write
    costs no round trip. Told apart by rows changed behind the versions' back: an answer fetched from
    Redis shows the old name, one built here the new."""
    site = await make_site(db, "C-5", floors={2: (3, 1)})
    worker = make_principal(Role.SITE_STAFF, [site])
    async with AsyncTestClient(app=create_app(settings)) as other:
        for app in (client.app, other.app):
            await wait_until_listening(app)
        await settled(board_of(client, auth, worker, site))  # this instance now hears announcements
        await admit(other, auth, site)
        built = await fresh_within(lambda: board(other, auth, worker, site), lambda r: occupants(r) == 1)
        key = built.headers["etag"].strip('"')[1:]
        store = readpath.responses(client.app.state.db, settings)
        for _ in range(300):
            if key in store.announced:
                break
            await asyncio.sleep(0.01)
        assert key in store.announced
        await _silently(db, "UPDATE residents SET name = '李四' WHERE site_id = $1", site)
        shared = await board(client, auth, worker, site)
        assert shared.headers["etag"] == built.headers["etag"] and names(shared) == ["张*"]
        # An instance that never heard the announcement builds the answer itself (no Redis GET).
        async with AsyncTestClient(app=create_app(settings)) as late:
            await wait_until_listening(late.app)
            own = await board(late, auth, worker, site)
            assert own.headers["etag"] == built.headers["etag"] and names(own) == ["李*"]
