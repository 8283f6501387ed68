"""The GraphQL edge: prepared documents, no personal data in logs, production hardening, HTTP details."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.access.model import Role
from service.api import graphql as edge
from service.api import persisted
from service.api.graphql import build_schema
from service.api.persisted import OPERATIONS_DIR, operation_document
from service.app import create_app
from service.observability import JsonFormatter
from tests.conftest import make_principal

DOCUMENT_NUMBER = "500101199001010672"
PHONE = "13787650007"
ADMIT = operation_document(OPERATIONS_DIR / "AdmitResident.graphql")


def _hash(name: str) -> str:
    return hashlib.sha256(operation_document(OPERATIONS_DIR / f"{name}.graphql").encode()).hexdigest()


def _resident(**extra: object) -> dict[str, object]:
    return {"name": "张三", "documentType": "MAINLAND_ID", "documentNumber": DOCUMENT_NUMBER, "phone": PHONE, **extra}


# The failing documents of issue 12: an unknown field in a variable, a bad inline value.
FAILING = [
    {"query": ADMIT, "variables": {"input": {"siteId": str(uuid.uuid4()), "category": "CLOSE_CONTACT", "resident": _resident(nickname="x")}}},
    {
        "query": 'mutation { admitResident(input: {siteId: "%s", category: CLOSE_CONTACT, resident: '
        '{name: "x", documentType: MAINLAND_ID, documentNumber: "%s", phone: "%s", sex: 7}}) { userErrors { code } } }'
        % (uuid.uuid4(), DOCUMENT_NUMBER, PHONE)
    },
    {"query": ADMIT, "variables": {"input": {"siteId": "not-a-uuid", "category": "CLOSE_CONTACT", "resident": _resident()}}},
]


@pytest.mark.parametrize("env", ["test", "production"])
async def test_no_personal_data_in_any_log_line(settings, auth, caplog, env):
    caplog.set_level(logging.DEBUG)
    headers = auth(make_principal(Role.COMMAND))
    async with AsyncTestClient(app=create_app(msgspec.structs.replace(settings, env=env))) as client:
        for body in FAILING:
            response = await client.post("/graphql", json=body, headers=headers)
            assert response.status_code == 200 and response.json()["errors"], response.text
            # The same through Strawberry's own execution (WebSocket subscriptions use it).
            schema = build_schema(msgspec.structs.replace(settings, env=env))
            result = await schema.execute(body["query"], variable_values=body.get("variables"))
            assert result.errors
    assert caplog.records, "the failing requests were logged (access log at least)"
    formatter = JsonFormatter()
    for record in caplog.records:
        line = formatter.format(record)
        assert DOCUMENT_NUMBER not in line and PHONE not in line, line


async def test_library_logger_is_scrubbed(caplog):
    caplog.set_level(logging.DEBUG)
    try:
        raise ValueError(f"documentNumber: {DOCUMENT_NUMBER}")
    except ValueError:
        logging.getLogger("strawberry.execution").exception("failed: %s", PHONE)
    line = JsonFormatter().format(caplog.records[-1])
    assert "ValueError" in line and DOCUMENT_NUMBER not in line and PHONE not in line


SUGGESTING = [
    "{ apiVersio }",  # field
    "{ sites(frist: 5) { edges { cursor } } }",  # argument
]


@pytest.mark.parametrize("query", SUGGESTING)
async def test_no_field_suggestions_in_production(settings, auth, query):
    headers = auth(make_principal(Role.COMMAND))
    for env, suggests in (("test", True), ("production", False)):
        async with AsyncTestClient(app=create_app(msgspec.structs.replace(settings, env=env))) as client:
            errors = (await client.post("/graphql", json={"query": query}, headers=headers)).json()["errors"]
        assert any("Did you mean" in e["message"] for e in errors) is suggests, (env, errors)


async def test_no_suggestions_in_variable_errors_in_production(settings, auth):
    headers = auth(make_principal(Role.COMMAND))
    body = {"query": ADMIT, "variables": {"input": {"siteId": str(uuid.uuid4()), "category": "CLOSE_CONTAC", "resident": _resident()}}}
    for env, suggests in (("test", True), ("production", False)):
        async with AsyncTestClient(app=create_app(msgspec.structs.replace(settings, env=env))) as client:
            text = (await client.post("/graphql", json=body, headers=headers)).text
        assert ("Did you mean" in text) is suggests, (env, text)


@pytest.mark.parametrize("query", ["{ __schema { queryType { name } } }", '{ __type(name: "Site") { name } }',
                                   "query { ...F } fragment F on Query { __schema { types { name } } }"])
async def test_introspection_needs_a_caller_in_production(settings, auth, query):
    production = msgspec.structs.replace(settings, env="production")
    async with AsyncTestClient(app=create_app(production)) as client:
        anonymous = (await client.post("/graphql", json={"query": query})).json()
        assert anonymous["data"] is None and anonymous["errors"][0]["extensions"]["code"] == "unauthenticated"
        signed_in = (await client.post("/graphql", json={"query": query}, headers=auth(make_principal(Role.SITE_STAFF)))).json()
        assert "errors" not in signed_in
        assert (await client.post("/graphql", json={"query": "{ __typename apiVersion }"})).json()["data"]["apiVersion"] == "1"
    async with AsyncTestClient(app=create_app(settings)) as client:  # development tools keep working
        assert "errors" not in (await client.post("/graphql", json={"query": query})).json()


async def test_documents_are_parsed_and_validated_once(settings, auth, client, monkeypatch):
    headers = auth(make_principal(Role.COMMAND))
    by_hash = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": _hash("Sites")}}, "variables": {"first": 5}}
    by_text = {"query": operation_document(OPERATIONS_DIR / "Sites.graphql"), "variables": {"first": 5}}
    parsed: list[str] = []
    real_parse = persisted.parse
    monkeypatch.setattr(persisted, "parse", lambda text, **kw: parsed.append(text) or real_parse(text, **kw))
    for _ in range(3):
        for body in (by_hash, by_text):
            assert "errors" not in (await client.post("/graphql", json=body, headers=headers)).json()
    assert parsed == []  # persisted: prepared at start-up
    for _ in range(3):
        assert (await client.post("/graphql", json={"query": "{ apiVersion sites { pageInfo { hasNextPage } } }"}, headers=headers)).status_code == 200
    assert len(parsed) == 1  # ad hoc: once, then from the cache


@pytest.mark.parametrize(
    ("query", "answer"),
    [
        ("{ apiVersion }", b'{"data":{"apiVersion":"1"}}'),
        ("query Version { v: apiVersion __typename }", b'{"data":{"v":"1","__typename":"Query"}}'),
        ("query($x: Int) { apiVersion }", None),  # variables: executed
        ("{ apiVersion @include(if: true) }", None),
        ("{ ...F } fragment F on Query { apiVersion }", None),
        ("{ apiVersion sites { pageInfo { hasNextPage } } }", None),
        ("mutation { __typename }", None),
    ],
)
async def test_a_query_of_constants_is_answered_as_prepared(settings, auth, query, answer, monkeypatch):
    """Prepared once, answered without executing per request: what execution writes, for anyone."""
    assert build_schema(settings).documents.by_text(query).constant == answer
    if answer is None:
        return
    async with AsyncTestClient(app=create_app(settings)) as client:
        monkeypatch.setattr(edge, "execute", None)  # a constant answer never reaches execution
        for headers in ({}, auth(make_principal(Role.SITE_STAFF, [uuid.uuid4()]))):
            sent = await client.post("/graphql", json={"query": query, "variables": {"x": 1}}, headers=headers)
            assert sent.status_code == 200 and sent.content == answer


async def test_limits_hold_for_persisted_documents_too(settings):
    """A server configured tighter than a persisted document refuses it, by hash, like any other."""
    tight = msgspec.structs.replace(settings, graphql_max_depth=2)
    body = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": _hash("RoomBoard")}}, "variables": {"siteId": str(uuid.uuid4())}}
    async with AsyncTestClient(app=create_app(tight)) as client:
        errors = (await client.post("/graphql", json=body)).json()["errors"]
    assert any("exceeds maximum operation depth" in e["message"] for e in errors)


async def test_persisted_get_answers_a_strong_etag_and_304(client, auth):
    headers = auth(make_principal(Role.COMMAND))
    params = {"extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": _hash("Sites")}}), "variables": json.dumps({"first": 5})}
    first = await client.get("/graphql", params=params, headers=headers)
    assert first.status_code == 200 and first.json()["data"]["sites"]["edges"] == []
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = await client.get("/graphql", params=params, headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    # Ad-hoc documents and POSTs carry no validator: only persisted reads are cacheable.
    assert "etag" not in (await client.get("/graphql", params={"query": "{ apiVersion }"})).headers


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"5", "must be a JSON object"),
        (b"[" * 5000 + b"]" * 5000, ""),  # refused before decoding (json_too_deep) or by the decoder
        (b'{"query": "{ apiVersion }", "variables": ' + b"[" * 5000 + b"]" * 5000 + b"}", ""),
        (b'{"query": ', "Unable to parse"),
        (b'[{"query": "{ apiVersion }"}]', "Batching is not enabled"),
        (b'{"query": "subscription { siteEvents { id } }"}', "subscriptions are not allowed when using POST"),
        (b'{"query": "{ apiVersion }", "operationName": 5}', "operationName"),
    ],
)
async def test_malformed_requests_are_400_not_500(client, body, reason):
    response = await client.post("/graphql", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and reason in response.text
    # problem+json with a stable code, and the reason as a coded GraphQL error too (never bare text)
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] in ("invalid_request", "invalid_json", "json_too_deep")
    assert all(e["extensions"]["code"] for e in problem.get("errors", []))


async def test_mutations_refused_over_get(client):
    response = await client.get("/graphql", params={"query": 'mutation { logout(refreshToken: "x") { userErrors { code } } }'})
    assert response.status_code == 400
    assert response.json()["errors"] == [{"message": "mutations are not allowed when using GET", "extensions": {"code": "invalid_request"}}]


async def test_strawberrys_own_execution_uses_the_same_documents_and_limits(settings):
    """Subscriptions run through Strawberry's execution: persisted-only, the limits and hidden
    suggestions hold there too (one preparation serves both paths)."""
    strict = build_schema(msgspec.structs.replace(settings, env="production", graphql_persisted_only=True, graphql_max_depth=2))
    refused = await strict.execute("{ apiVersion }")
    assert refused.errors[0].extensions == {"code": "persisted_only"}
    deep = await strict.execute(operation_document(OPERATIONS_DIR / "RoomBoard.graphql"), variable_values={"siteId": str(uuid.uuid4())})
    assert any("exceeds maximum operation depth" in e.message for e in deep.errors)
    loose = build_schema(msgspec.structs.replace(settings, env="production"))
    unknown = await loose.execute("{ apiVersio }")
    assert unknown.errors and not any("Did you mean" in e.message for e in unknown.errors)


@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        ("{ apiVersion ", None, "graphql_parse_failed"),
        ("{ apiVersio }", None, "graphql_validation_failed"),
        # The depth limiter followed a fragment nobody defined: a KeyError, 500.
        ("{ sites { ...Missing } }", None, "graphql_validation_failed"),
        ("query($first: Int!) { sites(first: $first) { edges { node { id } } } }", {"first": 2147483648}, "invalid_variables"),
        ("query($id: UUID!) { site(id: $id) { id } }", {"id": "not-a-uuid"}, "invalid_variables"),
        ("query($since: DateTime!) { apiVersion }", {"since": "x"}, "invalid_variables"),
    ],
)
async def test_graphql_core_errors_carry_a_code(client, auth, query, variables, code):
    """Found probing over HTTP: parse, validation and variable errors came without extensions.code."""
    headers = auth(make_principal(Role.COMMAND))
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert response.status_code == 200
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == [code]
