"""A validator's error inside a nested input names the field at its full path, with its own code.

msgspec wraps a validator's ValueError (InvalidInput is one) in a ValidationError that says where
its Struct stands ("- at `$.members[0].resident`"); the one mapping (service/errors.py ``input_error``)
joins that path to the validator's field. Before, only the innermost field was named
(``input.documentNumber``), which a form cannot place.
"""

from __future__ import annotations

from datetime import UTC, datetime

from service.access.model import Role
from tests.conftest import make_principal
from tests.intake.helpers import tracing_key
from tests.stays.helpers import id_number, make_site

ADMIT = """mutation($input: AdmitInput!) { admitResident(input: $input) { stay { id } userErrors { field code } } }"""
BATCH = """mutation($input: AdmitBatchInput!) { admitBatch(input: $input) { stays { id } userErrors { field code } } }"""


def bad_id() -> str:
    number = id_number()
    return number[:-1] + ("0" if number[-1] != "0" else "1")  # wrong GB 11643 check digit


async def _errors(client, auth, principal, query, name, value):
    response = await client.post("/graphql", json={"query": query, "variables": {"input": value}}, headers=auth(principal))
    body = response.json()
    assert "errors" not in body, body
    assert not body["data"][name]["stays" if name == "admitBatch" else "stay"]
    return body["data"][name]["userErrors"]


async def test_graphql_nested_validator_error_names_the_full_path(client, auth, db):
    site = await make_site(db, floors={3: (3, 1)})
    manager = make_principal(Role.SITE_MANAGER, [site])
    person = {"name": "李四", "documentType": "MAINLAND_ID", "documentNumber": bad_id()}
    admit = await _errors(client, auth, manager, ADMIT, "admitResident", {"siteId": str(site), "category": "CLOSE_CONTACT", "resident": person})
    assert admit == [{"field": "input.resident.documentNumber", "code": "invalid_id_number"}]
    empty_name = await _errors(
        client, auth, manager, ADMIT, "admitResident", {"siteId": str(site), "category": "CLOSE_CONTACT", "resident": {**person, "name": " "}}
    )
    assert empty_name == [{"field": "input.resident.name", "code": "invalid_name"}]
    good = {"name": "王五", "documentType": "PASSPORT", "documentNumber": "E12345678"}
    members = [{"resident": good}, {"resident": good}, {"resident": person}]
    batch = await _errors(
        client, auth, manager, BATCH, "admitBatch", {"siteId": str(site), "category": "CLOSE_CONTACT", "arrivalBatch": "CA-1", "members": members}
    )
    assert batch == [{"field": "input.members.2.resident.documentNumber", "code": "invalid_id_number"}]
    # A validator of the input itself (top level) keeps its own field, as before.
    top = await _errors(client, auth, manager, ADMIT, "admitResident", {"siteId": str(site), "category": "CLOSE_CONTACT"})
    assert top == [{"field": "input.resident", "code": "resident_required"}]


async def test_rest_nested_validator_error_names_the_full_path(client, db):
    site = await make_site(db)
    key = {"X-API-Key": await tracing_key(db, [site])}
    person = {"name": "赵六", "document_type": "mainland_id", "document_number": bad_id()}
    body = {"site_id": str(site), "category": "close_contact", "identified_at": datetime.now(UTC).isoformat(), "person": person}
    bad = await client.post("/api/v1/referrals", json=body, headers=key)
    assert bad.status_code == 422, bad.text
    assert (bad.json()["code"], bad.json()["field"]) == ("invalid_id_number", "person.document_number")
    assert person["document_number"] not in bad.text
    unnamed = await client.post("/api/v1/referrals", json={**body, "person": {**person, "name": " "}}, headers=key)
    assert unnamed.status_code == 422 and (unnamed.json()["code"], unnamed.json()["field"]) == ("invalid_name", "person.name")
    naive_body = {**body, "identified_at": "2026-01-01T08:00:00", "person": {**person, "document_type": "passport"}}
    naive = await client.post("/api/v1/referrals", json=naive_body, headers=key)
    assert naive.status_code == 422 and (naive.json()["code"], naive.json()["field"]) == ("naive_datetime", "identified_at")
