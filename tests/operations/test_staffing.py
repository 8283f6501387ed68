"""The staff closed loop (issue 17 part 3): roster, staff check-ins through the residents' alert rules,
swabs and the testing worklist, closed-loop status, and staff exposure when a resident turns positive."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from service.access.model import Role
from service.errors import DomainError
from service.health import service as health
from service.health.model import LabUpload, SampleCreate
from service.operations.staffing import service as staffing
from service.operations.staffing.model import (
    ExposureDecision,
    ShiftCreate,
    StaffCheckinCreate,
    StaffResultEntry,
    StaffSampleCreate,
    StatusChange,
    WorkerCreate,
)
from tests.conftest import make_principal
from tests.transfers.helpers import make_ward

@pytest.fixture
def now():
    # Per test, not at import: over a long suite an import-time clock falls before the ward's admissions.
    return datetime.now(UTC).replace(microsecond=0)


async def in_tx(db, fn):
    async with db.transaction() as conn:
        return await fn(conn)


async def add_worker(db, manager, site_id, post="medical", red_zone=False, name="刘医生"):
    return await in_tx(db, lambda c: staffing.add_worker(c, manager, WorkerCreate(site_id=site_id, name=name, post=post, red_zone=red_zone)))


async def gql(client, auth, principal, query, **variables):
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=auth(principal))
    assert response.status_code == 200, response.text
    return response.json()


async def test_roster_for_every_role_staff_health_for_medics_and_managers_only(now, client, db, settings, auth):
    ward = await make_ward(db, settings)
    manager = make_principal(Role.SITE_MANAGER, [ward.site_id])
    worker_id = uuid.uuid4()
    created = await in_tx(db, lambda c: staffing.add_worker(c, manager, WorkerCreate(site_id=ward.site_id, name="孙保洁", post="cleaning", red_zone=True, id=worker_id)))  # type: ignore[arg-type]
    again = await in_tx(db, lambda c: staffing.add_worker(c, manager, WorkerCreate(site_id=ward.site_id, name="孙保洁", post="cleaning", red_zone=True, id=worker_id)))  # type: ignore[arg-type]
    assert again.id == created.id and created.test_every_days == 1
    with pytest.raises(DomainError) as refused:
        await add_worker(db, ward.staff, ward.site_id)
    assert refused.value.code == "role_not_allowed"
    start = now - timedelta(hours=9)
    await in_tx(db, lambda c: staffing.add_shift(c, manager, ShiftCreate(worker_id=worker_id, starts_at=start, ends_at=start + timedelta(hours=8), floor=2)))
    with pytest.raises(DomainError) as overlap:
        await in_tx(db, lambda c: staffing.add_shift(c, manager, ShiftCreate(worker_id=worker_id, starts_at=start + timedelta(hours=4), ends_at=start + timedelta(hours=12))))
    assert overlap.value.code == "shift_overlap"
    query = """query($site: UUID!, $since: DateTime!, $until: DateTime!) { roster(siteId: $site, since: $since, until: $until) {
      post redZone floor worker { name testEveryDays loop { status } } } }"""
    period = {"site": str(ward.site_id), "since": (now - timedelta(days=1)).isoformat(), "until": now.isoformat()}
    seen = await gql(client, auth, ward.medic, query, **period)
    assert seen["data"]["roster"] == [{"post": "CLEANING", "redZone": True, "floor": 2,
                                       "worker": {"name": "孙保洁", "testEveryDays": 1, "loop": {"status": "RESTING"}}}]
    # site staff see the roster, not the closed-loop status (staff health data)
    masked = await gql(client, auth, ward.staff, query, **period)
    assert masked["data"]["roster"][0]["worker"]["loop"] is None
    assert {e["extensions"]["code"] for e in masked["errors"]} == {"role_not_allowed"}
    # nor does the command centre: staff health data stays with the site's medics and managers
    command = await gql(client, auth, make_principal(Role.COMMAND), "query($s: UUID!) { staffTestsDue(siteId: $s) { name } }", s=str(ward.site_id))
    assert command["data"] is None and command["errors"][0]["extensions"]["code"] == "role_not_allowed"


@pytest.mark.parametrize(
    "reading",
    [
        {"temperature_c": 37.3}, {"temperature_c": 37.2}, {"temperature_c": 36.6, "spo2": 93}, {"temperature_c": 36.6, "spo2": 94},
        {"temperature_c": 36.6, "symptoms": ["cough", "sore_throat"]}, {"temperature_c": 36.6, "symptoms": ["cough", "fatigue"]},
        {"temperature_c": 38.5, "spo2": 90, "symptoms": ["fever", "shortness_of_breath"]},
    ],
)
async def test_staff_checkins_go_through_the_residents_rules(now, db, settings, reading):
    """The same reading gives a worker the findings it gives a resident the alerts (one rules engine)."""
    ward = await make_ward(db, settings)
    worker = await add_worker(db, make_principal(Role.SITE_MANAGER, [ward.site_id]), ward.site_id)
    now = datetime.now(UTC)  # not the module's NOW: a resident's check-in may not precede the admission just made
    checkin = await in_tx(db, lambda c: staffing.record_checkin(c, ward.medic, msgspec.convert(
        {"worker_id": str(worker.id), "recorded_at": now.isoformat(), **reading}, StaffCheckinCreate)))
    resident = {"id": str(uuid.uuid4()), "stay_id": str(ward.patient.id), "recorded_at": now.isoformat(), "pulse": 70, **reading}
    await in_tx(db, lambda c: health.record_checkin_in(c, ward.medic, msgspec.convert(resident, health.CheckinCreate)))
    async with db.connection() as conn:
        alerts = {r["kind"] for r in await conn.fetch("SELECT kind FROM alerts WHERE stay_id = $1", ward.patient.id)}
        flagged = await conn.fetchval("SELECT count(*) FROM events WHERE type = 'staff.checkin_flagged'")
    assert set(checkin.findings) == alerts
    assert flagged == (1 if alerts else 0)


async def test_the_testing_worklist_follows_each_post_and_the_red_zone(now, db, settings):
    ward = await make_ward(db, settings)
    manager = make_principal(Role.SITE_MANAGER, [ward.site_id])
    red = await add_worker(db, manager, ward.site_id, "security", red_zone=True, name="A")
    driver = await add_worker(db, manager, ward.site_id, "logistics", name="B")
    never = await add_worker(db, manager, ward.site_id, "catering", name="C")
    yesterday = now - timedelta(days=1)
    for w in (red, driver):
        await in_tx(db, lambda c, w=w: staffing.record_sample(c, ward.medic, StaffSampleCreate(worker_id=w.id, barcode=f"S-{w.name}", collected_at=yesterday)))
    async with db.connection() as conn:
        due = await staffing.tests_due(conn, ward.medic, ward.site_id)
    today = now.astimezone(ZoneInfo("Asia/Shanghai")).date()
    by_name = {d.name: d for d in due}
    assert set(by_name) == {"A", "C"}  # the driver is tested every 3 days
    assert by_name["C"].last_swab_at is None and by_name["C"].due_on == today
    assert by_name["A"].test_every_days == 1 and by_name["A"].due_on <= today
    with pytest.raises(DomainError) as staff_refused:
        async with db.connection() as conn:
            await staffing.tests_due(conn, ward.staff, ward.site_id)
    assert staff_refused.value.code == "role_not_allowed"


async def test_a_positive_staff_swab_isolates_the_worker(now, db, settings):
    ward = await make_ward(db, settings)
    worker = await add_worker(db, make_principal(Role.SITE_MANAGER, [ward.site_id]), ward.site_id)
    swab = await in_tx(db, lambda c: staffing.record_sample(c, ward.medic, StaffSampleCreate(worker_id=worker.id, barcode="S-1", collected_at=now)))
    entry = StaffResultEntry(staff_sample_id=swab.id, result="positive")  # type: ignore[arg-type]
    resulted = await in_tx(db, lambda c: staffing.record_result(c, ward.medic, entry))
    assert resulted.result.value == "positive"
    assert (await in_tx(db, lambda c: staffing.record_result(c, ward.medic, entry))).resulted_at == resulted.resulted_at
    with pytest.raises(DomainError) as conflict:
        await in_tx(db, lambda c: staffing.record_result(c, ward.medic, msgspec.structs.replace(entry, result="negative")))
    assert conflict.value.code == "result_conflict"
    async with db.connection() as conn:
        loop = (await staffing.loops(conn, ward.medic, [worker.id]))[worker.id]
    assert loop.status.value == "isolating" and loop.isolation_until >= date.today() + timedelta(days=13)
    assert loop.last_result.value == "positive"
    with pytest.raises(DomainError) as no_end:
        await in_tx(db, lambda c: staffing.set_status(c, ward.medic, StatusChange(worker_id=worker.id, status="isolating", version=loop.version)))  # type: ignore[arg-type]
    assert no_end.value.code == "isolation_until_required"
    back = await in_tx(db, lambda c: staffing.set_status(c, ward.medic, StatusChange(worker_id=worker.id, status="resting", version=loop.version)))  # type: ignore[arg-type]
    assert back.status.value == "resting" and back.isolation_until is None
    async with db.connection() as conn:
        audited = await conn.fetchval("SELECT count(*) FROM audit_log WHERE action LIKE 'staff_%' AND subject_id = $1", worker.id)
    assert audited >= 4  # swab, result, isolation, release


async def test_a_resident_turning_positive_opens_the_review_of_the_floors_staff(now, db, settings):
    ward = await make_ward(db, settings)  # the patient lives on floor 2
    manager = make_principal(Role.SITE_MANAGER, [ward.site_id])
    on_floor = await add_worker(db, manager, ward.site_id, "medical", name="楼层二")
    elsewhere = await add_worker(db, manager, ward.site_id, "medical", name="楼层三")
    start = now - timedelta(days=1)
    for w, floor in ((on_floor, 2), (elsewhere, 3)):
        await in_tx(db, lambda c, w=w, floor=floor: staffing.add_shift(c, manager, ShiftCreate(worker_id=w.id, starts_at=start, ends_at=start + timedelta(hours=8), floor=floor)))
    await in_tx(db, lambda c: health.record_samples(c, ward.staff, [SampleCreate(stay_id=ward.patient.id, barcode="POS-1", collected_at=now)]))
    lab = make_principal(Role.LAB, [ward.site_id])
    upload = msgspec.convert({"results": [{"barcode": "POS-1", "result": "positive", "resulted_at": now.isoformat()}]}, LabUpload)
    for _ in range(2):  # the same result again opens nothing twice
        await in_tx(db, lambda c: health.upload_results(c, lab, upload))
    async with db.connection() as conn:
        opened = await staffing.list_exposures(conn, ward.medic, ward.site_id)
    assert [(e.worker_id, e.floor, e.source_stay_id) for e in opened] == [(on_floor.id, 2, ward.patient.id)]
    exposure = opened[0]
    with pytest.raises(DomainError) as no_end:
        await in_tx(db, lambda c: staffing.decide_exposure(c, ward.medic, exposure.id, ExposureDecision(state="isolated", version=1)))  # type: ignore[arg-type]
    assert no_end.value.code == "isolation_until_required"
    until = date.today() + timedelta(days=7)
    decided = await in_tx(db, lambda c: staffing.decide_exposure(c, ward.medic, exposure.id, ExposureDecision(state="isolated", version=1, isolation_until=until)))  # type: ignore[arg-type]
    assert decided.state.value == "isolated" and decided.decided_by == ward.medic.ref
    async with db.connection() as conn:
        loop = (await staffing.loops(conn, ward.medic, [on_floor.id]))[on_floor.id]
        types = [r["type"] for r in await conn.fetch("SELECT type FROM events WHERE type LIKE 'staff.exposure%' ORDER BY id")]
    assert (loop.status.value, loop.isolation_until) == ("isolating", until)
    assert types == ["staff.exposure_review_opened", "staff.exposure_isolated"]
    # another site's medic: not found
    stranger = make_principal(Role.MEDIC, [uuid.uuid4()])
    with pytest.raises(DomainError) as hidden:
        await in_tx(db, lambda c: staffing.decide_exposure(c, stranger, exposure.id, ExposureDecision(state="cleared", version=2)))  # type: ignore[arg-type]
    assert hidden.value.code == "staff_exposure_not_found"
