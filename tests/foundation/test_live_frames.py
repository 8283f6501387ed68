"""Shared live frames (service/live_frames.py) against Strawberry's per-subscriber execution.

Two apps on one database and Redis: one renders each event once per selection and visibility
class (the default), the other executes GraphQL per subscriber (``live_shared_frames=False``, the
reference path). On the demo's two fully seeded sites, plus a staff account of both sites (its
event names both), several roles replay the whole feed through both apps: every frame must be
the same message (same keys in the same order, same values). Then live: subscribers sharing a
selection and visibility class get one rendering per event between them, equal to the
reference's frames. Waits are bounded receives, never timing assertions.

The module seeds that world once, on one database with one set of secrets: the replays stop at
the seed's markers, and the tests only add events after them (renames, probes).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from litestar.testing.websocket_test_session import WebSocketTestSession

from service import bus, live_frames
from service.access import service as access
from service.access.model import Principal, Role, StaffCreate
from service.api import demo
from service.db import create_pool
from service.settings import Settings
from tests.conftest import DatabaseSupply, make_principal, make_settings
from tests.foundation.test_live import WAIT_S, WS, app_client, init, rename_site, wait_until_live

DOCUMENT = """
subscription Frames($siteIds: [UUID!], $after: String, $withData: Boolean!) {
  events: siteEvents(siteIds: $siteIds, after: $after) {
    __typename cursor id siteId type subjectId ...Record at
    payload: data @include(if: $withData)
  }
}
fragment Record on SiteEvent { entity entityIds version tombstone }
"""
MARKER = "sites.site_updated"  # every person's role sees it: the last event of the seed, at each site


async def _seed(settings: Settings) -> tuple[list[uuid.UUID], str]:
    """The demo (two sites), a staff account of both sites, then a marker event at each site."""
    from service.cache import Cache
    from service.db import Database

    db = Database(await create_pool(settings, settings.database_url or ""), Cache(settings.redis_url or "", prefix=settings.redis_prefix, timeout_ms=250))
    try:
        async with db.connection() as conn:
            start = await bus.feed_now(conn)
        seeded: dict[str, Any] = {"settings": settings}
        async with db.transaction() as conn:
            for step in demo.STEPS:
                await step(conn, seeded)
            sites = list(seeded["sites"][:2])
            both = msgspec.convert(
                {"username": "both-sites", "display_name": "Both", "password": "a long enough password 1", "role": "site_staff",
                 "site_ids": [str(s) for s in sites], "phone": "13800009999"},
                StaffCreate,
            )
            await access.create_staff(conn, settings, access.SYSTEM_PRINCIPAL, both)
        async with db.transaction() as conn:
            for site in sites:
                await bus.emit(conn, MARKER, site_id=site, subject_id=site, data={"marker": True})
        return sites, start
    finally:
        await db.pool.close()
        await db.cache.close()


def _subscribe(ws: WebSocketTestSession, token: str, after: str | None, *, with_data: bool = True) -> None:
    init(ws, {"Authorization": f"Bearer {token}"})
    variables = {"after": after, "withData": with_data}
    ws.send_json({"id": "f1", "type": "subscribe", "payload": {"query": DOCUMENT, "variables": variables}})


def _ordered(message: dict[str, Any]) -> str:
    """The message with its keys in order: equal only if both paths wrote the same keys in the same order."""
    return json.dumps(message, ensure_ascii=False)


def _replay(client: TestClient, token: str, after: str, sites: set[uuid.UUID], *, count: int | None = None) -> list[str]:
    """Every frame of a replay from ``after`` up to the markers of ``sites`` (or the first ``count``, without data)."""
    frames: list[str] = []
    waiting = {str(s) for s in sites}
    with client.websocket_connect("/graphql", subprotocols=WS) as ws:
        _subscribe(ws, token, after, with_data=count is None)
        while (waiting if count is None else len(frames) < count):
            message = ws.receive_json(timeout=WAIT_S)
            assert message["type"] == "next" and "errors" not in message["payload"], message
            frames.append(_ordered(message))
            event = message["payload"]["data"]["events"]
            if count is None and event["type"] == MARKER and event["payload"] == {"marker": True}:
                waiting.discard(event["siteId"])
    return frames


@pytest.fixture(scope="module")
async def settings(database_supply: DatabaseSupply, redis_url: str, tmp_path_factory) -> Any:
    """The module's settings (``auth`` signs with their secret), on a database of the module's own."""
    async with database_supply.lease() as database_url:
        yield make_settings(database_url, redis_url, tmp_path_factory.mktemp("live_frames"))


@pytest.fixture(scope="module")
def world(settings: Settings) -> tuple[Settings, list[uuid.UUID], str]:
    sites, start = asyncio.run(_seed(settings))
    return settings, sites, start


def test_replayed_frames_equal_per_subscriber_execution_for_each_role(world, auth):
    settings, (a, b), start = world
    reference = msgspec.structs.replace(settings, live_shared_frames=False)
    principals: list[tuple[str, Principal, set[uuid.UUID]]] = [
        ("command", make_principal(Role.COMMAND), {a, b}),
        ("manager of A", make_principal(Role.SITE_MANAGER, [a]), {a}),
        ("manager of B", make_principal(Role.SITE_MANAGER, [b]), {b}),
        ("manager of A and B", make_principal(Role.SITE_MANAGER, [a, b]), {a, b}),
        ("staff of A", make_principal(Role.SITE_STAFF, [a]), {a}),
        ("medic of B", make_principal(Role.MEDIC, [b]), {b}),
    ]
    seen: dict[str, list[dict[str, Any]]] = {}
    before = live_frames.renders
    with app_client(settings) as shared, app_client(reference) as executed:
        for label, principal, sites in principals:
            token = auth(principal)["Authorization"].removeprefix("Bearer ")
            frames = _replay(shared, token, start, sites)
            assert frames == _replay(executed, token, start, sites), label
            seen[label] = [json.loads(f)["payload"]["data"]["events"] for f in frames]
        # A selection without the data (@include false) is another plan, equal to execution too.
        token = auth(principals[1][1])["Authorization"].removeprefix("Bearer ")
        count = len(seen["manager of A"])
        without = _replay(shared, token, start, {a}, count=count)
        assert without == _replay(executed, token, start, {a}, count=count)
        assert "payload" not in json.loads(without[0])["payload"]["data"]["events"]
    assert live_frames.renders - before >= sum(len(v) for v in seen.values())  # the shared app did render them

    # The comparison covered what differs between callers: sites, roles, and a record of two sites.
    ids = {label: {e["id"] for e in events} for label, events in seen.items()}
    assert ids["staff of A"] < ids["manager of A"]  # the manager also sees access events
    assert not ids["manager of A"] & ids["medic of B"]
    assert {str(a), str(b)} <= {e["siteId"] for e in seen["command"]}
    both = [e for e in seen["manager of A and B"] if e["type"] == "access.staff_created" and len(e["payload"].get("site_ids", [])) == 2]
    assert both, "the staff account of both sites shows both to a manager of both"
    site = both[0]["siteId"]  # the account's event is at one of its sites: its manager alone sees only that one
    alone = {e["id"]: e for e in seen["manager of A" if site == str(a) else "manager of B"]}
    assert alone[both[0]["id"]]["payload"]["site_ids"] == [site]


def test_live_subscribers_sharing_a_class_get_one_rendering_equal_to_execution(world, auth, redis_client):
    settings, (a, b), _ = world
    reference = msgspec.structs.replace(settings, live_shared_frames=False)
    command = auth(make_principal(Role.COMMAND))
    manager = auth(make_principal(Role.SITE_MANAGER, [a]))["Authorization"].removeprefix("Bearer ")
    staff = auth(make_principal(Role.SITE_STAFF, [a]))["Authorization"].removeprefix("Bearer ")
    with app_client(settings) as shared, app_client(reference) as executed:
        sockets = [(shared, manager), (shared, manager), (shared, manager), (shared, staff), (executed, manager), (executed, staff)]
        with (
            sockets[0][0].websocket_connect("/graphql", subprotocols=WS) as w0,
            sockets[1][0].websocket_connect("/graphql", subprotocols=WS) as w1,
            sockets[2][0].websocket_connect("/graphql", subprotocols=WS) as w2,
            sockets[3][0].websocket_connect("/graphql", subprotocols=WS) as w3,
            sockets[4][0].websocket_connect("/graphql", subprotocols=WS) as w4,
            sockets[5][0].websocket_connect("/graphql", subprotocols=WS) as w5,
        ):
            wss = [w0, w1, w2, w3, w4, w5]
            for ws, (_, token) in zip(wss, sockets, strict=True):
                _subscribe(ws, token, None)
            for ws in wss:
                _wait_live(ws, settings, redis_client, str(a))
            before = live_frames.renders
            site = shared.get(f"/api/v1/sites/{a}", headers=command).json()
            for n in range(3):
                site = rename_site(shared, command, site, f"Renamed {n}")
            got = [[_ordered(_next(ws)) for _ in range(3)] for ws in wss]
            rendered = live_frames.renders - before
    assert got[0] == got[1] == got[2] == got[4]  # managers: shared and executed alike
    assert got[3] == got[5]  # staff: its own class, equal to execution too
    assert rendered == 3 * 2  # one rendering per event for the three managers, one for the staff member


def _wait_live(ws: WebSocketTestSession, settings: Settings, redis_client: Any, site_id: str) -> None:
    """As test_live.wait_until_live, for this document (its root field is aliased)."""
    wait_until_live(_Aliased(ws), redis_client, settings, site_id)


class _Aliased:
    """Presents this document's frames (``events``, ``payload``) as test_live's helpers read them."""

    def __init__(self, ws: WebSocketTestSession) -> None:
        self.ws = ws

    def receive_json(self, timeout: float) -> dict[str, Any]:
        message = self.ws.receive_json(timeout=timeout)
        if message.get("type") == "next" and "data" in message["payload"] and message["payload"]["data"]:
            event = dict(message["payload"]["data"]["events"])
            event["data"] = event.get("payload")
            message = {**message, "payload": {"data": {"siteEvents": event}}}
        return message


def _next(ws: WebSocketTestSession) -> dict[str, Any]:
    """The next frame that is not a probe."""
    while True:
        message = ws.receive_json(timeout=WAIT_S)
        assert message["type"] == "next" and "errors" not in message["payload"], message
        if message["payload"]["data"]["events"]["payload"] != {"probe": True}:
            return message


@pytest.fixture
def redis_client(settings: Settings):
    import redis

    client = redis.Redis.from_url(settings.redis_url or "")
    yield client
    client.close()


def test_errors_before_streaming_are_the_same_on_both_paths(world, auth):
    settings, (a, b), _ = world
    reference = msgspec.structs.replace(settings, live_shared_frames=False)
    staff = auth(make_principal(Role.SITE_STAFF, [a]))["Authorization"].removeprefix("Bearer ")
    answers = []
    with app_client(settings) as shared, app_client(reference) as executed:
        for client in (shared, executed):
            with client.websocket_connect("/graphql", subprotocols=WS) as ws:
                init(ws, {"Authorization": f"Bearer {staff}"})
                payload = {"query": DOCUMENT, "variables": {"siteIds": [str(b)], "withData": True}}
                ws.send_json({"id": "x", "type": "subscribe", "payload": payload})
                answers.append([_ordered(ws.receive_json(timeout=WAIT_S)), _ordered(ws.receive_json(timeout=WAIT_S))])
    assert answers[0] == answers[1]
    assert json.loads(answers[0][0])["payload"]["errors"][0]["extensions"]["code"] == "site_not_found"
    assert json.loads(answers[0][1]) == {"id": "x", "type": "complete"}
