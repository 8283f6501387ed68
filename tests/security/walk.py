"""The generic walk: every REST route and GraphQL root field, with the roles each admits.

Nothing here names a domain's route or field: they are read from the app and
the schema, so routes added later are walked without new test code. The
allowed roles come from the routes' `opt=requires(...)` (REST) and permission classes (GraphQL)
themselves; ``python -m tests.security.walk`` prints the README role matrix.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
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

from service.errors import DomainError
from service.access.model import Principal, Role
from service.access.rest import PUBLIC_PATHS, ROLES_OPT

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
    allowed: frozenset[Role] | None  # None: public (no credential needed)
    query_params: set[str] = field(default_factory=set)

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


def _roles_allowed(handler: Any) -> frozenset[Role]:
    """Roles the route admits: its ``opt=requires(...)`` (all roles when it declares none)."""
    declared = handler.opt.get(ROLES_OPT)
    return frozenset(ROLES) if declared is None else frozenset(r for r in ROLES if r in declared)


def rest_operations(app: Litestar) -> list[RestOp]:
    ops = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not route.path.startswith("/api/"):
            continue
        for handler in route.route_handlers:
            query = {
                name
                for name, p in handler.parsed_fn_signature.parameters.items()
                if name not in route.path_parameters and name not in ("data", "request", "db", "principal", "settings", "cache")
            }
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                public = _is_public(route.path, handler)
                allowed = None if public else _roles_allowed(handler)
                ops.append(RestOp(method, route.path, allowed, query))
    return sorted(ops, key=lambda o: (o.path, o.method))


# --- GraphQL ------------------------------------------------------------------------


@dataclass
class GqlField:
    operation: str  # query | mutation
    name: str
    python_name: str
    allowed: frozenset[Role] | None  # None: no permission class (public)
    definition: Any


def _permission_allows(permission_classes: list[type], role: Role) -> bool:
    info = SimpleNamespace(context=SimpleNamespace(principal=principal_for(role, [])))
    try:
        return all(cls().has_permission(None, info) for cls in permission_classes)
    except DomainError:  # permission classes deny by raising a coded error
        return False


def graphql_fields(schema: Any) -> list[GqlField]:
    found = []
    for operation, root in (("query", schema.query), ("mutation", schema.mutation)):
        if root is None:
            continue
        gql_type = schema._schema.query_type if operation == "query" else schema._schema.mutation_type
        for f in root.__strawberry_definition__.fields:
            name = schema.config.name_converter.get_graphql_name(f)
            perms = list(f.permission_classes)
            allowed = None if not perms else frozenset(r for r in ROLES if _permission_allows(perms, r))
            found.append(GqlField(operation, name, f.python_name, allowed, gql_type.fields[name]))
    return found


def _unwrap(t: Any) -> Any:
    while isinstance(t, GraphQLNonNull | GraphQLList):
        t = t.of_type
    return t


def is_id_name(name: str) -> bool:
    return name == "id" or name.endswith("Id") or name.endswith("Ids") or name.endswith("_id")


def sample(t: Any, name: str, id_for: Any, *, fill_optional_ids: bool) -> Any:
    """A value of GraphQL input type ``t``; ids come from ``id_for(name)``."""
    if isinstance(t, GraphQLNonNull):
        return sample(t.of_type, name, id_for, fill_optional_ids=fill_optional_ids)
    if isinstance(t, GraphQLList):
        return [sample(t.of_type, name.removesuffix("s"), id_for, fill_optional_ids=fill_optional_ids)]
    if isinstance(t, GraphQLEnumType):
        return next(iter(t.values))
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


def role_matrix_markdown(app: Litestar, schema: Any) -> str:
    short = {Role.COMMAND: "cmd", Role.SITE_MANAGER: "mgr", Role.SITE_STAFF: "staff", Role.MEDIC: "medic",
             Role.LOGISTICS: "logi", Role.LAB: "lab", Role.HOSPITAL: "hosp"}
    head = "| operation | " + " | ".join(short[r] for r in ROLES) + " |\n|---|" + "---|" * len(ROLES) + "\n"

    def row(label: str, allowed: frozenset[Role] | None) -> str:
        cells = ["public" if allowed is None else ("✓" if r in allowed else "") for r in ROLES]
        if allowed is None:
            cells = ["(no credential)"] + [""] * (len(ROLES) - 1)
        return f"| {label} | " + " | ".join(cells) + " |\n"

    rest = "".join(row(f"`{op.label}`", op.allowed) for op in rest_operations(app))
    gql = "".join(row(f"`{f.operation} {f.name}`", f.allowed) for f in graphql_fields(schema))
    return head + rest + gql


if __name__ == "__main__":
    from service.api.graphql import build_schema
    from service.app import create_app
    from service.settings import load_settings

    settings = load_settings({}, database_url="postgresql://walk", redis_url="redis://walk", data_dir="/tmp/qsite-walk")
    print(role_matrix_markdown(create_app(settings), build_schema(settings)))
