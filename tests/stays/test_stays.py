"""Stays: ID numbers, residents and masking, admission, allocation, batches, regimes, calendar, leaving."""

from datetime import UTC, date, datetime, timedelta

import asyncpg
import msgspec
import pytest

from service.access.model import Role
from service.errors import from_database, Conflict, DomainError, Forbidden, InvalidInput, RuleViolated
from service.sites import service as sites
from service.sites.model import RoomStatus
from service.stays import service as stays
from service.stays.model import Admission, BatchAdmission, BatchMember, Extension, Move, RegimePatch, ResidentCreate, check_mainland_id
from tests.conftest import make_principal
from tests.stays.helpers import COMMAND, admission, handover_to, id_number, make_site, make_street, person, staff, without_health_blockers


# --- ID numbers -------------------------------------------------------------------


@pytest.mark.parametrize("number", ["11010519491231002X", "11010519491231002x", "440524188001010014", "500112199001010017"])
def test_valid_mainland_ids(number):
    assert check_mainland_id(number) == number.upper()


@pytest.mark.parametrize(
    "number",
    [
        "110105194912310021",  # wrong check digit
        "500112199001010015",  # wrong check digit
        "11010519491231002",  # 17 characters
        "1101051949123100211",  # 19 characters
        "110105194913310028",  # month 13
        "11010519491231002Y",  # not a check character
        "ABCDEFGHIJKLMNOPQR",
    ],
)
def test_invalid_mainland_ids(number):
    with pytest.raises(InvalidInput) as exc:
        check_mainland_id(number)
    assert exc.value.code == "invalid_id_number" and number not in exc.value.message


def test_helper_numbers_are_valid():
    assert check_mainland_id(id_number(date(1985, 6, 30), 123))
    passport = msgspec.convert({"name": "John", "document_type": "passport", "document_number": "E12345678"}, ResidentCreate)
    assert passport.birth_date is None


# --- residents -----------------------------------------------------------------------


async def test_resident_is_masked_searchable_and_revealed_with_audit(db, settings):
    site_id = await make_site(db, floors={3: (2, 1)})
    number = id_number(date(1990, 5, 17), 77)
    new = ResidentCreate(name="王小明", document_type="mainland_id", document_number=number, phone="13812345678", household_key="H1")
    async with db.transaction() as conn:
        stay = await stays.admit(conn, staff(site_id), settings, Admission(site_id=site_id, category="close_contact", resident=new))
        stored = await conn.fetchrow("SELECT * FROM residents WHERE id = $1", stay.resident_id)
    assert number not in str(dict(stored)) and "13812345678" not in str(dict(stored))
    async with db.connection() as conn:
        (found,) = await stays.find_residents(conn, staff(site_id), settings, number.lower())
        assert found.id == stay.resident_id
        assert found.name == "王**" and found.document_number == "*" * 14 + number[-4:] and found.phone == "*******5678"
        assert found.birth_year == 1990
        assert await stays.find_residents(conn, make_principal(Role.SITE_STAFF, []), settings, number) == []
        events = await conn.fetch("SELECT data::text AS d FROM events")
    assert not any(number in e["d"] or "王小明" in e["d"] or "13812345678" in e["d"] for e in events)

    with pytest.raises(Forbidden):
        async with db.transaction() as conn:
            await stays.reveal_resident(conn, staff(site_id), settings, stay.resident_id, "follow-up call")
    medic = staff(site_id, Role.MEDIC)
    with pytest.raises(InvalidInput):
        async with db.transaction() as conn:
            await stays.reveal_resident(conn, medic, settings, stay.resident_id, "")
    async with db.transaction() as conn:
        revealed = await stays.reveal_resident(conn, medic, settings, stay.resident_id, "fever follow-up call")
    assert (revealed.name, revealed.document_number, revealed.phone) == ("王小明", number, "13812345678")
    async with db.connection() as conn:
        audit = await conn.fetch("SELECT actor, action, purpose, subject_id FROM audit_log")
    assert [(a["actor"], a["action"], a["purpose"], a["subject_id"]) for a in audit] == [
        (medic.ref, "resident.unmask", "fever follow-up call", stay.resident_id)
    ]


# --- admission and invariants ----------------------------------------------------------


