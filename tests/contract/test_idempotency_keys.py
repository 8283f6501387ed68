"""One Idempotency-Key, one request: over EVERY GraphQL mutation and EVERY REST POST, the same key
sent with another input answers ``idempotency_key_reused`` (422 problem / userError).

Inputs are generated from the contracts themselves (the GraphQL schema's argument types, the
OpenAPI request bodies), two variants per operation from a fixed seed; no data is seeded, so
most first attempts are refused by a rule (unknown ids) -- the key must be bound all the same.
"""

from __future__ import annotations

import random
import re
import uuid
from datetime import UTC, datetime, timedelta

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLFloat,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLString,
    get_named_type,
)

from service.access.model import Role
from service.api.graphql import build_schema
from tests.conftest import make_principal
from tests.foundation.test_edge_limits import write_routes
from tests.security.walk import is_one_of
from tests.transfers.helpers import make_facility, make_hospital

SEED = 20261129
# They mint or end credentials and have no owner to scope a key to (service/idempotency.py).
NO_KEY_MUTATIONS = {"login", "refreshToken", "logout"}
NO_KEY_POSTS = {"/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout"}

# Strings with a format a generic word would not pass (both spellings: GraphQL and REST names).
FORMATTED = {
    "password": ["correct-horse-1", "correct-horse-2"],
    "time_zone": ["Asia/Shanghai", "Asia/Chongqing"],
    "phone": ["13800000001", "13800000002"],
    "contact_phone": ["13900000001", "13900000002"],
    "document_number": ["500101199001010018", "500101199001010026"],  # GB 11643 check digits
    "kind": ["receipt", "issue"],
    "url": ["https://8.8.8.8/hook", "https://8.8.4.4/hook"],
    "events": ["sites", "supplies"],  # outbox domains (a webhook's); every caller that may register one reads both
}
# Numbers with a plausible range a generic 1 or 2 would not pass.
READINGS = {"spo2": [97, 96], "pulse": [70, 71], "temperature_c": [36.5, 36.6]}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Inputs:
    """Variant ``v`` (0 or 1) of a value for a named field; every leaf differs between variants."""

    def __init__(self, variant: int) -> None:
        self.v = variant
        self.rng = random.Random(SEED + variant)
        self.now = datetime.now(UTC) - timedelta(minutes=1 + variant)

    def scalar(self, field: str, kind: str, values: list | None = None):
        name = snake(field)
        if values:  # an enum: the variants differ too (a body whose one required field is an enum)
            return values[self.v % len(values)]
        if name in READINGS:
            return READINGS[name][self.v]
        if kind == "uuid":
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if kind == "date-time":
            return self.now.isoformat()
        if kind == "date":
            return f"1990-01-0{1 + self.v}"
        if kind == "integer":
            return 1 + self.v
        if kind == "number":
            return 1.5 + self.v
        if kind == "boolean":
            return self.v == 0
        return FORMATTED[name][self.v] if name in FORMATTED else f"ab{self.v}x{self.rng.randrange(100, 999)}"

    # --- GraphQL ------------------------------------------------------------------------
    def graphql(self, field: str, type_) -> object:
        if isinstance(type_, GraphQLNonNull):
            type_ = type_.of_type
        if isinstance(type_, GraphQLList):
            return [self.graphql(field, type_.of_type)]
        if isinstance(type_, GraphQLEnumType):
            return next(iter(type_.values))
        if is_one_of(type_):  # exactly one field: the first
            name, f = next(iter(type_.fields.items()))
            return {name: self.graphql(name, f.type)}
        if isinstance(type_, GraphQLInputObjectType):
            # required fields, and optional nested inputs (a rule may need one: admitResident's resident)
            return {
                n: self.graphql(n, f.type)
                for n, f in type_.fields.items()
                if isinstance(f.type, GraphQLNonNull) or isinstance(get_named_type(f.type), GraphQLInputObjectType)
            }
        kind = {GraphQLInt.name: "integer", GraphQLFloat.name: "number", GraphQLBoolean.name: "boolean", GraphQLString.name: "string"}
        named = {"UUID": "uuid", "DateTime": "date-time", "Date": "date"}
        return self.scalar(field, kind.get(type_.name) or named.get(type_.name, "string"))

    # --- OpenAPI ------------------------------------------------------------------------
    def json(self, field: str, schema: dict, components: dict) -> object:
        if "$ref" in schema:
            return self.json(field, components[schema["$ref"].rsplit("/", 1)[-1]], components)
        for union in ("oneOf", "anyOf"):
            if union in schema:
                return self.json(field, next(s for s in schema[union] if s.get("type") != "null"), components)
        kind = schema.get("type", "object")
        if kind == "array":
            return [self.json(field, schema["items"], components)] * max(1, schema.get("minItems", 1))
        if kind == "object" and "properties" not in schema:  # free-form (batch items checked one by one)
            return {"note": f"variant {self.v}"}
        if kind == "object":
            required = schema.get("required") or list(schema.get("properties", {}))  # all optional: send them all
            return {n: self.json(n, s, components) for n, s in schema.get("properties", {}).items() if n in required}
        if isinstance(kind, list):
            kind = next(k for k in kind if k != "null")
        if "minimum" in schema and kind in ("integer", "number"):
            return schema["minimum"] + self.v if snake(field) not in READINGS else READINGS[snake(field)][self.v]
        return self.scalar(field, schema.get("format", kind), schema.get("enum"))


