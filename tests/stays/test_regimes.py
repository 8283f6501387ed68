"""Regimes: created, versioned (a version applies to stays admitted from its effective_from on; re-planning
open stays only when asked, the answer saying how many), phases as data."""

from datetime import UTC, datetime, timedelta

import pytest

from service.access.model import Role
from service.errors import Conflict, Forbidden, InvalidInput
from service.stays import service as stays
from service.stays.model import Phase, RegimeCreate, RegimePatch
from tests.conftest import make_principal, parse_input
from tests.stays.helpers import COMMAND, admission, make_site, staff


def _create(**fields) -> RegimeCreate:
    body = {"code": "other_7_7", "name": "其他人员 7天集中+7天居家", "checkins_per_day": 2,
            "phases": [{"phase": "centralized", "days": 7, "test_days": [1, 4, 7]}, {"phase": "home_isolation", "days": 7, "test_days": [3, 7]},
                       {"phase": "home_monitoring", "days": 7}]} | fields
    return parse_input(body, RegimeCreate)


async def test_create_a_regime_with_phases_and_admit_category_other(db, settings):
    site = await make_site(db, floors={2: (2, 1)})
    async with db.transaction() as conn:
        with pytest.raises(InvalidInput) as exc:  # category "other" has no regime until one is created
            await stays.admit(conn, COMMAND, settings, admission(site, category="other"))
        assert exc.value.code == "regime_required"
    async with db.transaction() as conn:
        regime = await stays.create_regime(conn, COMMAND, _create(category="other"))
        stay = await stays.admit(conn, COMMAND, settings, admission(site, category="other"))
    assert regime.version == 1 and regime.centralized_days == 7 and regime.test_days == [1, 4, 7]
    assert regime.home_isolation_days == 7 and regime.home_monitoring_days == 7
    assert [(p.phase, p.days, p.test_days) for p in regime.phases] == [
        ("centralized", 7, [1, 4, 7]), ("home_isolation", 7, [3, 7]), ("home_monitoring", 7, [])]
    assert stay.regime_code == "other_7_7" and stay.regime_id == regime.id
    async with db.transaction() as conn:
        with pytest.raises(Conflict) as exc:
            await stays.create_regime(conn, COMMAND, _create())
        assert exc.value.code == "regime_exists"
    async with db.transaction() as conn:
        with pytest.raises(Conflict) as exc:
            await stays.create_regime(conn, COMMAND, _create(code="cc_again", category="close_contact"))
        assert exc.value.code == "category_taken"
    async with db.transaction() as conn:
        with pytest.raises(Forbidden):
            await stays.create_regime(conn, staff(site), _create(code="nope_1"))


@pytest.mark.parametrize(
    ("phases", "code"),
    [
        ([{"phase": "home_monitoring", "days": 3}], "invalid_phases"),  # centralized first
        ([{"phase": "centralized", "days": 7}, {"phase": "home_monitoring", "days": 3}, {"phase": "home_isolation", "days": 3}], "invalid_phases"),
        ([{"phase": "centralized", "days": 7}, {"phase": "centralized", "days": 7}], "invalid_phases"),
        ([{"phase": "centralized", "days": 7, "test_days": [8]}], "invalid_test_day"),  # after the phase
    ],
)
def test_phases_are_checked(phases, code):
    with pytest.raises(InvalidInput) as exc:
        _create(phases=phases)
    assert exc.value.code == code


async def test_a_new_version_applies_to_stays_admitted_from_its_effective_from(db, settings):
    site = await make_site(db, floors={2: (4, 1)})
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        before = await stays.admit(conn, COMMAND, settings, admission(site, admitted_at=now - timedelta(days=1)))
        v1 = await stays.regime_of(conn, before)
        change = await stays.update_regime(conn, COMMAND, "close_contact", RegimePatch(version=v1.version, centralized_days=10))
    v2 = change.regime
    assert change.replanned == 0 and v2.version == v1.version + 1 and v2.centralized_days == 10
    async with db.transaction() as conn:
        after = await stays.admit(conn, COMMAND, settings, admission(site))
        backdated = await stays.admit(conn, COMMAND, settings, admission(site, admitted_at=now - timedelta(hours=2)))
        unchanged = await stays.get_stay(conn, COMMAND, before.id)
        listed = {r.code: r for r in await stays.list_regimes(conn)}
        versions = await stays.regime_versions(conn, "close_contact")
    assert unchanged.regime_id == v1.id and unchanged.planned_release_at == before.planned_release_at  # not re-planned
    assert after.regime_id == v2.id  # admitted from the new version's effective_from on
    assert backdated.regime_id == v1.id  # admitted (backdated) before it: the version in force then
    assert listed["close_contact"].id == v2.id and [v.version for v in versions] == [1, 2]
    # A version announced for later: admissions until then keep the current one.
    async with db.transaction() as conn:
        later = await stays.update_regime(
            conn, COMMAND, "close_contact", RegimePatch(version=2, centralized_days=14, effective_from=now + timedelta(days=3))
        )
        still = await stays.admit(conn, COMMAND, settings, admission(site))
        assert still.regime_id == v2.id
        with pytest.raises(InvalidInput) as exc:  # a version must take effect after the newest one
            await stays.update_regime(conn, COMMAND, "close_contact", RegimePatch(version=3, centralized_days=9, effective_from=now))
        assert exc.value.code == "invalid_effective_from"
    assert later.regime.version == 3


