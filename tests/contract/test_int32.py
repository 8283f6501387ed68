"""Integers a client sends fit the PostgreSQL ``integer`` columns they land in: the contract says so,
and 2147483648 answers 400 naming the field, never a 500 from an overflowing driver."""

import pytest

from service.access.model import Role
from service.fields import INT32_MAX
from tests.conftest import make_principal
from tests.foundation.test_edge_limits import write_routes


def integers(schema: dict, components: dict, path: str = "", seen: frozenset = frozenset()):
    """(path, schema) of every integer in ``schema``; bounds may sit beside a oneOf with null."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name not in seen:
            yield from integers(components[name], components, path, seen | {name})
        return
    variants = schema.get("oneOf", []) + schema.get("anyOf", [])
    types = [schema.get("type")] + [v.get("type") for v in variants]
    if "integer" in types:
        yield path, schema
    for variant in variants:
        if variant.get("type") != "integer":
            yield from integers(variant, components, path, seen)
    for name, sub in schema.get("properties", {}).items():
        yield from integers(sub, components, f"{path}.{name}", seen)
    if "items" in schema:
        yield from integers(schema["items"], components, f"{path}[]", seen)


def test_every_integer_input_in_the_openapi_is_bounded_to_int32(client):
    spec = client.app.openapi_schema.to_schema()
    components = spec["components"]["schemas"]
    unbounded = []
    for template, item in spec["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                for where, schema in integers(parameter.get("schema", {}), components, f"?{parameter['name']}"):
                    if not (-INT32_MAX - 1 <= schema.get("minimum", -(2**63)) and schema.get("maximum", 2**63) <= INT32_MAX):
                        unbounded.append(f"{method} {template} {where}")
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            for where, schema in integers(body or {}, components):
                if not (-INT32_MAX - 1 <= schema.get("minimum", -(2**63)) and schema.get("maximum", 2**63) <= INT32_MAX):
                    unbounded.append(f"{method} {template} body{where}")
    assert unbounded == []


@pytest.mark.parametrize("value", [INT32_MAX + 1, -INT32_MAX - 2, 2**63])
async def test_integers_beyond_int32_answer_400_with_the_field(client, auth, value):
    spec = client.app.openapi_schema.to_schema()
    components = spec["components"]["schemas"]
    callers = [auth(make_principal(role)) for role in Role]
    probed = 0
    for method, path, operation in write_routes(client.app):
        body = operation.to_schema().get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        for where, _ in integers(body, components):
            if where.count(".") != 1 or "[]" in where:
                continue  # top-level fields: msgspec reports the first bad field before missing ones
            field = where[1:]
            answers = []
            for headers in callers:
                response = await client.request(method, path, json={field: value}, headers=headers)
                assert response.status_code < 500, (method, path, field, response.text)
                answers.append(response.json())
            probed += 1
            assert any(a["status"] == 400 and a.get("field") == field for a in answers), (method, path, field, answers)
    assert probed >= 15
