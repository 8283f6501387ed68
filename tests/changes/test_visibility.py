"""Which changes each role sees: the policy (service/policy.py EVENT_READS) against a table written by
hand from the README's "Changes by cursor" table, and every event type the code emits is classified."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from service import policy
from service.access.model import Role
from service.changes.service import ENTITY_OF
from service.health.model import AlertState, ReviewState
from service.supplies.service import REPLENISHMENT_EVENTS
from service.transfers.service import EVENT_OF
from tests.conftest import make_principal

ROOT = Path(__file__).resolve().parents[2]

CMD, MGR, STAFF, MEDIC = Role.COMMAND, Role.SITE_MANAGER, Role.SITE_STAFF, Role.MEDIC
LOGI, LAB, HOSP = Role.LOGISTICS, Role.LAB, Role.HOSPITAL
PEOPLE = {CMD, MGR, STAFF, MEDIC}

# From the README: (an example type of each row) -> roles that see it at their sites.
SITE_ROWS: dict[str, set[Role]] = {
    "sites.site_updated": PEOPLE | {LOGI},
    "sites.room_status_changed": PEOPLE,
    "sites.disinfection_opened": PEOPLE,
    "stays.admitted": PEOPLE,
    "stays.released": PEOPLE,
    "health.checkin_recorded": PEOPLE,
    "health.alert_raised": PEOPLE,
    "health.sample_resulted": PEOPLE,
    "health.exposure_review_opened": PEOPLE,
    "transfers.approved": PEOPLE | {HOSP},  # a hospital: only transfers naming its facility (below)
    "supplies.stock_moved": PEOPLE | {LOGI},
    "supplies.low_stock": PEOPLE | {LOGI},
    "supplies.replenishment_dispatched": PEOPLE | {LOGI},
    "access.staff_created": {CMD, MGR},
    "access.client_created": {CMD, MGR},
    "access.staff_logged_in": set(),
    "access.token_refreshed": set(),
    "system.demo_seeded": set(),
    "health.demo_seeded": set(),
}
# Changes of no site: roles that see them although scoped to sites (the command role sees all).
GLOBAL_ROWS: dict[str, set[Role]] = {
    "stays.regime_updated": PEOPLE,
    "transfers.facility_created": PEOPLE | {HOSP},  # a hospital: only its own facility
    "supplies.item_created": PEOPLE | {LOGI},
    "supplies.webhook_registered": {CMD},
    "webhooks.webhook_removed": {CMD},
    "access.client_revoked": {CMD},
    "access.staff_logged_in": set(),
}


def _principal(role: Role):
    return make_principal(role, None if role is CMD else [uuid.uuid4()], facility_id=uuid.uuid4() if role is HOSP else None)


@pytest.mark.parametrize("role", list(Role))
def test_each_role_sees_the_changes_the_readme_lists(role):
    scope = policy.event_scope(_principal(role))
    for event_type, roles in SITE_ROWS.items():
        assert (event_type in scope.site_types) == (role in roles), (role, event_type)
    for event_type, roles in GLOBAL_ROWS.items():
        assert (event_type in scope.global_types) == (role in roles), (role, event_type)


def test_integration_keys_see_no_health_data():
    for role in (LOGI, LAB, HOSP):
        scope = policy.event_scope(_principal(role))
        seen = scope.site_types | scope.global_types
        assert not [t for t in seen if t.startswith(("health.", "stays.", "sites.room", "care.", "staff.", "inspection."))], role
        assert not [t for t in seen if t.startswith("transfers.")] or role is HOSP, role


def test_a_hospital_sees_only_transfers_naming_its_facility():
    hospital = _principal(HOSP)
    scope = policy.event_scope(hospital)
    assert scope.facility_id == hospital.facility_id and {t.split(".")[0] for t in scope.site_types} == {"transfers"}
    assert policy.event_scope(make_principal(HOSP, None)) == policy.EventScope(frozenset(), frozenset())  # no facility: nothing
    assert all(policy.event_scope(_principal(role)).facility_id is None for role in Role if role is not HOSP)


def test_people_logistics_and_hospitals_may_read_changes():
    assert set(policy.roles("changes.read")) == PEOPLE | {LOGI, HOSP}


def _emitted_types() -> set[str]:
    """Every event type the code writes: emit() literals, SQL inserts into events, and the computed ones."""
    found: set[str] = set()
    for path in (ROOT / "service").rglob("*.py"):
        text = path.read_text()
        found |= set(re.findall(r'emit\(\s*conn,\s*"([a-z_]+\.[a-z_]+)"', text))
        found |= set(re.findall(r'\(\s*[\w\[\]"\.]+,\s*"([a-z_]+\.[a-z_]+)",\s*[\w\[\]"\.]+,\s*\{', text))  # set-based tuples
    for path in (ROOT / "db" / "queries").glob("*.sql"):
        found |= set(re.findall(r"'([a-z_]+\.[a-z_]+)'", path.read_text())) & {t for t in policy.EVENT_READS} | set(
            re.findall(r"SELECT [\w.]+, '([a-z_]+\.[a-z_]+)'", path.read_text())
        )
    found |= {f"health.alert_{s.value}" for s in AlertState if s is not AlertState.OPEN}
    found |= {f"health.exposure_review_{s.value}" for s in ReviewState if s is not ReviewState.OPEN}
    found |= set(EVENT_OF.values()) | set(REPLENISHMENT_EVENTS)
    found |= {"access.client_revoked", "supplies.stock_recovered", "supplies.stock_levels_set", "supplies.stock_moved"}
    return found


def test_every_emitted_event_type_is_classified():
    emitted = _emitted_types()
    assert len(emitted) > 40, sorted(emitted)  # the scan finds the code's types (it would pass vacuously otherwise)
    assert sorted(emitted - policy.EVENT_READS.keys()) == [], "classify these in service/policy.py EVENT_READS"


def test_every_shown_type_names_its_record():
    shown = {t for t, op in policy.EVENT_READS.items() if op is not None}
    assert sorted(shown - ENTITY_OF.keys()) == [], "add these to service/changes/service.py ENTITY_OF"
    assert all(op is None or op in policy.POLICY for op in policy.EVENT_READS.values())
