"""The demo data holds a released stay with its hand-over and a certificate anyone can check."""

from service.access.service import SYSTEM_PRINCIPAL
from service.api.demo import seed_demo
from service.handover import service as handovers


async def test_demo_seed_includes_a_released_stay_with_a_handover(settings, db, client):
    assert await seed_demo(settings, only_if_empty=True)
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT h.stay_id, s.outcome, h.site_id = s.site_id AS same_site FROM handovers h JOIN stays s ON s.id = h.stay_id")
        assert len(rows) == 2 and all(r["outcome"] == "released" and r["same_site"] for r in rows)
        found = await handovers.get_handovers(conn, SYSTEM_PRINCIPAL, [r["stay_id"] for r in rows])
        code = await handovers.certificate_code(conn, SYSTEM_PRINCIPAL, settings, rows[0]["stay_id"])
    assert {h.region_code for h in found.values()} == {"LJ-JINSHAN"} and all(h.contact_phone == "*******0777" for h in found.values())
    answer = await client.get(f"/api/v1/certificates/{code}")
    assert answer.status_code == 200 and answer.json()["status"] == "valid"
