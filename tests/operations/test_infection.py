"""Infection control (issue 17 part 4): inspections and findings with due dates, surface swabs, the medical-waste log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from service.access.model import Role
from service.errors import DomainError, from_database
from service.operations.infection import service as infection
from service.operations.infection.model import (
    EnvironmentalResult,
    EnvironmentalSampleCreate,
    FindingCreate,
    FindingResolution,
    InspectionCreate,
    WasteCreate,
    WasteHandover,
)
from tests.conftest import make_principal
from tests.transfers.helpers import make_ward

NOW = datetime.now(UTC).replace(microsecond=0)


async def in_tx(db, fn):
    async with db.transaction() as conn:
        return await fn(conn)


async def gql(client, auth, principal, query, **variables):
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=auth(principal))
    assert response.status_code == 200, response.text
    return response.json()


def inspection_of(site_id, **fields):
    body = {"site_id": str(site_id), "inspected_at": NOW.isoformat(), "zoning_ok": False, "ppe_ok": True,
            "disinfection_records_ok": True, "waste_ok": True, **fields}
    return msgspec.convert(body, InspectionCreate)


async def test_an_inspection_its_findings_and_their_corrective_actions(client, db, settings, auth):
    ward = await make_ward(db, settings)
    inspection_id = uuid.uuid4()
    made = await in_tx(db, lambda c: infection.record_inspection(c, ward.medic, inspection_of(ward.site_id, id=str(inspection_id))))
    again = await in_tx(db, lambda c: infection.record_inspection(c, ward.medic, inspection_of(ward.site_id, id=str(inspection_id))))
    assert again.id == made.id == inspection_id
    with pytest.raises(DomainError) as staff:
        await in_tx(db, lambda c: infection.record_inspection(c, ward.staff, inspection_of(ward.site_id)))
    assert staff.value.code == "role_not_allowed"

    def finding(due, severity="high", **fields):
        return msgspec.convert({"inspection_id": str(inspection_id), "area": "zoning", "severity": severity, "description": "无分区标识",
                                "corrective_action": "张贴标识", "due_on": due.isoformat(), **fields}, FindingCreate)

    overdue = await in_tx(db, lambda c: infection.record_finding(c, ward.medic, finding(NOW.date() - timedelta(days=2), "medium")))
    later = await in_tx(db, lambda c: infection.record_finding(c, ward.medic, finding(NOW.date() + timedelta(days=2), "critical")))
    assert overdue.overdue and not later.overdue
    async with db.connection() as conn:
        listed = await infection.open_findings(conn, ward.staff, ward.site_id)
    assert [f.id for f in listed] == [overdue.id, later.id]
    with pytest.raises(DomainError) as stale:
        await in_tx(db, lambda c: infection.resolve_finding(c, ward.medic, later.id, FindingResolution(version=2, resolution="done")))
    assert stale.value.code == "stale_version"
    resolved = await in_tx(db, lambda c: infection.resolve_finding(c, ward.medic, later.id, FindingResolution(version=1, resolution="已张贴")))
    assert resolved.state.value == "resolved" and resolved.resolved_by == ward.medic.ref and not resolved.overdue
    same = await in_tx(db, lambda c: infection.resolve_finding(c, ward.medic, later.id, FindingResolution(version=1, resolution="已张贴")))
    assert same.version == resolved.version
    query = """query($id: UUID!) { inspection(id: $id) { zoningOk openFindings findings { severity overdue state } } }"""
    seen = await gql(client, auth, ward.staff, query, id=str(inspection_id))
    assert seen["data"]["inspection"] == {"zoningOk": False, "openFindings": 1, "findings": [
        {"severity": "MEDIUM", "overdue": True, "state": "OPEN"}, {"severity": "CRITICAL", "overdue": False, "state": "RESOLVED"}]}
    stranger = make_principal(Role.MEDIC, [uuid.uuid4()])
    assert (await gql(client, auth, stranger, query, id=str(inspection_id)))["data"]["inspection"] is None
    async with db.connection() as conn:
        types = [r["type"] for r in await conn.fetch("SELECT type FROM events WHERE type LIKE 'inspection.%' ORDER BY id")]
    assert types == ["inspection.recorded", "inspection.finding_recorded", "inspection.finding_recorded", "inspection.finding_resolved"]


async def test_surface_swabs_and_their_results(db, settings):
    ward = await make_ward(db, settings)
    swab = await in_tx(db, lambda c: infection.record_env_sample(c, ward.medic, EnvironmentalSampleCreate(
        site_id=ward.site_id, location="3 楼走廊门把手", floor=3, barcode="ENV-1", collected_at=NOW)))
    entry = EnvironmentalResult(environmental_sample_id=swab.id, result="positive")  # type: ignore[arg-type]
    first = await in_tx(db, lambda c: infection.record_env_result(c, ward.medic, entry))
    assert first.result.value == "positive" and first.resulted_at
    assert (await in_tx(db, lambda c: infection.record_env_result(c, ward.medic, entry))).resulted_at == first.resulted_at
    with pytest.raises(DomainError) as conflict:
        await in_tx(db, lambda c: infection.record_env_result(c, ward.medic, msgspec.structs.replace(entry, result="negative")))
    assert conflict.value.code == "result_conflict"
    with pytest.raises(asyncpg.UniqueViolationError) as taken:  # the edge answers it as 409 barcode_taken
        await in_tx(db, lambda c: infection.record_env_sample(c, ward.medic, EnvironmentalSampleCreate(
            site_id=ward.site_id, location="x", barcode="ENV-1", collected_at=NOW)))
    assert from_database(taken.value).code == "barcode_taken"
    async with db.connection() as conn:
        listed = await infection.list_env_samples(conn, ward.staff, ward.site_id, since=NOW - timedelta(days=1), until=NOW + timedelta(minutes=1))
    assert [s.id for s in listed] == [swab.id]


async def test_the_medical_waste_log_up_to_the_carriers_receipt(db, settings):
    ward = await make_ward(db, settings)
    batch_id = uuid.uuid4()
    sealed = WasteCreate(site_id=ward.site_id, bags=6, weight_kg=18.456, sealed_by="孙保洁", sealed_at=NOW - timedelta(hours=1), id=batch_id)
    batch = await in_tx(db, lambda c: infection.record_waste(c, ward.staff, sealed))
    assert batch.weight_kg == 18.46 and batch.state.value == "sealed"
    assert (await in_tx(db, lambda c: infection.record_waste(c, ward.staff, sealed))).id == batch_id
    with pytest.raises(DomainError) as taken:
        await in_tx(db, lambda c: infection.record_waste(c, ward.staff, msgspec.structs.replace(sealed, bags=7)))
    assert taken.value.code == "waste_id_taken"
    with pytest.raises(DomainError) as medic:  # the floor staff log waste, not medics
        await in_tx(db, lambda c: infection.record_waste(c, ward.medic, msgspec.structs.replace(sealed, id=uuid.uuid4())))
    assert medic.value.code == "role_not_allowed"
    handover = WasteHandover(version=1, carrier="重庆市医疗废物处置中心", carrier_receipt="YF-0001", handed_over_at=NOW)
    done = await in_tx(db, lambda c: infection.hand_over_waste(c, ward.staff, batch_id, handover))
    assert (done.state.value, done.carrier_receipt, done.version) == ("handed_over", "YF-0001", 2)
    assert (await in_tx(db, lambda c: infection.hand_over_waste(c, ward.staff, batch_id, handover))).version == 2
    with pytest.raises(DomainError) as twice:
        await in_tx(db, lambda c: infection.hand_over_waste(c, ward.staff, batch_id, msgspec.structs.replace(handover, carrier_receipt="YF-0002")))
    assert twice.value.code == "waste_handed_over"
    async with db.connection() as conn:
        log = await infection.list_waste(conn, ward.medic, ward.site_id, since=NOW - timedelta(days=1), until=NOW + timedelta(minutes=1))
        events = [r["type"] for r in await conn.fetch("SELECT type FROM events WHERE subject_id = $1 ORDER BY id", batch_id)]
    assert [b.id for b in log] == [batch_id]
    assert events == ["inspection.waste_sealed", "inspection.waste_handed_over"]