CALLERS = [Role.COMMAND, Role.SITE_MANAGER, Role.SITE_STAFF, Role.MEDIC, Role.LOGISTICS, Role.LAB, Role.HOSPITAL, Role.CARRIER]


async def callers(db, auth) -> list[dict[str, str]]:
    """Credentials of each role; the hospital's is a real API key linked to a facility."""
    _, hospital_key = await make_hospital(db, await make_facility(db))
    return [
        {"X-API-Key": hospital_key} if role is Role.HOSPITAL else auth(make_principal(role, None if role is Role.COMMAND else [uuid.UUID(int=SEED)]))
        for role in CALLERS
    ]


async def test_every_mutation_refuses_a_key_reused_with_other_arguments(client, auth, settings, db):
    schema = build_schema(settings)._schema
    mutations = schema.mutation_type.fields
    assert len(mutations) > 25
    refused = {}
    for name, field in mutations.items():
        if name in NO_KEY_MUTATIONS:
            continue
        declared = ", ".join(f"${a}: {arg.type}" for a, arg in field.args.items())
        passed = ", ".join(f"{a}: ${a}" for a in field.args)
        payload = get_named_type(field.type)
        errors = " userErrors { code field }" if isinstance(payload, GraphQLObjectType) and "userErrors" in payload.fields else ""
        document = f"mutation M({declared}) {{ {name}({passed}) {{ __typename{errors} }} }}"
        first, other = ({a: Inputs(v).graphql(a, arg.type) for a, arg in field.args.items()} for v in (0, 1))
        assert first != other
        for role, credential in zip(CALLERS, await callers(db, auth), strict=True):
            headers = {**credential, "Idempotency-Key": f"gen-{name}"}
            answer = (await client.post("/graphql", json={"query": document, "variables": first}, headers=headers)).json()
            if any(e.get("extensions", {}).get("code") == "role_not_allowed" for e in answer.get("errors") or []):
                continue
            again = (await client.post("/graphql", json={"query": document, "variables": other}, headers=headers)).json()
            codes = [e["code"] for e in (again.get("data") or {}).get(name, {}).get("userErrors", [])]
            refused[name] = codes == ["idempotency_key_reused"] or (name, role, str(answer)[:400], str(again)[:400])
            break
        else:
            refused[name] = (name, "no role may call it")
    assert {n: r for n, r in refused.items() if r is not True} == {}
    assert set(refused) == set(mutations) - NO_KEY_MUTATIONS


async def test_every_post_refuses_a_key_reused_with_another_body(client, auth, db):
    spec = client.app.openapi_schema.to_schema()
    components = spec["components"]["schemas"]
    refused = {}
    for method, path, operation in write_routes(client.app):
        if method != "POST" or path in NO_KEY_POSTS:
            continue
        body = operation.to_schema().get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        first, other = (Inputs(v).json("body", body, components) if body else None for v in (0, 1))
        if body is None:  # no body: the path is the input; the key with another id is another request
            first, other = None, None
        for role, credential in zip(CALLERS, await callers(db, auth), strict=True):
            headers = {**credential, "Idempotency-Key": f"gen-{path}"}
            answer = await client.post(path, json=first, headers=headers)
            if answer.status_code == 403 and answer.json()["code"] == "role_not_allowed":
                continue
            other_path = path if body is not None else path.replace("00000000-0000-4000-8000-000000000000", str(uuid.uuid4()))
            again = await client.post(other_path, json=other, headers=headers)
            refused[path] = (again.status_code == 422 and again.json()["code"] == "idempotency_key_reused") or (
                path, role, answer.status_code, answer.text[:300], again.status_code, again.text[:300]
            )
            break
        else:
            refused[path] = (path, "no role may call it")
    assert {p: r for p, r in refused.items() if r is not True} == {}
    assert len(refused) >= 20
