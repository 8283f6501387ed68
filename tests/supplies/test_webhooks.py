"""Webhooks: SSRF refusal (a local listener receives nothing), signed delivery, retries, failure."""

import uuid

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.access.model import Role
from service.app import create_app
from service.webhooks import service as webhooks
from tests.conftest import make_principal
from tests.supplies.helpers import make_item, make_site, staff
from tests.webhooks.helpers import Listener

HOOKS = "/api/v1/supplies/webhooks"


async def low_stock_at(client, auth, site: str) -> None:
    item = await make_item(client, auth)
    manager = staff([site], Role.SITE_MANAGER)
    await client.patch(f"/api/v1/supplies/sites/{site}/stock/{item}", json={"version": 1, "reorder_level": 5, "target_level": 10}, headers=auth(manager))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hook",
        "https://127.0.0.1:{port}/hook",
        "https://localhost:{port}/hook",
        "https://[::1]:{port}/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://[::ffff:127.0.0.1]:{port}/hook",
        "https://user:pw@example.com/hook",
        "ftp://example.com/hook",
    ],
)
async def test_private_targets_are_refused_and_receive_nothing(client, auth, db, settings, url):
    site = await make_site(client, auth)
    logistics = make_principal(Role.LOGISTICS, [uuid.UUID(site)])
    async with Listener() as listener:
        refused = await client.post(HOOKS, json={"url": url.format(port=listener.port), "events": ["low_stock"]}, headers=auth(logistics))
        assert refused.status_code == 422 and refused.json()["code"] == "webhook_url_refused"
        await low_stock_at(client, auth, site)
        await webhooks.run(db, settings)
        assert listener.requests == []


async def test_delivery_is_signed_and_refused_again_at_delivery_time(settings, auth, db):
    allowing = msgspec.structs.replace(settings, webhook_allow_private=True, webhook_max_attempts=2)
    async with AsyncTestClient(app=create_app(allowing)) as client, Listener() as listener:
        site = await make_site(client, auth)
        other_site = await make_site(client, auth)
        logistics = make_principal(Role.LOGISTICS, [uuid.UUID(site)])
        created = await client.post(HOOKS, json={"url": f"http://127.0.0.1:{listener.port}/hook", "events": ["low_stock", "replenishment"]}, headers=auth(logistics))
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        hook_id = created.json()["webhook"]["id"]
        listed = (await client.get(HOOKS, headers=auth(logistics))).json()
        assert [h["id"] for h in listed] == [hook_id] and "secret" not in listed[0]

        await low_stock_at(client, auth, other_site)  # outside the client's scope: not delivered
        await low_stock_at(client, auth, site)
        await webhooks.run(db, allowing)
        assert len(listener.requests) == 2  # low stock + the automatic replenishment request
        types = sorted(h["x-qsite-event"] for h, _ in listener.requests)
        assert types == ["supplies.low_stock", "supplies.replenishment_requested"]
        for headers, body in listener.requests:
            assert webhooks.verify(secret, headers["x-qsite-signature"], body)
            assert not webhooks.verify(secret, headers["x-qsite-signature"], body + b" ")
            assert not webhooks.verify("whsec_other", headers["x-qsite-signature"], body)
            assert msgspec.json.decode(body)["site_id"] == site
        await webhooks.run(db, allowing)
        assert len(listener.requests) == 2  # delivered once

        # Registered while private targets were allowed; with the default settings they are
        # refused at delivery time too, retried with backoff, then marked failed.
        await low_stock_at(client, auth, site)
        for _ in range(2):
            await webhooks.run(db, settings)
            async with db.connection() as conn:
                await conn.execute("UPDATE webhook_deliveries SET next_attempt_at = now() WHERE state = 'pending'")
        assert len(listener.requests) == 2
        history = (await client.get(f"{HOOKS}/{hook_id}/deliveries", headers=auth(logistics))).json()
        failed = [d for d in history if d["state"] != "delivered"]
        assert failed and all(d["state"] == "pending" and d["attempts"] == 2 for d in failed)
        await webhooks.run(db, allowing)  # settings' limit 8 not reached: still pending, now delivered
        async with db.connection() as conn:
            states = await conn.fetch("SELECT state, attempts FROM webhook_deliveries ORDER BY id")
        assert [s["state"] for s in states] == ["delivered"] * len(states)


async def test_failing_endpoint_is_marked_failed_after_the_limit(settings, auth, db):
    allowing = msgspec.structs.replace(settings, webhook_allow_private=True, webhook_max_attempts=3)
    async with AsyncTestClient(app=create_app(allowing)) as client, Listener(status=500) as listener:
        site = await make_site(client, auth)
        logistics = make_principal(Role.LOGISTICS, [uuid.UUID(site)])
        created = await client.post(HOOKS, json={"url": f"http://127.0.0.1:{listener.port}/h", "events": ["low_stock"]}, headers=auth(logistics))
        assert created.status_code == 201
        await low_stock_at(client, auth, site)
        for _ in range(4):
            await webhooks.run(db, allowing)
            async with db.connection() as conn:
                await conn.execute("UPDATE webhook_deliveries SET next_attempt_at = now() WHERE state = 'pending'")
        assert len(listener.requests) == 3
        async with db.connection() as conn:
            row = await conn.fetchrow("SELECT state, attempts, last_status FROM webhook_deliveries")
        assert (row["state"], row["attempts"], row["last_status"]) == ("failed", 3, 500)
        # Only the owner sees or removes it.
        stranger = make_principal(Role.LOGISTICS, [uuid.UUID(site)])
        hook_id = created.json()["webhook"]["id"]
        assert (await client.delete(f"{HOOKS}/{hook_id}", headers=auth(stranger))).status_code == 404
        assert (await client.delete(f"{HOOKS}/{hook_id}", headers=auth(logistics))).status_code == 204
        assert (await client.get(HOOKS, headers=auth(logistics))).json() == []