async def test_admission_replay_and_one_active_stay_per_resident(db, settings):
    site_id = await make_site(db, floors={3: (3, 1)})
    worker = staff(site_id)
    first = admission(site_id, id=msgspec.convert("7d0c6a5e-6c1f-4a51-9a3e-0c4f3f4a1b11", type=__import__("uuid").UUID))
    async with db.transaction() as conn:
        stay = await stays.admit(conn, worker, settings, first)
    async with db.transaction() as conn:
        assert (await stays.admit(conn, worker, settings, first)).id == stay.id  # client id replay: no-op
    again = admission(site_id, resident=first.resident)  # same person, new request
    with pytest.raises(asyncpg.UniqueViolationError) as dup:
        async with db.transaction() as conn:
            await stays.admit(conn, worker, settings, again)
    assert from_database(dup.value).code == "resident_has_active_stay"
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM stays") == 1
        assert await conn.fetchval("SELECT occupied FROM rooms WHERE id = $1", stay.room_id) == 1


async def test_explicit_room_rules(db, settings):
    site_id = await make_site(db, floors={3: (2, 2)})
    worker = staff(site_id)
    async with db.connection() as conn:
        r301, r302 = await sites.list_site_rooms(conn, COMMAND, site_id)
    async with db.transaction() as conn:
        a = await stays.admit(conn, worker, settings, admission(site_id, resident=person("H-A"), room_id=r301.id))
        b = await stays.admit(conn, worker, settings, admission(site_id, resident=person("H-A"), room_id=r301.id))
    assert (a.bed, b.bed) == (1, 2)
    for fields, code in (
        ({"room_id": r301.id}, "room_full"),
        ({"room_id": r302.id, "bed": 3}, "no_such_bed"),
    ):
        with pytest.raises(DomainError) as exc:
            async with db.transaction() as conn:
                await stays.admit(conn, worker, settings, admission(site_id, resident=person("H-A"), **fields))
        assert exc.value.code == code
    async with db.transaction() as conn:
        await stays.admit(conn, worker, settings, admission(site_id, resident=person("H-B"), room_id=r302.id, bed=2))
    with pytest.raises(Conflict) as stranger:  # occupied by another household
        async with db.transaction() as conn:
            await stays.admit(conn, worker, settings, admission(site_id, resident=person("H-C"), room_id=r302.id))
    assert stranger.value.code == "room_not_ready"
    async with db.connection() as conn:
        with pytest.raises(Exception) as bed_twice:
            await conn.execute(
                "INSERT INTO stays (resident_id, site_id, room_id, room_number, floor, bed, category, regime_id, time_zone, admitted_at,"
                " day_one, period_start, planned_release_at) SELECT r.id, s.site_id, s.room_id, s.room_number, s.floor, s.bed, s.category,"
                " s.regime_id, s.time_zone, now(), s.day_one, s.period_start, s.planned_release_at"
                " FROM stays s, residents r WHERE s.id = $1 AND r.id <> s.resident_id LIMIT 1", a.id,
            )
        assert bed_twice.value.constraint_name == "stays_bed_active_key"


async def test_bad_input_is_4xx_and_stores_nothing(db, settings):
    site_id = await make_site(db, floors={3: (2, 1)})
    worker = staff(site_id)
    cases = [
        (admission(site_id, category="other"), "regime_required"),
        (admission(site_id, regime_code="nope"), "unknown_regime"),
        (admission(site_id, admitted_at=datetime.now(UTC) + timedelta(days=2)), "admitted_in_future"),
        (admission(site_id, admitted_at=datetime.now(UTC) - timedelta(days=93)), "admitted_too_early"),
        (admission(site_id, admitted_at=datetime(1, 1, 1, tzinfo=UTC)), "admitted_too_early"),  # stored as -infinity before
        (admission(site_id, room_id=__import__("uuid").uuid4()), "room_not_found"),
    ]
    for data, code in cases:
        with pytest.raises(DomainError) as exc:
            async with db.transaction() as conn:
                await stays.admit(conn, worker, settings, data)
        assert exc.value.code == code and exc.value.status < 500
    with pytest.raises(InvalidInput):
        Admission(site_id=site_id, category="close_contact")
    with pytest.raises(Forbidden):
        async with db.transaction() as conn:
            await stays.admit(conn, staff(site_id, Role.MEDIC), settings, admission(site_id))
    with pytest.raises(DomainError) as other_site:
        async with db.transaction() as conn:
            await stays.admit(conn, make_principal(Role.SITE_STAFF, []), settings, admission(site_id))
    assert other_site.value.status == 404
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM stays") == 0
        assert await conn.fetchval("SELECT count(*) FROM residents") == 0


