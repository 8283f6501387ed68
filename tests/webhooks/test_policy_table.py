"""Which role hears which event families, through the change feed and through webhooks: a table written by
hand from the README ("Changes by cursor" and "Webhooks for every integration"), checked against the
running app (webhook registration over REST, the feed's answer) and the feed's visibility rule."""

from __future__ import annotations

import uuid

import pytest

from service import policy
from service.access.model import Role
from tests.conftest import make_principal
from tests.transfers.helpers import make_facility, make_hospital

CMD, MGR, STAFF, MEDIC = Role.COMMAND, Role.SITE_MANAGER, Role.SITE_STAFF, Role.MEDIC
LOGI, LAB, HOSP, TRACE, CARRIER = Role.LOGISTICS, Role.LAB, Role.HOSPITAL, Role.TRACING, Role.CARRIER

# family -> an event type of it
FAMILIES = {
    "transfers": "transfers.dispatched",
    "facilities": "transfers.facility_updated",
    "staff roster": "staff.worker_added",
    "staff health": "staff.checkin_recorded",
    "care requests": "care.request_opened",
    "care flags": "care.profile_updated",
    "inspections": "inspection.recorded",
    "stock": "supplies.low_stock",
    "replenishments": "supplies.replenishment_requested",
    "health": "health.alert_raised",
    "stays": "stays.admitted",
    "sites": "sites.site_updated",
    "webhooks": "webhooks.webhook_registered",
    "handovers": "stays.handed_over",
}
ALL = set(FAMILIES)
# What the README says each role hears through the change feed (a hospital: only its facility's).
FEED: dict[Role, set[str]] = {
    CMD: ALL - {"staff health"},  # staff health data is for the site's managers and medics only
    MGR: ALL - {"webhooks"},
    MEDIC: ALL - {"webhooks"},
    STAFF: ALL - {"webhooks", "staff health", "care flags"},
    LOGI: {"stock", "replenishments", "sites"},
    HOSP: {"transfers", "facilities"},
    LAB: set(),
    TRACE: set(),
    CARRIER: set(),  # the waste batches of its sites, over its own routes only
}
# Who may register webhooks at all; each hears what its feed shows, and tracing keys (the community side, no
# change feed) the hand-overs of their sites ("Hand-over on release").
WEBHOOK_ROLES = {CMD, LOGI, HOSP, TRACE}
HEARS = {role: FEED.get(role, set()) | ({"handovers"} if role is TRACE else set()) for role in Role}


def principal_of(role: Role):
    return make_principal(role, None if role is CMD else [uuid.uuid4()], facility_id=uuid.uuid4() if role is HOSP else None)


@pytest.mark.parametrize("role", list(Role))
def test_feed_families_per_role(role):
    scope = policy.event_scope(principal_of(role))
    heard = {family for family, event_type in FAMILIES.items() if event_type in scope.site_types}
    assert heard == HEARS[role]


async def test_webhook_families_per_role(client, auth, db):
    facility = await make_facility(db)
    _, hospital_key = await make_hospital(db, facility)
    site = uuid.uuid4()
    for role in Role:
        headers = {"X-API-Key": hospital_key} if role is HOSP else auth(make_principal(role, None if role is CMD else [site]))
        for family, event_type in FAMILIES.items():
            for events in ([event_type], [event_type.split(".")[0]] if family in ("transfers", "stays", "health") else []):
                if not events:
                    continue
                answer = await client.post("/api/v1/webhooks", json={"url": "https://8.8.8.8/hook", "events": events}, headers=headers)
                if role not in WEBHOOK_ROLES:
                    assert (answer.status_code, answer.json()["code"]) == (403, "role_not_allowed"), (role, events)
                # a domain is allowed when any family of it is heard (``stays``: stays or hand-overs)
                elif any(f in HEARS[role] for f, t in FAMILIES.items() if events[0] in (t, t.split(".")[0])):
                    assert answer.status_code == 201, (role, events, answer.text)
                else:
                    assert (answer.status_code, answer.json()["code"]) == (422, "webhook_event_not_allowed"), (role, events)


async def test_feed_access_per_role(client, auth, db):
    facility = await make_facility(db)
    _, hospital_key = await make_hospital(db, facility)
    for role in Role:
        headers = {"X-API-Key": hospital_key} if role is HOSP else auth(make_principal(role, None if role is CMD else [uuid.uuid4()]))
        answer = await client.get("/api/v1/changes", headers=headers)
        if FEED[role]:
            assert answer.status_code in (200, 404), (role, answer.text)  # 404: a made-up site of the token
            if role is HOSP:
                assert answer.status_code == 200 and {c["entity"] for c in answer.json()["changes"]} <= {"facility", "transfer"}
        else:
            assert (answer.status_code, answer.json()["code"]) == (403, "role_not_allowed"), role
