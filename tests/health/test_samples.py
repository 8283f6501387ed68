from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from service.access.model import Role
from service.errors import Conflict, RuleViolated
from service.health import service as health
from service.health.model import LabUpload, PoolCreate, PoolMember, ReviewDecision, SampleCreate
from service.sites import service as sites
from service.sites.model import RoomStatus
from service.stays import service as stays
from tests.conftest import make_principal
from tests.health.helpers import ward
from tests.stays.helpers import handover_to, make_street, staff

NOW = datetime.now(UTC)


def swab(stay, barcode, day=None, **fields):
    return SampleCreate(stay_id=stay.id, barcode=barcode, collected_at=fields.pop("collected_at", NOW), scheduled_day=day, **fields)


async def upload(db, site_id, *results):
    lab = make_principal(Role.LAB, [site_id])
    async with db.transaction() as conn:
        items = [{"barcode": b, "result": r, "resulted_at": NOW.isoformat(), "ct_values": [31.5] if r == "positive" else []} for b, r in results]
        return await health.upload_results(conn, lab, msgspec.convert({"results": items}, LabUpload))


async def blockers(db, stay):
    async with db.connection() as conn:
        return await stays.release_blockers(conn, stay, now=stay.planned_release_at + timedelta(hours=1))


async def test_release_waits_for_every_scheduled_test_negative(db, settings):
    site_id, (stay, _) = await ward(db, settings, days_ago=8)  # close contact: tests on days 1, 2, 3, 5, 7
    worker = staff(site_id)
    assert await blockers(db, stay) == ["scheduled_test_missing"]
    async with db.transaction() as conn:
        outcomes = await health.record_samples(conn, worker, [swab(stay, f"BC-{d}", d) for d in (1, 2, 3, 5, 7)])
    assert [o.status for o in outcomes] == ["created"] * 5
    await upload(db, site_id, *[(f"BC-{d}", "negative") for d in (1, 2, 3, 5)])
    assert await blockers(db, stay) == ["scheduled_test_not_negative"]  # day 7 still pending
    with pytest.raises(RuleViolated) as refused:
        async with db.transaction() as conn:
            await stays.release(conn, worker, settings, stay.id, now=stay.planned_release_at + timedelta(hours=1))
    assert refused.value.extra["reasons"] == ["scheduled_test_not_negative"]
    assert refused.value.extra["blockers"] == [{"reason": "scheduled_test_not_negative", "day": 7}]
    await upload(db, site_id, ("BC-7", "negative"))
    assert await blockers(db, stay) == []
    street = await make_street(db)
    async with db.transaction() as conn:
        released = await stays.release(conn, worker, settings, stay.id, handover=handover_to(street), now=stay.planned_release_at + timedelta(hours=1))
    assert released.outcome == "released"


async def test_lab_upload_is_idempotent_and_reports_unknown_and_conflicting_barcodes(db, settings):
    site_id, (stay, _) = await ward(db, settings, days_ago=2)
    other_site, (foreign, _) = await ward(db, settings, code="LJ-02", days_ago=2)
    async with db.transaction() as conn:
        await health.record_samples(conn, staff(site_id), [swab(stay, "LAB-0001", 1), swab(stay, "LAB-0002", 2)])
        await health.record_samples(conn, staff(other_site), [swab(foreign, "LAB-9999", 1)])
    first = await upload(db, site_id, ("LAB-0001", "negative"), ("NOPE-1", "negative"), ("LAB-9999", "negative"), ("LAB-0002", "invalid"))
    assert [i.status for i in first.items] == ["recorded", "unknown_barcode", "unknown_barcode", "recorded"]
    assert (first.recorded, first.unknown) == (2, 2)
    again = await upload(db, site_id, ("LAB-0001", "negative"), ("NOPE-1", "negative"), ("LAB-0002", "invalid"))
    assert [i.status for i in again.items] == ["unchanged", "unknown_barcode", "unchanged"]
    changed = await upload(db, site_id, ("LAB-0001", "positive"))
    assert changed.items[0].status == "conflict"
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT barcode, result FROM samples ORDER BY barcode")
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'sample.result'") == 2
    assert [(r["barcode"], r["result"]) for r in rows] == [("LAB-0001", "negative"), ("LAB-0002", "invalid"), ("LAB-9999", "pending")]


