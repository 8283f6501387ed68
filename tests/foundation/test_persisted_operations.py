"""The apps' operations in graphql/operations/ are valid against the schema and can be sent by hash."""

import hashlib

import msgspec
import pytest
from graphql import parse, validate
from litestar.testing import AsyncTestClient

from service.access.model import Role
from service.api.graphql import build_schema
from service.api.persisted import OPERATIONS_DIR, documents
from service.app import create_app
from tests.conftest import make_principal

OPERATION_FILES = sorted(OPERATIONS_DIR.glob("*.graphql"))


@pytest.mark.parametrize("path", OPERATION_FILES, ids=lambda p: p.stem)
def test_operation_is_valid_against_schema(settings, path):
    schema = build_schema(settings)._schema
    assert validate(schema, parse(path.read_text())) == []


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_persisted_operation_runs_by_hash(client, auth):
    text = (OPERATIONS_DIR / "Sites.graphql").read_text()
    assert _hash(text) in documents()
    body = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": _hash(text)}}, "variables": {"first": 5}}
    response = await client.post("/graphql", json=body, headers=auth(make_principal(Role.COMMAND)))
    assert response.json() == {"data": {"sites": {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}}}


async def test_unknown_hash_is_an_error_not_a_crash(client, auth):
    body = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}}
    response = await client.post("/graphql", json=body, headers=auth(make_principal(Role.COMMAND)))
    assert response.status_code < 500
    assert response.json()["errors"][0]["message"] == "PersistedQueryNotFound"


async def test_persisted_only_refuses_ad_hoc_documents(settings, auth):
    strict = msgspec.structs.replace(settings, graphql_persisted_only=True)
    headers = auth(make_principal(Role.COMMAND))
    async with AsyncTestClient(app=create_app(strict)) as client:
        ad_hoc = await client.post("/graphql", json={"query": "{ sites { edges { cursor } } }"}, headers=headers)
        assert ad_hoc.status_code < 500 and ad_hoc.json()["errors"][0]["message"] == "Only persisted operations are accepted."
        text = (OPERATIONS_DIR / "Sites.graphql").read_text()
        by_text = await client.post("/graphql", json={"query": text}, headers=headers)
        assert "errors" not in by_text.json()
