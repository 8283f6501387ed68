"""The demo seed step of sites and stays: realistic size, consistent rooms and stays, fast enough to run first."""

from service.access.service import SYSTEM_PRINCIPAL
from service.stays import demo as stays_demo
from service.stays import service as stays


async def test_demo_step_seeds_consistent_sites_rooms_and_stays(db, settings):
    demo = {"settings": settings}
    async with db.transaction() as conn:
        await stays_demo.seed_demo(conn, demo)
    assert len(demo["sites"]) == 2 and all(len(r) == 240 for r in demo["rooms"].values())
    async with db.connection() as conn:
        categories = {r["category"] for r in await conn.fetch("SELECT DISTINCT category FROM stays")}
        assert categories == {"close_contact", "secondary_contact", "inbound_traveller", "key_area_arrival", "other"}
        assert await conn.fetchval("SELECT count(DISTINCT day_one) FROM stays") >= 5
        assert len(demo["stays"]) == await conn.fetchval("SELECT count(*) FROM stays WHERE status = 'active'") > 300
        # every room's counter matches its active stays, and only occupied rooms hold people
        mismatched = await conn.fetchval(
            "SELECT count(*) FROM rooms r WHERE r.occupied <> (SELECT count(*) FROM stays s WHERE s.room_id = r.id AND s.status = 'active')"
            " OR (r.occupied > 0) <> (r.status = 'occupied')"
        )
        assert mismatched == 0
        occupancy = await stays.occupancy(conn, SYSTEM_PRINCIPAL)
        assert occupancy.total.beds_total == 2 * 8 * (25 + 5 * 2)
        assert occupancy.total.beds_occupied == len(demo["stays"])
        assert occupancy.total.beds_in_turnover > 0 and occupancy.total.beds_out_of_service > 0
        assert occupancy.total.releases_due_today + occupancy.total.releases_due_tomorrow > 0
