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


TURN = "mutation($input: TurnOverRoomInput!) { turnOverRoom(input: $input) { userErrors { code field message extra } } }"
RELEASE = "mutation($id: UUID!) { releaseStay(stayId: $id) { userErrors { code field message extra } } }"


async def test_blocked_actions_say_what_unblocks_them_as_data(client, auth, db, settings):
    from datetime import datetime

    from service.stays import service as stays
    from tests.stays.helpers import admission, make_site, staff

    site_id = await make_site(db, floors={3: (2, 1)})
    manager = auth(make_principal(Role.SITE_MANAGER, [site_id]))
    rooms = (await client.get(f"/api/v1/sites/{site_id}/rooms", headers=manager)).json()["items"]
    for action in ("TAKE_OUT_OF_SERVICE", "RETURN_TO_SERVICE", "START_DISINFECTION", "FINISH_DISINFECTION"):
        assert await graphql(client, manager, TURN, {"input": {"roomId": rooms[0]["id"], "action": action, "reason": ""}}) == []
    (airing,) = await graphql(client, manager, TURN, {"input": {"roomId": rooms[0]["id"], "action": "PASS_INSPECTION", "reason": ""}})
    until = datetime.fromisoformat(airing["extra"]["airing_until"])
    assert airing["code"] == "airing_not_finished" and until > datetime.now(until.tzinfo) and airing["extra"]["airing_until"] in airing["message"]

    async with db.transaction() as conn:
        stay = await stays.admit(conn, staff(site_id), settings, admission(site_id))
    (blocked,) = await graphql(client, manager, RELEASE, {"id": str(stay.id)})
    assert blocked["code"] == "release_blocked" and "centralized_period_not_served" in blocked["extra"]["reasons"]
