"""Referrals: submission (encrypted, masked, ID checks), merging duplicates, the queue and its states,
admission from a referral, risk areas and regime rules, identification -> isolation times, REST for tracing."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from service.access.model import Role
from service.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from service.intake import service as intake
from service.intake.model import Assignment, Closing, ReferralAdmission, ReferralCreate, RiskAreaCreate
from service.sites import service as sites
from service.sites.model import SiteCreate
from service.stays import service as stays
from service.stays.model import Admission, RegimeRuleSet, ResidentCreate
from tests.conftest import make_principal, parse_input
from tests.intake.helpers import referral, submit, tracer, tracing_key
from tests.stays.helpers import COMMAND, id_number, make_site, person, staff

NOW = datetime.now(UTC)


async def _area(db, code: str, level: str, start: datetime, end: datetime | None = None) -> None:
    async with db.transaction() as conn:
        await intake.declare_risk_area(conn, COMMAND, RiskAreaCreate(code=code, level=level, valid_from=start, valid_to=end))


# --- submission ----------------------------------------------------------------------


async def test_submission_is_queued_encrypted_and_masked(db, settings):
    site = await make_site(db, floors={3: (2, 1)})
    number = id_number(date(1991, 3, 4), 41)
    who = ResidentCreate(name="李四", document_type="mainland_id", document_number=number, phone="13912345678", household_key="F-9")
    done = await submit(db, settings, tracer([site]), referral(site, who, origin_area="渝北区/回兴街道"))
    r = done.referral
    assert not done.merged and r.state == "pending" and r.site_id == site
    assert r.person.name == "李*" and r.person.document_number == "*" * 14 + number[-4:] and r.person.phone == "*******5678"
    assert r.person.birth_year == 1991 and r.index_case_refs == ["IC-1"] and r.regime_code == "close_contact"
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT document_enc, phone_enc, document_index FROM referrals WHERE id = $1", r.id)
        submissions = await conn.fetchval("SELECT count(*) FROM referral_submissions WHERE referral_id = $1", r.id)
    assert number not in row["document_enc"] and "13912345678" not in row["phone_enc"] and len(row["document_index"]) == 32
    assert submissions == 1


async def test_bad_id_number_future_identification_and_other_site(db, settings):
    site = await make_site(db)
    other = await make_site(db, "LJ-02")
    with pytest.raises(InvalidInput) as exc:
        parse_input(
            {"site_id": str(site), "category": "close_contact", "identified_at": NOW.isoformat(),
             "person": {"name": "王五", "document_type": "mainland_id", "document_number": "500112199001010015"}},
            ReferralCreate,
        )
    assert exc.value.code == "invalid_id_number" and "500112199001010015" not in exc.value.message
    assert exc.value.field == "person.document_number"
    with pytest.raises(InvalidInput) as exc:
        await submit(db, settings, tracer([site]), referral(site, hours_ago=-2))
    assert exc.value.code == "identified_in_future"
    # year 1 was stored as -infinity: the referral could then never be admitted (internal error)
    for identified_at in (datetime(1, 1, 1, tzinfo=UTC), datetime.now(UTC) - timedelta(days=93)):
        with pytest.raises(InvalidInput) as exc:
            await submit(db, settings, tracer([site]), referral(site, identified_at=identified_at))
        assert (exc.value.code, exc.value.field) == ("identified_too_early", "identified_at")
    with pytest.raises(NotFound):
        await submit(db, settings, tracer([site]), referral(other))
    with pytest.raises(Forbidden):
        await submit(db, settings, staff(site), referral(site))


async def test_duplicate_referrals_of_one_person_merge(db, settings):
    site = await make_site(db)
    who = person()
    first = await submit(db, settings, tracer([site]), referral(site, who, hours_ago=3, index_case_ref="IC-A"))
    earliest = referral(site, who, hours_ago=9, index_case_ref="IC-B", needs=["oxygen"])
    again = await submit(db, settings, tracer([site]), earliest)
    same = await submit(db, settings, tracer([site]), referral(site, who, hours_ago=1, index_case_ref="IC-A"))
    assert again.merged and same.merged and again.referral.id == first.referral.id == same.referral.id
    r = same.referral
    assert r.index_case_refs == ["IC-A", "IC-B"] and r.submissions == 3 and r.needs == ["oxygen"]
    assert r.identified_at == earliest.identified_at  # the earliest identification
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM referrals") == 1
        assert await conn.fetchval("SELECT count(*) FROM referral_submissions WHERE referral_id = $1", r.id) == 3


async def test_concurrent_duplicates_make_one_referral(db, settings):
    site = await make_site(db)
    who = person()
    results = await asyncio.gather(*[submit(db, settings, tracer([site]), referral(site, who, index_case_ref=f"IC-{i}")) for i in range(6)])
    assert len({r.referral.id for r in results}) == 1 and sum(not r.merged for r in results) == 1
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM referrals") == 1
        assert await conn.fetchval("SELECT submissions FROM referrals") == 6


async def test_duplicate_at_a_site_out_of_reach_is_refused_unmerged(db, settings):
    site = await make_site(db)
    other = await make_site(db, "LJ-02")
    who = person()
    await submit(db, settings, tracer([other]), referral(other, who))
    with pytest.raises(Conflict) as exc:
        await submit(db, settings, tracer([site]), referral(site, who, index_case_ref="IC-Z"))
    assert exc.value.code == "referral_open_elsewhere" and str(other) not in exc.value.message
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT submissions FROM referrals") == 1


async def test_replayed_id_answers_the_referral_other_content_conflicts(db, settings):
    site = await make_site(db)
    data = referral(site)
    data.id = first_id = (await submit(db, settings, tracer([site]), data)).referral.id
    replay = await submit(db, settings, tracer([site]), data)
    assert replay.referral.id == first_id and not replay.merged and replay.referral.submissions == 1
    with pytest.raises(Conflict) as exc:
        await submit(db, settings, tracer([site]), referral(site, id=first_id))
    assert exc.value.code == "referral_exists"


async def test_person_in_isolation_is_not_referred(db, settings):
    site = await make_site(db, floors={3: (2, 1)})
    who = person()
    async with db.transaction() as conn:
        await stays.admit(conn, staff(site), settings, Admission(site_id=site, category="close_contact", resident=who))
    with pytest.raises(Conflict) as exc:
        await submit(db, settings, tracer([site]), referral(site, who))
    assert exc.value.code == "already_isolated"


# --- states ------------------------------------------------------------------------------


async def test_queue_states_and_transitions(db, settings):
    site = await make_site(db)
    other = await make_site(db, "LJ-02")
    mgr = make_principal(Role.SITE_MANAGER, [site, other])
    a = (await submit(db, settings, tracer([site]), referral(site, hours_ago=5))).referral
    b = (await submit(db, settings, tracer([site]), referral(site, hours_ago=8))).referral
    c = (await submit(db, settings, tracer([site]), referral(site, hours_ago=2))).referral
    async with db.transaction() as conn:
        page = await intake.queue(conn, mgr, site_id=site)
        assert [r.id for r in page.items] == [b.id, a.id, c.id]  # longest waiting first
        with pytest.raises(Conflict) as exc:
            await intake.no_show(conn, mgr, a.id, Closing(version=1))
        assert exc.value.code == "invalid_referral_state"  # only an assigned referral can be a no-show
        moved = await intake.assign(conn, mgr, a.id, Assignment(version=1, site_id=other))
        assert moved.state == "assigned" and moved.site_id == other and moved.assigned_at is not None
        with pytest.raises(Conflict) as exc:
            await intake.cancel(conn, mgr, a.id, Closing(version=1))
        assert exc.value.code == "stale_version"
        gone = await intake.no_show(conn, mgr, a.id, Closing(version=2, reason="not at the pick-up point"))
        assert gone.state == "no_show" and gone.closed_at is not None
        cancelled = await intake.cancel(conn, mgr, b.id, Closing(version=1, reason="misidentified"))
        assert cancelled.state == "cancelled" and cancelled.close_reason == "misidentified"
        with pytest.raises(Conflict):
            await intake.assign(conn, mgr, b.id, Assignment(version=2))
        assert [r.id for r in (await intake.queue(conn, mgr, site_id=site)).items] == [c.id]
        closed = await intake.queue(conn, mgr, site_id=other, states=["no_show"])
        assert [r.id for r in closed.items] == [a.id]
        with pytest.raises(NotFound):  # a site manager of one site cannot send a referral to a site not theirs
            await intake.assign(conn, make_principal(Role.SITE_MANAGER, [site]), c.id, Assignment(version=1, site_id=other))
        with pytest.raises(Forbidden):
            await intake.assign(conn, tracer([site]), c.id, Assignment(version=1))


async def test_no_show_person_can_be_queued_again(db, settings):
    site = await make_site(db)
    who = person()
    first = (await submit(db, settings, tracer([site]), referral(site, who))).referral
    async with db.transaction() as conn:
        await intake.assign(conn, COMMAND, first.id, Assignment(version=1))
        await intake.no_show(conn, COMMAND, first.id, Closing(version=2))
    second = await submit(db, settings, tracer([site]), referral(site, who))
    assert not second.merged and second.referral.id != first.id


async def test_region_queue_spans_the_sites_under_a_path(db, settings):
    async with db.transaction() as conn:
        made = [
            await sites.create_site(conn, COMMAND, SiteCreate(code=code, name=code, region_path=path))
            for code, path in (("R-1", "两江新区/礼嘉街道"), ("R-2", "两江新区/悦来街道"), ("R-3", "渝北区/回兴街道"), ("R-4", "两江新区_x"))
        ]
    ids = [s.id for s in made]
    for site in ids:
        await submit(db, settings, COMMAND, referral(site))
    async with db.connection() as conn:
        region = await intake.queue(conn, COMMAND, region="两江新区")
        assert {r.site_id for r in region.items} == set(ids[:2])  # not 两江新区_x: LIKE wildcards are escaped
        scoped = await intake.queue(conn, make_principal(Role.SITE_MANAGER, [ids[0]]), region="两江新区")
        assert {r.site_id for r in scoped.items} == {ids[0]}


# --- admission --------------------------------------------------------------------------


async def test_admission_from_a_referral_links_the_stay_and_measures_the_time(db, settings):
    site = await make_site(db, floors={3: (4, 1)})
    who = person(household="H-7")
    r = (await submit(db, settings, tracer([site]), referral(site, who, hours_ago=10, origin_area="渝北区/回兴街道"))).referral
    async with db.transaction() as conn:
        stay = await intake.admit(conn, staff(site), settings, r.id, ReferralAdmission(arrival_batch="BUS-1"))
        replay = await intake.admit(conn, staff(site), settings, r.id, ReferralAdmission())
        after = await intake.get_referral(conn, staff(site), r.id)
        resident = (await stays.get_residents(conn, COMMAND, [stay.resident_id]))[stay.resident_id]
    assert replay.id == stay.id and stay.arrival_batch == "BUS-1" and stay.origin_area == "渝北区/回兴街道"
    assert after.state == "arrived" and after.stay_id == stay.id and after.arrived_at == stay.admitted_at
    assert 9.9 < after.hours_to_isolation < 10.1
    assert resident.document_number == r.person.document_number and resident.household_key == "H-7"
    async with db.transaction() as conn:
        with pytest.raises(Conflict):  # the person is in isolation: no second referral
            await intake.submit(conn, tracer([site]), settings, referral(site, who))


async def test_isolation_times_median_per_site_and_day(db, settings):
    site = await make_site(db, floors={3: (6, 1)})
    admitted = NOW - timedelta(hours=1)
    for hours in (4, 10, 30):
        r = (await submit(db, settings, tracer([site]), referral(site, identified_at=admitted - timedelta(hours=hours)))).referral
        async with db.transaction() as conn:
            await intake.admit(conn, staff(site), settings, r.id, ReferralAdmission(admitted_at=admitted))
    async with db.connection() as conn:
        times = await intake.isolation_times(conn, staff(site), site)
        with pytest.raises(InvalidInput):
            await intake.isolation_times(conn, staff(site), site, since=NOW - timedelta(days=200), until=NOW)
    assert len(times) == 1 and times[0].arrived == 3 and times[0].median_hours == 10.0 and times[0].max_hours == 30.0


# --- risk areas and regime rules ------------------------------------------------------------


async def test_risk_areas_periods_do_not_overlap_and_set_the_level_at_identification(db, settings):
    start = NOW - timedelta(days=10)
    await _area(db, "500112", "high", start, NOW - timedelta(days=2))
    await _area(db, "500112", "low", NOW - timedelta(days=2))
    with pytest.raises(Conflict) as exc:
        await _area(db, "500112", "medium", NOW - timedelta(days=5), NOW - timedelta(days=4))
    assert exc.value.code == "risk_area_overlap"
    with pytest.raises(InvalidInput):
        RiskAreaCreate(code="x", level="high", valid_from=NOW, valid_to=NOW - timedelta(days=1))
    async with db.connection() as conn:
        assert await intake.risk_level_of(conn, "500112", NOW - timedelta(days=3)) == "high"
        assert await intake.risk_level_of(conn, "500112", NOW - timedelta(days=2)) == "low"  # valid_to is exclusive
        assert await intake.risk_level_of(conn, "500112", NOW - timedelta(days=11)) is None
        assert [a.level for a in await intake.list_risk_areas(conn, code="500112")] == ["high", "low"]
    site = await make_site(db)
    r = (await submit(db, settings, tracer([site]), referral(site, hours_ago=24 * 3, risk_area_code="500112"))).referral
    assert r.risk_level == "high"


async def test_regime_rules_pick_the_regime_at_referral_and_again_at_admission(db, settings):
    site = await make_site(db, floors={3: (2, 1)})
    await _area(db, "AREA-H", "high", NOW - timedelta(days=5))
    async with db.transaction() as conn:
        rules = await stays.set_regime_rule(conn, COMMAND, RegimeRuleSet(category="secondary_contact", risk_level="high", regime_code="close_contact"))
        assert [(r.category, r.risk_level, r.regime_code) for r in rules] == [("secondary_contact", "high", "close_contact")]
        with pytest.raises(InvalidInput) as exc:
            await stays.set_regime_rule(conn, COMMAND, RegimeRuleSet(category="other", regime_code="nope"))
        assert exc.value.code == "unknown_regime"
        with pytest.raises(Forbidden):
            await stays.set_regime_rule(conn, staff(site), RegimeRuleSet(category="other", regime_code="close_contact"))
        # Resolution: the exact rule, then the category's rule without a level, then the default regime.
        assert (await stays.regime_for(conn, "secondary_contact", risk_level="high")).code == "close_contact"
        assert (await stays.regime_for(conn, "secondary_contact", risk_level="low")).code == "secondary_contact"
        with pytest.raises(InvalidInput) as exc:
            await stays.regime_for(conn, "other")
        assert exc.value.code == "regime_required"
        await stays.set_regime_rule(conn, COMMAND, RegimeRuleSet(category="other", regime_code="key_area_arrival"))
        assert (await stays.regime_for(conn, "other", risk_level="medium")).code == "key_area_arrival"
    high = (await submit(db, settings, tracer([site]), referral(site, category="secondary_contact", risk_area_code="AREA-H"))).referral
    other = (await submit(db, settings, tracer([site]), referral(site, category="other"))).referral
    assert high.regime_code == "close_contact" and high.risk_level == "high" and other.regime_code == "key_area_arrival"
    # The rule changes before the person arrives: admission asks the rules again.
    async with db.transaction() as conn:
        await stays.set_regime_rule(conn, COMMAND, RegimeRuleSet(category="secondary_contact", risk_level="high", regime_code="inbound_traveller"))
        stay = await intake.admit(conn, staff(site), settings, high.id, ReferralAdmission())
        assert stay.regime_code == "inbound_traveller" and stay.risk_level == "high"
        # A plain admission with a risk level follows the rules too.
        plain = await stays.admit(conn, staff(site), settings, Admission(site_id=site, category="secondary_contact", risk_level="high", resident=person()))
        assert plain.regime_code == "inbound_traveller"


async def test_merge_takes_the_higher_risk_and_its_regime(db, settings):
    site = await make_site(db)
    await _area(db, "AREA-M", "medium", NOW - timedelta(days=5))
    await _area(db, "AREA-H2", "high", NOW - timedelta(days=5))
    async with db.transaction() as conn:
        await stays.set_regime_rule(conn, COMMAND, RegimeRuleSet(category="secondary_contact", risk_level="high", regime_code="close_contact"))
    who = person()
    await submit(db, settings, tracer([site]), referral(site, who, category="secondary_contact", risk_area_code="AREA-M"))
    merged = (await submit(db, settings, tracer([site]), referral(site, who, category="secondary_contact", risk_area_code="AREA-H2"))).referral
    assert merged.risk_level == "high" and merged.risk_area_code == "AREA-H2" and merged.regime_code == "close_contact"
    lower = (await submit(db, settings, tracer([site]), referral(site, who, category="secondary_contact", risk_area_code="AREA-M"))).referral
    assert lower.risk_level == "high" and lower.risk_area_code == "AREA-H2"


# --- REST for tracing teams, GraphQL for command and site managers ---------------------------


async def test_tracing_api_key_submits_follows_and_cancels(client, db, settings, auth):
    site = await make_site(db)
    other = await make_site(db, "LJ-02")
    key = {"X-API-Key": await tracing_key(db, [site])}
    body = {"site_id": str(site), "category": "close_contact", "identified_at": (NOW - timedelta(hours=3)).isoformat(), "index_case_ref": "IC-9",
            "person": {"name": "赵六", "document_type": "mainland_id", "document_number": id_number(date(1980, 2, 2), 88), "phone": "13700001111"}}
    made = await client.post("/api/v1/referrals", json=body, headers=key)
    assert made.status_code == 201, made.text
    answer = made.json()
    assert answer["merged"] is False and answer["referral"]["person"]["name"] == "赵*" and "13700001111" not in made.text
    rid = answer["referral"]["id"]
    again = await client.post("/api/v1/referrals", json={**body, "index_case_ref": "IC-10"}, headers=key)
    assert again.status_code == 201 and again.json()["merged"] is True and again.json()["referral"]["submissions"] == 2
    got = await client.get(f"/api/v1/referrals/{rid}", headers=key)
    assert got.status_code == 200 and got.json()["index_case_refs"] == ["IC-9", "IC-10"]
    queue = await client.get(f"/api/v1/sites/{site}/referrals", headers=key)
    assert [r["id"] for r in queue.json()["items"]] == [rid]
    assert (await client.get(f"/api/v1/sites/{other}/referrals", headers=key)).status_code == 404
    bad = await client.post("/api/v1/referrals", json={**body, "person": {**body["person"], "document_number": "500112199001010015"}}, headers=key)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_id_number"
    assert (await client.get("/api/v1/sites", headers=key)).status_code == 403  # a tracing key reads no sites
    cancelled = await client.post(f"/api/v1/referrals/{rid}/cancel", json={"version": 2, "reason": "negative"}, headers=key)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    times = await client.get(f"/api/v1/sites/{site}/isolation-times", headers=key)
    assert times.status_code == 200 and times.json() == []
    areas = await client.get("/api/v1/risk-areas", params={"code": "500112"}, headers=key)
    assert areas.status_code == 200 and areas.json() == []


async def test_graphql_submit_assign_admit(client, db, auth):
    site = await make_site(db, floors={3: (2, 1)})
    mgr = auth(make_principal(Role.SITE_MANAGER, [site]))
    submit_q = """mutation($i: SubmitReferralInput!) { submitReferral(input: $i) {
        merged referral { id state version regimeCode person { name documentNumber } } userErrors { field code } } }"""
    variables = {"i": {"siteId": str(site), "category": "CLOSE_CONTACT", "identifiedAt": (NOW - timedelta(hours=2)).isoformat(),
                       "person": {"name": "钱七", "documentType": "MAINLAND_ID", "documentNumber": id_number(date(1975, 1, 1), 5)}}}
    made = (await client.post("/graphql", json={"query": submit_q, "variables": variables}, headers=mgr)).json()["data"]["submitReferral"]
    assert made["userErrors"] == [] and made["referral"]["state"] == "PENDING" and made["referral"]["person"]["name"] == "钱*"
    bad = {"i": {**variables["i"], "person": {**variables["i"]["person"], "documentNumber": "500112199001010015"}}}
    errors = (await client.post("/graphql", json={"query": submit_q, "variables": bad}, headers=mgr)).json()["data"]["submitReferral"]["userErrors"]
    assert [e["code"] for e in errors] == ["invalid_id_number"]
    rid = made["referral"]["id"]
    assign_q = "mutation($r: UUID!) { assignReferral(input: {referralId: $r, version: 1}) { referral { state version } userErrors { code } } }"
    assigned = (await client.post("/graphql", json={"query": assign_q, "variables": {"r": rid}}, headers=mgr)).json()["data"]["assignReferral"]
    assert assigned["referral"] == {"state": "ASSIGNED", "version": 2}
    admit_q = """mutation($r: UUID!) { admitReferral(input: {referralId: $r}) { stay { id regimeCode } userErrors { code } } }"""
    admitted = (await client.post("/graphql", json={"query": admit_q, "variables": {"r": rid}}, headers=mgr)).json()["data"]["admitReferral"]
    assert admitted["userErrors"] == [] and admitted["stay"]["regimeCode"] == "close_contact"
    read_q = "query($r: UUID!) { referral(id: $r) { state hoursToIsolation stay { id } } }"
    read = (await client.post("/graphql", json={"query": read_q, "variables": {"r": rid}}, headers=mgr)).json()["data"]["referral"]
    assert read["state"] == "ARRIVED" and read["stay"]["id"] == admitted["stay"]["id"] and read["hoursToIsolation"] > 1.9
    other = auth(make_principal(Role.SITE_MANAGER, [await make_site(db, "LJ-03")]))
    assert (await client.post("/graphql", json={"query": read_q, "variables": {"r": rid}}, headers=other)).json()["data"]["referral"] is None


def test_errors_never_carry_the_number():
    with pytest.raises(DomainError) as exc:
        ResidentCreate(name="x", document_type="mainland_id", document_number="500112199001010015")
    assert "500112199001010015" not in exc.value.message
