"""Every REST route and GraphQL root field: bad credentials, and each role against the hand-written table.

Routes and fields are read from the app and the schema (tests/security/walk.py),
so whatever another domain adds is walked without new test code; which role may
call what comes from tests/security/expected.py, written from the README, never
from the code's own declarations. Another site's ids: tests/security/test_cross_site.py.
One app and one database serve the whole module (2 shared cores).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import asyncpg
from graphql import GraphQLError
import jwt
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.access import service
from service.access.model import Role
from service.access.service import issue_access_token
from service.api.graphql import build_schema
from service.app import create_app
from service.cache import Cache
from service.db import Database, create_pool
from service.errors import DomainError
from service.gql import Context
from service.settings import generate_secrets, load_settings
from tests.conftest import make_principal, with_database
from tests.security.expected import EXPECTED, PUBLIC
from tests.security.walk import ROLES, document, graphql_fields, rest_operations


SITE_SCOPED = [r for r in ROLES if r is not Role.COMMAND]
# Tables whose rows belong to a site through a link table rather than a site_id column.
LINKED = {"staff": ("staff_sites", "staff_id"), "api_clients": ("api_client_sites", "client_id")}


@pytest.fixture(scope="module")
async def world(server_dsn: str, template_db: str, redis_url: str, tmp_path_factory) -> AsyncIterator[SimpleNamespace]:
    name = f"qsite_sec_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}" STRATEGY FILE_COPY')
    settings = load_settings(
        {},
        env="test",
        database_url=with_database(server_dsn, name),
        redis_url=redis_url,
        redis_prefix=f"test:{uuid.uuid4().hex[:12]}:",
        data_dir=str(tmp_path_factory.mktemp("security")),
        run_background_jobs=False,
        login_attempts_per_address_per_minute=100_000,
        **generate_secrets(),
    )
    app = create_app(settings)
    # The test client runs the app on a loop of its own: direct database work uses this pool.
    db = Database(await create_pool(settings, settings.database_url), Cache(redis_url, prefix=settings.redis_prefix, timeout_ms=250))
    try:
        async with AsyncTestClient(app=app) as client:
            command = make_principal(Role.COMMAND)
            sites = []
            for code in ("SEC-A", "SEC-B"):
                made = await client.post("/api/v1/sites", json={"code": code, "name": code}, headers=_bearer(settings, command))
                assert made.status_code == 201, made.text
                sites.append(uuid.UUID(made.json()["id"]))
            own, foreign = sites
            async with db.transaction() as conn:
                await _seed_foreign(conn, settings, foreign)
                revoked = await service.create_client(
                    conn, service.SYSTEM_PRINCIPAL, msgspec.convert({"name": "old", "role": "lab", "site_ids": [str(own)]}, service.ApiClientCreate)
                )
                await service.revoke_client(db, conn, service.SYSTEM_PRINCIPAL, revoked.id)
            async with db.connection() as conn:
                tables = {
                    r["table_name"]: set(r["columns"])
                    for r in await conn.fetch(
                        "SELECT table_name::text, array_agg(column_name::text) AS columns FROM information_schema.columns"
                        " WHERE table_schema = 'public' GROUP BY table_name"
                    )
                }
            yield SimpleNamespace(
                app=app, client=client, settings=settings, db=db, own=own, foreign=foreign, tables=tables,
                revoked_key=revoked.api_key, schema=build_schema(settings), foreign_ids={},
            )
    finally:
        await db.pool.close()
        await db.cache.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _seed_foreign(conn: asyncpg.Connection, settings: Any, site: uuid.UUID) -> None:
    """Access's own records at the other site; other domains' ids are found in the tables if present."""
    data = msgspec.convert(
        {"username": "foreign-staff", "display_name": "F", "password": "a-long-password", "role": "site_staff", "site_ids": [str(site)]},
        service.StaffCreate,
    )
    await service.create_staff(conn, settings, service.SYSTEM_PRINCIPAL, data)
    await service.create_client(
        conn, service.SYSTEM_PRINCIPAL, msgspec.convert({"name": "f", "role": "logistics", "site_ids": [str(site)]}, service.ApiClientCreate)
    )


def _bearer(settings: Any, principal: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_access_token(settings, principal)}"}


def _table_candidates(noun: str) -> list[str]:
    return [noun + "s", noun + "es", noun, noun[:-1] + "ies" if noun.endswith("y") else noun]


async def id_of_site(w: SimpleNamespace, param: str, site: uuid.UUID) -> uuid.UUID:
    """A real id of a ``<noun>_id`` record at ``site`` when its table is known, else a random UUID."""
    noun = param.removesuffix("_ids").removesuffix("_id").removesuffix("Ids").removesuffix("Id")
    noun = "".join("_" + c.lower() if c.isupper() else c for c in noun).strip("_")
    if noun == "site":
        return site
    key = (noun, site)
    if key in w.foreign_ids:
        return w.foreign_ids[key]
    found = None
    words = noun.split("_")
    # revoke_api_client -> api_client; staff_member -> staff
    nouns = dict.fromkeys([noun, "_".join(words[1:]), words[0], "_".join(words[:-1])] if len(words) > 1 else [noun])
    tables = [t for n in nouns if n for t in _table_candidates(n)] + [t for t in w.tables if t.endswith("_" + noun + "s")]
    async with w.db.connection() as conn:
        for table in tables:
            columns = w.tables.get(table, set())
            if "id" not in columns:
                continue
            if "site_id" in columns:
                found = await conn.fetchval(f'SELECT id FROM "{table}" WHERE site_id = $1 LIMIT 1', site)
            elif table in LINKED:
                link, col = LINKED[table]
                found = await conn.fetchval(f'SELECT {col} FROM "{link}" WHERE site_id = $1 LIMIT 1', site)
            if found is not None:
                break
    w.foreign_ids[key] = found or uuid.uuid4()
    return w.foreign_ids[key]


async def _url(w: SimpleNamespace, op: Any, site: uuid.UUID, *, real_ids: bool) -> str:
    values = {}
    for name, kind in op.path_params:
        if kind == "uuid":
            values[name] = await id_of_site(w, name, site) if real_ids or name == "site_id" else uuid.uuid4()
        else:
            values[name] = 1 if kind == "int" else "x"
    return op.url(lambda name, kind: values[name])


async def _call(w: SimpleNamespace, method: str, url: str, headers: dict[str, str], **kw: Any) -> Any:
    body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return await w.client.request(method, url, headers=headers, **body, **kw)


def _bad_credentials(w: SimpleNamespace) -> dict[str, dict[str, str]]:
    s = w.settings
    principal = make_principal(Role.COMMAND)
    claims = {"sub": str(principal.id), "kind": "staff", "role": "command", "sites": None, "iat": int(time.time()), "exp": int(time.time()) + 600}
    return {
        "no credential": {},
        "expired token": {"Authorization": f"Bearer {issue_access_token(s, principal, now=time.time() - 3600)}"},
        "forged signature": {"Authorization": f"Bearer {jwt.encode(claims, 'not-the-secret-' * 3, algorithm='HS256')}"},
        "alg none": {"Authorization": f"Bearer {jwt.encode(claims, None, algorithm='none')}"},
        "garbage": {"Authorization": "Bearer qsite"},
        "revoked API key": {"X-API-Key": w.revoked_key},
        "unknown API key": {"X-API-Key": "qsk_" + "x" * 43},
    }


async def test_rest_refuses_every_bad_credential(world):
    failures = []
    for op in rest_operations(world.app):
        if op.public:
            continue
        url = await _url(world, op, world.foreign, real_ids=False)
        for label, headers in _bad_credentials(world).items():
            response = await _call(world, op.method, url, headers)
            if response.status_code != 401:
                failures.append(f"{op.label} with {label}: {response.status_code}")
    assert not failures, "\n".join(failures)


def test_every_route_and_field_is_in_the_hand_written_table(world):
    """A new route or field fails here until someone writes down who may call it."""
    walked = {op.label for op in rest_operations(world.app)} | {f.label for f in graphql_fields(world.schema)}
    assert sorted(walked - EXPECTED.keys()) == [], "add these to tests/security/expected.py"
    assert sorted(EXPECTED.keys() - walked) == [], "listed in tests/security/expected.py but not served"
    public = {op.label for op in rest_operations(world.app) if op.public}
    public |= {f.label for f in graphql_fields(world.schema) if f.policy_operation is None}
    assert public == {label for label, who in EXPECTED.items() if who == PUBLIC}


async def test_rest_role_matrix(world):
    failures = []
    for op in rest_operations(world.app):
        if op.public:
            continue
        expected = EXPECTED[op.label]
        url = await _url(world, op, world.own, real_ids=False)
        for role in ROLES:
            response = await _call(world, op.method, url, _bearer(world.settings, make_principal(role, [world.own])))
            status, code = response.status_code, _code(response)
            if status >= 500:
                failures.append(f"{op.label} as {role}: {status} {response.text[:200]}")
            elif role not in expected and (status != 403 or code != "role_not_allowed"):
                failures.append(f"{op.label} as {role}: {status} {code}, expected 403 role_not_allowed")
            elif role in expected and (status == 401 or code == "role_not_allowed"):
                failures.append(f"{op.label} as {role}: {status} {code}, the README admits it")
    assert not failures, "\n".join(failures)


def _code(response: Any) -> str | None:
    try:
        return response.json().get("code")
    except (ValueError, AttributeError):
        return None


# --- GraphQL ----------------------------------------------------------------------


async def _ids(w: SimpleNamespace, site: uuid.UUID):
    cache: dict[str, uuid.UUID] = {}
    # Resolve every id-like name used by the schema up front: `sample` is synchronous.
    for f in graphql_fields(w.schema):
        _, _, _ = document(f, lambda n: cache.setdefault(n, uuid.uuid4()), fill_optional_ids=True)
    for name in list(cache):
        cache[name] = await id_of_site(w, "site_id" if name in ("siteId", "siteIds") else name, site)
    return lambda name: cache.get(name, uuid.uuid4())


def _unexpected(errors: list[Any]) -> list[str]:
    """Errors that are neither validation, permission nor domain errors: the GraphQL 500s."""
    bad = []
    for error in errors or []:
        original = error.original_error
        if original is None or isinstance(original, DomainError | GraphQLError) or "Permission" in type(original).__name__:
            continue
        bad.append(f"{type(original).__name__}: {original}")
    return bad


def _denied(result: Any) -> bool:
    return bool(result.errors) and any("Not allowed" in e.message or "Authentication" in e.message for e in result.errors)


async def _execute(w: SimpleNamespace, f: Any, principal: Any, ids: Any, *, fill_optional_ids: bool) -> tuple[Any, bool]:
    query, variables, has_ids = document(f, ids, fill_optional_ids=fill_optional_ids)
    context = Context(db=w.db, cache=w.db.cache, settings=w.settings, principal=principal)
    return await w.schema.execute(query, variable_values=variables, context_value=context), has_ids


async def test_graphql_refuses_every_bad_credential(world):
    failures = []
    ids = await _ids(world, world.foreign)
    for f in graphql_fields(world.schema):
        if f.policy_operation is None or f.operation == "subscription":
            continue
        query, variables, _ = document(f, ids, fill_optional_ids=False)
        for label, headers in _bad_credentials(world).items():
            response = await world.client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
            if response.status_code == 401:
                continue
            body = response.json()
            if response.status_code != 200 or not body.get("errors") or (body.get("data") or {}).get(f.name) is not None:
                failures.append(f"{f.operation} {f.name} with {label}: {response.status_code} {response.text[:200]}")
    assert not failures, "\n".join(failures)


async def test_graphql_role_matrix(world):
    failures = []
    ids = await _ids(world, world.own)
    for f in graphql_fields(world.schema):
        if f.policy_operation is None or f.operation == "subscription":
            continue
        expected = EXPECTED[f.label]
        for role in ROLES:
            result, _ = await _execute(world, f, make_principal(role, [world.own]), ids, fill_optional_ids=False)
            if unexpected := _unexpected(result.errors):
                failures.append(f"{f.label} as {role}: {unexpected}")
            elif role not in expected and not _denied(result):
                failures.append(f"{f.label} as {role}: not refused")
            elif role in expected and _denied(result):
                failures.append(f"{f.label} as {role}: refused, the README admits it")
    assert not failures, "\n".join(failures)


async def test_subscription_roles(world):
    """Subscriptions: the first answer of the stream for each role (refusal before anything streams)."""
    failures = []
    for f in graphql_fields(world.schema):
        if f.operation != "subscription":
            continue
        for role in ROLES:
            context = Context(db=world.db, cache=world.db.cache, settings=world.settings, principal=make_principal(role, [world.own]))
            stream = await world.schema.subscribe(f"subscription {{ {f.name} {{ __typename }} }}", context_value=context)
            first = stream if not hasattr(stream, "__anext__") else await _first(stream)
            denied = bool(getattr(first, "errors", None)) and any("Not allowed" in e.message for e in first.errors)
            if (role in EXPECTED[f.label]) == denied:
                failures.append(f"{f.label} as {role}: {'refused' if denied else 'admitted'}")
    assert not failures, "\n".join(failures)


async def _first(stream: Any) -> Any:
    try:
        return await asyncio.wait_for(stream.__anext__(), timeout=0.5)
    except (TimeoutError, StopAsyncIteration):
        return None
    finally:
        await stream.aclose()


def test_readme_role_matrix_is_generated_from_the_policy(world):
    """The README's matrix is `python -m tests.security.walk` output: regenerate it when the policy changes."""
    from pathlib import Path

    from tests.security.walk import role_matrix_markdown

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert role_matrix_markdown(world.app, world.schema) in readme
