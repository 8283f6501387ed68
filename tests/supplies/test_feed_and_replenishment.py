import uuid

from service.access.model import Role
from service.supplies import service
from service.supplies.model import MovementCreate
from tests.conftest import make_principal
from tests.supplies.helpers import make_item, make_site, move, staff

FEED = "/api/v1/supplies/changes"


async def read_feed(client, headers, cursor=None):
    params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
    response = await client.get(FEED, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_feed_never_skips_a_late_commit(client, auth, db, settings):
    site = await make_site(client, auth)
    site_b = await make_site(client, auth)
    item = await make_item(client, auth)
    worker = staff([site])
    logistics = make_principal(Role.LOGISTICS, [uuid.UUID(site), uuid.UUID(site_b)])
    await move(client, auth, worker, site, item, "receipt", 10)
    page = await read_feed(client, auth(logistics))
    assert [e["type"] for e in page["events"]] == ["supplies.stock_moved"]
    cursor = page["next_cursor"]
    early_id = uuid.uuid4()
    principal = staff([site])
    # Transaction A starts and writes first but commits last.
    async with db.transaction() as conn:
        await service.record_movement(
            conn, principal, settings, MovementCreate(id=early_id, site_id=uuid.UUID(site), item_id=uuid.UUID(item), kind="issue", quantity=1)
        )
        # B (another site: A holds the first site's stock locks) commits while A is open.
        later = await move(client, auth, staff([site_b]), site_b, item, "receipt", 5)
        assert later.status_code == 201
        during = await read_feed(client, auth(logistics), cursor)
        cursor = during["next_cursor"]
        seen = [e["subject_id"] for e in during["events"]]
        # B's commit is held back (not skipped) while A, which started earlier, is still open.
        assert seen == []
    after = await read_feed(client, auth(logistics), cursor)
    seen += [e["subject_id"] for e in after["events"]]
    assert str(early_id) in seen and later.json()["id"] in seen
    assert len(seen) == len(set(seen))
    # Another site's events never show.
    other = await make_site(client, auth)
    await move(client, auth, staff([other]), other, item, "receipt", 1)
    rest = await read_feed(client, auth(logistics), after["next_cursor"])
    assert rest["events"] == []


async def test_low_stock_event_once_per_crossing_and_auto_replenishment(client, auth, db):
    site = await make_site(client, auth)
    item = await make_item(client, auth)
    manager = staff([site], Role.SITE_MANAGER)
    command = make_principal(Role.COMMAND)
    levels = await client.patch(
        f"/api/v1/supplies/sites/{site}/stock/{item}", json={"version": 1, "reorder_level": 10, "target_level": 50}, headers=auth(manager)
    )
    assert levels.status_code == 200, levels.text
    # The fresh row (0 on hand, reorder 10) is below the line: that is the first crossing.
    for kind, quantity in [("receipt", 20), ("issue", 11), ("issue", 1), ("receipt", 30), ("issue", 30), ("issue", 1)]:
        assert (await move(client, auth, manager, site, item, kind, quantity)).status_code == 201
    events = (await read_feed(client, auth(command)))["events"]
    crossings = [(e["type"], e["data"]["quantity"]) for e in events if e["type"] in ("supplies.low_stock", "supplies.stock_recovered")]
    assert crossings == [
        ("supplies.low_stock", 0),
        ("supplies.stock_recovered", 20),
        ("supplies.low_stock", 9),
        ("supplies.stock_recovered", 38),
        ("supplies.low_stock", 8),
    ]
    # One automatic request (up to the target level), not one per crossing while it is open.
    reps = (await client.get("/api/v1/supplies/replenishments", params={"site_id": site}, headers=auth(command))).json()["items"]
    assert [(r["origin"], r["lines"][0]["requested"]) for r in reps] == [("low_stock", 50)]


async def test_replenishment_lifecycle(client, auth, db):
    site = await make_site(client, auth)
    gloves = await make_item(client, auth)
    swabs = await make_item(client, auth, category="testing", usage_rule="per_swab", usage_rate=1)
    worker = staff([site])
    logistics = make_principal(Role.LOGISTICS, [uuid.UUID(site)])
    outsider = make_principal(Role.LOGISTICS, [uuid.uuid4()])
    rep_id = str(uuid.uuid4())
    body = {"id": rep_id, "site_id": site, "lines": [{"item_id": gloves, "quantity": 50}, {"item_id": swabs, "quantity": 20}], "note": "weekend"}
    raised = await client.post("/api/v1/supplies/replenishments", json=body, headers=auth(worker))
    assert raised.status_code == 201, raised.text
    assert raised.json()["state"] == "open" and raised.json()["origin"] == "manual"
    replay = await client.post("/api/v1/supplies/replenishments", json=body, headers=auth(worker))
    assert replay.status_code == 201 and replay.json()["id"] == rep_id and replay.json()["version"] == 1

    url = f"/api/v1/supplies/replenishments/{rep_id}"
    assert (await client.post(f"{url}/acknowledge", json={"version": 1}, headers=auth(outsider))).status_code == 404
    assert (await client.post(f"{url}/acknowledge", json={"version": 1}, headers=auth(worker))).status_code == 403
    acked = await client.post(f"{url}/acknowledge", json={"version": 1}, headers=auth(logistics))
    assert acked.status_code == 200 and acked.json()["state"] == "acknowledged"
    stale = await client.post(f"{url}/dispatch", json={"version": 1, "shipment_ref": "SF123"}, headers=auth(logistics))
    assert stale.status_code == 409 and stale.json()["code"] == "stale_version"
    early = await client.post(f"{url}/receive", json={"version": 2}, headers=auth(worker))
    assert early.status_code == 422 and early.json()["code"] == "invalid_transition"
    dispatched = await client.post(
        f"{url}/dispatch", json={"version": 2, "shipment_ref": "SF123", "lines": [{"item_id": gloves, "quantity": 40}]}, headers=auth(logistics)
    )
    assert dispatched.status_code == 200, dispatched.text
    lines = {line["item_id"]: line for line in dispatched.json()["lines"]}
    assert (lines[gloves]["dispatched"], lines[swabs]["dispatched"]) == (40, 20)
    assert (await client.post(f"{url}/cancel", json={"version": 3}, headers=auth(worker))).json()["code"] == "invalid_transition"

    received = await client.post(f"{url}/receive", json={"version": 3, "lines": [{"item_id": gloves, "quantity": 38}]}, headers=auth(worker))
    assert received.status_code == 200, received.text
    got = received.json()
    lines = {line["item_id"]: line for line in got["lines"]}
    assert got["state"] == "received" and got["shipment_ref"] == "SF123"
    assert (lines[gloves]["received"], lines[gloves]["short"]) == (38, 2)
    assert (lines[swabs]["received"], lines[swabs]["short"]) == (20, 0)
    stock = (await client.get("/api/v1/supplies/stock", headers=auth(logistics))).json()["sites"][0]["items"]
    assert sorted(i["quantity"] for i in stock) == [20, 38]
    again = await client.post(f"{url}/receive", json={"version": 4}, headers=auth(worker))
    assert again.status_code == 422
    ledger = (await client.get(f"/api/v1/supplies/sites/{site}/movements", headers=auth(worker))).json()["items"]
    assert sorted((m["kind"], m["delta"], m["replenishment_id"]) for m in ledger) == [("receipt", 20, rep_id), ("receipt", 38, rep_id)]
    states = [e["data"]["state"] for e in (await read_feed(client, auth(logistics)))["events"] if e["type"].startswith("supplies.replenishment_")]
    assert states == ["open", "acknowledged", "dispatched", "received"]

    cancelled_id = str(uuid.uuid4())
    await client.post("/api/v1/supplies/replenishments", json={**body, "id": cancelled_id}, headers=auth(worker))
    cancelled = await client.post(f"/api/v1/supplies/replenishments/{cancelled_id}/cancel", json={"version": 1}, headers=auth(worker))
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    hidden = await client.get(f"/api/v1/supplies/replenishments/{cancelled_id}", headers=auth(outsider))
    assert hidden.status_code == 404
