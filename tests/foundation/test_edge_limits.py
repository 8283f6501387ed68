"""Input limits at the edge, and early exits seen alike by the client, the log and /metrics."""

import logging

import pytest

from service.access.model import Role
from service.observability import current_request_id
from tests.conftest import make_principal

DEEP = b"[" * 1000 + b"]" * 1000  # 2 kB that would recurse 1,000 levels in any decoder
DEEP_OBJECT = b'{"a":' * 700 + b"1" + b"}" * 700


def assert_problem(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["request_id"] == response.headers["x-request-id"]


def write_routes(app) -> list[tuple[str, str, object]]:
    """(method, path, OpenAPI operation) of every REST write, with its path parameters filled in."""
    routes = []
    for template, item in app.openapi_schema.paths.items():
        for method in ("post", "put", "patch"):
            operation = getattr(item, method)
            if operation is None:
                continue
            path = template
            for parameter in [*(item.parameters or []), *(operation.parameters or [])]:
                if parameter.param_in == "path":
                    fill = "00000000-0000-4000-8000-000000000000" if getattr(parameter.schema, "format", None) == "uuid" else "x"
                    path = path.replace("{" + parameter.name + "}", fill)
            routes.append((method.upper(), path, operation))
    return routes


async def test_every_write_route_refuses_deep_json_before_decoding(client, auth):
    callers = [auth(make_principal(role)) for role in Role]
    routes = write_routes(client.app)
    assert len(routes) > 30
    for method, path, _ in routes:
        for body in (DEEP, DEEP_OBJECT):
            answers = []
            for headers in callers:  # the route's own roles get past authorisation to the body check
                response = await client.request(method, path, content=body, headers={**headers, "Content-Type": "application/json"})
                assert response.status_code in (400, 403), (method, path, response.text)
                answers.append(response.json()["code"])
            assert "json_too_deep" in answers and set(answers) <= {"json_too_deep", "role_not_allowed"}, (method, path, answers)


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/refresh", "/graphql"])
async def test_anonymous_endpoints_refuse_deep_json(client, path):
    for content_type in ("application/json", "text/plain"):
        response = await client.post(path, content=DEEP, headers={"Content-Type": content_type})
        assert_problem(response, 400, "json_too_deep")
    nested_variables = b'{"query":"{ apiVersion }","variables":' + DEEP_OBJECT[:-1] + b"}}"
    assert_problem(await client.post(path, content=nested_variables, headers={"Content-Type": "application/json"}), 400, "json_too_deep")


async def test_graphql_get_variables_are_limited_too(client):
    response = await client.get("/graphql", params={"query": "query($a: String) { apiVersion }", "variables": DEEP_OBJECT.decode()})
    assert_problem(response, 400, "json_too_deep")


async def test_ordinary_nesting_passes(client, auth):
    response = await client.post("/graphql", json={"query": "{ apiVersion }", "variables": {"a": [[[[{"b": [1]}]]]]}})
    assert response.status_code == 200 and response.json()["data"] == {"apiVersion": "1"}


async def test_oversized_body_is_413_before_it_is_read(client, settings):
    response = await client.post("/api/v1/auth/login", content=b" " * (settings.max_body_bytes + 1), headers={"Content-Type": "application/json"})
    assert_problem(response, 413, "payload_too_large")


async def test_unauthenticated_write_is_401_whatever_its_body(client):
    response = await client.post("/api/v1/checkins", content=DEEP, headers={"Content-Type": "application/json"})
    assert_problem(response, 401, "unauthenticated")


def _counted(metrics: str, path: str, status: int) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("qsite_requests_total{") and f'path="{path}"' in line and f'status_code="{status}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/api/v1/sites", {}, 401),
        ("GET", "/api/v1/sites", {"Authorization": "Bearer forged"}, 401),
        ("POST", "/api/v1/auth/login", {"Content-Type": "application/json"}, 400),
    ],
)
async def test_early_exits_are_logged_and_counted_with_the_status_and_id_the_client_got(client, caplog, method, path, headers, status):
    before = _counted((await client.get("/metrics")).text, path, status)
    ids_seen = []
    with caplog.at_level(logging.INFO, logger="qsite.access"):
        caplog.handler.addFilter(lambda record: ids_seen.append(current_request_id()) or True)
        body = DEEP if method == "POST" else None
        response = await client.request(method, path, headers={**headers, "X-Request-ID": "probe-early-exit"}, content=body)
    assert response.status_code == status
    assert response.headers["x-request-id"] == "probe-early-exit" and response.json()["request_id"] == "probe-early-exit"
    access = [r for r in caplog.records if r.name == "qsite.access"]
    assert [r.status for r in access] == [status]
    assert ids_seen[-1] == "probe-early-exit"
    after = _counted((await client.get("/metrics")).text, path, status)
    assert after == before + 1


