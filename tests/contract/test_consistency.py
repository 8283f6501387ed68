"""REST and GraphQL apply the same rules to the same input, and name the input at fault in their own terms."""

import uuid

from service.access.model import Role
from tests.conftest import make_principal

ALERT = "mutation($input: AlertActionInput!) { acknowledgeAlert(input: $input) { userErrors { code field } } }"
CHECKIN = "mutation($input: RecordCheckinInput!) { recordCheckin(input: $input) { userErrors { code field } } }"


async def graphql(client, headers, query, variables):
    answer = (await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)).json()
    assert "errors" not in answer, answer
    return next(iter(answer["data"].values()))["userErrors"]


async def test_a_note_too_long_is_refused_by_both_not_cut(client, auth):
    medic = auth(make_principal(Role.MEDIC, [uuid.uuid4()]))
    alert_id, note = str(uuid.uuid4()), "x" * 1001
    rest = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"version": 1, "note": note}, headers=medic)
    assert rest.status_code == 400 and rest.json()["field"] == "note"
    errors = await graphql(client, medic, ALERT, {"input": {"id": alert_id, "version": 1, "note": note}})
    assert [(e["code"], e["field"]) for e in errors] == [("invalid_input", "input.note")]


async def test_user_errors_name_the_graphql_input_path(client, auth):
    worker = auth(make_principal(Role.SITE_STAFF, [uuid.uuid4()]))
    reading = {"stayId": str(uuid.uuid4()), "recordedAt": "2026-01-01T00:00:00Z", "temperatureC": 60, "symptoms": [], "note": ""}
    errors = await graphql(client, worker, CHECKIN, {"input": reading})
    assert [(e["code"], e["field"]) for e in errors] == [("implausible_value", "input.temperatureC")]
    rest = await client.post(
        "/api/v1/checkins", json={"stay_id": reading["stayId"], "recorded_at": reading["recordedAt"], "temperature_c": 60}, headers=worker
    )
    assert rest.status_code == 422 and rest.json()["field"] == "temperature_c"


async def test_a_missing_field_is_named_not_data(client, auth):
    command = auth(make_principal(Role.COMMAND))
    missing = await client.post("/api/v1/sites", json={"name": "礼嘉"}, headers=command)
    assert missing.status_code == 400 and missing.json()["field"] == "code"
