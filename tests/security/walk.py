"""The generic walk: every REST route and GraphQL root field, with the operation each declares.

Nothing here names a domain's route or field: they are read from the app and
the schema, so routes added later are walked without new test code. What each
role may do is NOT taken from here: the tests compare behaviour with the hand-written
table in ``tests/security/expected.py``. ``python -m tests.security.walk`` prints the
README role matrix, generated from ``service/policy.py``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    Undefined,
)
from litestar import Litestar
from litestar.routes import HTTPRoute

from service import policy
from service.access.model import Principal, Role
from service.access.rest import PUBLIC_PATHS
from service.command.rest import PATH as PAGES_PATH
from service.command.rest import STATIC_PATH as PAGES_STATIC

ROLES = list(Role)
PARAM = re.compile(r"\{(\w+):(\w+)\}")


def principal_for(role: Role, site_ids: list[uuid.UUID] | None) -> Principal:
    from tests.conftest import make_principal

    return make_principal(role, None if role is Role.COMMAND else site_ids)


# --- REST ---------------------------------------------------------------------------


@dataclass
class RestOp:
    method: str
    path: str  # Litestar template, e.g. /api/v1/sites/{site_id:uuid}
    operation: str | None  # the policy operation it declares; None for public routes
    public: bool
    query_params: dict[str, Any] = field(default_factory=dict)  # name -> annotation
    body: Any = None  # the request body type, if any

    @property
    def path_params(self) -> list[tuple[str, str]]:
        return PARAM.findall(self.path)

    def url(self, value_for: Any) -> str:
        return PARAM.sub(lambda m: str(value_for(m.group(1), m.group(2))), self.path)

    @property
    def label(self) -> str:
        return f"{self.method} {PARAM.sub(lambda m: '{' + m.group(1) + '}', self.path)}"


def _is_public(path: str, handler: Any) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS) or bool(handler.opt.get("exclude_from_auth"))


_INJECTED = ("data", "request", "db", "principal", "settings", "cache")


def rest_operations(app: Litestar) -> list[RestOp]:
    return _operations(app, lambda path: path.startswith("/api/"))


def page_operations(app: Litestar) -> list[RestOp]:
    """The command dashboard's pages: a browser session, not a bearer token (tests/command/test_policy.py walks them)."""
    return _operations(app, lambda path: (path == PAGES_PATH or path.startswith(PAGES_PATH + "/")) and not path.startswith(PAGES_STATIC))


def _operations(app: Litestar, wanted: Any) -> list[RestOp]:
    ops = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not wanted(route.path):
            continue
        for handler in route.route_handlers:
            params = handler.parsed_fn_signature.parameters
            query = {name: p.annotation for name, p in params.items() if name not in route.path_parameters and name not in _INJECTED}
            body = params["data"].annotation if "data" in params else None
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                public = _is_public(route.path, handler)
                ops.append(RestOp(method, route.path, handler.opt.get(policy.OPERATION_OPT), public, query, body))
    return sorted(ops, key=lambda o: (o.path, o.method))


# --- GraphQL ------------------------------------------------------------------------


@dataclass
class GqlField:
    operation: str  # query | mutation | subscription
    name: str
    python_name: str
    policy_operation: str | None  # the policy operation its permission class enforces; None: public
    definition: Any

    @property
    def label(self) -> str:
        return f"{self.operation} {self.name}"


def graphql_fields(schema: Any) -> list[GqlField]:
    found = []
    roots = (("query", schema.query, "query_type"), ("mutation", schema.mutation, "mutation_type"),
             ("subscription", schema.subscription, "subscription_type"))
    for operation, root, attr in roots:
        if root is None:
            continue
        gql_type = getattr(schema._schema, attr)
        for f in root.__strawberry_definition__.fields:
            name = schema.config.name_converter.get_graphql_name(f)
            found.append(GqlField(operation, name, f.python_name, policy.operation_of(f.permission_classes), gql_type.fields[name]))
    return found


def _unwrap(t: Any) -> Any:
    while isinstance(t, GraphQLNonNull | GraphQLList):
        t = t.of_type
    return t


def is_id_name(name: str) -> bool:
    return name == "id" or name.endswith("Id") or name.endswith("Ids") or name.endswith("_id")


def is_one_of(t: Any) -> bool:
    """A @oneOf input (exactly one field given). Strawberry marks it with its directive, not graphql-core's flag."""
    definition = (getattr(t, "extensions", None) or {}).get("strawberry-definition")
    return isinstance(t, GraphQLInputObjectType) and (
        bool(getattr(t, "is_one_of", False)) or any(type(d).__name__ == "OneOf" for d in getattr(definition, "directives", ()) or ())
    )


def sample(t: Any, name: str, id_for: Any, *, fill_optional_ids: bool) -> Any:
    """A value of GraphQL input type ``t``; ids come from ``id_for(name)``."""
    if isinstance(t, GraphQLNonNull):
        return sample(t.of_type, name, id_for, fill_optional_ids=fill_optional_ids)
    if isinstance(t, GraphQLList):
        return [sample(t.of_type, name.removesuffix("s"), id_for, fill_optional_ids=fill_optional_ids)]
    if isinstance(t, GraphQLEnumType):
        return next(iter(t.values))
    if is_one_of(t):  # @oneOf: exactly one field, the first
        fname, f = next(iter(t.fields.items()))
        return {fname: sample(f.type, fname, id_for, fill_optional_ids=fill_optional_ids)}
    if isinstance(t, GraphQLInputObjectType):
        value = {}
        for fname, f in t.fields.items():
            required = isinstance(f.type, GraphQLNonNull) and f.default_value is Undefined
            if required or (fill_optional_ids and is_id_name(fname) and _unwrap(f.type).name == "UUID"):
                value[fname] = sample(f.type, fname, id_for, fill_optional_ids=fill_optional_ids)
        return value
    scalar = t.name if isinstance(t, GraphQLScalarType) else "String"
    return {
        "UUID": lambda: str(id_for(name)),
        "Int": lambda: 1,
        "Float": lambda: 1.0,
        "Boolean": lambda: False,
        "DateTime": lambda: "2024-01-01T00:00:00+00:00",
        "Date": lambda: "2024-01-01",
        "JSON": lambda: {},
    }.get(scalar, lambda: "x")()


