import asyncio
import os
import sys
from pathlib import Path

from service.access import demo
from tests.access.helpers import make_site

ROOT = Path(__file__).resolve().parents[2]


async def test_demo_step_makes_working_logins_and_keys(client, auth, db, settings):
    sites = [await make_site(client, auth), await make_site(client, auth)]
    async with db.transaction() as conn:
        state = {"settings": settings, "sites": sites}
        await demo.seed_demo(conn, state)
    assert set(state["staff"]) >= {"command", "manager-1", "staff-2", "medic-2"}
    login = await client.post("/api/v1/auth/login", json={"username": "manager-2", "password": demo.DEMO_PASSWORD})
    assert login.status_code == 200 and login.json()["site_ids"] == [str(sites[1])]
    polled = await client.get("/api/v1/sites", headers={"X-API-Key": demo.DEMO_KEYS["logistics"]})
    assert polled.status_code == 200 and len(polled.json()["items"]) == 2


async def test_cli_create_user_then_login(client, settings):
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "QSITE_DATA_DIR": settings.data_dir,
        "QSITE_JWT_SECRET": settings.jwt_secret,
        "QSITE_PII_KEYS": settings.pii_keys,
        "QSITE_PII_INDEX_KEY": settings.pii_index_key,
        "QSITE_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "create-user", "chief", "--display-name", "Chief",
        cwd=ROOT, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(b"a-long-password\n")
    assert proc.returncode == 0, err.decode()
    assert b"created command account chief" in out and b"a-long-password" not in out + err
    login = await client.post("/api/v1/auth/login", json={"username": "chief", "password": "a-long-password"})
    assert login.status_code == 200 and login.json()["role"] == "command"
