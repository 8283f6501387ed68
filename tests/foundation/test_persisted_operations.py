"""The apps' operations in graphql/operations/ are valid against the schema and can be sent by hash."""

import hashlib
import uuid
from datetime import UTC, datetime

import msgspec
import pytest
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLNonNull,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    parse,
    type_from_ast,
    validate,
)
from litestar.testing import AsyncTestClient

from service.access.model import Role
from service.api.graphql import build_schema
from service.api.persisted import FRAGMENTS_DIR, OPERATIONS_DIR, documents, operation_document, operation_files
from service.app import create_app
from tests.conftest import make_principal, make_settings

OPERATION_FILES = operation_files()


@pytest.fixture(scope="module")
def built(redis_url, tmp_path_factory):
    """The schema as an app builds it (persisted documents prepared), once for the tests that only read it:
    they need no database of their own."""
    return build_schema(make_settings(None, redis_url, tmp_path_factory.mktemp("schema")))


@pytest.mark.parametrize("path", OPERATION_FILES, ids=lambda p: p.stem)
def test_operation_is_valid_against_schema(built, path):
    assert validate(built._schema, parse(operation_document(path))) == []


def test_operation_is_within_server_limits(built):
    """The server's own depth, alias, token and operation-count limits accept every document
    (they are checked when the app prepares its persisted documents at start-up)."""
    prepared = built.documents.persisted
    assert len(prepared) == len(OPERATION_FILES)
    assert {p.text: [e.message for e in p.errors] for p in prepared.values() if p.errors} == {}


def _root_fields(document) -> set[tuple[OperationType, str]]:
    """(operation type, root field) pairs a document selects, through fragments at the root."""
    fragments = {d.name.value: d for d in document.definitions if not isinstance(d, OperationDefinitionNode)}
    found = set()

    def collect(operation: OperationType, selections) -> None:
        for node in selections:
            if isinstance(node, FieldNode):
                if not node.name.value.startswith("__"):
                    found.add((operation, node.name.value))
            elif isinstance(node, InlineFragmentNode):
                collect(operation, node.selection_set.selections)
            elif isinstance(node, FragmentSpreadNode):
                collect(operation, fragments[node.name.value].selection_set.selections)

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            collect(definition.operation, definition.selection_set.selections)
    return found


def test_every_root_field_has_an_operation(built):
    """With QSITE_GRAPHQL_PERSISTED_ONLY an app reaches only the root fields some operation file selects."""
    schema = built._schema
    roots = {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
        OperationType.SUBSCRIPTION: schema.subscription_type,
    }
    wanted = {(op, name) for op, root in roots.items() if root is not None for name in root.fields}
    covered = set().union(*(_root_fields(parse(operation_document(path))) for path in OPERATION_FILES))
    missing = sorted(f"{op.value} {name}" for op, name in wanted - covered)
    assert not missing, f"root fields without a file in graphql/operations/: {missing}"


def test_shared_fragments_are_one_per_file_and_used():
    """graphql/operations/fragments/<Name>.graphql holds fragment <Name>, and some operation spreads it."""
    documents_text = [operation_document(path) for path in OPERATION_FILES]
    for path in sorted(FRAGMENTS_DIR.glob("*.graphql")):
        (definition,) = parse(path.read_text()).definitions
        assert definition.name.value == path.stem
        assert any(f"...{path.stem}\n" in text for text in documents_text), f"{path.name} is not used"


def test_root_field_collection_follows_fragments():
    document = parse("query Q { a ...F ... on Query { b } __typename } fragment F on Query { c }")
    assert _root_fields(document) == {(OperationType.QUERY, name) for name in "abc"}


# A value for each scalar the operations' required variables use; ids are random, so most reads find nothing.
_SCALARS = {
    "UUID": lambda: str(uuid.uuid4()),
    "String": lambda: "x",
    "Int": lambda: 1,
    "Float": lambda: 1.0,
    "Boolean": lambda: False,
    "DateTime": lambda: datetime.now(UTC).isoformat(),
    "Date": lambda: datetime.now(UTC).date().isoformat(),
}


def _required_variables(schema, operation: OperationDefinitionNode, given: dict) -> dict:
    values = {}
    for definition in operation.variable_definitions or ():
        name, kind = definition.variable.name.value, type_from_ast(schema, definition.type)
        if name in given:
            values[name] = given[name]
        elif isinstance(kind, GraphQLNonNull) and definition.default_value is None:
            named = kind.of_type
            values[name] = next(iter(named.values)) if isinstance(named, GraphQLEnumType) else _SCALARS[named.name]()
    return values


async def _send(client, headers: dict, text: str, variables: dict) -> dict:
    body = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": _hash(text)}}, "variables": variables}
    response = await client.post("/graphql", json=body, headers=headers)
    assert response.status_code == 200
    return response.json()


async def test_every_query_operation_runs_by_hash(settings, client, auth):
    """Each read operation passes the whole pipeline (hash lookup, limits, roles, resolvers) for command staff,
    or, where the policy keeps the data from the command centre (staff health data), for the site's manager."""
    schema = build_schema(settings)._schema
    headers = auth(make_principal(Role.COMMAND))
    site = {"input": {"code": "OPS-1", "name": "Ops"}}
    created = await _send(client, headers, operation_document(OPERATIONS_DIR / "CreateSite.graphql"), site)
    assert created["data"]["createSite"]["userErrors"] == []
    given = {"siteId": created["data"]["createSite"]["site"]["id"]}
    manager = auth(make_principal(Role.SITE_MANAGER, [uuid.UUID(given["siteId"])]))
    for path in OPERATION_FILES:
        text = operation_document(path)
        operation = next(d for d in parse(text).definitions if isinstance(d, OperationDefinitionNode))
        if operation.operation is OperationType.QUERY:
            variables = _required_variables(schema, operation, given)
            answer = await _send(client, headers, text, variables)
            if answer.get("errors") and all(e.get("extensions", {}).get("code") == "role_not_allowed" for e in answer["errors"]):
                answer = await _send(client, manager, text, variables)
            assert "errors" not in answer, (path.name, answer)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_persisted_operation_runs_by_hash(client, auth):
    text = operation_document(OPERATIONS_DIR / "Sites.graphql")
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
        text = operation_document(OPERATIONS_DIR / "Sites.graphql")
        by_text = await client.post("/graphql", json={"query": text}, headers=headers)
        assert "errors" not in by_text.json()
