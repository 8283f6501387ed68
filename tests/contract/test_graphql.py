"""Schemathesis over the GraphQL schema: generated queries and mutations never crash the server.

The app runs with production error masking, so an unexpected exception shows
as "Unexpected error." while domain errors (bad input, not found) keep their
message: the test fails on the former only.
"""

from __future__ import annotations

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, settings as hypothesis_settings

from strawberry.extensions import MaskErrors

from service.access.model import Role
from service.app import create_app
from tests.conftest import make_principal

graphql_schema = schemathesis.pytest.from_fixture("gql_schema")


@pytest.fixture
def gql_schema(settings, auth):
    production = msgspec.structs.replace(settings, env="production")
    # Production answers introspection to authenticated callers only.
    return schemathesis.graphql.from_asgi("/graphql", create_app(production), headers=auth(make_principal(Role.COMMAND)))


@graphql_schema.parametrize()
@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_graphql_contract(case, auth):
    response = case.call(headers=auth(make_principal(Role.COMMAND)))
    assert response.status_code < 500, response.text
    unexpected = [e for e in response.json().get("errors") or [] if e["message"] == MaskErrors().error_message]
    assert not unexpected, f"{case.body}: {unexpected}"