def selection(t: Any) -> str:
    t = _unwrap(t)
    if not isinstance(t, GraphQLObjectType):
        return "" if isinstance(t, GraphQLScalarType | GraphQLEnumType) else "{ __typename }"
    if "edges" in t.fields:
        return "{ edges { __typename } }"
    if "userErrors" in t.fields:
        return "{ __typename userErrors { code } }"
    # A plain object: its scalars and its lists, enough to tell whether it discloses anything.
    parts = ["__typename"]
    for name, f in t.fields.items():
        if any(isinstance(a.type, GraphQLNonNull) and a.default_value is Undefined for a in f.args.values()):
            continue
        inner = _unwrap(f.type)
        if isinstance(inner, GraphQLScalarType | GraphQLEnumType):
            parts.append(name)
        elif isinstance(_strip_non_null(f.type), GraphQLList):
            parts.append(f"{name} {{ __typename }}")
    return "{ " + " ".join(parts) + " }"


def _strip_non_null(t: Any) -> Any:
    return t.of_type if isinstance(t, GraphQLNonNull) else t


def document(f: GqlField, id_for: Any, *, fill_optional_ids: bool) -> tuple[str, dict[str, Any], str]:
    """(document, variables, ids) calling ``f`` once.

    ``ids`` says which id arguments were filled: "lookup" (a required one, or
    one inside an input: the answer must be null or userErrors), "filter" (only
    optional ones: an empty answer is fine) or "none".
    """
    params, args, variables, ids = [], [], {}, "none"
    for i, (arg_name, arg) in enumerate(f.definition.args.items()):
        required = isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined
        is_id = _unwrap(arg.type).name == "UUID" and is_id_name(arg_name)
        is_input = isinstance(_unwrap(arg.type), GraphQLInputObjectType)
        if not (required or (fill_optional_ids and is_id)):
            continue
        # A bare `id` names the field's own record: `site(id)` -> siteId, `revokeApiClient(id)` -> revokeApiClientId.
        value = sample(arg.type, f.name + "Id" if arg_name == "id" else arg_name, id_for, fill_optional_ids=fill_optional_ids)
        variables[f"a{i}"] = value
        if (is_id and required) or (is_input and any(is_id_name(k) for k in (value if isinstance(value, dict) else {}))):
            ids = "lookup"
        elif is_id and ids == "none":
            ids = "filter"
        params.append(f"$a{i}: {arg.type}")
        args.append(f"{arg_name}: $a{i}")
    head = f"{f.operation} Walk" + (f"({', '.join(params)})" if params else "")
    call = f.name + (f"({', '.join(args)})" if args else "")
    return f"{head} {{ {call} {selection(f.definition.type)} }}", variables, ids


# --- the README matrix ----------------------------------------------------------------

SHORT = {Role.COMMAND: "cmd", Role.SITE_MANAGER: "mgr", Role.SITE_STAFF: "staff", Role.MEDIC: "medic",
         Role.LOGISTICS: "logi", Role.LAB: "lab", Role.HOSPITAL: "hosp", Role.TRACING: "trace", Role.CARRIER: "carrier"}
CELL = {policy.Scope.SITES: "✓", policy.Scope.ANY: "all", policy.Scope.FACILITY: "facility"}


def role_matrix_markdown(app: Litestar, schema: Any) -> str:
    """One row per policy operation: the routes and fields that declare it, and each role's scope."""
    rest: dict[str | None, list[str]] = {}
    for op in rest_operations(app) + page_operations(app):
        rest.setdefault(op.operation or "auth.session", []).append(f"`{op.label}`")
    gql: dict[str | None, list[str]] = {}
    for f in graphql_fields(schema):
        key = f.policy_operation or ("api.version" if f.name == "apiVersion" else "auth.session")
        gql.setdefault(key, []).append(f"`{f.name}`")
    head = "| operation | REST | GraphQL | " + " | ".join(SHORT[r] for r in ROLES) + " |\n|---|---|---|" + "---|" * len(ROLES) + "\n"
    rows = []
    for name, rule in policy.POLICY.items():
        cells = ["(no credential)"] + [""] * (len(ROLES) - 1) if rule.public else [CELL[rule.grants[r]] if r in rule.grants else "" for r in ROLES]
        where = f"{name}: {rule.summary}"
        rows.append(f"| {where} | {'<br>'.join(rest.get(name, [])) or '—'} | {', '.join(gql.get(name, [])) or '—'} | " + " | ".join(cells) + " |\n")
    return head + "".join(rows)


if __name__ == "__main__":
    from service.api.graphql import build_schema
    from service.app import create_app
    from service.settings import load_settings

    settings = load_settings({}, database_url="postgresql://walk", redis_url="redis://walk", data_dir="/tmp/qsite-walk")
    print(role_matrix_markdown(create_app(settings), build_schema(settings)))
