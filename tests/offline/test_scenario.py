"""The night shift: a ward phone offline for 8 hours replays 500 queued writes, twice, through two instances.

Two app instances (two ``create_app``) share one PostgreSQL and one Redis. Before the phone goes offline
the ward has residents, open alerts, transfers, exposure reviews, stock. While it is offline, colleagues
online change some of the same records (acknowledge alerts, take rooms out of service, approve transfers,
decide reviews, issue stock). Then the phone replays its queue (a site manager's and a medic's writes,
each user with their own token) in a random order (fixed seed) through instance A, and at the same time
the same queue in another order through instance B, as a phone that lost the first answers would.

Asserted: every write answered on each pass; none created twice; nothing lost (every created or replayed
write is in the database, every write that could not apply reported as a conflict with the record and
its version); the database holds exactly the expected rows and stock. Then the phone catches up with the
changes feed from the cursor it held before it went offline: every change comes once, its own writes'
changes are exactly the ids its outcomes answered (``changeIds``), and what remains is exactly what the
colleagues did.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from service.access.model import Role
from service.app import create_app
from service.health import service as health
from service.health.model import AlertAction, ExposureSource, ReviewDecision
from service.sites import service as sites
from service.sites.model import RoomAction
from service.stays import service as stays
from service.supplies import service as supplies
from service.supplies.model import MovementCreate
from tests.conftest import make_principal
from tests.offline.helpers import SYNC, queued
from tests.stays.helpers import admission, id_number, make_site, person
from tests.supplies.helpers import make_item
from tests.transfers.helpers import VEHICLE, make_facility, move, request

SEED = 20261129
BATCH = 100
HOURS = 8


def _at(rng: random.Random, start: datetime) -> str:
    """A moment of the offline night (the device clock), oldest 8 hours ago."""
    return (start + timedelta(seconds=rng.randrange(HOURS * 3600 - 120))).isoformat()


async def _world(db, settings, client, auth) -> dict[str, Any]:
    """The ward as the phone last saw it online."""
    site_id = await make_site(db, "NIGHT-1", floors={2: (25, 2), 3: (20, 1), 5: (8, 1)})
    command = make_principal(Role.COMMAND)
    clerk = make_principal(Role.SITE_MANAGER, [site_id])
    async with db.connection() as conn:
        rooms = {r.number: r for r in await sites.list_site_rooms(conn, clerk, site_id)}
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    async with db.transaction() as conn:
        ward = []
        for i in range(45):
            entry = admission(site_id, resident=person(f"H-{i // 2}"), room_id=rooms[f"{201 + i // 2}"].id, admitted_at=two_days_ago)
            ward.append(await stays.admit(conn, clerk, settings, entry))
        alerts = []
        for stay in ward[:20]:
            alert_id = await health.raise_alert(conn, clerk, stay, "fever", dedup_key=f"night-{stay.id}", detail={"temperature_c": 38.1})
            alerts.append(await health.get_alert(conn, clerk, alert_id))
        reviews = await health.open_exposure_review(conn, clerk, ward[44].id, reason="positive neighbour", source=ExposureSource.POSITIVE)
    items = [await make_item(client, auth) for _ in range(3)]
    async with db.transaction() as conn:
        for item in items:
            await supplies.record_movement(conn, clerk, settings, msgspec.convert(
                {"id": str(uuid.uuid4()), "site_id": str(site_id), "item_id": item, "kind": "receipt", "quantity": 1000}, MovementCreate))
    facility = await make_facility(db)
    medic = make_principal(Role.MEDIC, [site_id])
    transfers = [await request(db, medic, stay.id) for stay in ward[30:35]]
    return {"site": site_id, "rooms": rooms, "ward": ward, "alerts": alerts, "reviews": reviews[:5], "items": items,
            "facility": facility, "transfers": transfers, "command": command}


def _queue(w: dict[str, Any], rng: random.Random, start: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The phone's 500 writes: (site manager's, medic's, what each created record should be)."""
    ward, site = w["ward"], str(w["site"])
    mgr: list[dict[str, Any]] = []
    med: list[dict[str, Any]] = []
    expect: dict[str, Any] = {"checkins": set(), "samples": set(), "movements": set(), "stays": set(), "transfers": set(), "replenishments": set(),
                              "stock": Counter()}
    for _ in range(291):
        checkin_id = str(uuid.uuid4())
        expect["checkins"].add(checkin_id)
        mgr.append(queued("recordCheckin", id=checkin_id, stayId=str(rng.choice(ward[:40]).id), recordedAt=_at(rng, start),
                          temperatureC=round(rng.uniform(36.1, 37.0), 1), spo2=rng.randrange(95, 100), pulse=rng.randrange(60, 90)))
    for i in range(40):
        sample_id = str(uuid.uuid4())
        expect["samples"].add(sample_id)
        mgr.append(queued("recordSample", id=sample_id, stayId=str(ward[i % 30].id), barcode=f"NIGHT-{i:04d}", collectedAt=_at(rng, start)))
    for i in range(5):
        pool_id = str(uuid.uuid4())
        expect["samples"].add(pool_id)
        members = [{"stayId": str(s.id)} for s in ward[40 + i : 42 + i]]  # residents 40-44, none of them moved
        expect["pooled"] = expect.get("pooled", 0) + len(members)
        mgr.append(queued("recordPool", id=pool_id, siteId=site, barcode=f"POOL-{i:04d}", collectedAt=_at(rng, start), members=members))
    for alert in w["alerts"]:
        mgr.append(queued("acknowledgeAlert", id=str(alert.id), version=alert.version, note="seen on the night round"))
    for alert in w["alerts"][:10]:
        med.append(queued("resolveAlert", id=str(alert.id), version=alert.version + 1, note="rechecked: 36.8, fine"))
    for review in w["reviews"]:
        med.append(queued("decideExposureReview", id=str(review.id), version=review.version, confirm=False, note="not in contact"))
    steps = ["TAKE_OUT_OF_SERVICE", "RETURN_TO_SERVICE", "START_DISINFECTION", "FINISH_DISINFECTION", "FAIL_INSPECTION"]
    for number in ("501", "502", "503", "504", "505", "506"):
        room = w["rooms"][number]
        for k, action in enumerate(steps):  # the phone applied each step locally: it expects the next version
            mgr.append(queued("turnOverRoom", roomId=str(room.id), action=action, version=room.version + k, reason="night turnover"))
    for i in range(10):
        stay_id = str(uuid.uuid4())
        expect["stays"].add(stay_id)
        resident = {"name": "夜班入住", "documentType": "MAINLAND_ID", "documentNumber": id_number(serial=900 + i)}
        mgr.append(queued("admitResident", id=stay_id, siteId=site, category="CLOSE_CONTACT", roomId=str(w["rooms"][f"{301 + i}"].id),
                          resident=resident))
    for i in range(5):
        mgr.append(queued("moveStay", stayId=str(ward[35 + i].id), roomId=str(w["rooms"][f"{311 + i}"].id), reason="night move"))
    for i in range(5):
        mgr.append(queued("extendStay", stayId=str(ward[i].id), exposedAt=(start + timedelta(hours=7)).isoformat(), reason="exposure"))
    for i in range(5):
        transfer_id = str(uuid.uuid4())
        expect["transfers"].add(transfer_id)
        med.append(queued("requestTransfer", id=transfer_id, stayId=str(ward[20 + i].id), reason="SYMPTOMS"))
    for transfer in w["transfers"]:
        med.append(queued("moveTransfer", id=str(transfer.id), action="APPROVE", version=transfer.version, destinationId=str(w["facility"])))
        vehicle = {"plate": VEHICLE["plate"], "kind": VEHICLE["kind"].upper(), "driver": VEHICLE["driver"], "escort": VEHICLE["escort"]}
        med.append(queued("moveTransfer", id=str(transfer.id), action="DISPATCH", version=transfer.version + 1, vehicle=vehicle))
    for i in range(60):
        movement_id, item = str(uuid.uuid4()), rng.choice(w["items"])
        kind, quantity = ("receipt", rng.randrange(1, 20)) if i % 2 else ("issue", rng.randrange(1, 10))
        expect["movements"].add(movement_id)
        expect["stock"][item] += quantity if kind == "receipt" else -quantity
        mgr.append(queued("recordStockMovement", id=movement_id, siteId=site, itemId=item, kind=kind, quantity=quantity,
                          recordedAt=_at(rng, start)))
    for i in range(4):
        rep_id = str(uuid.uuid4())
        expect["replenishments"].add(rep_id)
        mgr.append(queued("raiseReplenishment", id=rep_id, siteId=site, lines=[{"itemId": w["items"][i % 3], "quantity": 100}]))
    return mgr, med, expect


