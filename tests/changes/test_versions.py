"""Changes of stays, alerts and exposure reviews carry the record's version after the change, as every
other record's do, so an app that gets an update late (a replay, a second instance) can drop it."""

from __future__ import annotations

import uuid
from typing import Any

from service.access.model import Role
from service.health import service as health
from service.health.model import AlertAction, ExposureSource, ReviewDecision
from service.health.store import get_alerts, get_reviews
from service.sites import service as sites
from service.stays import service as stays
from service.stays import store as stay_store
from service.stays.model import Move
from tests.changes.test_changes import read_all
from tests.conftest import make_principal
from tests.health.helpers import checkin, ward


def _versions(changes: list[dict[str, Any]], type_: str) -> dict[str, list[int | None]]:
    by_subject: dict[str, list[int | None]] = {}
    for change in changes:
        if change["type"] == type_:
            by_subject.setdefault(change["entity_id"], []).append(change["version"])
    return by_subject


async def test_stay_alert_and_review_changes_carry_the_records_version(client, auth, db, settings):
    site_id, admitted = await ward(db, settings, residents=3, floors={2: (6, 2)}, days_ago=3)  # so an exposure today extends
    manager = make_principal(Role.SITE_MANAGER, [site_id])
    medic = make_principal(Role.MEDIC, [site_id])
    reader = auth(manager)
    before, cursor = await read_all(client, reader)
    assert {v for vs in _versions(before, "stays.admitted").values() for v in vs} == {1}

    # A fever check-in raises an alert in the check-in statement (SQL); a medic acknowledges and resolves it.
    response = await client.post("/api/v1/checkins", json=checkin(admitted[0].id, temperature_c=39.4), headers=auth(medic))
    assert response.status_code == 201, response.text
    raised, cursor = await read_all(client, reader, after=cursor)
    ((alert_id, first),) = _versions(raised, "health.alert_raised").items()
    async with db.transaction() as conn:
        acknowledged = await health.acknowledge_alert(conn, medic, uuid.UUID(alert_id), AlertAction(version=first[0] or 0))
        resolved = await health.resolve_alert(conn, medic, uuid.UUID(alert_id), AlertAction(version=acknowledged.version, note="paracetamol"))
        # Neighbours of a positive case are reviewed: one confirmed (which extends that stay), one dismissed.
        opened = await health.open_exposure_review(conn, medic, admitted[0].id, reason="positive", source=ExposureSource.POSITIVE)
        by_stay = {r.stay_id: r for r in opened}
        reviews = [by_stay[admitted[1].id], by_stay[admitted[2].id]]  # the floor's neighbours
        confirmed = await health.decide_exposure_review(conn, medic, reviews[0].id, ReviewDecision(version=reviews[0].version, confirm=True))
        dismissed = await health.decide_exposure_review(conn, medic, reviews[1].id, ReviewDecision(version=reviews[1].version, confirm=False))
        free = [r for r in await sites.list_site_rooms(conn, manager, site_id) if r.status.value == "ready"]
        moved = await stays.move(conn, manager, admitted[2].id, Move(room_id=free[-1].id, reason="closer to the stairs"))
    changes, _ = await read_all(client, reader, after=cursor)

    assert _versions(changes, "health.alert_acknowledged") == {alert_id: [acknowledged.version]}
    assert _versions(changes, "health.alert_resolved") == {alert_id: [resolved.version]}
    assert [first[0], acknowledged.version, resolved.version] == [1, 2, 3]
    async with db.connection() as conn:
        (alert,) = await get_alerts(conn, [uuid.UUID(alert_id)], None)
        assert alert.version == resolved.version
        now = {r.id: r.version for r in await get_reviews(conn, [confirmed.id, dismissed.id], None)}
        current = {s.id: s for s in await stay_store.get_stays(conn, [reviews[0].stay_id, admitted[2].id, moved.id], None)}
    assert _versions(changes, "health.exposure_review_confirmed") == {str(confirmed.id): [now[confirmed.id]]}
    assert _versions(changes, "health.exposure_review_dismissed") == {str(dismissed.id): [now[dismissed.id]]}
    assert now[confirmed.id] == reviews[0].version + 1
    # The confirmed review extended the neighbour's stay; the move closed the old stay and opened a new one.
    assert _versions(changes, "stays.extended") == {str(reviews[0].stay_id): [current[reviews[0].stay_id].version]}
    assert current[reviews[0].stay_id].version > 1
    assert _versions(changes, "stays.moved") == {str(admitted[2].id): [current[admitted[2].id].version]}
    assert _versions(changes, "stays.admitted")[str(moved.id)] == [current[moved.id].version]
