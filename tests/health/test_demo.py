from service.api.demo import seed_demo


async def test_demo_seed_includes_health_history(settings, db):
    assert await seed_demo(settings, only_if_empty=True)
    async with db.connection() as conn:
        checkins = await conn.fetchval("SELECT count(*) FROM checkins")
        samples = await conn.fetchval("SELECT count(*) FROM samples WHERE result = 'negative'")
        alerts = await conn.fetchval("SELECT count(*) FROM alerts")
        bad = await conn.fetchval("SELECT count(*) FROM checkins c JOIN stays s ON s.id = c.stay_id WHERE c.recorded_at < s.admitted_at OR c.site_id <> s.site_id")
    assert checkins > 100 and samples > 50 and alerts > 0 and bad == 0
