"""GraphQL document limits: depth, aliases, tokens, operations per document; errors masked in production."""

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.access.model import Role
from service.app import create_app
from tests.conftest import make_principal


async def _errors(client, query, headers=None):
    response = await client.post("/graphql", json={"query": query}, headers=headers or {})
    assert response.status_code in (200, 400), response.text
    return [e["message"] for e in response.json().get("errors") or []]


async def test_depth_limit(settings):
    shallow = msgspec.structs.replace(settings, graphql_max_depth=2)
    async with AsyncTestClient(app=create_app(shallow)) as client:
        deep = await _errors(client, "{ sites { edges { node { id } } } }")
        assert any("exceeds maximum operation depth" in m for m in deep)
        assert not any("depth" in m for m in await _errors(client, "{ sites { pageInfo { hasNextPage } } }"))


async def test_alias_limit(client, settings):
    aliases = " ".join(f"a{i}: apiVersion" for i in range(settings.graphql_max_aliases + 1))
    assert any("aliases" in m.lower() for m in await _errors(client, "{ " + aliases + " }"))
    fine = " ".join(f"a{i}: apiVersion" for i in range(3))
    assert await _errors(client, "{ " + fine + " }") == []


async def test_token_limit(client, settings):
    huge = "{ " + " ".join(["apiVersion"] * (settings.graphql_max_tokens + 10)) + " }"
    assert any("token" in m.lower() for m in await _errors(client, huge))


async def test_one_operation_per_document(client):
    two = "query A { apiVersion } query B { apiVersion }"
    response = await client.post("/graphql", json={"query": two, "operationName": "A"})
    assert any("operation" in e["message"] for e in response.json()["errors"])


async def test_graphiql_only_outside_production(settings):
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert (await client.get("/graphql", headers={"Accept": "text/html"})).status_code == 200
    production = msgspec.structs.replace(settings, env="production")
    async with AsyncTestClient(app=create_app(production)) as client:
        refused = await client.get("/graphql", headers={"Accept": "text/html"})
    # a 404 like any other: problem+json with its code (it was bare text)
    assert refused.status_code == 404 and refused.json()["code"] == "not_found"
    assert refused.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("env", ["production"])
async def test_unexpected_errors_are_masked_in_production(settings, auth, env):
    production = msgspec.structs.replace(settings, env=env)
    async with AsyncTestClient(app=create_app(production)) as client:
        query = '{ sites(first: 5, after: "!!!") { edges { cursor } } }'
        body = (await client.post("/graphql", json={"query": query}, headers=auth(make_principal(Role.COMMAND)))).json()
    # A domain error keeps its message for the user; nothing internal leaks.
    assert body["errors"][0]["message"] == "The cursor is not one this API issued."
