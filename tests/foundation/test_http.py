"""The HTTP edge: problem+json, request ids, readiness, a dead Redis."""

import asyncpg
import msgspec
import pytest
from litestar import get
from litestar.testing import AsyncTestClient

from service import cache as cache_module
from service.access.model import Role
from service.app import create_app
from service.errors import from_database
from tests.conftest import make_principal


@get("/boom", exclude_from_auth=True, sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("secret internals: password=hunter2")


async def test_unknown_route_is_problem_json(client):
    response = await client.get("/api/v1/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "not_found" and body["status"] == 404 and body["request_id"] == response.headers["x-request-id"]


async def test_unhandled_error_is_generic_500_without_internals(settings):
    app = create_app(settings)
    app.register(boom)
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/boom", headers={"X-Request-ID": "req-123"})
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "internal_error" and body["request_id"] == "req-123"
    assert "hunter2" not in response.text and "Traceback" not in response.text


async def test_missing_credentials_is_401_problem(client):
    response = await client.get("/api/v1/sites")
    assert response.status_code == 401 and response.json()["code"] == "unauthenticated"


async def test_readiness_false_when_postgres_unreachable(settings):
    broken = msgspec.structs.replace(settings, database_url="postgresql://postgres@127.0.0.1:1/none", pool_min_size=0)
    async with AsyncTestClient(app=create_app(broken)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "status": "unavailable", "postgres": False, "redis": True}


async def test_dead_redis_is_tried_once_and_writes_still_succeed(settings, auth, monkeypatch):
    monkeypatch.setattr(cache_module, "PROBE_MIN_S", 600)  # no probe during the test: only requests touch Redis
    dead = msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:1/0")
    command = make_principal(Role.COMMAND)
    async with AsyncTestClient(app=create_app(dead)) as client:
        redis_client = client.app.state.cache.client
        attempts = []
        real_pipeline = redis_client.pipeline

        def counted_pipeline(*args, **kwargs):
            attempts.append(args)
            return real_pipeline(*args, **kwargs)

        redis_client.pipeline = counted_pipeline
        for i in range(10):
            created = await client.post("/api/v1/sites", json={"code": f"R-{i}", "name": "r"}, headers=auth(command))
            assert created.status_code == 201
        # The first publish failed; after that Redis is skipped instead of costing a timeout per request.
        assert len(attempts) == 1 and client.app.state.cache.available is False
        # Ready (PostgreSQL answers), Redis reported as degraded rather than taking the instance out.
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"ready": True, "status": "degraded", "postgres": True, "redis": False}


async def test_readiness_ok_with_both(client):
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"ready": True, "status": "ok", "postgres": True, "redis": True}


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
async def test_operational_endpoints_answer(client, path):
    assert (await client.get(path)).status_code == 200


@pytest.mark.parametrize("bad_name", [r"nul\u0000byte", r"lone \ud800 surrogate"])
async def test_text_postgres_cannot_store_is_422_not_500(client, auth, bad_name):
    response = await client.post(
        "/api/v1/sites",
        content=('{"code": "NUL-1", "name": "%s"}' % bad_name).encode(),
        headers={**auth(make_principal(Role.COMMAND)), "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422), response.text
    assert response.json()["code"] in ("invalid_value", "invalid_request")


@pytest.mark.parametrize("text", ["2026-11-30T08:00:00+21:29", "2026-11-30T08:00:00-16:00", "2026-13-01T00:00:00Z"])
async def test_a_timestamp_postgres_cannot_parse_maps_to_invalid_value(db, text):
    """The one mapping (service/errors.py) answers 422 for any value PostgreSQL refuses to parse, never 500."""
    with pytest.raises(asyncpg.PostgresError) as refused:
        async with db.connection() as conn:
            await conn.fetchval("SELECT $1::text::timestamptz", text)
    mapped = from_database(refused.value)
    assert mapped is not None and (mapped.status, mapped.code) == (422, "invalid_value")


async def test_a_time_that_cannot_be_sent_to_postgres_is_422_on_both_edges(client, auth):
    """Year 1 at +01:00 is before year 1 in UTC: asyncpg cannot encode it (it answered 500)."""
    headers = auth(make_principal(Role.COMMAND))
    before_time = "0001-01-01T00:00:00+01:00"
    r = await client.get("/api/v1/audit", params={"since": before_time}, headers=headers)
    assert r.status_code == 422 and r.json()["code"] == "invalid_value", r.text
    for query in ('{ riskAreas(at: "%s") { code } }', '{ auditLog(since: "%s") { edges { cursor } } }'):
        body = (await client.post("/graphql", json={"query": query % before_time}, headers=headers)).json()
        assert [e["extensions"]["code"] for e in body["errors"]] == ["invalid_value"], body


async def test_graphql_top_level_errors_carry_the_domain_code(client, auth):
    query = '{ sites(first: 5, after: "!!!") { edges { cursor } } }'
    body = (await client.post("/graphql", json={"query": query}, headers=auth(make_principal(Role.COMMAND)))).json()
    assert body["errors"][0]["extensions"]["code"] == "invalid_cursor"


async def test_head_answers_like_get_without_a_body(client, auth):
    """HEAD on a GET route is that GET's status and headers, no body (it answered 405 before)."""
    headers = auth(make_principal(Role.COMMAND))
    for path in ("/healthz", "/api/v1/sites", "/api/v1/supplies/items"):
        got = await client.get(path, headers=headers)
        head = await client.head(path, headers=headers)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"" and head.headers["content-length"] == got.headers["content-length"]
        assert head.headers.get("etag") == got.headers.get("etag")
    etag = (await client.get("/api/v1/sites", headers=headers)).headers["etag"]
    assert (await client.head("/api/v1/sites", headers={**headers, "If-None-Match": etag})).status_code == 304
    # the GET route's authentication and method rules still apply
    assert (await client.head("/api/v1/sites")).status_code == 401
    refused = await client.head("/api/v1/checkins", headers=headers)
    assert refused.status_code == 405 and refused.content == b""
