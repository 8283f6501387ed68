import uuid
from datetime import UTC, datetime, timedelta, timezone

from service.access.model import Role
from service.health import service as health
from tests.conftest import make_principal
from tests.health.helpers import checkin, ward
from tests.stays.helpers import staff


async def _alerts(db, stay_id):
    async with db.connection() as conn:
        return [(r["kind"], r["state"]) for r in await conn.fetch("SELECT kind, state FROM alerts WHERE stay_id = $1 ORDER BY kind", stay_id)]


async def test_record_checkin_audits_emits_and_replays(client, auth, db, settings):
    site_id, (stay, _) = await ward(db, settings)
    worker = staff(site_id)
    body = checkin(stay.id, symptoms=["cough"], note="ok")
    first = await client.post("/api/v1/checkins", json=body, headers=auth(worker))
    assert first.status_code == 201, first.text
    stored = first.json()
    assert stored["id"] == body["id"] and stored["site_id"] == str(site_id) and stored["recorded_by"] == worker.ref
    assert stored["temperature_c"] == 36.6 and stored["symptoms"] == ["cough"] and stored["received_at"]
    # a replay after hours offline: same answer, no second row, audit or event
    again = await client.post("/api/v1/checkins", json={**body, "note": "changed on the phone"}, headers=auth(worker))
    assert again.status_code == 201 and again.json() == stored
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checkins") == 1
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'checkin.record'") == 1
        events = await conn.fetch("SELECT type, site_id, data FROM events WHERE type LIKE 'health.%'")
    assert [(e["type"], e["site_id"]) for e in events] == [("health.checkin_recorded", site_id)]
    assert "张三" not in str(events[0]["data"])


async def test_other_site_stay_is_404_and_id_reuse_is_409(client, auth, db, settings):
    site_a, (stay_a, stay_a2) = await ward(db, settings)
    site_b, (stay_b, _) = await ward(db, settings, code="LJ-02")
    worker_b = staff(site_b)
    hidden = await client.post("/api/v1/checkins", json=checkin(stay_a.id), headers=auth(worker_b))
    assert hidden.status_code == 404 and hidden.json()["code"] == "stay_not_found"
    body = checkin(stay_a.id)
    assert (await client.post("/api/v1/checkins", json=body, headers=auth(staff(site_a)))).status_code == 201
    # the same id for another stay (or from another site) never answers the stored record
    reused = await client.post("/api/v1/checkins", json={**body, "stay_id": str(stay_a2.id)}, headers=auth(staff(site_a)))
    assert reused.status_code == 409 and reused.json()["code"] == "checkin_id_conflict"
    foreign = await client.post("/api/v1/checkins", json={**body, "stay_id": str(stay_b.id)}, headers=auth(worker_b))
    assert foreign.status_code == 409 and str(stay_a.id) not in foreign.text
    lab = make_principal(Role.LAB, [site_a])
    assert (await client.post("/api/v1/checkins", json=checkin(stay_a.id), headers=auth(lab))).status_code == 403


async def test_impossible_readings_are_422_naming_the_field(client, auth, db, settings):
    site_id, (stay, _) = await ward(db, settings)
    worker = staff(site_id)
    for field, value in [("temperature_c", 50), ("spo2", 120), ("pulse", 400), ("temperature_c", 25.0)]:
        bad = await client.post("/api/v1/checkins", json=checkin(stay.id, **{field: value}), headers=auth(worker))
        assert bad.status_code == 422, bad.text
        assert bad.json()["field"] == field and bad.json()["code"] == "implausible_value"
    future = await client.post("/api/v1/checkins", json=checkin(stay.id, recorded_at=(datetime.now(UTC) + timedelta(hours=3)).isoformat()), headers=auth(worker))
    assert future.status_code == 422 and future.json()["field"] == "recorded_at"
    unknown_symptom = await client.post("/api/v1/checkins", json=checkin(stay.id, symptoms=["headache"]), headers=auth(worker))
    assert unknown_symptom.status_code == 400 and unknown_symptom.json()["code"] == "invalid_request"
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checkins") == 0