async def _meanwhile(db, settings, w: dict[str, Any]) -> set[int]:
    """Colleagues online while the phone is offline; answers the changes they made (outbox event ids)."""
    site = w["site"]
    staff_b, medic_c = make_principal(Role.SITE_MANAGER, [site]), make_principal(Role.MEDIC, [site])
    async with db.connection() as conn:
        first = await conn.fetchval("SELECT coalesce(max(id), 0) FROM events")
    async with db.transaction() as conn:
        for alert in w["alerts"][14:]:
            await health.acknowledge_alert(conn, staff_b, alert.id, msgspec.convert({"version": alert.version, "note": "day shift"}, AlertAction))
        for number in ("505", "506"):
            await sites.turn_over(conn, staff_b, w["rooms"][number].id, RoomAction.TAKE_OUT_OF_SERVICE, reason="leak")
        for review in w["reviews"][3:]:
            await health.decide_exposure_review(conn, medic_c, review.id, msgspec.convert({"version": review.version, "confirm": True}, ReviewDecision))
        for item in w["items"]:
            await supplies.record_movement(conn, staff_b, settings, msgspec.convert(
                {"id": str(uuid.uuid4()), "site_id": str(site), "item_id": item, "kind": "issue", "quantity": 5}, MovementCreate))
    for transfer in w["transfers"][3:]:
        await move(db, medic_c, transfer, "approve", destination_id=w["facility"])
    async with db.connection() as conn:
        return {r[0] for r in await conn.fetch("SELECT id FROM events WHERE id > $1", first)}


