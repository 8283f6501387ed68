"""Hospitals hear the transfers heading to their facility, through the change feed and webhooks, and
nothing else: two fully seeded sites (residents in rooms) and two facilities, real ids throughout."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.access import service as access
from service.access.service import SYSTEM_PRINCIPAL
from service.app import create_app
from service.transfers.model import Transfer
from service.webhooks import service as webhooks
from tests.transfers.helpers import Ward, make_facility, make_hospital, make_ward, move, request, to_state
from tests.webhooks.helpers import Listener

CHANGES = "/api/v1/changes"
HOOKS = "/api/v1/webhooks"


def key(api_key: str) -> dict[str, str]:
    return {"X-API-Key": api_key}


@dataclass
class World:
    ward_a: Ward
    ward_b: Ward
    fac_a: UUID
    fac_b: UUID
    key_a: str  # hospital A, every site
    key_a_site_a: str  # hospital A, a key naming site A only
    key_b: str  # hospital B, every site
    client_a: UUID


async def seed(db: Any, settings: Any) -> World:
    ward_a, ward_b = await make_ward(db, settings, "HK-A"), await make_ward(db, settings, "HK-B")
    fac_a, fac_b = await make_facility(db), await make_facility(db)
    principal_a, key_a = await make_hospital(db, fac_a)
    _, key_a_site_a = await make_hospital(db, fac_a, [ward_a.site_id])
    _, key_b = await make_hospital(db, fac_b)
    return World(ward_a, ward_b, fac_a, fac_b, key_a, key_a_site_a, key_b, principal_a.id)


@dataclass
class Moves:
    to_a: Transfer  # site A -> facility A, all the way to arrival
    other: Transfer  # site B -> facility B
    b_to_a: Transfer  # site B -> facility A
    redirected: Transfer  # site A: facility A, then redirected to B


async def make_moves(db: Any, w: World) -> Moves:
    to_a = await to_state(db, w.ward_a.medic, await request(db, w.ward_a.medic, w.ward_a.patient.id), "arrived", w.fac_a)
    other = await to_state(db, w.ward_b.medic, await request(db, w.ward_b.medic, w.ward_b.patient.id), "dispatched", w.fac_b)
    b_to_a = await to_state(db, w.ward_b.medic, await request(db, w.ward_b.medic, w.ward_b.roommate.id), "approved", w.fac_a)
    redirected = await to_state(db, w.ward_a.medic, await request(db, w.ward_a.medic, w.ward_a.roommate.id), "approved", w.fac_a)
    redirected = await move(db, w.ward_a.medic, redirected, "redirect", destination_id=w.fac_b)
    return Moves(to_a, other, b_to_a, redirected)


def foreign_markers(w: World, own_facility: UUID) -> set[str]:
    """Ids a hospital must never receive: stays, residents and rooms of both sites, the other facility."""
    stays = [w.ward_a.patient, w.ward_a.roommate, w.ward_a.neighbour, w.ward_b.patient, w.ward_b.roommate, w.ward_b.neighbour]
    markers = {str(s.id) for s in stays} | {str(s.resident_id) for s in stays}
    markers |= {str(r) for r in [*w.ward_a.rooms.values(), *w.ward_b.rooms.values()]}
    return markers | {str(f) for f in (w.fac_a, w.fac_b) if f != own_facility}


async def feed(client: AsyncTestClient, api_key: str, **params: Any) -> tuple[int, Any, str]:
    answer = await client.get(CHANGES, params={"limit": 1000, **params}, headers=key(api_key))
    return answer.status_code, answer.json(), answer.text


async def test_hospital_feed_shows_only_transfers_heading_to_its_facility(client, db, settings):
    w = await seed(db, settings)
    m = await make_moves(db, w)

    status, page, text = await feed(client, w.key_a)
    assert status == 200, text
    assert {c["type"].split(".")[0] for c in page["changes"]} == {"transfers"}
    # Its own facility's record (created by command): the only facility change it sees.
    assert [(c["type"], c["entity_id"]) for c in page["changes"] if c["entity"] == "facility"] == [("transfers.facility_created", str(w.fac_a))]
    changes = [c for c in page["changes"] if c["entity"] == "transfer"]
    assert {c["entity_id"] for c in changes} == {str(m.to_a.id), str(m.b_to_a.id), str(m.redirected.id)}
    assert [c["type"] for c in changes if c["entity_id"] == str(m.to_a.id)] == [
        "transfers.approved", "transfers.dispatched", "transfers.departed", "transfers.arrived",
    ]  # the request named no destination: not yet heading anywhere
    assert not any(marker in text for marker in foreign_markers(w, w.fac_a))
    for change in changes:
        assert "stay_id" not in change["data"]
        assert {v for k, v in change["data"].items() if k.endswith("destination_id") or k == "refused_by"} <= {str(w.fac_a), None}
    redirect = next(c for c in changes if c["type"] == "transfers.redirected")
    assert redirect["data"]["destination_id"] is None and redirect["data"]["previous_destination_id"] == str(w.fac_a)

    # Hospital B: its own transfer and the one redirected to it, never A's.
    status, page_b, text_b = await feed(client, w.key_b)
    assert status == 200
    assert {c["entity_id"] for c in page_b["changes"]} == {str(w.fac_b), str(m.other.id), str(m.redirected.id)}
    assert [c["type"] for c in page_b["changes"] if c["entity_id"] == str(m.redirected.id)] == ["transfers.redirected"]
    assert not any(marker in text_b for marker in foreign_markers(w, w.fac_b))

    # A key naming site A hears nothing from site B, and site B is not found for it.
    status, page_site, _ = await feed(client, w.key_a_site_a)
    assert {c["entity_id"] for c in page_site["changes"]} == {str(w.fac_a), str(m.to_a.id), str(m.redirected.id)}
    status, problem, _ = await feed(client, w.key_a_site_a, site_id=str(w.ward_b.site_id))
    assert (status, problem["code"]) == (404, "site_not_found")
    # The key naming every site filters by a sending site (changes of no site, its facility's, still show).
    status, page_b_site, _ = await feed(client, w.key_a, site_id=str(w.ward_b.site_id))
    assert status == 200 and {c["entity_id"] for c in page_b_site["changes"]} == {str(w.fac_a), str(m.b_to_a.id)}
    # Resuming from the last cursor: nothing new; a later move of its own transfer comes next.
    status, rest, _ = await feed(client, w.key_a, after=page["next_cursor"])
    assert rest["changes"] == []
    await move(db, w.ward_b.medic, m.other, "depart")  # B's transfer: not A's concern
    await move(db, w.ward_b.medic, m.b_to_a, "dispatch", vehicle={"plate": "渝A1", "kind": "ordinary_ambulance", "driver": "d", "escort": "e"})
    status, rest, _ = await feed(client, w.key_a, after=page["next_cursor"])
    assert [(c["type"], c["entity_id"]) for c in rest["changes"]] == [("transfers.dispatched", str(m.b_to_a.id))]


async def test_outcome_and_door_refusal_reach_the_hospital_that_gave_them(client, db, settings):
    w = await seed(db, settings)
    arrived = await to_state(db, w.ward_a.medic, await request(db, w.ward_a.medic, w.ward_a.patient.id), "arrived", w.fac_a)
    refused = await to_state(db, w.ward_a.medic, await request(db, w.ward_a.medic, w.ward_a.roommate.id), "departed", w.fac_a)
    _, page, _ = await feed(client, w.key_a)
    cursor = page["next_cursor"]
    answer = await client.post(f"/api/v1/hospital/transfers/{arrived.id}/outcome", json={"outcome": "admitted", "note": ""}, headers=key(w.key_a))
    assert answer.status_code == 200, answer.text
    answer = await client.post(f"/api/v1/hospital/transfers/{refused.id}/refusal", json={"reason": "no bed"}, headers=key(w.key_a))
    assert answer.status_code == 200, answer.text
    _, page, _ = await feed(client, w.key_a, after=cursor)
    seen = [(c["type"], c["entity_id"], c["data"].get("refused_by"), c["data"].get("destination_id")) for c in page["changes"]]
    assert seen == [
        ("transfers.outcome_reported", str(arrived.id), None, str(w.fac_a)),
        ("transfers.refused_at_door", str(refused.id), str(w.fac_a), None),
    ]
    _, page_b, _ = await feed(client, w.key_b, after=cursor)
    assert page_b["changes"] == []


async def test_hospital_webhook_hears_its_transfers_signed_and_stops_when_revoked(settings, db):
    allowing = msgspec.structs.replace(settings, webhook_allow_private=True)
    async with AsyncTestClient(app=create_app(allowing)) as client, Listener() as listener_a, Listener() as listener_b:
        w = await seed(db, allowing)
        for refused_events in (["supplies"], ["health.alert_raised"], ["stays"], ["webhooks"], ["sites"]):
            answer = await client.post(HOOKS, json={"url": listener_a.url, "events": refused_events}, headers=key(w.key_a))
            assert (answer.status_code, answer.json()["code"]) == (422, "webhook_event_not_allowed"), refused_events
        created = await client.post(HOOKS, json={"url": listener_a.url, "events": ["transfers"]}, headers=key(w.key_a))
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        created_b = await client.post(HOOKS, json={"url": listener_b.url, "events": ["transfers.redirected"]}, headers=key(w.key_b))
        assert created_b.status_code == 201, created_b.text
        listed = (await client.get(HOOKS, headers=key(w.key_a))).json()
        assert [(h["id"], h["events"]) for h in listed] == [(created.json()["webhook"]["id"], ["transfers"])]
        assert (await client.get(HOOKS, headers=key(w.key_b))).json()[0]["id"] != listed[0]["id"]

        m = await make_moves(db, w)
        await webhooks.run(db, allowing)
        received = [(h, msgspec.json.decode(body), body) for h, body in listener_a.requests]  # registered after the facility
        assert {p["subject_id"] for _, p, _ in received} == {str(m.to_a.id), str(m.b_to_a.id), str(m.redirected.id)}
        assert len(received) == 4 + 1 + 2  # to_a: approved..arrived; b_to_a: approved; redirected: approved, redirected
        for headers, payload, body in received:
            assert headers["x-qsite-event"] == payload["type"] and payload["type"].startswith("transfers.")
            assert webhooks.verify(secret, headers["x-qsite-signature"], body)
            assert not webhooks.verify(secret, headers["x-qsite-signature"], body.replace(b"transfers", b"transferz", 1))
            assert not webhooks.verify("whsec_other", headers["x-qsite-signature"], body)
            assert not webhooks.verify(secret, headers["x-qsite-signature"], body, now=time.time() + 600)  # replayed late
            assert not any(marker in body.decode() for marker in foreign_markers(w, w.fac_a))
            assert "stay_id" not in payload["data"]
        # Hospital B hears only the redirect to it (it subscribed to that type alone).
        assert [msgspec.json.decode(b)["subject_id"] for _, b in listener_b.requests] == [str(m.redirected.id)]

        # Revoking A's key stops its webhook: nothing more is fanned out or delivered to it.
        async with db.transaction() as conn:
            await access.revoke_client(db, conn, SYSTEM_PRINCIPAL, w.client_a)
        await move(db, w.ward_b.medic, m.b_to_a, "cancel", note="recovered")
        await webhooks.run(db, allowing)
        assert len(listener_a.requests) == len(received)


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/hook", "https://localhost:{port}/hook", "https://169.254.169.254/latest", "https://[::ffff:127.0.0.1]:{port}/h"])
async def test_hospital_registration_refuses_private_targets(client, db, settings, url):
    w = await seed(db, settings)
    async with Listener() as listener:
        answer = await client.post(HOOKS, json={"url": url.format(port=listener.port), "events": ["transfers"]}, headers=key(w.key_a))
        assert (answer.status_code, answer.json()["code"]) == (422, "webhook_url_refused")
        await make_moves(db, w)
        await webhooks.run(db, settings)
        assert listener.requests == []