async def test_idempotency_key_header(client, auth, db, settings):
    site_id, (stay, _) = await ward(db, settings)
    worker = staff(site_id)
    body = checkin(stay.id)
    del body["id"]
    headers = {**auth(worker), "Idempotency-Key": "phone-1-17"}
    first = await client.post("/api/v1/checkins", json=body, headers=headers)
    again = await client.post("/api/v1/checkins", json=body, headers=headers)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    other = await client.post("/api/v1/checkins", json={**body, "pulse": 80}, headers=headers)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checkins") == 1


async def test_single_checkin_answered_directly_as_its_handler_answers(client, auth, db, settings):
    """Without an Idempotency-Key the check-in is answered by the HTTP edge (service.http.direct),
    not by Litestar's handler, which answers the keyed one: same status, headers and fields; a body
    that is no JSON at all still reaches Litestar's decoding and its 400."""
    site_id, (stay, _) = await ward(db, settings)
    worker = staff(site_id)
    direct = await client.post("/api/v1/checkins", json=checkin(stay.id), headers={**auth(worker), "X-Request-ID": "req-direct"})
    keyed = await client.post("/api/v1/checkins", json=checkin(stay.id), headers={**auth(worker), "Idempotency-Key": "phone-1-18"})
    assert direct.status_code == keyed.status_code == 201, direct.text
    assert direct.headers["content-type"] == keyed.headers["content-type"] == "application/json"
    assert int(direct.headers["content-length"]) == len(direct.content)
    assert direct.headers["x-request-id"] == "req-direct"
    assert direct.json().keys() == keyed.json().keys() and direct.json()["recorded_by"] == worker.ref
    garbled = await client.post("/api/v1/checkins", content=b'{"stay_id": ', headers={**auth(worker), "Content-Type": "application/json"})
    assert garbled.status_code == 400 and garbled.json()["code"] == "invalid_request"
    anonymous = await client.post("/api/v1/checkins", json=checkin(stay.id))
    assert anonymous.status_code == 401
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checkins") == 2


async def test_batch_stores_good_items_and_names_the_bad_ones(client, auth, db, settings):
    site_id, (stay, other) = await ward(db, settings, days_ago=1)
    worker = staff(site_id)
    items = [checkin(stay.id if i % 2 else other.id, recorded_at=(datetime.now(UTC) - timedelta(hours=i)).isoformat()) for i in range(10)]
    items[2]["temperature_c"] = 51
    items[5] = {k: v for k, v in items[5].items() if k != "recorded_at"}
    items[7]["stay_id"] = str(uuid.uuid4())
    response = await client.post("/api/v1/checkins/batch", json={"checkins": items}, headers=auth(worker))
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["created"], result["replayed"], result["failed"]) == (7, 0, 3)
    failed = {i["index"]: i["error"] for i in result["items"] if i["status"] == "failed"}
    assert failed[2]["field"] == "temperature_c" and failed[5]["field"] == "recorded_at" and failed[7]["code"] == "stay_not_found"
    assert [i["index"] for i in result["items"]] == list(range(10))
    # the phone resends everything (fixed): the 7 stored replay, the 3 are stored now
    items[2]["temperature_c"] = 37.0
    items[5]["recorded_at"] = datetime.now(UTC).isoformat()
    items[7]["stay_id"] = str(stay.id)
    resent = (await client.post("/api/v1/checkins/batch", json={"checkins": items}, headers=auth(worker))).json()
    assert (resent["created"], resent["replayed"], resent["failed"]) == (3, 7, 0)
    # compact by default: ids and outcomes; the stored records on request
    assert {i["id"] for i in resent["items"]} == {i["id"] for i in items} and not any("checkin" in i for i in resent["items"])
    full = (await client.post("/api/v1/checkins/batch?records=true", json={"checkins": items}, headers=auth(worker))).json()
    assert (full["created"], full["replayed"]) == (0, 10)
    assert [i["checkin"]["id"] for i in full["items"]] == [i["id"] for i in items]
    assert full["items"][1]["checkin"]["stay_id"] == str(stay.id)
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checkins") == 10
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'checkin.record'") == 10