# --- allocation --------------------------------------------------------------------------


async def test_allocation_rules_on_a_floor_plan(db, settings):
    # floor 2: six single rooms, floor 3: two triples and two singles, floor 4: four singles
    site_id = await make_site(db, floors={2: (6, 1), 4: (4, 1)})
    async with db.transaction() as conn:
        from service.sites.model import RoomCreate

        await sites.create_rooms(conn, COMMAND, site_id, [RoomCreate(number=n, floor=3, beds=b) for n, b in (("301", 3), ("302", 3), ("303", 1), ("304", 1))])
    worker = staff(site_id)

    async def place(category, batch, household=None):
        async with db.transaction() as conn:
            return await stays.admit(conn, worker, settings, admission(site_id, category=category, arrival_batch=batch, resident=person(household)))

    first = await place("close_contact", "bus-1")
    assert first.room_number == "201"  # lowest floor, snuggest room
    second = await place("close_contact", "bus-1")
    assert second.floor == 2  # fill the opened floor before opening another
    other_batch = await place("close_contact", "bus-2")
    assert other_batch.floor != 2  # another batch: another floor while one can take it
    other_category = await place("inbound_traveller", "CA-123")
    assert other_category.floor not in (2, other_batch.floor)

    # A household of three arriving in a batch shares one triple room.
    family = [BatchMember(resident=person("FAM-1")) for _ in range(3)]
    async with db.transaction() as conn:
        placed = await stays.admit_batch(conn, worker, settings, BatchAdmission(site_id=site_id, category="secondary_contact", arrival_batch="walk-in", members=family))
    assert len({s.room_id for s in placed}) == 1 and sorted(s.bed for s in placed) == [1, 2, 3]
    # A household member arriving later joins the household's room when it has a bed... (none left here)
    async with db.connection() as conn:
        suggestions = await stays.suggest_rooms(conn, worker, site_id, category="close_contact", arrival_batch="bus-1")
    assert suggestions[0].floor == 2


async def test_household_member_joins_household_room(db, settings):
    site_id = await make_site(db, floors={2: (2, 2)})
    worker = staff(site_id)
    async with db.transaction() as conn:
        mother = await stays.admit(conn, worker, settings, admission(site_id, resident=person("FAM-9")))
        child = await stays.admit(conn, worker, settings, admission(site_id, resident=person("FAM-9")))
        stranger = await stays.admit(conn, worker, settings, admission(site_id, resident=person()))
    assert child.room_id == mother.room_id and stranger.room_id != mother.room_id


async def test_batch_is_all_or_nothing(db, settings):
    site_id = await make_site(db, floors={2: (5, 1)})
    worker = staff(site_id)
    members = [BatchMember(resident=person()) for _ in range(6)]  # six people, five beds
    batch = BatchAdmission(site_id=site_id, category="close_contact", arrival_batch="bus-7", members=members)
    with pytest.raises(Conflict) as full:
        async with db.transaction() as conn:
            await stays.admit_batch(conn, worker, settings, batch)
    assert full.value.code == "no_room_available"
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM stays") == 0
        assert await conn.fetchval("SELECT count(*) FROM residents") == 0
        assert await conn.fetchval("SELECT sum(occupied) FROM rooms") == 0
        assert await conn.fetchval("SELECT count(*) FROM events WHERE type LIKE 'stays.%'") == 0
    batch.members = members[:5]
    async with db.transaction() as conn:
        placed = await stays.admit_batch(conn, worker, settings, batch)
    assert len(placed) == 5 and len({s.room_id for s in placed}) == 5
    with pytest.raises(InvalidInput):
        async with db.transaction() as conn:
            await stays.admit_batch(conn, worker, settings, BatchAdmission(site_id=site_id, category="close_contact", arrival_batch="x", members=[members[0], members[0]]))


