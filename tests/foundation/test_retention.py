"""Retention: each table loses what has outlived its use, in batches, and keeps the rest."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from service import bus
from service.api.jobs import retention


@pytest.fixture
def short(settings):
    # Batches of 2, so that every purge runs several batches.
    return msgspec.structs.replace(settings, retention_batch_size=2)


async def _events(db, count: int, *, days_ago: int) -> list[bus.Event]:
    async with db.transaction() as conn:
        events = [await bus.emit(conn, "test.happened", site_id=None) for _ in range(count)]
        await conn.execute("UPDATE events SET at = now() - make_interval(days => $1) WHERE id = ANY($2)", days_ago, [e.id for e in events])
    return events


async def _ids(db, sql: str) -> set:
    async with db.connection() as conn:
        return {r[0] for r in await conn.fetch(sql)}


async def _webhook(db, cursor: str | None, *, active: bool = True) -> uuid.UUID:
    async with db.connection() as conn:
        return await conn.fetchval(
            "INSERT INTO webhooks (owner, owner_role, url, events, active, feed_cursor) VALUES ('client:' || gen_random_uuid(), 'logistics', 'https://example.org/h', '{supplies.low_stock}', $1, $2) RETURNING id",
            active,
            cursor,
        )


async def test_old_events_go_unless_a_webhook_has_yet_to_fan_them_out(db, short):
    old = await _events(db, 5, days_ago=40)
    recent = await _events(db, 2, days_ago=1)
    # One webhook has fanned out the first two old events; a removed one lags further (ignored).
    await _webhook(db, bus._encode_cursor(str(await _txid(db, old[1].id)), old[1].id))
    await _webhook(db, None, active=False)
    assert (await retention(db, short))["events"] == 2
    assert await _ids(db, "SELECT id FROM events") == {e.id for e in old[2:] + recent}


async def test_without_webhooks_only_the_age_counts(db, short):
    old = await _events(db, 3, days_ago=31)
    recent = await _events(db, 1, days_ago=29)
    assert (await retention(db, short))["events"] == 3
    assert await _ids(db, "SELECT id FROM events") == {recent[0].id}
    assert old


async def _txid(db, event_id: int) -> int:
    async with db.connection() as conn:
        return int(await conn.fetchval("SELECT txid::text FROM events WHERE id = $1", event_id))


async def test_expired_refresh_tokens_go_after_their_retention(db, short):
    async with db.connection() as conn:
        staff_id = await conn.fetchval(
            "INSERT INTO staff (username, display_name, role, password_hash) VALUES ('ret.user', 'R', 'command', 'x') RETURNING id"
        )
        for days, tag in ((-30, "long_expired"), (-10, "long_expired"), (-8, "long_expired"), (-6, "recently_expired"), (10, "live")):
            await conn.execute(
                "INSERT INTO refresh_tokens (family_id, staff_id, token_hash, created_at, expires_at)"
                " VALUES (gen_random_uuid(), $1, $2, now() - interval '20 days' + make_interval(days => $3), now() + make_interval(days => $3))",
                staff_id, f"{tag}{days}".encode(), days,
            )
    assert (await retention(db, short))["refresh_tokens"] == 3
    assert await _ids(db, "SELECT convert_from(token_hash, 'UTF8') FROM refresh_tokens") == {"recently_expired-6", "live10"}


async def test_finished_webhook_deliveries_go_pending_ones_stay(db, short):
    hook = await _webhook(db, None)
    async with db.connection() as conn:
        for event_id, (state, days) in enumerate([("delivered", 40), ("failed", 40), ("delivered", 35), ("pending", 90), ("delivered", 5)]):
            await conn.execute(
                "INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, payload, state, created_at)"
                " VALUES ($1, $2, 'supplies.low_stock', '{}', $3, now() - make_interval(days => $4))",
                hook, event_id, state, days,
            )
    assert (await retention(db, short))["webhook_deliveries"] == 3
    assert await _ids(db, "SELECT event_id FROM webhook_deliveries") == {3, 4}


async def test_idempotency_keys_go_after_their_ttl(db, short):
    async with db.connection() as conn:
        for key, days in (("a", 30), ("b", 8), ("c", 8), ("d", 6)):
            await conn.execute(
                "INSERT INTO idempotency_keys (principal, key, request_hash, status_code, response, created_at)"
                " VALUES ('staff:x', $1, '\\x00', 201, '\\x00', now() - make_interval(days => $2))",
                key, days,
            )
    assert (await retention(db, short))["idempotency_keys"] == 3
    assert await _ids(db, "SELECT key FROM idempotency_keys") == {"d"}


async def test_a_batch_skips_rows_a_writer_holds_instead_of_waiting(db, short):
    old = await _events(db, 3, days_ago=40)
    async with db.pool.acquire() as writer, writer.transaction():
        await writer.execute("SELECT id FROM events WHERE id = $1 FOR UPDATE", old[0].id)
        deleted = await asyncio.wait_for(retention(db, short), timeout=10)
    assert deleted["events"] == 2
    assert await _ids(db, "SELECT id FROM events") == {old[0].id}
