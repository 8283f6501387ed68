"""What the README promises a newcomer, checked against the running app (issue 12, item 15)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from service.access.model import Role
from service.api.demo import DEMO_LOGIN_HINT, seed_demo
from service.supplies.model import LineCount, ReplenishmentDispatch
from tests.conftest import make_principal

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


async def test_demo_keys_work_as_printed(settings, client):
    await seed_demo(settings, only_if_empty=False)
    printed = set(re.findall(r"qsk_demo-[a-z0-9-]+", README))
    assert printed == set(re.findall(r"qsk_demo-[a-z0-9-]+", DEMO_LOGIN_HINT)) == {
        "qsk_demo-logistics-key",
        "qsk_demo-lab-key",
        "qsk_demo-hospital-key",
        "qsk_demo-tracing-key",
        "qsk_demo-carrier-key",
    }
    stock = await client.get("/api/v1/supplies/stock", headers={"X-API-Key": "qsk_demo-logistics-key"})
    assert stock.status_code == 200 and stock.json()["sites"]
    result = {"barcode": "NO-SUCH-TUBE", "result": "negative", "resulted_at": datetime.now(UTC).isoformat()}
    lab = await client.post("/api/v1/lab/results", json={"results": [result]}, headers={"X-API-Key": "qsk_demo-lab-key"})
    assert lab.status_code == 200, lab.text
    queue = await client.get(f"/api/v1/sites/{stock.json()['sites'][0]['site_id']}/referrals", headers={"X-API-Key": "qsk_demo-tracing-key"})
    assert queue.status_code == 200 and queue.json()["items"], "the demo tracing key sees its sites' queues"
    site_id = stock.json()["sites"][0]["site_id"]
    period = {"since": (datetime.now(UTC) - timedelta(days=30)).isoformat(), "until": datetime.now(UTC).isoformat()}
    waste = await client.get(f"/api/v1/carrier/sites/{site_id}/waste", params=period, headers={"X-API-Key": "qsk_demo-carrier-key"})
    assert waste.status_code == 200 and waste.json(), "the demo carrier key reads its sites' waste log"
    incoming = await client.get("/api/v1/hospital/transfers", headers={"X-API-Key": "qsk_demo-hospital-key"})
    assert incoming.status_code == 200 and incoming.json()["items"], "the demo hospital key sees its facility's transfers"


async def test_stock_filter_with_another_sites_id_matches_nothing(settings, client, auth):
    await seed_demo(settings, only_if_empty=False)
    command = auth(make_principal(Role.COMMAND))
    sites = [s["id"] for s in (await client.get("/api/v1/sites", headers=command)).json()["items"]]
    own, other = uuid.UUID(sites[0]), sites[1]
    manager = auth(make_principal(Role.SITE_MANAGER, [own]))
    foreign = await client.get("/api/v1/supplies/stock", params={"site_id": other}, headers=manager)
    unknown = await client.get("/api/v1/supplies/stock", params={"site_id": str(uuid.uuid4())}, headers=manager)
    assert foreign.status_code == unknown.status_code == 200
    assert foreign.json()["sites"] == unknown.json()["sites"] == []


def test_dispatch_body_is_the_documented_shape():
    assert "`{version, shipment_ref, lines: [{item_id, quantity}]}`" in README
    assert set(ReplenishmentDispatch.__struct_fields__) == {"version", "shipment_ref", "lines"}
    assert set(LineCount.__struct_fields__) == {"item_id", "quantity"}
    msgspec.convert({"version": 1, "shipment_ref": "SF-1", "lines": [{"item_id": str(uuid.uuid4()), "quantity": 3}]}, ReplenishmentDispatch)
