"""Schemathesis over the exported OpenAPI, against a live server, with every check.

All phases (examples, coverage, fuzzing, and stateful sequences that follow
the links between operations), every check at its defaults except one: a
schema-valid request may be refused with a 422 that the route documents
(its ``code`` is in the route's list, which ``response_schema_conformance``
enforces), e.g. a cursor this API never issued or an unknown time zone.
"""

from __future__ import annotations

import schemathesis

from service.access.model import Role
from service.api.openapi import OPERATION_IDS
from service.app import create_app
from tests.conftest import make_principal
from tests.contract import fuzz

CHECKS = {"positive_data_acceptance": {"expected-statuses": ["2xx", "3xx", 401, 403, 404, 409, 422, 429]}}


def test_rest_contract(settings, auth):
    headers = auth(make_principal(Role.COMMAND))
    with fuzz.live_server(settings) as base:
        schema = schemathesis.openapi.from_url(f"{base}/docs/openapi.json", config=fuzz.config(headers, CHECKS))
        found, cases = fuzz.failures(schema)
    assert cases > 0
    assert not found, "\n".join(found)


def test_every_operation_has_an_explicit_id(settings):
    paths = create_app(settings).openapi_schema.to_schema()["paths"]
    operations = {(m.upper(), p) for p, item in paths.items() for m in item if m in ("get", "post", "put", "patch", "delete")}
    assert operations - OPERATION_IDS.keys() == set(), "name these operations in service/api/openapi.py OPERATION_IDS"
    assert OPERATION_IDS.keys() - operations == set(), "OPERATION_IDS names routes that no longer exist"


def test_options_lists_every_method_of_the_path(settings):
    app = create_app(settings)
    from litestar.testing import TestClient

    with TestClient(app) as client:
        allow = client.options("/api/v1/sites").headers["allow"]
    assert set(allow.split(", ")) == {"GET", "POST", "OPTIONS"}
