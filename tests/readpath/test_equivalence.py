"""Every compiled operation answers exactly what generic Strawberry execution answers.

Hypothesis (derandomized: a fixed seed in the suite) changes the data between
examples and draws the caller (every role; own, other or all sites) and the
variables (own site, another site, an unknown id, odd spellings, bad values).
Where the compiler answers, the JSON must equal the generic result, nulls and
all; where it declines, the generic path answers (nothing to compare).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import msgspec
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from service import readpath
from service.access.model import Role
from service.api.graphql import build_schema
from service.api.persisted import documents
from service.gql import Context
from service.pagination import encode_cursor
from service.stays import service as stays
from service.stays.model import BatchAdmission, BatchMember
from tests.conftest import make_principal
from tests.stays.helpers import COMMAND, make_site, person

UNKNOWN = uuid.UUID("6f1c2d3e-0000-4000-8000-000000000001")


@pytest.fixture
async def world(db, settings):
    """Two sites in different time zones (one on a quarter-hour offset), rooms of 1-3 beds, residents."""
    a = await make_site(db, "EQ-A", floors={2: (6, 2), 3: (4, 1)})
    b = await make_site(db, "EQ-B", floors={5: (5, 3)}, time_zone="Asia/Kathmandu")
    for site, count in ((a, 9), (b, 6)):
        members = [BatchMember(resident=person(f"h{site}{i // 2}", name=name)) for i, name in zip(range(count), ["张三", "欧阳娜娜", "Smith", "李", "O'Brien \"Ø\"", "𠮷野家", "a\\b", "x" * 40, "王五"])]
        async with db.transaction() as conn:
            await stays.admit_batch(conn, COMMAND, settings, BatchAdmission(site_id=site, category="close_contact", arrival_batch="bus-1", members=members))
    transfer = next(c for c in CHANGES if "INTO transfers" in c)
    for n in range(8):
        await db.pool.execute(transfer, f"hospital {n}", n)
    rows = await db.pool.fetch("SELECT admitted_at, id FROM stays ORDER BY admitted_at DESC, id DESC")
    cursors = {f"stay{i}": encode_cursor([r["admitted_at"].isoformat(), str(r["id"])]) for i, r in enumerate(rows)}
    return SimpleNamespace(db=db, settings=settings, a=a, b=b, schema=build_schema(settings), cursors=cursors)


# Changes between examples: each one read alike by both paths (invariants do not matter here).
CHANGES = [
    "UPDATE residents SET name = $1 WHERE id = (SELECT id FROM residents ORDER BY id LIMIT 1 OFFSET $2::int % greatest(1, (SELECT count(*) FROM residents)))",
    "UPDATE residents SET birth_date = NULL WHERE id = (SELECT id FROM residents ORDER BY id LIMIT 1 OFFSET $2::int % greatest(1, (SELECT count(*) FROM residents))) AND $1::text IS NOT NULL",
    "UPDATE stays SET risk_level = (ARRAY['high', 'medium', 'low', NULL])[1 + $2::int % 4], arrival_batch = $1 WHERE id = (SELECT id FROM stays ORDER BY id LIMIT 1 OFFSET $2::int % greatest(1, (SELECT count(*) FROM stays)))",
    "UPDATE rooms SET status = (ARRAY['ready', 'out_of_service', 'vacated', 'sealed'])[1 + $2::int % 4], status_since = now() - make_interval(secs => $2::int * 1.000001), notes = $1 WHERE id = (SELECT id FROM rooms WHERE occupied = 0 ORDER BY id LIMIT 1 OFFSET $2::int % 5)",
    "UPDATE rooms SET status_since = now() - make_interval(secs => $2::int), version = version + 1 WHERE id = (SELECT id FROM rooms ORDER BY id LIMIT 1 OFFSET $2::int % 20) AND $1::text IS NOT NULL",
    "UPDATE stays SET status = 'closed', ended_at = now(), outcome = 'released' WHERE id = (SELECT id FROM stays WHERE status = 'active' ORDER BY id LIMIT 1 OFFSET $2::int % 5) AND $1::text IS NOT NULL",
    "UPDATE stays SET day_one = day_one - $2::int % 20 WHERE $1::text IS NOT NULL",
    # A resident who moved on: a caller of the old site sees the stay without its resident.
    "UPDATE residents SET site_id = (SELECT id FROM sites ORDER BY id LIMIT 1 OFFSET $2::int % 2) "
    "WHERE id = (SELECT id FROM residents ORDER BY id LIMIT 1 OFFSET $2::int % 15) AND $1::text IS NOT NULL",
    "INSERT INTO alerts (site_id, stay_id, kind, dedup_key, detail, raised_at) "
    "SELECT site_id, id, (ARRAY['fever', 'low_spo2', 'symptoms', 'missed_checkin', 'positive'])[1 + $2::int % 5], $1::text, "
    "jsonb_build_object('temperature_c', 37.5 + ($2::int % 20) / 10.0, 'note', $1::text, 'list', jsonb_build_array(1, 'two', NULL)), "
    "now() - make_interval(mins => $2::int % 7) FROM stays ORDER BY id LIMIT 1 OFFSET $2::int % 15 ON CONFLICT DO NOTHING",
    "UPDATE alerts SET state = 'acknowledged', acknowledged_at = now(), acknowledged_by = $1::text, version = version + 1 "
    "WHERE id = (SELECT id FROM alerts WHERE state = 'open' ORDER BY id LIMIT 1 OFFSET $2::int % 3)",
    "INSERT INTO checkins (id, stay_id, site_id, recorded_at, temperature_c, recorded_by) "
    "SELECT gen_random_uuid(), id, site_id, now() - make_interval(hours => $2::int % 30), 36.6, $1::text "
    "FROM stays ORDER BY id LIMIT 1 OFFSET $2::int % 15",
    "WITH f AS (INSERT INTO facilities (code, name, kind) VALUES ('F' || substr(md5($1::text || random()::text), 1, 8), $1::text, "
    "'designated_hospital') RETURNING id) "
    "INSERT INTO transfers (site_id, stay_id, resident_id, room_id, reason, urgency, destination_id, requested_by, requested_at, vehicle_plate) "
    "SELECT s.site_id, s.id, s.resident_id, s.room_id, (ARRAY['positive_test', 'symptoms', 'other'])[1 + $2::int % 3], "
    "(ARRAY['routine', 'urgent', 'emergency'])[1 + $2::int % 3], CASE WHEN $2::int % 2 = 0 THEN f.id END, 'medic', "
    "now() - make_interval(secs => $2::int * 7.3), CASE WHEN $2::int % 4 = 0 THEN 'A-123' END "
    "FROM stays s, f WHERE s.id = (SELECT id FROM stays ORDER BY id LIMIT 1 OFFSET $2::int % 15) ON CONFLICT DO NOTHING",
    # Today's swab in (or invalid), and an open retest after a pool.
    "INSERT INTO samples (id, site_id, stay_id, barcode, kind, scheduled_day, collected_at, collected_by, result, resulted_at) "
    "SELECT gen_random_uuid(), site_id, id, 'BC-' || md5($1::text || random()::text), 'pcr', "
    "least(90, greatest(1, ((now() AT TIME ZONE time_zone)::date - day_one + 1))), now(), 'nurse', "
    "(ARRAY['pending', 'invalid', 'negative'])[1 + $2::int % 3], CASE WHEN $2::int % 3 > 0 THEN now() END "
    "FROM stays WHERE status = 'active' ORDER BY id LIMIT 1 OFFSET $2::int % 10",
    "WITH pool AS (INSERT INTO samples (id, site_id, barcode, kind, collected_at, collected_by) "
    "SELECT gen_random_uuid(), site_id, 'PL-' || md5($1::text || random()::text), 'pcr', now(), 'nurse' FROM stays ORDER BY id LIMIT 1 RETURNING id) "
    "INSERT INTO retests (site_id, stay_id, pool_id) SELECT st.site_id, st.id, pool.id FROM pool, stays st "
    "WHERE st.id = (SELECT id FROM stays ORDER BY id LIMIT 1 OFFSET $2::int % 15)",
    # A bed reserved for someone on an announced vehicle (in force, expired or let go): the board shows those in force.
    "INSERT INTO bed_reservations (site_id, room_id, bed, holder_id, subject_id, category, state, expires_at, ended_at) "
    "SELECT site_id, id, 1 + $2::int % beds, gen_random_uuid(), gen_random_uuid(), 'close_contact', "
    "CASE WHEN $2::int % 3 = 2 THEN 'released' ELSE 'held' END, now() + make_interval(mins => 60 - ($2::int % 2) * 120), "
    "CASE WHEN $2::int % 3 = 2 THEN now() END "
    "FROM rooms WHERE $1::text IS NOT NULL ORDER BY id LIMIT 1 OFFSET $2::int % 20 ON CONFLICT DO NOTHING",
    "INSERT INTO disinfection_tasks (room_id, site_id, state, started_at, airing_until, failed_inspections, notes) "
    "SELECT id, site_id, (ARRAY['passed', 'cancelled', 'airing'])[1 + $2::int % 3], now() - interval '2 hours', "
    "CASE WHEN $2::int % 2 = 0 THEN now() + make_interval(secs => $2::int) END, $2::int % 3, $1 "
    "FROM rooms ORDER BY id LIMIT 1 OFFSET $2::int % 20 ON CONFLICT DO NOTHING",
]

change = st.tuples(st.sampled_from(CHANGES), st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s), st.integers(0, 1000))
# Every role, the ones the read fields serve more often (the others are refused the generic way).
ROLES = st.sampled_from([*Role, Role.SITE_STAFF, Role.SITE_MANAGER, Role.MEDIC, Role.COMMAND])


SITES = ["a", "b", "unknown", "upper", "hex", "braces", "bad", "int"]


def site_value(world, pick: object) -> object:
    if isinstance(pick, list):
        return [site_value(world, p) for p in pick]
    if pick is None:
        return None
    return {
        "a": str(world.a), "b": str(world.b), "unknown": str(UNKNOWN), "upper": str(world.a).upper(),
        "hex": world.a.hex, "braces": "{" + str(world.a) + "}", "bad": "not-a-uuid", "int": 7,
    }[pick]


CURSORS = [encode_cursor(k) for k in ([2, "201"], [2, "204"], [3, "301"], [5, "501"], [1, "999"], ["x", 1], [2])]

VARIABLES = {
    "RoomBoard": st.fixed_dictionaries(
        {"siteId": st.sampled_from(SITES)},
        optional={"floor": st.one_of(st.none(), st.sampled_from([2, 3, 5, 99, -1, 2**40, "3", True, 2.0]))},
    ),
    "Rooms": st.fixed_dictionaries(
        {"siteId": st.sampled_from(["a", "a", "b", *SITES]), "first": st.sampled_from([1, 2, 3, 50, 100, 0, 101, -1, "2", None])},
        optional={
            "floor": st.one_of(st.none(), st.sampled_from([2, 3, 5, 99, "3"])),
            "status": st.one_of(st.none(), st.sampled_from(["READY", "OCCUPIED", "VACATED", "OUT_OF_SERVICE", "SEALED", "ready", "NOPE"])),
            "after": st.one_of(st.none(), st.sampled_from(["", "garbage", *CURSORS])),
        },
    ),
    "Stays": st.fixed_dictionaries(
        {"siteId": st.sampled_from(["a", "a", "b", *SITES]), "first": st.sampled_from([1, 2, 3, 50, 100, 0, 101, "2", None])},
        optional={
            "status": st.one_of(st.none(), st.sampled_from(["ACTIVE", "CLOSED", "active"])),
            "arrivalBatch": st.one_of(st.none(), st.sampled_from(["bus-1", "other", "", 5])),
            "after": st.one_of(st.none(), st.sampled_from(["", "garbage", "stay0", "stay3", "stay8", "stay12", *CURSORS])),
        },
    ),
    "SiteAlerts": st.fixed_dictionaries(
        {"siteId": st.sampled_from(["a", "a", "b", *SITES]), "first": st.sampled_from([1, 2, 3, 50, 0, None])},
        optional={
            "states": st.one_of(st.none(), st.sampled_from(["OPEN", "open"]), st.lists(st.sampled_from(["OPEN", "ACKNOWLEDGED", "RESOLVED", "NOPE"]), max_size=2)),
            "after": st.one_of(st.none(), st.sampled_from(["", "garbage", *CURSORS])),
        },
    ),
    "CheckinsDue": st.fixed_dictionaries(
        {"siteId": st.sampled_from(["a", "a", "b", *SITES])},
        optional={"floor": st.one_of(st.none(), st.sampled_from([2, 3, 5, 99, "3"]))},
    ),
    "TransferBoard": st.fixed_dictionaries(
        {"siteId": st.sampled_from(["a", "a", "b", *SITES]), "first": st.sampled_from([1, 2, 3, 50, 0, None])},
        optional={"after": st.one_of(st.none(), st.sampled_from(["", "garbage", *CURSORS, encode_cursor([0, "2020-01-01T00:00:00+00:00", str(UNKNOWN)])]))},
    ),
    "SwabsDue": st.fixed_dictionaries(
        {"siteId": st.sampled_from(["a", "a", "b", *SITES])},
        optional={"floor": st.one_of(st.none(), st.sampled_from([2, 3, 5, 99, "3"]))},
    ),
    "Occupancy": st.fixed_dictionaries(
        {}, optional={"siteIds": st.one_of(st.none(), st.sampled_from(SITES), st.lists(st.sampled_from(SITES + [None]), max_size=3))}
    ),
}


def scope_for(world, role: Role, pick: str) -> list[uuid.UUID] | None:
    return {"a": [world.a], "b": [world.b], "both": [world.a, world.b], "none": [], "all": None}[pick]


def generic(world, text: str, variables: dict, principal) -> dict:
    async def run() -> dict:
        context = Context(db=world.db, cache=world.db.cache, settings=world.settings, principal=principal)
        result = await world.schema.execute(text, variable_values=variables, context_value=context)
        out: dict = {"data": result.data}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
        return out

    return run()


class FrozenClock(datetime):
    """``datetime`` whose now() is fixed: the generic resolver and the compiled statement age transfers at one instant."""

    frozen = datetime(2026, 11, 29, 8, 7, 6, 543210, tzinfo=UTC)

    @classmethod
    def now(cls, tz=None):
        return cls.frozen if tz is None else cls.frozen.astimezone(tz)


@pytest.mark.parametrize("name", sorted(VARIABLES))
async def test_compiled_equals_generic(world, name, monkeypatch):
    if name == "TransferBoard":
        from service.transfers import gql as transfers_gql

        FrozenClock.frozen = datetime.now(UTC)
        monkeypatch.setattr(transfers_gql, "datetime", FrozenClock)
        monkeypatch.setattr(readpath, "datetime", FrozenClock)
    by_name = {op.name: (digest, text) for text, (digest, op) in readpath.registry().by_text.items()}
    assert name in by_name, f"{name} is not matched to a persisted document"
    digest, text = by_name[name]
    assert documents()[digest] == text
    answered = 0

    # Hypothesis draws the examples (a sync run collects them); the checks then run on the test's loop.
    examples: list[tuple] = []

    @hypothesis_settings(max_examples=100, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(changes=st.lists(change, max_size=2), role=ROLES, scope=st.sampled_from(["a", "b", "both", "none", "all"]), variables=VARIABLES[name])
    def collect(changes, role, scope, variables):
        examples.append((changes, role, scope, variables))

    collect()
    for changes, role, scope, variables in examples:
        for sql, value, n in changes:
            await world.db.pool.execute(sql, value, n)
        sites = scope_for(world, role, scope)
        if sites is None and role is not Role.COMMAND:
            sites = [world.a]
        principal = make_principal(role, sites)
        variables = {k: site_value(world, v) if k.startswith("site") else world.cursors.get(v, v) if k == "after" else v for k, v in variables.items()}
        compiled = await readpath.answer(SimpleNamespace(db=world.db, principal=principal, settings=world.settings), text, variables)
        expected = await generic(world, text, variables, principal)
        if compiled is None:
            continue
        answered += 1
        assert msgspec.json.decode(compiled.body) == expected, (role, scope, variables)
    assert answered >= 20, "the compiler declined almost everything: the comparison proves nothing"


def test_documents_match_by_canonical_form_not_by_hash():
    """A persisted file rewritten with fragments is still compiled; one with other fields or aliases is not."""
    readpath.registry()  # imports the domains' compiled operations
    op = next(o for o in readpath.COMPILED if o.name == "RoomBoard")
    with_fragment = """
query RoomBoard($siteId: UUID!, $floor: Int) { roomBoard(siteId: $siteId, floor: $floor) { room { ...R } occupants { ...O } reservedBeds { bed expiresAt } } }
fragment R on Room { id number floor beds occupied freeBeds status statusSince version }
fragment O on Stay { id bed category riskLevel arrivalBatch admittedAt plannedReleaseAt quarantineDay resident { id name sex birthYear } }
"""
    assert readpath.canonical(with_fragment) == readpath.canonical(op.document)
    aliased = op.document.replace("freeBeds", "free: freeBeds")
    fewer = op.document.replace("statusSince", "")
    renamed = op.document.replace("query RoomBoard(", "query Board(")
    assert len({readpath.canonical(d) for d in (op.document, aliased, fewer, renamed)}) == 4
    assert readpath.canonical("{ a } { b }") is None and readpath.canonical("query {") is None