async def test_alert_rule_boundaries(db, settings):
    site_id, admitted = await ward(db, settings, residents=6, floors={2: (6, 1)})
    worker = staff(site_id)
    now = datetime.now(UTC)
    readings = [
        {"temperature_c": 37.2},
        {"temperature_c": 37.3},
        {"spo2": 94},
        {"spo2": 93},
        {"symptoms": ["cough", "fatigue"]},
        {"symptoms": ["cough", "loss_of_taste_or_smell"]},
    ]
    async with db.transaction() as conn:
        batch = await health.record_checkin_batch(
            conn, worker, [{"stay_id": str(s.id), "recorded_at": now.isoformat(), **r} for s, r in zip(admitted, readings, strict=True)]
        )
    assert batch.created == 6
    found = [await _alerts(db, s.id) for s in admitted]
    assert found == [[], [("fever", "open")], [], [("low_spo2", "open")], [], [("symptoms", "open")]]
    async with db.connection() as conn:
        events = await conn.fetch("SELECT site_id, data FROM events WHERE type = 'health.alert_raised'")
    assert len(events) == 3 and all(e["site_id"] == site_id for e in events)


async def test_alert_acknowledge_and_resolve_by_medic(client, auth, db, settings):
    site_id, (stay, _) = await ward(db, settings)
    worker = staff(site_id)
    await client.post("/api/v1/checkins", json=checkin(stay.id, temperature_c=38.5), headers=auth(worker))
    listed = (await client.get(f"/api/v1/sites/{site_id}/alerts", params={"state": "open"}, headers=auth(worker))).json()
    (alert,) = listed["items"]
    assert alert["kind"] == "fever" and alert["detail"]["temperature_c"] == 38.5
    ack = await client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", json={"version": 1}, headers=auth(worker))
    assert ack.status_code == 200 and ack.json()["state"] == "acknowledged"
    stale = await client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", json={"version": 1}, headers=auth(worker))
    assert stale.status_code == 409
    not_medic = await client.post(f"/api/v1/alerts/{alert['id']}/resolve", json={"version": 2, "note": "paracetamol"}, headers=auth(worker))
    assert not_medic.status_code == 403
    medic = staff(site_id, Role.MEDIC)
    no_note = await client.post(f"/api/v1/alerts/{alert['id']}/resolve", json={"version": 2}, headers=auth(medic))
    assert no_note.status_code == 422 and no_note.json()["field"] == "note"
    done = await client.post(f"/api/v1/alerts/{alert['id']}/resolve", json={"version": 2, "note": "paracetamol, rechecked"}, headers=auth(medic))
    assert done.status_code == 200 and done.json()["state"] == "resolved" and done.json()["resolved_by"] == medic.ref
    outsider = make_principal(Role.SITE_STAFF, [uuid.uuid4()])
    assert (await client.get(f"/api/v1/sites/{site_id}/alerts", headers=auth(outsider))).status_code == 404
    assert (await client.get(f"/api/v1/alerts/{alert['id']}", headers=auth(outsider))).status_code == 404


async def test_checkin_events_reach_redis_subscribers(client, auth, db, settings):
    import asyncio as aio

    import msgspec
    import redis.asyncio as aioredis

    site_id, (stay, _) = await ward(db, settings)
    subscriber = aioredis.Redis.from_url(settings.redis_url)
    pubsub = subscriber.pubsub()
    await pubsub.subscribe(f"{settings.redis_prefix}site:{site_id}")
    try:
        assert (await client.post("/api/v1/checkins", json=checkin(stay.id, temperature_c=39.0), headers=auth(staff(site_id)))).status_code == 201
        received = []
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message:
                received.append([e["type"] for e in msgspec.json.decode(message["data"])])
                break
            await aio.sleep(0)
        # one message for the commit, carrying both of its events
        assert [sorted(r) for r in received] == [["health.alert_raised", "health.checkin_recorded"]]
    finally:
        await pubsub.aclose()
        await subscriber.aclose()


