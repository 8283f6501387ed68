"""Live updates: the siteEvents subscription over graphql-transport-ws, fed by Redis pub/sub.

The apps run in Litestar's sync TestClient (each in its own portal thread and
event loop, like two processes sharing PostgreSQL and Redis); waits are bounded
receives, never timing assertions.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

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
subscription Live($siteIds: [UUID!], $types: [String!]) {
  siteEvents(siteIds: $siteIds, types: $types) { id siteId type subjectId data at }
}
"""
PROBE = "test.probe"


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


def wait_until_live(ws: WebSocketTestSession, redis_client: redis.Redis, settings: Settings, site_id: str) -> None:
    """Publish probes on the site's channel until one comes through: the Redis subscription is then active."""
    probe = msgspec.json.encode(
        bus.Event(id=0, site_id=uuid.UUID(site_id), type=PROBE, subject_id=None, data={}, actor=None, at=datetime.now(UTC))
    )
    for _ in range(200):
        redis_client.publish(f"{settings.redis_prefix}site:{site_id}", probe)
        try:
            message = ws.receive_json(timeout=0.05)
        except queue.Empty:
            continue
        assert message["type"] == "next" and "errors" not in message["payload"], message
        assert message["payload"]["data"]["siteEvents"]["type"] == PROBE
        return
    raise AssertionError("the subscription never became live")


def next_event(ws: WebSocketTestSession) -> dict[str, Any]:
    """The next event that is not a probe."""
    while True:
        message = ws.receive_json(timeout=WAIT_S)
        assert message["type"] == "next" and "errors" not in message["payload"], message
        event = message["payload"]["data"]["siteEvents"]
        if event["type"] != PROBE:
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
        assert event["data"] == {"fields": ["name"]}


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
        subscribe(ws, types=["sites.site_updated", PROBE])  # pattern subscription over all sites
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