# --- calendar and regimes -------------------------------------------------------------------


async def test_quarantine_day_counts_in_site_time_zone_across_midnight(db, settings):
    shanghai = await make_site(db, "CQ-1", floors={2: (1, 1)})
    utc_site = await make_site(db, "UTC-1", floors={2: (1, 1)}, time_zone="UTC")
    admitted = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)  # 23:30 in Chongqing, still 1 March
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # the admissions are recorded the next day (within the backdate limit)
    async with db.transaction() as conn:
        local = await stays.admit(conn, COMMAND, settings, admission(shanghai, admitted_at=admitted), now=now)
        other = await stays.admit(conn, COMMAND, settings, admission(utc_site, admitted_at=admitted), now=now)
    assert local.day_one == date(2026, 3, 1) == other.day_one
    assert stays.quarantine_day(local, datetime(2026, 3, 1, 15, 59, tzinfo=UTC)) == 1  # 23:59 local
    assert stays.quarantine_day(local, datetime(2026, 3, 1, 16, 0, tzinfo=UTC)) == 2  # midnight local
    assert stays.quarantine_day(other, datetime(2026, 3, 1, 16, 0, tzinfo=UTC)) == 1  # still 1 March in UTC
    assert stays.quarantine_day(local, datetime(2026, 3, 7, 15, 59, tzinfo=UTC)) == 7
    # 7 centralized days: released at local midnight after day 7 = 8 March 00:00 +08:00
    assert local.planned_release_at == datetime(2026, 3, 7, 16, 0, tzinfo=UTC)
    assert other.planned_release_at == datetime(2026, 3, 8, 0, 0, tzinfo=UTC)
    late = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)  # 00:30 on 2 March in Chongqing
    async with db.transaction() as conn:
        (room,) = await sites.list_site_rooms(conn, COMMAND, shanghai)
        await conn.execute("UPDATE stays SET status='closed', outcome='released', ended_at=now() WHERE id=$1", local.id)
        await conn.execute("UPDATE rooms SET status='ready', occupied=0 WHERE id=$1", room.id)
        after_midnight = await stays.admit(conn, COMMAND, settings, admission(shanghai, admitted_at=late), now=now)
    assert after_midnight.day_one == date(2026, 3, 2)


async def test_regime_change_replans_open_stays_when_asked_and_emits(db, settings):
    site_id = await make_site(db, floors={2: (3, 1)})
    admitted = datetime.now(UTC) - timedelta(days=2)
    async with db.transaction() as conn:
        a = await stays.admit(conn, COMMAND, settings, admission(site_id, admitted_at=admitted))
        b = await stays.admit(conn, COMMAND, settings, admission(site_id, category="inbound_traveller", admitted_at=admitted))
        (regime,) = [r for r in await stays.list_regimes(conn) if r.code == "close_contact"]
    assert {r.code for r in await _regimes(db)} == {"close_contact", "secondary_contact", "inbound_traveller", "key_area_arrival"}
    with pytest.raises(Forbidden):
        async with db.transaction() as conn:
            await stays.update_regime(conn, staff(site_id, Role.SITE_MANAGER), "close_contact", RegimePatch(version=1, centralized_days=14))
    async with db.transaction() as conn:
        change = await stays.update_regime(
            conn, COMMAND, "close_contact", RegimePatch(version=regime.version, centralized_days=14, test_days=[7, 1, 14], replan_open_stays=True)
        )
    updated = change.regime
    assert updated.centralized_days == 14 and updated.test_days == [1, 7, 14] and updated.version == 2 and change.replanned == 1
    assert updated.id != regime.id  # a new version; the old one is kept
    async with db.connection() as conn:
        now_a, now_b = [(await stays.get_stay(conn, COMMAND, s.id)) for s in (a, b)]
        events = await conn.fetch("SELECT type, site_id, data FROM events WHERE type LIKE 'stays.re%' ORDER BY id")
    assert now_a.planned_release_at == a.planned_release_at + timedelta(days=7) and now_a.regime_id == updated.id
    assert now_b.planned_release_at == b.planned_release_at  # another regime
    assert [e["type"] for e in events] == ["stays.regime_updated", "stays.release_replanned"]
    assert events[1]["site_id"] == site_id and events[1]["data"]["stay_ids"] == [str(a.id)]
    with pytest.raises(Conflict) as stale:
        async with db.transaction() as conn:
            await stays.update_regime(conn, COMMAND, "close_contact", RegimePatch(version=1, centralized_days=7))
    assert stale.value.code == "stale_version"