async def test_sample_replay_and_barcode_taken(db, settings):
    site_id, (stay, other) = await ward(db, settings, days_ago=1)
    worker = staff(site_id)
    first = swab(stay, "DUP-0001", 1)
    async with db.transaction() as conn:
        (created,) = await health.record_samples(conn, worker, [first])
    async with db.transaction() as conn:
        replayed, taken, bad = await health.record_samples(
            conn, worker, [SampleCreate(**{**{f: getattr(first, f) for f in first.__struct_fields__}, "id": created.sample.id}),
                           swab(other, "DUP-0001", 1), {"stay_id": str(stay.id), "barcode": "x", "collected_at": NOW.isoformat()}]
        )
    assert replayed.status == "replayed" and replayed.sample == created.sample
    assert taken.status == "failed" and taken.error.code == "barcode_taken"
    assert bad.status == "failed" and bad.error.field == "barcode"


async def test_positive_pool_opens_retests_for_its_members(db, settings):
    site_id, admitted = await ward(db, settings, residents=3, days_ago=1)
    worker = staff(site_id)
    async with db.transaction() as conn:
        pool = await health.record_pool(
            conn, worker, PoolCreate(site_id=site_id, barcode="POOL-0001", collected_at=NOW, members=[PoolMember(stay_id=s.id) for s in admitted])
        )
        replay = await health.record_pool(
            conn, worker, PoolCreate(id=pool.id, site_id=site_id, barcode="POOL-0001", collected_at=NOW, members=[PoolMember(stay_id=s.id) for s in admitted])
        )
    assert pool.members == 3 and replay == pool
    with pytest.raises(msgspec.ValidationError):  # an 11-swab pool is refused before anything is stored
        msgspec.convert({"site_id": str(site_id), "barcode": "POOL-0002", "collected_at": NOW.isoformat(),
                                       "members": [{"stay_id": str(admitted[0].id)}] * 11}, PoolCreate)
    result = await upload(db, site_id, ("POOL-0001", "positive"))
    assert result.items[0].status == "recorded" and result.items[0].retests_opened == 3
    async with db.connection() as conn:
        due = await health.swabs_due(conn, worker, site_id)
        assert {d.stay_id for d in due if d.retest} == {s.id for s in admitted}
        assert await conn.fetchval("SELECT count(*) FROM alerts") == 0  # a pool is not a case
        rooms = {r.status for r in await sites.list_site_rooms(conn, worker, site_id)}
    assert RoomStatus.SEALED not in rooms
    assert "retest_pending" in await blockers(db, admitted[0])
    async with db.transaction() as conn:
        await health.record_samples(conn, worker, [swab(s, f"RT-000{i}", 1) for i, s in enumerate(admitted)])
    await upload(db, site_id, *[(f"RT-000{i}", "negative") for i in range(3)])
    assert "retest_pending" not in await blockers(db, admitted[0])
    async with db.connection() as conn:
        assert not [d for d in await health.swabs_due(conn, worker, site_id) if d.retest]


