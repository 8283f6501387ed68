"""Live updates: the siteEvents subscription over graphql-transport-ws, fed by Redis pub/sub.

The apps run in Litestar's sync TestClient (each in its own portal thread and
event loop, like two processes sharing PostgreSQL and Redis); waits are bounded
receives, never timing assertions.
"""

from __future__ import annotations

import asyncio
import queue
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import pytest
import redis
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient
from litestar.testing.websocket_test_session import WebSocketTestSession

from service import bus
from service.access.model import Role
from service.app import create_app
from service.settings import Settings
from tests.conftest import make_principal

WS = ["graphql-transport-ws"]
WAIT_S = 10.0  # upper bound of any single wait; the tests never measure time
SUBSCRIPTION = """
subscription Live($siteIds: [UUID!], $types: [String!], $after: String) {
  siteEvents(siteIds: $siteIds, types: $types, after: $after) { cursor id siteId type subjectId entity version data at }
}
"""
PROBE = "sites.site_updated"  # a probe is a real outbox row (the subscription reads the outbox), marked in its data


@contextmanager
def app_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(app=create_app(settings)) as client:
        yield client


@pytest.fixture
def app(settings: Settings) -> Iterator[TestClient]:
    with app_client(settings) as client:
        yield client


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url or "")
    yield client
    client.close()