async def test_checkin_before_admission_is_refused_on_both_paths(client, auth, db, settings):
    site_id, (stay, _) = await ward(db, settings)
    worker = auth(staff(site_id))
    body = checkin(stay.id, recorded_at="1970-01-01T08:00:00+08:00")
    refused = await client.post("/api/v1/checkins", json=body, headers=worker)
    assert refused.status_code == 422 and refused.json()["code"] == "recorded_before_admission"
    assert refused.json()["field"] == "recorded_at"
    batch = await client.post("/api/v1/checkins/batch", json={"checkins": [body]}, headers=worker)
    assert batch.json()["items"][0]["error"]["code"] == "recorded_before_admission"
    mutation = "mutation($input: RecordCheckinInput!) { recordCheckin(input: $input) { userErrors { code field } } }"
    variables = {"input": {"stayId": str(stay.id), "recordedAt": body["recorded_at"], "symptoms": [], "note": ""}}
    answer = (await client.post("/graphql", json={"query": mutation, "variables": variables}, headers=worker)).json()
    assert [e["code"] for e in answer["data"]["recordCheckin"]["userErrors"]] == ["recorded_before_admission"]
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checkins") == 0


async def test_any_utc_offset_the_phone_sends_is_stored_at_its_instant(client, auth, db, settings):
    """RFC 3339 allows offsets up to ±23:59, PostgreSQL only ±15:59 (it answered 500, and failed a whole batch)."""
    site_id, (stay, _) = await ward(db, settings, days_ago=1)
    worker = auth(staff(site_id))
    instant = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    far_east = instant.astimezone(timezone(timedelta(hours=21, minutes=29))).isoformat()
    single = await client.post("/api/v1/checkins", json=checkin(stay.id, recorded_at=far_east), headers=worker)
    assert single.status_code == 201, single.text
    assert datetime.fromisoformat(single.json()["recorded_at"]) == instant
    items = [checkin(stay.id, recorded_at=instant.astimezone(timezone(timedelta(hours=-20))).isoformat()), checkin(stay.id)]
    batch = await client.post("/api/v1/checkins/batch", json={"checkins": items}, headers=worker)
    assert batch.status_code == 200 and batch.json()["created"] == 2, batch.text
    mutation = "mutation($input: RecordCheckinInput!) { recordCheckin(input: $input) { checkin { id } userErrors { code field } } }"
    variables = {"input": {"stayId": str(stay.id), "recordedAt": far_east, "symptoms": [], "note": ""}}
    answer = (await client.post("/graphql", json={"query": mutation, "variables": variables}, headers=worker)).json()
    assert answer["data"]["recordCheckin"]["userErrors"] == [] and answer["data"]["recordCheckin"]["checkin"]["id"], answer
    # an instant before year 1 in UTC is no time at all: 422 naming the field, the batch's other items stored
    before_time = "0001-01-01T00:00:00+01:00"
    refused = await client.post("/api/v1/checkins", json=checkin(stay.id, recorded_at=before_time), headers=worker)
    assert refused.status_code == 422 and (refused.json()["code"], refused.json()["field"]) == ("invalid_value", "recorded_at")
    mixed_items = [checkin(stay.id, recorded_at=before_time), checkin(stay.id)]
    mixed = (await client.post("/api/v1/checkins/batch", json={"checkins": mixed_items}, headers=worker)).json()
    assert (mixed["created"], mixed["failed"]) == (1, 1) and mixed["items"][0]["error"]["code"] == "invalid_value"
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checkins") == 5