async def _regimes(db):
    async with db.connection() as conn:
        return await stays.list_regimes(conn)


# --- leaving, moving, exposure -----------------------------------------------------------------


async def test_release_needs_the_period_served_and_vacates_the_room(db, settings, monkeypatch):
    without_health_blockers(monkeypatch)
    site_id = await make_site(db, floors={2: (1, 1)})
    street = await make_street(db)
    worker = staff(site_id)
    async with db.transaction() as conn:
        stay = await stays.admit(conn, worker, settings, admission(site_id, admitted_at=datetime.now(UTC) - timedelta(days=3)))
    with pytest.raises(RuleViolated) as blocked:
        async with db.transaction() as conn:
            await stays.release(conn, worker, settings, stay.id)
    assert blocked.value.code == "release_blocked" and blocked.value.extra["reasons"] == ["centralized_period_not_served"]
    async with db.transaction() as conn:
        released = await stays.release(conn, worker, settings, stay.id, handover=handover_to(street), now=stay.planned_release_at)
        room = await sites.get_room(conn, worker, stay.room_id)
        task = (await sites.room_tasks(conn, worker, [room.id]))[room.id]
    assert released.outcome == "released" and released.ended_at is not None
    assert room.status is RoomStatus.VACATED and room.occupied == 0 and task.state == "open"
    with pytest.raises(Conflict) as closed:
        async with db.transaction() as conn:
            await stays.release(conn, worker, settings, stay.id, handover=handover_to(street), now=stay.planned_release_at)
    assert closed.value.code == "stay_closed"


async def test_transfer_seals_room_and_contacts_are_found(db, settings):
    site_id = await make_site(db, floors={2: (2, 2), 3: (1, 2)})
    worker = staff(site_id)
    async with db.connection() as conn:
        r201, r202, r301 = await sites.list_site_rooms(conn, COMMAND, site_id)
    async with db.transaction() as conn:
        patient = await stays.admit(conn, worker, settings, admission(site_id, resident=person("FAM-X"), room_id=r201.id))
        roommate = await stays.admit(conn, worker, settings, admission(site_id, resident=person("FAM-X"), room_id=r201.id))
        neighbour = await stays.admit(conn, worker, settings, admission(site_id, resident=person(), room_id=r202.id))
        upstairs = await stays.admit(conn, worker, settings, admission(site_id, resident=person("FAM-X"), room_id=r301.id))
    async with db.transaction() as conn:
        closed = await stays.close_for_transfer(conn, staff(site_id, Role.MEDIC), patient.id, infectious=True)
        room = await sites.get_room(conn, worker, r201.id)
        contacts = await stays.contacts(conn, worker, patient.id)
    assert closed.outcome == "transferred" and room.status is RoomStatus.SEALED and room.occupied == 1
    assert [s.id for s in contacts.roommates] == [roommate.id]
    assert {s.id for s in contacts.household} == {roommate.id, upstairs.id}
    assert [s.id for s in contacts.floor_neighbours] == [neighbour.id]
    # The roommate may not join another household's room, but may join the household upstairs.
    with pytest.raises(Conflict):
        async with db.transaction() as conn:
            await stays.move(conn, worker, roommate.id, Move(room_id=r202.id))
    async with db.transaction() as conn:
        moved = await stays.move(conn, worker, roommate.id, Move(room_id=r301.id, reason="leave sealed room"))
        sealed = await sites.get_room(conn, worker, r201.id)
        old = await stays.get_stay(conn, worker, roommate.id)
    assert moved.room_id == r301.id and moved.day_one == roommate.day_one and moved.planned_release_at == roommate.planned_release_at
    assert old.outcome == "moved" and old.moved_to == moved.id and moved.moved_from == old.id
    assert sealed.status is RoomStatus.SEALED and sealed.occupied == 0
    async with db.connection() as conn:
        assert (await sites.room_tasks(conn, worker, [r201.id]))[r201.id].state == "open"
    # non-infectious departure of the last resident vacates
    async with db.transaction() as conn:
        await stays.close_for_transfer(conn, worker, neighbour.id, infectious=False)
        assert (await sites.get_room(conn, worker, r202.id)).status is RoomStatus.VACATED