Queue = list[dict[str, Any]]
CHANGES = """query Changes($siteIds: [UUID!], $after: String, $first: Int!) {
  changes(siteIds: $siteIds, after: $after, first: $first) { edges { node { id type entity entityId version } } pageInfo { hasNextPage endCursor } }
}"""


async def _catch_up(client: AsyncTestClient, headers: dict[str, str], site: uuid.UUID, after: str | None) -> tuple[Queue, str | None]:
    """Every change at the site after the cursor, page by page: (the changes, the cursor to resume from)."""
    changes: Queue = []
    while True:
        variables = {"siteIds": [str(site)], "after": after, "first": 1000}
        response = await client.post("/graphql", json={"query": CHANGES, "variables": variables}, headers=headers)
        page = response.json()["data"]["changes"]
        changes += [edge["node"] for edge in page["edges"]]
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            return changes, after


async def _replay(client: AsyncTestClient, tokens: dict[str, dict[str, str]], queues: dict[str, Queue], rng: random.Random) -> Queue:
    """One pass over the whole queue in a random order, in batches of 100 per user; every item's outcome."""
    batches = []
    for user, writes in queues.items():
        order = list(writes)
        rng.shuffle(order)
        batches += [(user, order[i : i + BATCH]) for i in range(0, len(order), BATCH)]
    rng.shuffle(batches)
    outcomes = []
    for user, batch in batches:
        response = await client.post("/graphql", json={"query": SYNC, "variables": {"input": {"writes": batch}}}, headers=tokens[user])
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, response.text[:500]
        answer = body["data"]["syncWrites"]
        assert [i["key"] for i in answer["items"]] == [b["key"] for b in batch]  # every write answered, in order
        outcomes += answer["items"]
    return outcomes


