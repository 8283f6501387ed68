"""Arrival manifests: beds reserved on announcement by the allocation rules, held against other admissions,
consumed on arrival, freed by a no-show or a cancellation, let go when they expire; the room board shows them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.access.model import Role
from service.errors import Conflict, Forbidden, InvalidInput, NotFound
from service.intake import service as intake
from service.intake.model import Closing, ManifestArrival, ManifestCreate, ReferralAdmission
from service.sites import service as sites
from service.stays import service as stays
from tests.conftest import make_principal
from tests.intake.helpers import referral, submit, tracer
from tests.stays.helpers import COMMAND, admission, make_site, person, staff


async def _referrals(db, settings, site, *people):
    return [(await submit(db, settings, tracer([site]), referral(site, who))).referral for who in people]


def _manifest(site, referrals, **fields) -> ManifestCreate:
    fields.setdefault("expected_at", datetime.now(UTC) + timedelta(hours=1))
    return ManifestCreate(site_id=site, vehicle_plate="渝A12345", vehicle_kind="bus", referral_ids=[r.id for r in referrals], **fields)


async def test_announcement_reserves_beds_that_other_admissions_cannot_take(db, settings):
    site = await make_site(db, floors={3: (2, 2), 4: (2, 1)})  # 6 beds: two double rooms, two singles
    family = await _referrals(db, settings, site, person("FAM-1"), person("FAM-1"))
    single = await _referrals(db, settings, site, person())
    mgr = make_principal(Role.SITE_MANAGER, [site])
    async with db.transaction() as conn:
        manifest = await intake.announce(conn, mgr, _manifest(site, family + single, escort="转运组 张警官"))
        with pytest.raises(Forbidden):
            await intake.announce(conn, staff(site), _manifest(site, single))
    rooms = {m.referral_id: (m.room_number, m.bed) for m in manifest.members}
    assert manifest.state == "announced" and all(m.state == "expected" and m.reservation_state == "held" for m in manifest.members)
    assert rooms[family[0].id][0] == rooms[family[1].id][0] and {rooms[family[0].id][1], rooms[family[1].id][1]} == {1, 2}  # together
    assert rooms[single[0].id][0] != rooms[family[0].id][0]
    async with db.connection() as conn:
        assert {r.state for r in (await intake.get_referrals(conn, mgr, [r.id for r in family + single])).values()} == {"assigned"}
    # Two rooms are spoken for: the two left take one newcomer each (people alone do not share), a third finds none.
    async with db.transaction() as conn:
        admitted = [await stays.admit(conn, staff(site), settings, admission(site)) for _ in range(2)]
        with pytest.raises(Conflict) as exc:
            await stays.admit(conn, staff(site), settings, admission(site))
        assert exc.value.code == "no_room_available"
    held = {(m.room_id, m.bed) for m in manifest.members}
    assert not held & {(s.room_id, s.bed) for s in admitted}
    # Naming a reserved room explicitly does not take its reserved bed either.
    family_room = next(m.room_id for m in manifest.members if m.referral_id == family[0].id)
    async with db.transaction() as conn:
        with pytest.raises(Conflict) as exc:
            await stays.admit(conn, staff(site), settings, admission(site, room_id=family_room))
        assert exc.value.code in ("room_full", "room_not_ready")


async def test_board_shows_reserved_beds(client, db, settings, auth):
    site = await make_site(db, floors={3: (2, 1)})
    people = await _referrals(db, settings, site, person())
    async with db.transaction() as conn:
        manifest = await intake.announce(conn, COMMAND, _manifest(site, people))
    board = """query($s: UUID!) { roomBoard(siteId: $s) { room { number } reservedBeds { bed expiresAt } } }"""
    answer = await client.post("/graphql", json={"query": board, "variables": {"s": str(site)}}, headers=auth(staff(site)))
    rows = {r["room"]["number"]: r["reservedBeds"] for r in answer.json()["data"]["roomBoard"]}
    member = manifest.members[0]
    assert [r["bed"] for r in rows[member.room_number]] == [1]
    assert datetime.fromisoformat(rows[member.room_number][0]["expiresAt"]) == manifest.hold_until
    assert [v for k, v in rows.items() if k != member.room_number] == [[]]


async def test_arrival_consumes_reservations_and_a_no_show_frees_its_bed(db, settings):
    site = await make_site(db, floors={3: (3, 1)})
    a, b, c = await _referrals(db, settings, site, person(), person(), person())
    async with db.transaction() as conn:
        manifest = await intake.announce(conn, COMMAND, _manifest(site, [a, b, c]))
    beds = {m.referral_id: (m.room_id, m.bed) for m in manifest.members}
    async with db.transaction() as conn:
        after_no_show = await intake.member_no_show(conn, COMMAND, manifest.id, c.id)
        with pytest.raises(NotFound):
            await intake.member_no_show(conn, COMMAND, manifest.id, c.id)
    assert after_no_show.version == 2 and {m.referral_id: m.state for m in after_no_show.members}[c.id] == "no_show"
    async with db.transaction() as conn:
        with pytest.raises(InvalidInput) as exc:
            await intake.admit_manifest(conn, staff(site), settings, manifest.id, ManifestArrival(version=2, no_show=[c.id]))
        assert exc.value.code == "not_on_manifest"
    async with db.transaction() as conn:
        with pytest.raises(Conflict) as exc:
            await intake.admit_manifest(conn, staff(site), settings, manifest.id, ManifestArrival(version=1))
        assert exc.value.code == "stale_version"
    async with db.transaction() as conn:
        arrived = await intake.admit_manifest(conn, staff(site), settings, manifest.id, ManifestArrival(version=2, no_show=[b.id]))
        stays_by_id = await stays.get_stays(conn, COMMAND, [m.stay_id for m in arrived.members if m.stay_id])
        gone = await intake.get_referrals(conn, COMMAND, [b.id, c.id])
        other = await stays.admit(conn, staff(site), settings, admission(site))  # b's and c's beds are free again
    members = {m.referral_id: m for m in arrived.members}
    assert arrived.state == "arrived" and members[a.id].state == "arrived" and members[a.id].reservation_state == "consumed"
    stay = stays_by_id[members[a.id].stay_id]
    assert (stay.room_id, stay.bed) == beds[a.id] and stay.arrival_batch == "渝A12345"
    assert members[b.id].reservation_state == "released" and {r.state for r in gone.values()} == {"no_show"}
    assert (other.room_id, other.bed) in (beds[b.id], beds[c.id])
    async with db.transaction() as conn:
        with pytest.raises(Conflict) as exc:
            await intake.cancel_manifest(conn, COMMAND, manifest.id, Closing(version=3))
        assert exc.value.code == "invalid_manifest_state"


async def test_all_or_none_and_what_a_manifest_may_carry(db, settings):
    site = await make_site(db, floors={3: (2, 1)})
    other_site = await make_site(db, "LJ-02", floors={3: (1, 1)})
    three = await _referrals(db, settings, site, person(), person(), person())
    with pytest.raises(Conflict) as exc:  # raised out of the transaction: nothing of it stays
        async with db.transaction() as conn:
            await intake.announce(conn, COMMAND, _manifest(site, three))
    assert exc.value.code == "no_room_available"
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM bed_reservations") == 0
        assert {r.state for r in (await intake.get_referrals(conn, COMMAND, [r.id for r in three])).values()} == {"pending"}
    (elsewhere,) = await _referrals(db, settings, other_site, person())
    with pytest.raises(NotFound) as exc:
        async with db.transaction() as conn:
            await intake.announce(conn, COMMAND, _manifest(site, [three[0], elsewhere]))
    assert exc.value.code == "referral_not_found"
    async with db.transaction() as conn:
        first = await intake.announce(conn, COMMAND, _manifest(site, three[:1]))
    with pytest.raises(Conflict) as exc:
        async with db.transaction() as conn:
            await intake.announce(conn, COMMAND, _manifest(site, three[:2]))
    assert exc.value.code == "referral_on_manifest"
    with pytest.raises(InvalidInput):
        _manifest(site, [three[1], three[1]])
    replay = _manifest(site, three[1:2], id=first.id)
    async with db.transaction() as conn:
        with pytest.raises(Conflict) as exc:  # the same id for other people
            await intake.announce(conn, COMMAND, replay)
        assert exc.value.code == "manifest_exists"
        same = await intake.announce(conn, COMMAND, _manifest(site, three[:1], id=first.id))
        assert same.id == first.id and same.version == first.version


async def test_cancel_frees_every_bed_and_expired_reservations_let_go(db, settings):
    site = await make_site(db, floors={3: (2, 1)})
    a, b = await _referrals(db, settings, site, person(), person())
    async with db.transaction() as conn:
        manifest = await intake.announce(conn, COMMAND, _manifest(site, [a, b]))
        cancelled = await intake.cancel_manifest(conn, COMMAND, manifest.id, Closing(version=1, reason="车辆故障"))
    assert cancelled.state == "cancelled" and {m.reservation_state for m in cancelled.members} == {"released"}
    # The referrals stay assigned and ride another vehicle, which was due long ago: its holds have expired.
    late = _manifest(site, [a, b], expected_at=datetime.now(UTC) - timedelta(hours=2), hold_minutes=15)
    async with db.transaction() as conn:
        expired = await intake.announce(conn, COMMAND, late)
        rooms = await sites.list_site_rooms(conn, COMMAND, site)
        assert await stays.reserved_in_rooms(conn, COMMAND, [r.id for r in rooms]) == {r.id: [] for r in rooms}
    async with db.transaction() as conn:  # the people arrive after all: beds allocated anew (they are free)
        arrived = await intake.admit_manifest(conn, staff(site), settings, expired.id, ManifestArrival(version=1))
    assert {m.state for m in arrived.members} == {"arrived"} and all(m.stay_id for m in arrived.members)


async def test_an_expired_reservation_does_not_block_others(db, settings):
    site = await make_site(db, floors={3: (2, 1)})
    (late,) = await _referrals(db, settings, site, person())
    async with db.transaction() as conn:
        manifest = await intake.announce(conn, COMMAND, _manifest(site, [late], expected_at=datetime.now(UTC) - timedelta(hours=2), hold_minutes=15))
        walk_ins = [await stays.admit(conn, staff(site), settings, admission(site)) for _ in range(2)]  # both beds, the held one too
    assert {s.bed for s in walk_ins} == {1} and len({s.room_id for s in walk_ins}) == 2
    async with db.transaction() as conn:
        with pytest.raises(Conflict) as exc:  # the late person finds no bed: the site filled meanwhile
            await intake.admit_manifest(conn, staff(site), settings, manifest.id, ManifestArrival(version=1))
        assert exc.value.code == "no_room_available"


async def test_admitting_a_referral_on_a_manifest_takes_its_reserved_bed(db, settings):
    site = await make_site(db, floors={3: (3, 1)})
    a, b = await _referrals(db, settings, site, person(), person())
    async with db.transaction() as conn:
        manifest = await intake.announce(conn, COMMAND, _manifest(site, [a, b]))
        stay = await intake.admit(conn, staff(site), settings, a.id, ReferralAdmission())
        after = await intake.get_manifest(conn, COMMAND, manifest.id)
        rest = await intake.admit_manifest(conn, staff(site), settings, manifest.id, ManifestArrival(version=after.version))
    held = {m.referral_id: (m.room_id, m.bed) for m in manifest.members}
    assert (stay.room_id, stay.bed) == held[a.id]
    members = {m.referral_id: m for m in after.members}
    assert members[a.id].state == "arrived" and members[a.id].reservation_state == "consumed" and after.version == 2
    assert {m.state for m in rest.members} == {"arrived"}
