"""The receiving side hears a hand-over through the shared webhooks: signed, its own sites only, no personal data."""

from __future__ import annotations

import uuid

import msgspec
from litestar.testing import AsyncTestClient

from service.access.model import Role
from service.app import create_app
from service.webhooks import service as webhooks
from tests.conftest import make_principal
from tests.handover.test_handover import CONTACT_NAME, CONTACT_PHONE, NAME, released_site
from tests.supplies.test_webhooks import Listener


async def test_a_community_integration_hears_its_sites_handovers_signed_and_without_personal_data(settings, db, auth):
    allowing = msgspec.structs.replace(settings, webhook_allow_private=True)
    async with AsyncTestClient(app=create_app(allowing)) as client, Listener() as community, Listener() as command:
        site_a = await _site(db)
        tracing = make_principal(Role.TRACING, [site_a])  # the community's integration key, scoped to the site it works with
        url = f"http://127.0.0.1:{community.port}/handovers"
        made = await client.post("/api/v1/webhooks", json={"url": url, "events": ["stays.handed_over"]}, headers=auth(tracing))
        assert made.status_code == 201, made.text
        secret = made.json()["secret"]
        centre = await client.post("/api/v1/webhooks", json={"url": f"http://127.0.0.1:{command.port}/h", "events": ["stays"]},
                                   headers=auth(make_principal(Role.COMMAND)))
        assert centre.status_code == 201
        logistics = make_principal(Role.LOGISTICS, [site_a])  # no business with residents' hand-overs
        refused = await client.post("/api/v1/webhooks", json={"url": url, "events": ["stays.handed_over"]}, headers=auth(logistics))
        assert refused.status_code == 422 and refused.json()["code"] == "webhook_event_not_allowed"

        _, stay_a, code_a = await released_site(db, settings, code="LJ-01", street_code="LJ-JINSHAN", street_name="金山街道", site_id=site_a)
        _, stay_b, _ = await released_site(db, settings, code="YL-02", street_code="YL-YUELAI", street_name="悦来街道")
        await webhooks.run(db, allowing)

    ((headers, body),) = community.requests  # site A's hand-over only
    assert headers["x-qsite-event"] == "stays.handed_over"
    assert webhooks.verify(secret, headers["x-qsite-signature"], body)
    delivered = msgspec.json.decode(body)
    assert delivered["subject_id"] == str(stay_a.id) and delivered["entity"] == "handover" and delivered["site_id"] == str(site_a)
    data = delivered["data"]
    assert data["region_code"] == "LJ-JINSHAN" and data["phases"][0]["phase"] == "home_monitoring"
    assert data["home_ends_on"] == data["phases"][-1]["ends_on"]
    for secret_text in (NAME, CONTACT_NAME, CONTACT_PHONE, code_a, str(stay_a.resident_id)):
        assert secret_text not in body.decode()
    heard = {msgspec.json.decode(b)["type"] for _, b in command.requests}
    assert "stays.handed_over" in heard and "stays.released" in heard
    assert {msgspec.json.decode(b)["subject_id"] for _, b in command.requests if b"handed_over" in b} == {str(stay_a.id), str(stay_b.id)}


async def _site(db) -> uuid.UUID:
    from tests.stays.helpers import make_site

    return await make_site(db, code="LJ-01", floors={3: (2, 1)})
