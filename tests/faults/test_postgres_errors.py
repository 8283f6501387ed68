"""PostgreSQL trouble answers 503 with a code and Retry-After (REST and GraphQL), never a 500 or a hang.

These run against the suite's shared server, so nothing here stops it: the trouble is made by
holding locks, holding every pooled connection and ending the app's backends. Killing and
stopping a server of its own is tests/faults/test_postgres_faults.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import asyncpg
import msgspec
import pytest

from service.access.model import Role
from service.app import create_app
from tests.conftest import make_principal
from tests.faults.server import serve

COMMAND = make_principal(Role.COMMAND)


def _client(settings, **overrides):
    return serve(create_app(msgspec.structs.replace(settings, **overrides)))


async def _admin(database_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(database_url)


def _assert_unavailable(response, code: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    assert int(response.headers["retry-after"]) >= 1


def _no_tracebacks(caplog) -> None:
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], "an outage was logged as a bug"


async def test_a_lock_wait_past_statement_timeout_is_503_busy(settings, auth, database_url, caplog):
    caplog.set_level(logging.WARNING)
    admin = await _admin(database_url)
    try:
        async with _client(settings, statement_timeout_ms=300) as client:
            await admin.execute("BEGIN; LOCK TABLE sites IN ACCESS EXCLUSIVE MODE")
            response = await client.get("/api/v1/sites", headers=auth(COMMAND))
            _assert_unavailable(response, "busy")
            assert response.headers["retry-after"] == "1"
            await admin.execute("ROLLBACK")
            assert (await client.get("/api/v1/sites", headers=auth(COMMAND))).status_code == 200
    finally:
        await admin.close()
    assert any(getattr(r, "event", None) == "database_busy" for r in caplog.records)
    _no_tracebacks(caplog)


async def test_waiting_for_a_connection_is_bounded_and_answers_503(settings, auth, database_url):
    admin = await _admin(database_url)
    try:
        async with _client(settings, pool_min_size=1, pool_max_size=1, db_acquire_timeout_s=0.3) as client:
            headers = auth(COMMAND)
            await admin.execute("BEGIN; LOCK TABLE sites IN ACCESS EXCLUSIVE MODE")
            holder = asyncio.create_task(client.get("/api/v1/sites", headers=headers))  # takes the only connection, waits
            await asyncio.sleep(0.5)
            started = time.monotonic()
            response = await client.get("/api/v1/sites", headers=headers)
            waited = time.monotonic() - started
            await admin.execute("ROLLBACK")
            assert (await holder).status_code == 200
        _assert_unavailable(response, "database_unavailable")
        assert waited < 2.0, waited
    finally:
        await admin.close()


async def test_no_request_outlives_its_deadline_and_the_stuck_connection_is_replaced(settings, auth, database_url, caplog):
    caplog.set_level(logging.WARNING)
    admin = await _admin(database_url)
    try:
        # statement_timeout would end the wait after 20 s: the request's deadline ends it first.
        async with _client(settings, statement_timeout_ms=20_000, db_acquire_timeout_s=0.2, db_deadline_s=0.6) as client:
            await admin.execute("BEGIN; LOCK TABLE sites IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            response = await client.get("/api/v1/sites", headers=auth(COMMAND))
            waited = time.monotonic() - started
            _assert_unavailable(response, "database_unavailable")
            assert waited < 3.0, waited
            # The server stops the abandoned statement (its client went away) and lets the lock go.
            stuck = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            for _ in range(50):
                if await admin.fetchval(stuck) == 0:
                    break
                await asyncio.sleep(0.1)
            assert await admin.fetchval(stuck) == 0
            await admin.execute("ROLLBACK")
            assert (await client.get("/api/v1/sites", headers=auth(COMMAND))).status_code == 200
    finally:
        await admin.close()
    _no_tracebacks(caplog)


async def test_connections_the_server_ended_are_replaced_for_reads_and_writes(settings, auth, database_url, caplog):
    caplog.set_level(logging.WARNING)
    admin = await _admin(database_url)
    try:
        async with _client(settings, pool_min_size=4, pool_max_size=4) as client:
            headers = auth(COMMAND)
            assert (await client.get("/api/v1/sites", headers=headers)).status_code == 200
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'qsite'"
            )
            assert ended >= 1
            reads = await asyncio.gather(*(client.get("/api/v1/sites", headers=headers) for _ in range(6)))
            assert [r.status_code for r in reads] == [200] * 6
            code = f"F-{uuid.uuid4().hex[:6]}"
            write = await client.post("/api/v1/sites", json={"code": code, "name": code}, headers=headers)
            assert write.status_code == 201, write.text
    finally:
        await admin.close()
    _no_tracebacks(caplog)


async def test_in_a_transaction_a_server_ended_connection_is_503_not_500(db, database_url):
    from service.errors import Unavailable

    admin = await _admin(database_url)
    try:
        with pytest.raises(Unavailable) as raised:
            async with db.transaction() as conn:
                await admin.execute("SELECT pg_terminate_backend($1, 5000)", conn.get_server_pid())
                await conn.fetchval("SELECT 1")
        assert raised.value.status == 503 and raised.value.headers["Retry-After"]
        async with db.transaction() as conn:  # the dead connection was dropped, not handed out again
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await admin.close()


BOARD = "query($id: UUID!) { apiVersion site(id: $id) { code } }"
SITES = "{ sites { edges { node { code } } } }"


async def test_graphql_answers_503_when_nothing_was_served_and_200_with_codes_when_some_was(settings, auth, database_url):
    admin = await _admin(database_url)
    try:
        async with _client(settings, statement_timeout_ms=300) as client:
            headers = auth(COMMAND)
            await admin.execute("BEGIN; LOCK TABLE sites IN ACCESS EXCLUSIVE MODE")
            nothing = await client.post("/graphql", json={"query": SITES}, headers=headers)
            assert nothing.status_code == 503, nothing.text
            assert nothing.headers["retry-after"] == "1"
            assert nothing.json()["data"] is None
            assert [e["extensions"]["code"] for e in nothing.json()["errors"]] == ["busy"]

            partial = await client.post("/graphql", json={"query": BOARD, "variables": {"id": str(uuid.uuid4())}}, headers=headers)
            assert partial.status_code == 200, partial.text
            body = partial.json()
            assert body["data"] == {"apiVersion": "1", "site": None}
            assert [e["extensions"]["code"] for e in body["errors"]] == ["busy"]
            await admin.execute("ROLLBACK")
            assert (await client.post("/graphql", json={"query": SITES}, headers=headers)).status_code == 200
    finally:
        await admin.close()


async def test_a_graphql_mutation_during_an_outage_is_a_top_level_error_not_a_user_error(settings, auth, database_url):
    admin = await _admin(database_url)
    try:
        async with _client(settings, statement_timeout_ms=300) as client:
            await admin.execute("BEGIN; LOCK TABLE sites IN ACCESS EXCLUSIVE MODE")
            code = f"G-{uuid.uuid4().hex[:6]}"
            mutation = "mutation($input: CreateSiteInput!) { createSite(input: $input) { site { id } userErrors { code } } }"
            response = await client.post("/graphql", json={"query": mutation, "variables": {"input": {"code": code, "name": code}}}, headers=auth(COMMAND))
            await admin.execute("ROLLBACK")
    finally:
        await admin.close()
    body = response.json()
    assert response.status_code == 503, body
    assert body["data"] is None or body["data"].get("createSite") is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["busy"]


async def test_a_read_on_a_connection_the_server_ended_runs_again_on_a_fresh_one(db, database_url, caplog):
    caplog.set_level(logging.INFO)
    admin = await _admin(database_url)
    try:
        async with db.connection() as conn:
            await admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'qsite'"
            )
            assert await conn.fetchval("SELECT 41 + 1") == 42
    finally:
        await admin.close()
    assert [getattr(r, "event", None) for r in caplog.records if r.name == "qsite.db"] == ["database_retry"]