async def test_positive_swab_alerts_seals_room_and_reviews_contacts(db, settings):
    # rooms 201 (2 beds: a household of two) and 202 on floor 2, 301 on floor 3
    site_id, (case, mate, neighbour, upstairs) = await ward(
        db, settings, residents=4, floors={2: (2, 2), 3: (1, 1)}, households=["h1", "h1", None, None], rooms=["201", "201", "202", "301"], days_ago=3
    )
    worker = staff(site_id)
    async with db.transaction() as conn:
        await health.record_samples(conn, worker, [swab(case, "POS-0001", 3)])
    await upload(db, site_id, ("POS-0001", "positive"))
    async with db.connection() as conn:
        alerts = await conn.fetch("SELECT kind, stay_id, site_id FROM alerts")
        room = await sites.get_room(conn, worker, case.room_id)
        reviews = await health.list_exposure_reviews(conn, worker, site_id)
    assert [(a["kind"], a["stay_id"]) for a in alerts] == [("positive", case.id)]
    assert room.status is RoomStatus.SEALED
    relations = {r.stay_id: r.relation for r in reviews}
    assert relations.get(mate.id) == "roommate" and relations.get(neighbour.id) == "floor_neighbour" and upstairs.id not in relations
    assert "test_positive" in await blockers(db, case)
    # a second upload (lab retry) opens nothing new
    await upload(db, site_id, ("POS-0001", "positive"))
    async with db.connection() as conn:
        assert len(await health.list_exposure_reviews(conn, worker, site_id)) == len(reviews)
    medic = staff(site_id, Role.MEDIC)
    review = next(r for r in reviews if r.stay_id == mate.id)
    async with db.transaction() as conn:
        confirmed = await health.decide_exposure_review(conn, medic, review.id, ReviewDecision(version=1, confirm=True, note="shared room"))
        extended = await stays.get_stay(conn, medic, mate.id)
    assert confirmed.state == "confirmed" and extended.planned_release_at > mate.planned_release_at
    with pytest.raises(Conflict):
        async with db.transaction() as conn:
            await health.decide_exposure_review(conn, medic, review.id, ReviewDecision(version=2, confirm=False))
    other = next(r for r in reviews if r.stay_id == neighbour.id)
    async with db.transaction() as conn:
        dismissed = await health.decide_exposure_review(conn, medic, other.id, ReviewDecision(version=1, confirm=False, note="other wing"))
        unchanged = await stays.get_stay(conn, medic, neighbour.id)
    assert dismissed.state == "dismissed" and unchanged.planned_release_at == neighbour.planned_release_at


async def test_exposure_review_for_a_departed_transfer(db, settings):
    """What transfers call when a transfer departs: the stay is closed first, then its contacts reviewed."""
    site_id, (gone, mate) = await ward(db, settings, residents=2, floors={2: (1, 2)}, households=["h", "h"])
    medic = staff(site_id, Role.MEDIC)
    async with db.transaction() as conn:
        await stays.close_for_transfer(conn, medic, gone.id, infectious=True)
        reviews = await health.open_exposure_review(conn, medic, gone.id, reason="transfer departed", source="transfer")
        again = await health.open_exposure_review(conn, medic, gone.id, reason="transfer departed", source="transfer")
    assert [(r.stay_id, r.relation, r.source, r.state) for r in reviews] == [(mate.id, "roommate", "transfer", "open")]
    assert again == []
    outsider = make_principal(Role.MEDIC, [])
    async with db.transaction() as conn:
        with pytest.raises(Exception) as hidden:
            await health.open_exposure_review(conn, outsider, gone.id, reason="x", source="transfer")
    assert getattr(hidden.value, "code", None) == "stay_not_found"


async def test_swabs_scheduled_forecast(db, settings):
    site_id, admitted = await ward(db, settings, residents=2, days_ago=0)  # today is day 1 for both
    async with db.transaction() as conn:
        await health.record_samples(conn, staff(site_id), [swab(admitted[0], "FC-0001", 1)])
    async with db.connection() as conn:
        # days 1, 2, 3 ahead: 2 residents x 3 test days, minus the one swab already taken
        assert await health.swabs_scheduled(conn, [site_id], 3) == {site_id: 5}
        assert await health.swabs_scheduled(conn, [], 3) == {}
        assert await health.swabs_scheduled(conn, None, 1) == {site_id: 1}


