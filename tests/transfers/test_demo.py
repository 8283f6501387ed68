"""The transfers demo step on top of the earlier steps: facilities, a hospital key that works, every state."""

from service.access import demo as access_demo
from service.stays import demo as stays_demo
from service.transfers import demo as transfers_demo


async def test_demo_step_seeds_transfers_in_every_state(client, db, settings):
    demo = {"settings": settings}
    async with db.transaction() as conn:
        await stays_demo.seed_demo(conn, demo)
        await access_demo.seed_demo(conn, demo)
        await transfers_demo.seed_demo(conn, demo)
    async with db.connection() as conn:
        states = {r["state"]: r["n"] for r in await conn.fetch("SELECT state, count(*) AS n FROM transfers GROUP BY state")}
        assert set(states) == {"requested", "approved", "destination_approved", "dispatched", "departed", "arrived", "rejected", "cancelled"}
        outcomes = {r["outcome"]: r["n"] for r in await conn.fetch("SELECT outcome, count(*) AS n FROM transfers GROUP BY outcome")}
        assert set(outcomes) == {None, "admitted", "discharged", "returned"}
        # each return opened a new active stay for the resident at the site it left
        returns = await conn.fetch(
            "SELECT t.site_id, t.resident_id, s.site_id AS stay_site, s.resident_id AS stay_resident, s.status"
            " FROM transfers t JOIN stays s ON s.id = t.return_stay_id WHERE t.outcome = 'returned'"
        )
        assert returns and all(
            (r["stay_site"], r["stay_resident"], r["status"]) == (r["site_id"], r["resident_id"], "active") for r in returns
        )
        # times were spread over the past and stay ordered
        disordered = await conn.fetchval(
            "SELECT count(*) FROM transfers WHERE dispatched_at < requested_at OR arrived_at < dispatched_at OR requested_at > now()"
        )
        assert disordered == 0
        transferred = await conn.fetchval("SELECT count(*) FROM stays WHERE outcome = 'transferred'")
        assert transferred == states["departed"] + states["arrived"]
        accepting = await conn.fetchval("SELECT count(*) FROM facilities WHERE requires_acceptance")
        assert accepting == 1
    incoming = await client.get("/api/v1/hospital/transfers", headers={"X-API-Key": transfers_demo.HOSPITAL_KEY})
    assert incoming.status_code == 200 and incoming.json()["items"]
    site = demo["sites"][0]
    times = await client.get(
        f"/api/v1/sites/{site}/transfer-times",
        params={"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"},
        headers={"X-API-Key": transfers_demo.HOSPITAL_KEY},
    )
    assert times.status_code == 403  # hospitals read only their own transfers
