"""GraphQL ``changes`` answered by a plan (service/live_frames.py ``PagePlan``) against graphql-core's execution.

A query selecting ``changes`` alone is answered at the edge by calling the field and rendering its
value by a plan of the selection; the same query with a second root field (``apiVersion``) is not
planned, so graphql-core executes it. On the demo's two seeded sites plus a staff account of both
(tests/foundation/test_live_frames.py), several roles page through the whole feed both ways: every
page must be the same bytes, but for the second field. Errors and refusals take the one generic path.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from litestar.testing import TestClient

from service import live_frames
from service.access.model import Principal, Role
from tests.conftest import make_principal
from tests.foundation.test_live import app_client
from tests.foundation.test_live_frames import settings, world  # noqa: F401  # the fixtures: two seeded sites, once per module

SELECTION = """
  __typename
  edges { cursor node { __typename cursor id type entity entityId entityIds siteId version tombstone data at } }
  info: pageInfo { hasNextPage endCursor }
"""
FRAGMENTED = "edges { node { ...Fields when: at @skip(if: $skip) } } pageInfo { endCursor hasNextPage }"
FRAGMENT = "fragment Fields on Change { id entityIds data }"
DOCUMENT = "query Page($s: [UUID!], $a: String, $f: Int!%s) { page: changes(siteIds: $s, after: $a, first: $f) { %s } %s } %s"
SECOND_FIELD = b',"v":"1"}}'


def _page(client: TestClient, token: str, selection: str, variables: dict[str, Any], *, planned: bool) -> bytes:
    fragmented = "...Fields" in selection
    query = DOCUMENT % (", $skip: Boolean!" if fragmented else "", selection, "" if planned else "v: apiVersion", FRAGMENT if fragmented else "")
    response = client.post("/graphql", json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.content


def _both(client: TestClient, token: str, selection: str, variables: dict[str, Any]) -> bytes:
    """The planned page, after checking it equals the executed one byte for byte."""
    before = live_frames.pages
    planned = _page(client, token, selection, variables, planned=True)
    assert live_frames.pages == before + 1, "the plan answered"
    executed = _page(client, token, selection, variables, planned=False)
    assert live_frames.pages == before + 1, "execution answered"
    assert executed.endswith(SECOND_FIELD)
    assert planned == executed.removesuffix(SECOND_FIELD) + b"}}"
    return planned


def test_planned_pages_equal_execution_for_each_role(world, auth):  # noqa: F811
    seeded, (a, b), start = world
    principals: list[tuple[str, Principal, list[uuid.UUID] | None]] = [
        ("command", make_principal(Role.COMMAND), None),
        ("manager of A", make_principal(Role.SITE_MANAGER, [a]), None),
        ("manager of B", make_principal(Role.SITE_MANAGER, [b]), [b]),
        ("manager of A and B", make_principal(Role.SITE_MANAGER, [a, b]), None),
        ("staff of A", make_principal(Role.SITE_STAFF, [a]), [a]),
        ("medic of B", make_principal(Role.MEDIC, [b]), None),
        ("logistics of A", make_principal(Role.LOGISTICS, [a]), None),
    ]
    seen: dict[str, list[dict[str, Any]]] = {}
    with app_client(seeded) as client:
        for label, principal, site_ids in principals:
            token = auth(principal)["Authorization"].removeprefix("Bearer ")
            sites = None if site_ids is None else [str(s) for s in site_ids]
            after, more, nodes = start, True, []
            while more:
                body = json.loads(_both(client, token, SELECTION, {"s": sites, "a": after, "f": 37}))["data"]["page"]
                nodes += [edge["node"] for edge in body["edges"]]
                after, more = body["info"]["endCursor"], body["info"]["hasNextPage"]
            seen[label] = nodes
            # Fragments, aliases and @skip plan the same way; an empty page too (from the end).
            for skip in (False, True):
                _both(client, token, FRAGMENTED, {"s": sites, "a": start, "f": 100, "skip": skip})
            assert b'"edges":[]' in _both(client, token, SELECTION, {"s": sites, "a": after, "f": 5})

        # Refusals and errors are not planned: one generic answer, the same as before.
        staff = auth(principals[4][1])["Authorization"].removeprefix("Bearer ")
        before = live_frames.pages
        for variables, code in (({"s": [str(b)], "a": None, "f": 5}, "site_not_found"), ({"s": None, "a": "not-a-cursor", "f": 5}, "invalid_cursor"),
                                ({"s": None, "a": None, "f": 100_000}, None)):
            answer = json.loads(_page(client, staff, SELECTION, variables, planned=True))
            assert answer["data"] is None and answer["errors"], answer
            assert code is None or answer["errors"][0]["extensions"]["code"] == code
        lab = auth(make_principal(Role.LAB, [a]))["Authorization"].removeprefix("Bearer ")
        refused = json.loads(_page(client, lab, SELECTION, {"s": None, "a": None, "f": 5}, planned=True))
        assert refused["data"] is None and refused["errors"]
        assert live_frames.pages == before

    # The comparison covered what differs between callers: sites, roles, and data scoped to the caller.
    ids = {label: {n["id"] for n in nodes} for label, nodes in seen.items()}
    assert ids["staff of A"] < ids["manager of A"]
    assert ids["manager of A"] | ids["manager of B"] == ids["manager of A and B"]
    assert ids["manager of A"] != ids["manager of B"]
    assert ids["logistics of A"] and ids["logistics of A"] < ids["manager of A"]
    assert {str(a), str(b)} <= {n["siteId"] for n in seen["command"]}
    both = [n for n in seen["manager of A and B"] if n["type"] == "access.staff_created" and len(n["data"].get("site_ids", [])) == 2]
    assert both, "the staff account of both sites shows both to a manager of both"
    alone = {n["id"]: n for n in seen["manager of A" if both[0]["siteId"] == str(a) else "manager of B"]}
    assert alone[both[0]["id"]]["data"]["site_ids"] == [both[0]["siteId"]]