async def test_replan_moves_every_open_stay_of_older_versions_and_counts_them(db, settings):
    site = await make_site(db, floors={2: (4, 1)})
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        first = await stays.admit(conn, COMMAND, settings, admission(site, admitted_at=now - timedelta(days=3)))
        await stays.update_regime(conn, COMMAND, "close_contact", RegimePatch(version=1, home_monitoring_days=5))
        second = await stays.admit(conn, COMMAND, settings, admission(site))
        other = await stays.admit(conn, COMMAND, settings, admission(site, category="inbound_traveller"))
        change = await stays.update_regime(
            conn, COMMAND, "close_contact", RegimePatch(version=2, centralized_days=14, replan_open_stays=True)
        )
        moved = [await stays.get_stay(conn, COMMAND, s.id) for s in (first, second, other)]
    assert change.replanned == 2 and change.regime.home_monitoring_days == 5  # phases carried over
    assert [s.regime_id == change.regime.id for s in moved] == [True, True, False]
    assert moved[0].planned_release_at == first.planned_release_at + timedelta(days=7)
    phases = change.regime.phases
    assert [p.phase for p in phases] == ["centralized", "home_monitoring"] and phases[0] == Phase(phase="centralized", days=14, test_days=[1, 2, 3, 5, 7])


async def test_graphql_create_version_and_replan(client, auth, db):
    create = """mutation($i: CreateRegimeInput!) { createRegime(input: $i) { regime { code version phases { phase days testDays } } userErrors { code field } } }"""
    body = {"code": "gql_regime", "name": "G", "checkinsPerDay": 2,
            "phases": [{"phase": "CENTRALIZED", "days": 5, "testDays": [1, 5]}, {"phase": "HOME_MONITORING", "days": 3}]}
    made = (await client.post("/graphql", json={"query": create, "variables": {"i": body}}, headers=auth(COMMAND))).json()["data"]["createRegime"]
    assert made["userErrors"] == [] and made["regime"]["phases"] == [
        {"phase": "CENTRALIZED", "days": 5, "testDays": [1, 5]}, {"phase": "HOME_MONITORING", "days": 3, "testDays": []}]
    bad = {**body, "code": "gql_bad", "phases": [{"phase": "HOME_MONITORING", "days": 3}]}
    refused = (await client.post("/graphql", json={"query": create, "variables": {"i": bad}}, headers=auth(COMMAND))).json()["data"]["createRegime"]
    assert refused["userErrors"] == [{"code": "invalid_phases", "field": "input.phases"}]
    update = """mutation($i: UpdateRegimeInput!) { updateRegime(input: $i) { regime { version centralizedDays } replanned userErrors { code } } }"""
    done = (await client.post("/graphql", json={"query": update, "variables": {"i": {"code": "gql_regime", "version": 1, "centralizedDays": 6,
                                                                                         "replanOpenStays": True}}}, headers=auth(COMMAND))).json()
    assert done["data"]["updateRegime"] == {"regime": {"version": 2, "centralizedDays": 6}, "replanned": 0, "userErrors": []}
    versions = 'query { regimeVersions(code: "gql_regime") { version centralizedDays } }'
    listed = (await client.post("/graphql", json={"query": versions}, headers=auth(make_principal(Role.MEDIC, [])))).json()["data"]
    assert listed["regimeVersions"] == [{"version": 1, "centralizedDays": 5}, {"version": 2, "centralizedDays": 6}]