async def test_move_to_another_site_and_scoping(db, settings):
    a = await make_site(db, "A-1", floors={2: (1, 1)})
    b = await make_site(db, "B-1", floors={2: (1, 1)}, time_zone="Asia/Urumqi")
    async with db.connection() as conn:
        (room_b,) = await sites.list_site_rooms(conn, COMMAND, b)
    async with db.transaction() as conn:
        stay = await stays.admit(conn, COMMAND, settings, admission(a))
    only_a = make_principal(Role.SITE_MANAGER, [a])
    with pytest.raises(DomainError) as hidden:
        async with db.transaction() as conn:
            await stays.move(conn, only_a, stay.id, Move(room_id=room_b.id))
    assert hidden.value.status == 404
    both = make_principal(Role.SITE_MANAGER, [a, b])
    async with db.transaction() as conn:
        moved = await stays.move(conn, both, stay.id, Move(room_id=room_b.id))
    assert moved.site_id == b and moved.time_zone == "Asia/Urumqi" and moved.day_one == stay.day_one
    async with db.connection() as conn:
        assert await stays.get_residents(conn, only_a, [stay.resident_id]) == {}
        assert stay.resident_id in await stays.get_residents(conn, make_principal(Role.SITE_STAFF, [b]), [stay.resident_id])
        assert await stays.occupied_beds(conn, None) == {b: 1}
        assert (await sites.get_room(conn, COMMAND, stay.room_id)).status is RoomStatus.VACATED


async def test_extend_stay_restarts_the_period(db, settings):
    site_id = await make_site(db, floors={2: (1, 1)})
    admitted = datetime.now(UTC) - timedelta(days=4)
    async with db.transaction() as conn:
        stay = await stays.admit(conn, COMMAND, settings, admission(site_id, admitted_at=admitted))
    exposed = datetime.now(UTC) - timedelta(days=1)
    async with db.transaction() as conn:
        extended = await stays.extend_stay(conn, staff(site_id, Role.MEDIC), stay.id, Extension(exposed_at=exposed, reason="roommate positive"))
        unchanged = await stays.extend_stay(conn, COMMAND, stay.id, Extension(exposed_at=admitted))
    assert extended.planned_release_at == stay.planned_release_at + timedelta(days=3)
    assert unchanged.planned_release_at == extended.planned_release_at


async def test_occupancy_summary(db, settings):
    a = await make_site(db, "A-1", floors={2: (4, 1), 3: (2, 2)})
    b = await make_site(db, "B-1", floors={2: (2, 1)})
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        due = await stays.admit(conn, COMMAND, settings, admission(a, admitted_at=now - timedelta(days=7)))
        await stays.admit(conn, COMMAND, settings, admission(a, admitted_at=now - timedelta(days=6)))
        await stays.admit(conn, COMMAND, settings, admission(b))
    await db.pool.execute("UPDATE rooms SET status = 'out_of_service' WHERE number = '301' AND site_id = $1", a)
    await db.pool.execute("UPDATE rooms SET status = 'vacated' WHERE number = '302' AND site_id = $1", a)
    async with db.connection() as conn:
        found = await stays.occupancy(conn, COMMAND)
        only_b = await stays.occupancy(conn, make_principal(Role.SITE_STAFF, [b]))
    by_site = {s.site_id: s for s in found.sites}
    sa = by_site[a]
    assert (sa.rooms, sa.beds_total, sa.beds_occupied, sa.beds_ready, sa.beds_in_turnover, sa.beds_out_of_service) == (6, 8, 2, 2, 2, 2)
    assert sa.releases_due_today + sa.releases_due_tomorrow == 2 and sa.releases_due_today >= 1
    assert found.total.beds_total == 10 and found.total.beds_occupied == 3 and found.total.site_id is None
    assert [s.site_id for s in only_b.sites] == [b]
    assert due.planned_release_at.date() <= (now + timedelta(days=1)).date()
