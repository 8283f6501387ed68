"""Schemathesis over the committed GraphQL schema, against a live server in production mode.

Production masks unexpected exceptions as "Unexpected error.", so an internal
error is visible as such. Every other error at a field's path must carry an
``extensions.code`` that the field's description lists (generated from the
code, service/api/graphql_errors.py): a client can expect every error it gets.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import schemathesis
from graphql import GraphQLSchema, get_named_type
from schemathesis.core.failures import Failure
from schemathesis.specs.graphql.schemas import GraphQLSchema as FuzzedGraphQLSchema

from service.access.model import Role
from service.api.graphql import MASKED_MESSAGE, build_schema
from service.api.graphql_errors import listed_codes
from tests.conftest import make_principal
from tests.contract import fuzz

ROOT = Path(__file__).resolve().parents[2]
_served: dict[str, GraphQLSchema] = {}


class UndocumentedGraphQLError(Failure):
    code = "QSITE1"
    checks = ("graphql_errors_documented",)
    kind_title = "GraphQL error the schema does not announce"

    def __init__(self, *, operation: str, message: str) -> None:
        super().__init__(operation=operation, message=message, title=self.kind_title)

    @property
    def _unique_key(self) -> str:
        return self.message


def _field_description(schema: GraphQLSchema, root: str, path: list[str | int]) -> str | None:
    parent: object = schema.get_type(root)
    field = None
    for key in path:
        if isinstance(key, int):
            continue
        field = getattr(parent, "fields", {}).get(key)
        if field is None:
            return None
        parent = get_named_type(field.type)
    return field.description if field is not None else None


@schemathesis.check
def graphql_errors_documented(ctx, response, case):
    if not isinstance(case.operation.schema, FuzzedGraphQLSchema) or "served" not in _served:
        return None
    label = case.operation.label
    if response.status_code >= 500:
        raise UndocumentedGraphQLError(operation=label, message=f"HTTP {response.status_code}")
    for error in response.json().get("errors") or []:
        if error.get("message") == MASKED_MESSAGE:
            raise UndocumentedGraphQLError(operation=label, message="internal error (masked)")
        if not error.get("path"):
            continue  # refused before execution (validation): not a field's error
        code = (error.get("extensions") or {}).get("code")
        description = _field_description(_served["served"], label.split(".")[0], error["path"])
        if code is None or code not in listed_codes(description):
            raise UndocumentedGraphQLError(operation=label, message=f"{error['path']}: code {code!r} not listed ({error['message']})")
    return None


def test_graphql_contract(settings, auth):
    production = msgspec.structs.replace(settings, env="production")
    _served["served"] = build_schema(production)._schema
    headers = auth(make_principal(Role.COMMAND))
    checks = {
        "not_a_server_error": {"enabled": False},  # replaced by graphql_errors_documented
        # The generator does not know @oneOf (SyncWrite): its "valid" documents may set several of its
        # fields, which validation rightly refuses (seed 3995983797). Validation is graphql-core's own.
        "positive_data_acceptance": {"enabled": False},
    }
    try:
        with fuzz.live_server(settings, serve=production) as base:
            config = fuzz.config(headers, checks, stateful=False)
            schema = schemathesis.graphql.from_path(ROOT / "graphql" / "schema.graphql", config=config)
            schema.config.update(base_url=f"{base}/graphql")
            found, cases = fuzz.failures(schema)
    finally:
        _served.clear()
    assert cases > 0
    assert not found, "\n".join(found)
