"""Every compiled operation answers exactly what generic Strawberry execution answers.

Hypothesis (derandomized: a fixed seed in the suite) changes the data between
examples and draws the caller (every role; own, other or all sites) and the
variables (own site, another site, an unknown id, odd spellings, bad values).
Where the compiler answers, the JSON must equal the generic result, nulls and
all; where it declines, the generic path answers (nothing to compare).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from service import readpath
from service.access.model import Role
from service.api.graphql import build_schema
from service.api.persisted import documents
from service.gql import Context
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
    return SimpleNamespace(db=db, settings=settings, a=a, b=b, schema=build_schema(settings))


# Changes between examples: each one read alike by both paths (invariants do not matter here).
CHANGES = [
    "UPDATE residents SET name = $1 WHERE id = (SELECT id FROM residents ORDER BY id LIMIT 1 OFFSET $2::int % greatest(1, (SELECT count(*) FROM residents)))",
    "UPDATE residents SET birth_date = NULL WHERE id = (SELECT id FROM residents ORDER BY id LIMIT 1 OFFSET $2::int % greatest(1, (SELECT count(*) FROM residents))) AND $1::text IS NOT NULL",
    "UPDATE stays SET risk_level = (ARRAY['high', 'medium', 'low', NULL])[1 + $2::int % 4], arrival_batch = $1 WHERE id = (SELECT id FROM stays ORDER BY id LIMIT 1 OFFSET $2::int % greatest(1, (SELECT count(*) FROM stays)))",
    "UPDATE rooms SET status = (ARRAY['ready', 'out_of_service', 'vacated', 'sealed'])[1 + $2::int % 4], status_since = now() - make_interval(secs => $2::int * 1.000001), notes = $1 WHERE id = (SELECT id FROM rooms WHERE occupied = 0 ORDER BY id LIMIT 1 OFFSET $2::int % 5)",
    "UPDATE rooms SET status_since = now() - make_interval(secs => $2::int), version = version + 1 WHERE id = (SELECT id FROM rooms ORDER BY id LIMIT 1 OFFSET $2::int % 20) AND $1::text IS NOT NULL",
    "UPDATE stays SET status = 'closed', ended_at = now(), outcome = 'released' WHERE id = (SELECT id FROM stays WHERE status = 'active' ORDER BY id LIMIT 1 OFFSET $2::int % 5) AND $1::text IS NOT NULL",
    "UPDATE stays SET day_one = day_one - $2::int % 20 WHERE $1::text IS NOT NULL",
]

change = st.tuples(st.sampled_from(CHANGES), st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s), st.integers(0, 1000))
ROLES = st.sampled_from(list(Role))


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


VARIABLES = {
    "RoomBoard": st.fixed_dictionaries(
        {"siteId": st.sampled_from(SITES)},
        optional={"floor": st.one_of(st.none(), st.sampled_from([2, 3, 5, 99, -1, 2**40, "3", True, 2.0]))},
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


@pytest.mark.parametrize("name", sorted(VARIABLES))
async def test_compiled_equals_generic(world, name):
    by_name = {op.name: (digest, text) for text, (digest, op) in readpath.registry().by_text.items()}
    assert name in by_name, f"{name} is not matched to a persisted document"
    digest, text = by_name[name]
    assert documents()[digest] == text
    answered = 0

    # Hypothesis draws the examples (a sync run collects them); the checks then run on the test's loop.
    examples: list[tuple] = []

    @hypothesis_settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
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
        variables = {k: site_value(world, v) if k.startswith("site") else v for k, v in variables.items()}
        compiled = await readpath.answer(SimpleNamespace(db=world.db, principal=principal), text, variables)
        expected = await generic(world, text, variables, principal)
        if compiled is None:
            continue
        answered += 1
        assert msgspec.json.decode(compiled.body) == expected, (role, scope, variables)
    assert answered >= 20, "the compiler declined almost everything: the comparison proves nothing"