def create_site(client: TestClient, headers: dict[str, str], code: str) -> dict[str, Any]:
    response = client.post("/api/v1/sites", json={"code": code, "name": f"Site {code}"}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def rename_site(client: TestClient, headers: dict[str, str], site: dict[str, Any], name: str) -> dict[str, Any]:
    response = client.patch(f"/api/v1/sites/{site['id']}", json={"version": site["version"], "name": name}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def init(ws: WebSocketTestSession, payload: dict[str, Any] | None = None) -> None:
    ws.send_json({"type": "connection_init", "payload": payload or {}})
    assert ws.receive_json(timeout=WAIT_S) == {"type": "connection_ack"}


def subscribe(ws: WebSocketTestSession, op_id: str = "1", **variables: Any) -> None:
    ws.send_json({"id": op_id, "type": "subscribe", "payload": {"query": SUBSCRIPTION, "variables": variables}})


def emit_probe(settings: Settings, redis_client: redis.Redis, site_id: str) -> None:
    """Commit a probe event at the site (outside the app, as another instance would) and ring its channel."""

    async def insert() -> int:
        conn = await asyncpg.connect(settings.database_url)
        try:
            return int(await conn.fetchval(
                "INSERT INTO events (site_id, type, subject_id, data) VALUES ($1, $2, $1, '{\"probe\": true}') RETURNING id",
                uuid.UUID(site_id), PROBE,
            ))
        finally:
            await conn.close()

    event_id = asyncio.run(insert())
    bell = bus.Event(id=event_id, site_id=uuid.UUID(site_id), type=PROBE, subject_id=None, data={}, actor=None, at=datetime.now(UTC))
    redis_client.publish(f"{settings.redis_prefix}site:{site_id}", msgspec.json.encode(bell))


def wait_until_live(ws: WebSocketTestSession, redis_client: redis.Redis, settings: Settings, site_id: str) -> None:
    """Commit probes at the site until one comes through: the subscription is then live."""
    for _ in range(100):
        emit_probe(settings, redis_client, site_id)
        try:
            message = ws.receive_json(timeout=0.1)
        except queue.Empty:
            continue
        assert message["type"] == "next" and "errors" not in message["payload"], message
        assert message["payload"]["data"]["siteEvents"]["data"] == {"probe": True}
        while True:  # the probes still on their way
            try:
                message = ws.receive_json(timeout=0.3)
            except queue.Empty:
                return
            assert message["payload"]["data"]["siteEvents"]["data"] == {"probe": True}, message
    raise AssertionError("the subscription never became live")


def next_event(ws: WebSocketTestSession) -> dict[str, Any]:
    """The next event that is not a probe."""
    while True:
        message = ws.receive_json(timeout=WAIT_S)
        assert message["type"] == "next" and "errors" not in message["payload"], message
        event = message["payload"]["data"]["siteEvents"]
        if event["data"] != {"probe": True}:
            return event


def first_error(ws: WebSocketTestSession) -> dict[str, Any]:
    message = ws.receive_json(timeout=WAIT_S)
    errors = message["payload"] if message["type"] == "error" else message["payload"].get("errors")
    assert errors, message
    return errors[0]


def test_write_through_rest_reaches_subscriber_with_header_auth(app, auth, settings, redis_client):
    command = auth(make_principal(Role.COMMAND))
    site = create_site(app, command, "LV-01")
    manager = make_principal(Role.SITE_MANAGER, [uuid.UUID(site["id"])])
    with app.websocket_connect("/graphql", subprotocols=WS, headers=auth(manager)) as ws:
        init(ws)
        subscribe(ws, siteIds=[site["id"]])
        wait_until_live(ws, redis_client, settings, site["id"])
        rename_site(app, command, site, "Renamed")
        event = next_event(ws)
        assert event["type"] == "sites.site_updated"
        assert event["siteId"] == site["id"] and event["subjectId"] == site["id"]
        assert event["data"] == {"fields": ["name"], "version": 2} and event["version"] == 2


def test_write_on_one_instance_reaches_subscriber_on_another(app, auth, settings, redis_client):
    """Auth in the connection_init payload; the write is a GraphQL mutation on the other instance."""
    command = auth(make_principal(Role.COMMAND))
    site = create_site(app, command, "LV-02")
    staff = make_principal(Role.SITE_STAFF, [uuid.UUID(site["id"])])
    with app_client(settings) as writer, app.websocket_connect("/graphql", subprotocols=WS) as ws:
        init(ws, {"Authorization": auth(staff)["Authorization"]})
        subscribe(ws)  # no siteIds: all of the staff member's sites
        wait_until_live(ws, redis_client, settings, site["id"])
        mutation = "mutation($i: UpdateSiteInput!) { updateSite(input: $i) { site { version } userErrors { code } } }"
        variables = {"i": {"id": site["id"], "version": site["version"], "name": "Written elsewhere"}}
        answer = writer.post("/graphql", json={"query": mutation, "variables": variables}, headers=command).json()
        assert answer["data"]["updateSite"] == {"site": {"version": 2}, "userErrors": []}, answer
        event = next_event(ws)
        assert (event["type"], event["siteId"]) == ("sites.site_updated", site["id"])


def test_subscriber_of_one_site_does_not_receive_another_sites_events(app, auth, settings, redis_client):
    command = auth(make_principal(Role.COMMAND))
    a, b = create_site(app, command, "LV-A"), create_site(app, command, "LV-B")
    medic = make_principal(Role.MEDIC, [uuid.UUID(a["id"])])
    with app.websocket_connect("/graphql", subprotocols=WS, headers=auth(medic)) as ws:
        init(ws)
        subscribe(ws, siteIds=[a["id"]])
        wait_until_live(ws, redis_client, settings, a["id"])
        rename_site(app, command, b, "B renamed")  # published first, on B's channel
        rename_site(app, command, a, "A renamed")
        event = next_event(ws)
        assert event["siteId"] == a["id"], "B's event reached a subscriber of A"


def test_command_without_site_ids_hears_every_site_and_types_filter(app, auth, settings, redis_client):
    command_principal = make_principal(Role.COMMAND)
    command = auth(command_principal)
    a, b = create_site(app, command, "LV-C"), create_site(app, command, "LV-D")
    with app.websocket_connect("/graphql", subprotocols=WS, headers=command) as ws:
        init(ws)
        subscribe(ws, types=["sites.site_updated"])  # pattern subscription over all sites
        wait_until_live(ws, redis_client, settings, a["id"])
        create_site(app, command, "LV-E")  # sites.site_created: filtered out
        rename_site(app, command, b, "B")
        rename_site(app, command, a, "A")
        assert [next_event(ws)["siteId"] for _ in range(2)] == [b["id"], a["id"]]


def test_foreign_or_unknown_site_is_refused_before_streaming(app, auth):
    command = auth(make_principal(Role.COMMAND))
    a, b = create_site(app, command, "LV-F"), create_site(app, command, "LV-G")
    staff = make_principal(Role.SITE_STAFF, [uuid.UUID(a["id"])])
    with app.websocket_connect("/graphql", subprotocols=WS, headers=auth(staff)) as ws:
        init(ws)
        subscribe(ws, "1", siteIds=[a["id"], b["id"]])
        error = first_error(ws)
        assert error["extensions"]["code"] == "site_not_found" and b["id"] not in error["message"]
        assert ws.receive_json(timeout=WAIT_S) == {"id": "1", "type": "complete"}
    with app.websocket_connect("/graphql", subprotocols=WS, headers=command) as ws:
        init(ws)
        subscribe(ws, "2", siteIds=[str(uuid.uuid4())])
        assert first_error(ws)["extensions"]["code"] == "site_not_found"


def test_without_credential_subscription_is_refused(app):
    with app.websocket_connect("/graphql", subprotocols=WS) as ws:
        init(ws)
        subscribe(ws)
        error = first_error(ws)
        assert error["message"] == "Authentication required."


def test_bad_credential_closes_the_connection(app):
    with app.websocket_connect("/graphql", subprotocols=WS) as ws:
        ws.send_json({"type": "connection_init", "payload": {"Authorization": "Bearer not-a-token"}})
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json(timeout=WAIT_S)
        assert closed.value.code == 4403


def test_integration_clients_have_no_subscription(app, auth):
    lab = make_principal(Role.LAB, [uuid.uuid4()])
    with app.websocket_connect("/graphql", subprotocols=WS, headers=auth(lab)) as ws:
        init(ws)
        subscribe(ws)
        assert first_error(ws)["message"].startswith("Not allowed for the role")


def test_disconnect_releases_the_redis_subscription(app, auth, settings, redis_client):
    command = auth(make_principal(Role.COMMAND))
    site = create_site(app, command, "LV-H")
    channel = f"{settings.redis_prefix}site:{site['id']}"
    with app.websocket_connect("/graphql", subprotocols=WS, headers=command) as ws:
        init(ws)
        subscribe(ws, siteIds=[site["id"]])
        wait_until_live(ws, redis_client, settings, site["id"])
        assert dict(redis_client.pubsub_numsub(channel))[channel.encode()] == 1
    for _ in range(400):  # bounded: the server side closes the pubsub after the socket goes
        if dict(redis_client.pubsub_numsub(channel))[channel.encode()] == 0:
            break
        time.sleep(0.025)
    else:
        raise AssertionError("the Redis subscription outlived its WebSocket")


def test_redis_down_ends_the_subscription_with_a_message_and_the_rest_works(settings, auth):
    down = msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:1/0")
    staff = make_principal(Role.SITE_STAFF, [uuid.uuid4()])
    with app_client(down) as client:
        with client.websocket_connect("/graphql", subprotocols=WS, headers=auth(staff)) as ws:
            init(ws)
            subscribe(ws)
            error = first_error(ws)
            assert error["extensions"]["code"] == "live_updates_unavailable"
            assert "unavailable" in error["message"]
        answer = client.post("/graphql", json={"query": "{ sites { edges { node { id } } } }"}, headers=auth(staff))
        assert answer.status_code == 200 and answer.json() == {"data": {"sites": {"edges": []}}}


def test_subscription_ends_when_the_access_token_expires(app, settings):
    from service.access.service import issue_access_token

    command = make_principal(Role.COMMAND)
    # A token with two seconds of life left: the stream must end with it, not outlive it.
    issued = time.time() - settings.access_token_minutes * 60 + 2
    token = issue_access_token(settings, command, now=issued)
    with app.websocket_connect("/graphql", subprotocols=WS) as ws:
        init(ws, {"Authorization": f"Bearer {token}"})
        subscribe(ws)
        error = first_error(ws)
    assert error["extensions"]["code"] == "token_expired"


def test_after_a_cursor_the_subscription_replays_then_goes_live(app, auth, settings, redis_client):
    command = auth(make_principal(Role.COMMAND))
    site = create_site(app, command, "LV-R1")
    staff = make_principal(Role.SITE_STAFF, [uuid.UUID(site["id"])])
    site = rename_site(app, command, site, "one")
    site = rename_site(app, command, site, "two")
    changes = app.get("/api/v1/changes", params={"types": "sites.site_updated"}, headers=auth(staff)).json()["changes"]
    assert len(changes) == 2
    with app.websocket_connect("/graphql", subprotocols=WS, headers=auth(staff)) as ws:
        init(ws)
        subscribe(ws, after=changes[0]["cursor"], types=["sites"])
        replayed = next_event(ws)  # the change after the cursor, from the outbox
        assert (replayed["id"], replayed["cursor"], replayed["entity"]) == (changes[1]["id"], changes[1]["cursor"], "site")
        site = rename_site(app, command, site, "three")  # then live
        live_event = next_event(ws)
        assert live_event["type"] == "sites.site_updated" and live_event["id"] > replayed["id"]
    # Resuming from the live event's cursor: nothing before it again, what came after it.
    site = rename_site(app, command, site, "four")
    missed = app.get("/api/v1/changes", params={"after": live_event["cursor"], "types": "sites"}, headers=auth(staff)).json()["changes"]
    assert len(missed) == 1
    with app.websocket_connect("/graphql", subprotocols=WS, headers=auth(staff)) as ws:
        init(ws)
        subscribe(ws, after=live_event["cursor"], types=["sites.site_updated"])
        assert next_event(ws)["id"] == missed[0]["id"]
    with app.websocket_connect("/graphql", subprotocols=WS, headers=auth(staff)) as ws:
        init(ws)
        subscribe(ws, after="not-a-cursor")
        bad = first_error(ws)
    assert bad["extensions"]["code"] == "invalid_cursor"


def _named_clients(redis_client: redis.Redis, settings: Settings) -> list[dict[str, Any]]:
    name = "qsite-" + settings.redis_prefix  # the test prefix needs no escaping
    return [c for c in redis_client.client_list() if c.get("name") == name]


def test_one_redis_connection_per_instance_whatever_the_subscribers(app, auth, settings, redis_client):
    """40 subscribers of 4 sites on one instance: one pub/sub connection, subscribed to exactly those 4 channels."""
    from contextlib import ExitStack

    command = auth(make_principal(Role.COMMAND))
    sites = [create_site(app, command, f"LV-C{i}") for i in range(4)]
    counts = {}
    with ExitStack() as stack:
        for n in range(40):
            site = sites[n % 4]
            ws = stack.enter_context(app.websocket_connect("/graphql", subprotocols=WS, headers=auth(make_principal(Role.SITE_STAFF, [uuid.UUID(site["id"])]))))
            init(ws)
            subscribe(ws)
            if n < 4:
                wait_until_live(ws, redis_client, settings, site["id"])
            if n + 1 in (4, 40):
                time.sleep(0.5)  # the last ones' SUBSCRIBE (none expected) would be out by now
                clients = _named_clients(redis_client, settings)
                pubsub = [c for c in clients if int(c.get("sub", 0)) + int(c.get("psub", 0)) > 0]
                counts[n + 1] = (len(pubsub), int(pubsub[0]["sub"]) if pubsub else 0, len(clients))
        channels = sorted(c.decode() for c in redis_client.pubsub_channels(f"{settings.redis_prefix}site:*"))
    assert counts[4][:2] == counts[40][:2] == (1, 4), counts
    assert counts[40][2] <= counts[4][2] + 1, f"Redis connections grew with subscribers: {counts}"
    assert channels == sorted(f"{settings.redis_prefix}site:{s['id']}" for s in sites)


@pytest.mark.parametrize("deflate", [True, False])
async def test_per_message_deflate_follows_the_setting(settings, deflate):
    """``qsite serve``'s uvicorn accepts a client's permessage-deflate offer only when QSITE_WS_PER_MESSAGE_DEFLATE is on."""
    import websockets

    from tests.conftest import served

    async with served(msgspec.structs.replace(settings, ws_per_message_deflate=deflate)) as base:
        async with websockets.connect(base.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            accepted = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
    assert ("permessage-deflate" in accepted) is deflate
