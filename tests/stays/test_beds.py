"""Beds as entities: made with their rooms, attributes set by managers, occupancy history from the stays,
and allocation honouring needs (step-free access, a cot beside a parent, oxygen)."""

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from service.access.model import Role
from service.errors import Conflict, Forbidden, NotFound
from service.intake import service as intake
from service.intake.model import ManifestCreate
from service.sites import service as sites
from service.sites.model import RoomPatch
from service.stays import service as stays
from service.stays.model import BedPatch
from tests.conftest import make_principal
from tests.intake.helpers import referral, submit, tracer
from tests.stays.helpers import COMMAND, admission, handover_to, make_site, make_street, person, staff, without_health_blockers


async def _beds(db, site):
    async with db.connection() as conn:
        rooms = await sites.list_site_rooms(conn, COMMAND, site)
        return rooms, await stays.room_beds(conn, COMMAND, [r.id for r in rooms])


async def _set(db, bed, **attributes):
    async with db.transaction() as conn:
        return await stays.update_bed(conn, COMMAND, bed.id, msgspec.convert({"version": bed.version, **attributes}, BedPatch))


async def test_beds_are_made_with_rooms_and_when_a_room_grows(db):
    site = await make_site(db, floors={3: (2, 2), 4: (1, 1)})
    rooms, beds = await _beds(db, site)
    assert {r.number: [b.number for b in beds[r.id]] for r in rooms} == {"301": [1, 2], "302": [1, 2], "401": [1]}
    single = next(r for r in rooms if r.number == "401")
    async with db.transaction() as conn:
        await sites.update_room(conn, COMMAND, single.id, RoomPatch(version=single.version, beds=3))
    _, beds = await _beds(db, site)
    assert [b.number for b in beds[single.id]] == [1, 2, 3] and not any(b.accessible or b.cot or b.oxygen for b in beds[single.id])


async def test_attributes_are_set_by_managers_with_a_version(db):
    site = await make_site(db, floors={3: (1, 1)})
    other = await make_site(db, "LJ-02", floors={3: (1, 1)})
    rooms, beds = await _beds(db, site)
    bed = beds[rooms[0].id][0]
    updated = await _set(db, bed, oxygen=True, accessible=True)
    assert updated.oxygen and updated.accessible and not updated.cot and updated.version == 2
    with pytest.raises(Conflict) as exc:
        await _set(db, bed, cot=True)  # version 1 again
    assert exc.value.code == "stale_version"
    async with db.transaction() as conn:
        with pytest.raises(Forbidden):
            await stays.update_bed(conn, staff(site), bed.id, BedPatch(version=2, cot=True))
        with pytest.raises(NotFound):
            await stays.update_bed(conn, make_principal(Role.SITE_MANAGER, [other]), bed.id, BedPatch(version=2, cot=True))


async def test_allocation_honours_needs_and_keeps_special_beds_for_who_needs_them(db, settings):
    site = await make_site(db, floors={3: (4, 1)})
    rooms, beds = await _beds(db, site)
    oxygen_room = next(r for r in rooms if r.number == "301")  # the room allocation would pick first
    await _set(db, beds[oxygen_room.id][0], oxygen=True)
    async with db.transaction() as conn:
        plain = await stays.admit(conn, staff(site), settings, admission(site))
        needy = await stays.admit(conn, staff(site), settings, admission(site, needs=["oxygen"]))
        with pytest.raises(Conflict) as exc:  # no step-free bed anywhere
            await stays.admit(conn, staff(site), settings, admission(site, needs=["mobility"]))
        assert exc.value.code == "no_room_available"
    assert plain.room_id != oxygen_room.id  # the oxygen bed is kept for who needs it
    assert (needy.room_id, needy.bed) == (oxygen_room.id, 1)


async def test_an_infant_gets_the_cot_in_the_parents_room(db, settings):
    site = await make_site(db, floors={3: (2, 2)})
    rooms, beds = await _beds(db, site)
    family_room = next(r for r in rooms if r.number == "302")
    await _set(db, beds[family_room.id][1], cot=True)
    parent = (await submit(db, settings, tracer([site]), referral(site, person("FAM-B")))).referral
    infant = (await submit(db, settings, tracer([site]), referral(site, person("FAM-B"), needs=["infant"]))).referral
    async with db.transaction() as conn:
        manifest = await intake.announce(conn, COMMAND, ManifestCreate(
            site_id=site, vehicle_plate="渝A00001", vehicle_kind="van", expected_at=datetime.now(UTC) + timedelta(hours=1),
            referral_ids=[parent.id, infant.id]))
    held = {m.referral_id: (m.room_id, m.bed) for m in manifest.members}
    assert held[infant.id] == (family_room.id, 2) and held[parent.id] == (family_room.id, 1)


async def test_a_beds_occupancy_history(db, settings, monkeypatch):
    without_health_blockers(monkeypatch)
    site = await make_site(db, floors={3: (1, 1)})
    street = await make_street(db)
    rooms, beds = await _beds(db, site)
    bed = beds[rooms[0].id][0]
    async with db.transaction() as conn:
        first = await stays.admit(conn, staff(site), settings, admission(site, admitted_at=datetime.now(UTC) - timedelta(days=9)))
        await stays.release(conn, staff(site), settings, first.id, handover=handover_to(street))
    async with db.transaction() as conn:  # the room turns over, then takes the next person
        await conn.execute("UPDATE rooms SET status = 'ready' WHERE id = $1", rooms[0].id)
        second = await stays.admit(conn, staff(site), settings, admission(site))
        history = await stays.bed_history(conn, staff(site), bed.id)
        (now,) = (await stays.room_beds(conn, staff(site), [rooms[0].id]))[rooms[0].id]
        with pytest.raises(NotFound):
            await stays.bed_history(conn, make_principal(Role.SITE_STAFF, [await make_site(db, "LJ-09")]), bed.id)
    assert [(h.stay_id, h.outcome) for h in history] == [(second.id, None), (first.id, "released")]
    assert now.stay_id == second.id