async def test_if_none_match_uses_the_weak_comparison(client, auth):
    command = auth(make_principal(Role.COMMAND))
    first = await client.get("/api/v1/sites", headers=command)
    etag = first.headers["etag"]
    for header in (etag, f"W/{etag}", f'W/"other", W/{etag}', "*"):
        again = await client.get("/api/v1/sites", headers={**command, "If-None-Match": header})
        assert again.status_code == 304 and again.headers["etag"] == etag, header
    changed = await client.get("/api/v1/sites", headers={**command, "If-None-Match": 'W/"other"'})
    assert changed.status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        # Litestar converts bodies in msgspec's lax mode, which took 0 for false and "1" for true.
        ("/api/v1/facilities", {"code": "H-STRICT", "name": "Strict", "kind": "designated_hospital", "requires_acceptance": 0}, "requires_acceptance"),
        ("/api/v1/facilities", {"code": "H-STRICT", "name": "Strict", "kind": "designated_hospital", "requires_acceptance": "true"}, "requires_acceptance"),
        ("/api/v1/checkins", {"stay_id": "00000000-0000-4000-8000-000000000000", "recorded_at": "2026-01-01T08:00:00Z", "spo2": "97"}, "spo2"),
    ],
)
async def test_body_values_of_the_wrong_json_type_are_refused_not_coerced(client, auth, db, path, body, field):
    headers = auth(make_principal(Role.COMMAND))
    response = await client.post(path, json=body, headers=headers)
    assert_problem(response, 400, "invalid_request")
    assert response.json()["field"] == field
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM facilities WHERE code = 'H-STRICT'") == 0


async def test_a_body_of_the_right_types_still_passes(client, auth):
    headers = auth(make_principal(Role.COMMAND))
    body = {"code": "H-STRICT-OK", "name": "Strict", "kind": "designated_hospital", "requires_acceptance": True}
    response = await client.post("/api/v1/facilities", json=body, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["requires_acceptance"] is True


async def test_an_integral_number_is_an_integer_as_json_schema_says(client, auth):
    """1.0 is a JSON Schema integer: the strict check must not refuse it (nor 1.5)."""
    headers = auth(make_principal(Role.COMMAND))
    path = "/api/v1/alerts/00000000-0000-4000-8000-000000000000/acknowledge"
    assert_problem(await client.post(path, json={"version": 1.0}, headers=headers), 404, "alert_not_found")
    refused = await client.post(path, json={"version": 1.5}, headers=headers)
    assert_problem(refused, 400, "invalid_request")
    assert refused.json()["field"] == "version"


def _depth_by_parsing(text: bytes) -> int:
    """The nesting depth of a valid JSON document, measured on the decoded value (an independent oracle)."""
    import json

    def depth(value: object) -> int:
        if isinstance(value, list):
            return 1 + max(map(depth, value), default=0)
        if isinstance(value, dict):
            return 1 + max(map(depth, value.values()), default=0)
        return 0

    return depth(json.loads(text))


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": "[[[[", "b": [1, {"c": "}}]]"}]}',  # brackets inside strings are no nesting
        b'{"a": "say \\"[[\\" twice", "b": [[["\\\\"]]]}',  # escaped quotes and backslashes
        b'[{"k": "\\u005b"}, [[], [[[]]]]]',
        b'{"checkins": [' + b",".join(b'{"id": "x", "note": "a{b[c"}' for _ in range(50)) + b"]}",
        b'"[[["',
        b"[]",
        b"3",
    ],
)
def test_json_depth_skips_strings(text):
    from service.http import json_depth

    assert json_depth(text) == _depth_by_parsing(text)
    assert json_depth(text.decode()) == _depth_by_parsing(text)


def test_json_depth_of_malformed_text_does_not_depend_on_escapes():
    """An unterminated string counts the brackets after it (the decoder refuses the body anyway)."""
    from service.http import json_depth

    assert json_depth(b'[["abc [[[[') == 6
    assert json_depth(b'[["a\\"bc [[[[') == 6