async def test_eight_hours_offline_500_writes_replayed_twice_from_two_instances(db, settings, auth):
    rng = random.Random(SEED)
    async with AsyncTestClient(app=create_app(settings)) as a, AsyncTestClient(app=create_app(settings)) as b:
        w = await _world(db, settings, a, auth)
        offline_since = datetime.now(UTC) - timedelta(hours=HOURS)
        mgr_writes, med_writes, expect = _queue(w, rng, offline_since)
        assert len(mgr_writes) + len(med_writes) == 500
        manager, medic = make_principal(Role.SITE_MANAGER, [w["site"]]), make_principal(Role.MEDIC, [w["site"]])
        tokens = {"mgr": auth(manager), "med": auth(medic)}
        _, cursor = await _catch_up(a, tokens["mgr"], w["site"], None)  # the phone's last catch-up before the signal went
        others = await _meanwhile(db, settings, w)
        queues = {"mgr": mgr_writes, "med": med_writes}
        first, second = await asyncio.gather(_replay(a, tokens, queues, random.Random(SEED + 1)), _replay(b, tokens, queues, random.Random(SEED + 2)))
        # Back online, the phone catches up from its cursor (through the other instance, as it happens).
        caught, _ = await _catch_up(b, tokens["mgr"], w["site"], cursor)

    by_key: dict[str, list[dict[str, Any]]] = {}
    for outcome in first + second:
        by_key.setdefault(outcome["key"], []).append(outcome)
    statuses = Counter(o["status"] for o in first + second)
    kinds = Counter((o["kind"], o["status"]) for o in first + second)
    print(f"outcomes over both passes: {dict(statuses)}; by kind: {sorted(kinds.items())}")
    assert len(by_key) == 500 and all(len(v) == 2 for v in by_key.values())  # each write answered once per pass
    assert statuses["FAILED"] == 0, [o for o in first + second if o["status"] == "FAILED"][:3]
    created = {k for k, v in by_key.items() if any(o["status"] == "CREATED" for o in v)}
    assert all(sum(o["status"] == "CREATED" for o in v) <= 1 for v in by_key.values()), "a write was created twice"

    # Every conflict names the record it is about, as the server had it, with its version.
    conflicts = [o for o in first + second if o["status"] == "CONFLICT"]
    assert conflicts, "the colleagues' changes should have made some queued writes conflict"
    async with db.connection() as conn:
        versions = {r["id"]: r["version"] for r in await conn.fetch(
            "SELECT id::text, version FROM alerts UNION ALL SELECT id::text, version FROM rooms UNION ALL SELECT id::text, version FROM transfers"
            " UNION ALL SELECT id::text, version FROM exposure_reviews UNION ALL SELECT id::text, version FROM stays")}
    for o in conflicts:
        assert o["record"] is not None and o["version"] is not None and o["version"] == o["record"]["version"], o
        assert o["error"]["code"], o
        assert o["version"] <= versions[o["record"]["id"]], o
    # Writes the colleagues' changes made impossible: conflicts on both passes, never applied.
    for alert in w["alerts"][14:]:
        acks = [v for v in by_key.values() if v[0]["kind"] == "acknowledgeAlert" and v[0]["record"]["id"] == str(alert.id)]
        assert len(acks) == 1 and {o["status"] for o in acks[0]} == {"CONFLICT"}, acks
    for review in w["reviews"][3:]:
        decided = [v for v in by_key.values() if v[0]["kind"] == "decideExposureReview" and v[0]["record"]["id"] == str(review.id)]
        assert {o["status"] for o in decided[0]} == {"CONFLICT"} and decided[0][0]["record"]["reviewState"] == "CONFIRMED"

    # Nothing lost, nothing twice: the database holds exactly what the queue created.
    async with db.connection() as conn:
        site = w["site"]
        checkins = {str(r[0]) for r in await conn.fetch("SELECT id FROM checkins WHERE site_id = $1", site)}
        assert checkins == expect["checkins"]
        samples = {str(r[0]) for r in await conn.fetch("SELECT id FROM samples WHERE site_id = $1 AND pool_id IS NULL", site)}
        assert samples == expect["samples"]
        assert await conn.fetchval("SELECT count(*) FROM samples WHERE pool_id IS NOT NULL") == expect["pooled"]
        movements = {str(r[0]) for r in await conn.fetch("SELECT id FROM supply_movements WHERE site_id = $1 AND actor = $2", site, manager.ref)}
        assert movements == expect["movements"]
        for item in w["items"]:
            on_hand = await conn.fetchval("SELECT quantity FROM supply_stock WHERE site_id = $1 AND item_id = $2", site, uuid.UUID(item))
            assert on_hand == 1000 - 5 + expect["stock"][item]
            assert on_hand == await conn.fetchval("SELECT sum(delta) FROM supply_movements WHERE site_id = $1 AND item_id = $2", site, uuid.UUID(item))
        assert expect["stays"] <= {str(r[0]) for r in await conn.fetch("SELECT id FROM stays WHERE site_id = $1", site)}
        assert await conn.fetchval("SELECT count(*) FROM stays WHERE site_id = $1", site) == 45 + 10 + 5  # five moves: five new stays
        assert await conn.fetchval("SELECT count(*) FROM stays WHERE outcome = 'moved'") == 5
        assert {str(r[0]) for r in await conn.fetch("SELECT id FROM transfers WHERE site_id = $1", site)} == expect["transfers"] | {
            str(t.id) for t in w["transfers"]}
        assert {str(r[0]) for r in await conn.fetch("SELECT id FROM supply_replenishments WHERE site_id = $1", site)} == expect["replenishments"]
        # Each created write left its change in the outbox once; replayed ones left nothing.
        phone_events = await conn.fetchval("SELECT count(*) FROM events WHERE actor = ANY($1::text[])", [manager.ref, medic.ref])
        acknowledged = sum(1 for k in created if by_key[k][0]["kind"] == "acknowledgeAlert")
        assert await conn.fetchval("SELECT count(*) FROM alerts WHERE state <> 'open'") == acknowledged + 6
    # Catch-up: every change since the cursor, once; skipping the ids its own writes answered leaves
    # exactly the colleagues' changes.
    own = {i for o in first + second for i in o["changeIds"]}
    for v in by_key.values():  # a replayed key answers the changes its first run committed
        made = [o["changeIds"] for o in v if o["status"] == "CREATED"]
        assert all(o["changeIds"] == (made[0] if made else []) for o in v if o["status"] == "REPLAYED"), v
    assert len(own) == phone_events
    seen = [c["id"] for c in caught]
    assert len(seen) == len(set(seen)), "a change came twice"
    assert own <= set(seen), "a change the phone made is missing from the feed"
    not_mine = set(seen) - own
    assert not_mine == others, (len(not_mine), len(others))
    applied = {k: by_key[k][0]["kind"] for k in created}
    print(f"created {len(created)} of 500 ({Counter(applied.values())}); conflicts on both passes: "
          f"{sum(1 for v in by_key.values() if {o['status'] for o in v} == {'CONFLICT'})}; catch-up: {len(seen)} changes, "
          f"{len(own)} the phone's own (skipped by changeIds), {len(not_mine)} made by colleagues")