async def test_lab_rest_upload(client, auth, db, settings):
    site_id, (stay, _) = await ward(db, settings, days_ago=1)
    async with db.transaction() as conn:
        await health.record_samples(conn, staff(site_id), [swab(stay, "REST-0001", 1)])
    lab = make_principal(Role.LAB, [site_id])
    body = {"results": [{"barcode": "REST-0001", "result": "negative", "resulted_at": NOW.isoformat(), "ct_values": []},
                        {"barcode": "UNKNOWN-1", "result": "positive", "resulted_at": NOW.isoformat()}]}
    headers = {**auth(lab), "Idempotency-Key": "upload-1"}
    first = await client.post("/api/v1/lab/results", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert [(i["barcode"], i["status"]) for i in first.json()["items"]] == [("REST-0001", "recorded"), ("UNKNOWN-1", "unknown_barcode")]
    replay = await client.post("/api/v1/lab/results", json=body, headers=headers)
    assert replay.json() == first.json()
    assert (await client.post("/api/v1/lab/results", json=body, headers=auth(staff(site_id)))).status_code == 403
    bad = await client.post("/api/v1/lab/results", json={"results": [{"barcode": "REST-0001", "result": "maybe", "resulted_at": NOW.isoformat()}]}, headers=auth(lab))
    assert bad.status_code == 400


async def test_worklist_lists_every_overdue_scheduled_swab_from_the_release_rule(db, settings):
    """A day-9 stay that missed all five scheduled swabs is on the worklist (issue 16): the worklist and the
    release check read one rule, so a stay blocked for a missing swab is always on the list to swab."""
    site_id, (stay, fresh) = await ward(db, settings, days_ago=8)  # close contact: tests on days 1, 2, 3, 5, 7; today day 9
    worker = staff(site_id)
    async with db.connection() as conn:
        due = {d.stay_id: d for d in await health.swabs_due(conn, worker, site_id)}
    assert due[stay.id].quarantine_day == 9 and due[stay.id].overdue_days == [1, 2, 3, 5, 7] and not due[stay.id].retest
    assert await blockers(db, stay) == ["scheduled_test_missing"]
    async with db.transaction() as conn:
        await health.record_samples(conn, worker, [swab(stay, f"OD-{d}", d) for d in (1, 2, 3, 5)])
        assert [d.overdue_days for d in await health.swabs_due(conn, worker, site_id) if d.stay_id == stay.id] == [[7]]
        await health.record_samples(conn, worker, [swab(stay, "OD-7", 7)])
        # Swabbed, results pending: nothing left to swab, release still waits for the results.
        assert stay.id not in {d.stay_id for d in await health.swabs_due(conn, worker, site_id)}
    assert await blockers(db, stay) == ["scheduled_test_not_negative"]
    await upload(db, site_id, ("OD-1", "invalid"))
    async with db.connection() as conn:  # an invalid swab does not count: day 1 is due again
        assert [d.overdue_days for d in await health.swabs_due(conn, worker, site_id) if d.stay_id == stay.id] == [[1]]
    await upload(db, site_id, *[(f"OD-{d}", "negative") for d in (2, 3, 5, 7)])
    async with db.transaction() as conn:
        await health.record_samples(conn, worker, [swab(stay, "OD-1B", 1)])
    await upload(db, site_id, ("OD-1B", "negative"))
    assert await blockers(db, stay) == []
    async with db.connection() as conn:
        assert stay.id not in {d.stay_id for d in await health.swabs_due(conn, worker, site_id)}


async def test_release_blockers_list_every_reason_that_applies(db, settings):
    """Issue 16: not one reason but all of them, each scheduled test day on its own. Day 5 of a close contact
    (tests on days 1, 2, 3, 5, 7): day 1 positive, day 2 negative, day 3 never swabbed, day 5 in a positive pool."""
    site_id, (stay, roommate) = await ward(db, settings, days_ago=4)
    worker = staff(site_id)
    async with db.transaction() as conn:
        await health.record_samples(conn, worker, [swab(stay, "EV-1", 1), swab(stay, "EV-2", 2)])
        await health.record_pool(conn, worker, PoolCreate(site_id=site_id, barcode="EV-POOL", collected_at=NOW,
                                                          members=[PoolMember(stay_id=s.id) for s in (stay, roommate)]))
    await upload(db, site_id, ("EV-1", "positive"), ("EV-2", "negative"), ("EV-POOL", "positive"))
    async with db.connection() as conn:
        details = await stays.release_blocker_details(conn, stay)
        reasons = await stays.release_blockers(conn, stay)
    assert [(b.reason, b.day) for b in details] == [
        ("centralized_period_not_served", None), ("test_positive", None), ("retest_pending", None),
        ("scheduled_test_not_negative", 1), ("scheduled_test_missing", 3), ("scheduled_test_not_negative", 5),
    ]
    assert reasons == ["centralized_period_not_served", "test_positive", "retest_pending", "scheduled_test_not_negative", "scheduled_test_missing"]
    with pytest.raises(RuleViolated) as refused:
        async with db.transaction() as conn:
            await stays.release(conn, worker, settings, stay.id)
    assert refused.value.extra["reasons"] == reasons
    assert refused.value.extra["blockers"] == [msgspec.to_builtins(b) for b in details]
    assert refused.value.extra["blockers"][3] == {"reason": "scheduled_test_not_negative", "day": 1}
