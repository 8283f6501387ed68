"""Infection-control rules: inspections with a checklist, findings with a corrective action due by a
date, environmental (surface) swabs and their results, the medical-waste log up to the carrier's receipt.

Every staff role of the site reads them (``infection.read``); inspectors (medics, site managers, the
command centre) record inspections, findings, surface swabs and results (``infection.inspect``); the
floor staff seal and hand over medical waste (``waste.record``); the carrier's own API key reads the
waste batches of the sites it serves and confirms receipt (``waste.carrier``). Records a phone creates take a
client id: a replay answers the stored record, the id used for anything else is 409 ``*_id_taken``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import asyncpg

from service import bus, policy
from service.access.model import Principal, Role
from service.errors import Conflict, Forbidden, InvalidInput, NotFound
from service.fields import CLOCK_SKEW
from service.operations.infection import store
from service.operations.infection.model import (
    CarrierWaste,
    EnvironmentalResult,
    EnvironmentalSample,
    EnvironmentalSampleCreate,
    Finding,
    FindingCreate,
    FindingResolution,
    Inspection,
    InspectionCreate,
    SwabResult,
    WasteBatch,
    WasteCreate,
    WasteHandover,
    WasteReceipt,
    WasteState,
)
from service.pagination import Page, check_limit, decode_cursor, page_of
from service.sites import service as sites

READ_ROLES = policy.roles("infection.read")
INSPECT_ROLES = policy.roles("infection.inspect")
WASTE_ROLES = policy.roles("waste.record")
CARRIER_ROLES = policy.roles("waste.carrier")
MAX_PERIOD = timedelta(days=92)
CHECKLIST = ("zoning_ok", "ppe_ok", "disinfection_records_ok", "waste_ok")


def _require(principal: Principal, roles: tuple[Role, ...], what: str) -> None:
    if principal.role not in roles:
        raise Forbidden(f"The role {principal.role} may not {what}.", code="role_not_allowed")


def _now() -> datetime:
    return datetime.now(UTC)


def _check_instant(value: datetime, name: str) -> None:
    if value.tzinfo is None:
        raise InvalidInput(f"{name} needs a time zone offset.", code="naive_datetime", field=name)
    if value > _now() + CLOCK_SKEW:
        raise InvalidInput(f"{name} is in the future.", code="recorded_in_future", field=name)


def _check_period(since: datetime, until: datetime) -> None:
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None:
            raise InvalidInput(f"{name} needs a time zone offset.", code="naive_datetime", field=name)
    if until <= since or until - since > MAX_PERIOD:
        raise InvalidInput("The period must be positive and at most 92 days.", code="invalid_period", field="until")


async def _today(conn: asyncpg.Connection, principal: Principal, site_id: UUID) -> date:
    site = await sites.get_site(conn, principal, site_id)
    return _now().astimezone(ZoneInfo(site.time_zone)).date()


def _taken(what: str) -> Conflict:
    return Conflict(f"Another {what.replace('_', ' ')} already has this id.", code=f"{what}_id_taken", field="id")


# --- inspections and findings ---------------------------------------------------------


async def get_inspections(conn: asyncpg.Connection, principal: Principal, ids: list[UUID]) -> dict[UUID, Inspection]:
    if principal.role not in READ_ROLES or not ids:
        return {}
    return {i.id: i for i in await store.get_inspections(conn, ids, principal.site_scope)}


async def list_inspections(conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, cursor: str | None, limit: int) -> Page[Inspection]:
    """A site's inspections, newest first, each with its count of open findings."""
    _require(principal, READ_ROLES, "read inspections")
    check_limit(limit)
    await sites.get_site(conn, principal, site_id)
    after = decode_cursor(cursor, [datetime, UUID])
    rows = await store.site_inspections(conn, site_id, principal.site_scope, after=(after[0], after[1]) if after else None, limit=limit + 1)
    return page_of(rows, limit, inspection_key)


def inspection_key(i: Inspection) -> list[object]:
    return [i.inspected_at.isoformat(), str(i.id)]


async def record_inspection(conn: asyncpg.Connection, principal: Principal, data: InspectionCreate) -> Inspection:
    """An inspection and its checklist. A replayed client ``id`` answers the stored inspection."""
    _require(principal, INSPECT_ROLES, "record inspections")
    _check_instant(data.inspected_at, "inspected_at")
    site = await sites.get_site(conn, principal, data.site_id)
    inspection_id = data.id or uuid4()
    checklist = {k: getattr(data, k) for k in CHECKLIST}
    if not await store.insert(conn, "inspection", id=inspection_id, site_id=site.id, inspected_at=data.inspected_at, actor=principal.ref,
                              note=data.note, **checklist):
        stored = await store.get_inspections(conn, [inspection_id], principal.site_scope)
        if not stored or stored[0].site_id != site.id or stored[0].inspected_at != data.inspected_at:
            raise _taken("inspection")
        return stored[0]
    inspection = (await store.get_inspections(conn, [inspection_id], None))[0]
    await bus.emit(conn, "inspection.recorded", site_id=site.id, subject_id=inspection.id, actor=principal.ref,
                   data={"failed": [k.removesuffix("_ok") for k, ok in checklist.items() if not ok]})
    return inspection


async def findings_of(conn: asyncpg.Connection, principal: Principal, inspection_ids: list[UUID]) -> dict[UUID, list[Finding]]:
    out: dict[UUID, list[Finding]] = {i: [] for i in inspection_ids}
    if principal.role not in READ_ROLES or not inspection_ids:
        return out
    for f in await store.findings_of(conn, inspection_ids, principal.site_scope, _now().date()):
        out[f.inspection_id].append(f)
    return out


async def open_findings(conn: asyncpg.Connection, principal: Principal, site_id: UUID) -> list[Finding]:
    """The corrective actions still open at a site by due date, then severity; ``overdue`` past the date."""
    _require(principal, READ_ROLES, "read findings")
    today = await _today(conn, principal, site_id)
    return await store.open_findings(conn, site_id, principal.site_scope, today)


async def record_finding(conn: asyncpg.Connection, principal: Principal, data: FindingCreate) -> Finding:
    """A finding of an inspection with its corrective action and due date."""
    _require(principal, INSPECT_ROLES, "record findings")
    found = await store.get_inspections(conn, [data.inspection_id], principal.site_scope)
    if not found:
        raise NotFound("No such inspection.", code="inspection_not_found", field="inspection_id")
    inspection = found[0]
    today = await _today(conn, principal, inspection.site_id)
    finding_id = data.id or uuid4()
    if not await store.insert(
        conn, "finding", id=finding_id, inspection_id=inspection.id, site_id=inspection.site_id, area=str(data.area),
        severity=str(data.severity), description=data.description, corrective_action=data.corrective_action, due_on=data.due_on,
    ):
        stored = await store.get_findings(conn, [finding_id], principal.site_scope, today)
        if not stored or stored[0].inspection_id != inspection.id or stored[0].description != data.description:
            raise _taken("finding")
        return stored[0]
    finding = (await store.get_findings(conn, [finding_id], None, today))[0]
    await bus.emit(conn, "inspection.finding_recorded", site_id=finding.site_id, subject_id=finding.id, actor=principal.ref,
                   data={"inspection_id": str(inspection.id), "area": finding.area.value, "severity": finding.severity.value,
                         "due_on": finding.due_on.isoformat()})
    return finding


async def resolve_finding(conn: asyncpg.Connection, principal: Principal, finding_id: UUID, data: FindingResolution) -> Finding:
    """The corrective action is done. Resolving a resolved finding again with the same text changes nothing."""
    _require(principal, INSPECT_ROLES, "resolve findings")
    row = await store.lock(conn, "finding", finding_id, principal.site_scope)
    if row is None:
        raise NotFound("No such finding.", code="finding_not_found")
    today = await _today(conn, principal, row["site_id"])
    if row["state"] == "resolved":
        if row["resolution"] == data.resolution:
            return (await store.get_findings(conn, [finding_id], None, today))[0]
        raise Conflict("The finding is already resolved.", code="finding_resolved", current_version=row["version"])
    if row["version"] != data.version:
        raise Conflict(f"The finding changed since version {data.version}.", code="stale_version", field="version",
                       current_version=row["version"])
    await store.resolve_finding(conn, finding_id, data.version, data.resolution, principal.ref)
    finding = (await store.get_findings(conn, [finding_id], None, today))[0]
    await bus.emit(conn, "inspection.finding_resolved", site_id=finding.site_id, subject_id=finding.id, actor=principal.ref,
                   data={"version": finding.version, "late": finding.resolved_at is not None and finding.resolved_at.date() > finding.due_on})
    return finding


# --- environmental swabs --------------------------------------------------------------


async def list_env_samples(
    conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, since: datetime, until: datetime
) -> list[EnvironmentalSample]:
    _require(principal, READ_ROLES, "read environmental swabs")
    _check_period(since, until)
    await sites.get_site(conn, principal, site_id)
    return await store.site_env_samples(conn, site_id, principal.site_scope, since, until)


async def record_env_sample(conn: asyncpg.Connection, principal: Principal, data: EnvironmentalSampleCreate) -> EnvironmentalSample:
    """A surface swab, pending its result. A replayed client ``id`` answers the stored swab."""
    _require(principal, INSPECT_ROLES, "record environmental swabs")
    _check_instant(data.collected_at, "collected_at")
    site = await sites.get_site(conn, principal, data.site_id)
    sample_id = data.id or uuid4()
    if not await store.insert(conn, "env_sample", id=sample_id, site_id=site.id, location=data.location, floor=data.floor,
                              barcode=data.barcode, collected_at=data.collected_at, actor=principal.ref):
        stored = await store.get_env_samples(conn, [sample_id], principal.site_scope)
        if not stored or (stored[0].site_id, stored[0].barcode) != (site.id, data.barcode):
            raise _taken("environmental_sample")
        return stored[0]
    sample = (await store.get_env_samples(conn, [sample_id], None))[0]
    await bus.emit(conn, "inspection.swab_recorded", site_id=site.id, subject_id=sample.id, actor=principal.ref,
                   data={"floor": sample.floor})
    return sample


async def record_env_result(conn: asyncpg.Connection, principal: Principal, data: EnvironmentalResult) -> EnvironmentalSample:
    """A surface swab's result. The same again changes nothing; another is 409 ``result_conflict``."""
    _require(principal, INSPECT_ROLES, "record environmental results")
    result = SwabResult(data.result)
    if result is SwabResult.PENDING:
        raise InvalidInput("A result is negative, positive or invalid.", code="invalid_result", field="result")
    row = await store.lock(conn, "env_sample", data.environmental_sample_id, principal.site_scope)
    if row is None:
        raise NotFound("No such environmental swab.", code="environmental_sample_not_found", field="environmental_sample_id")
    if row["result"] != SwabResult.PENDING.value:
        if row["result"] == result.value:
            return (await store.get_env_samples(conn, [row["id"]], None))[0]
        raise Conflict(f"The swab already has the result {row['result']}.", code="result_conflict", field="result")
    await store.set_env_result(conn, row["id"], result.value)
    sample = (await store.get_env_samples(conn, [row["id"]], None))[0]
    await bus.emit(conn, "inspection.swab_resulted", site_id=sample.site_id, subject_id=sample.id, actor=principal.ref,
                   data={"result": result.value, "floor": sample.floor})
    return sample


# --- medical waste ----------------------------------------------------------------------


async def list_waste(conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, since: datetime, until: datetime) -> list[WasteBatch]:
    """The medical-waste log: batches sealed in [since, until) (at most 92 days), newest first."""
    _require(principal, READ_ROLES, "read the medical-waste log")
    _check_period(since, until)
    await sites.get_site(conn, principal, site_id)
    return await store.site_waste(conn, site_id, principal.site_scope, since, until)


async def record_waste(conn: asyncpg.Connection, principal: Principal, data: WasteCreate) -> WasteBatch:
    """Sealed bags of medical waste waiting for the carrier. A replayed client ``id`` answers the stored batch."""
    _require(principal, WASTE_ROLES, "log medical waste")
    _check_instant(data.sealed_at, "sealed_at")
    site = await sites.get_site(conn, principal, data.site_id)
    waste_id = data.id or uuid4()
    if not await store.insert(conn, "waste", id=waste_id, site_id=site.id, bags=data.bags, weight_kg=round(data.weight_kg, 2),
                              sealed_by=data.sealed_by, sealed_at=data.sealed_at, actor=principal.ref):
        stored = await store.get_waste(conn, [waste_id], principal.site_scope)
        if not stored or (stored[0].site_id, stored[0].bags, stored[0].sealed_at) != (site.id, data.bags, data.sealed_at):
            raise _taken("waste")
        return stored[0]
    batch = (await store.get_waste(conn, [waste_id], None))[0]
    await bus.emit(conn, "inspection.waste_sealed", site_id=site.id, subject_id=batch.id, actor=principal.ref,
                   data={"bags": batch.bags, "weight_kg": batch.weight_kg})
    return batch


async def hand_over_waste(conn: asyncpg.Connection, principal: Principal, waste_id: UUID, data: WasteHandover) -> WasteBatch:
    """The carrier took the batch, with its receipt. The same handover again changes nothing."""
    _require(principal, WASTE_ROLES, "hand over medical waste")
    return await _hand_over(conn, principal, waste_id, data, principal.site_scope, same=lambda row: (row["carrier"], row["carrier_receipt"]) == (
        data.carrier, data.carrier_receipt))


# --- the carrier (REST, its own API key: the waste batches of the sites it serves, nothing else) -----------


async def carrier_waste(conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, since: datetime, until: datetime) -> list[CarrierWaste]:
    """A served site's batches sealed in [since, until) (at most 92 days), newest first; another site is 404."""
    _require(principal, CARRIER_ROLES, "read waste batches as their carrier")
    _check_period(since, until)
    if not principal.can_access_site(site_id):
        raise NotFound("No such site.", code="site_not_found", field="site_id")
    return [CarrierWaste.of(b) for b in await store.site_waste(conn, site_id, policy.site_filter(principal, "waste.carrier"), since, until)]


async def carrier_batch(conn: asyncpg.Connection, principal: Principal, waste_id: UUID) -> CarrierWaste:
    _require(principal, CARRIER_ROLES, "read waste batches as their carrier")
    found = await store.get_waste(conn, [waste_id], policy.site_filter(principal, "waste.carrier"))
    if not found:
        raise NotFound("No such waste batch.", code="waste_not_found")
    return CarrierWaste.of(found[0])


async def confirm_receipt(conn: asyncpg.Connection, principal: Principal, waste_id: UUID, data: WasteReceipt) -> CarrierWaste:
    """The carrier took the batch: handed over to the carrier the key names, with its receipt number. The
    same receipt again (also one the site already recorded) changes nothing; another one is 409 ``waste_handed_over``."""
    _require(principal, CARRIER_ROLES, "confirm receipt of medical waste")
    handover = WasteHandover(version=data.version, carrier=principal.name[:200] or "carrier", carrier_receipt=data.carrier_receipt,
                             handed_over_at=data.received_at)
    batch = await _hand_over(conn, principal, waste_id, handover, policy.site_filter(principal, "waste.carrier"),
                             same=lambda row: row["carrier_receipt"] == data.carrier_receipt)
    return CarrierWaste.of(batch)


async def _hand_over(
    conn: asyncpg.Connection, principal: Principal, waste_id: UUID, data: WasteHandover, site_ids: list[UUID] | None,
    *, same: Callable[[asyncpg.Record], bool],
) -> WasteBatch:
    """sealed -> handed_over, once; ``same(row)``: a handover already recorded is this one (answered unchanged)."""
    _check_instant(data.handed_over_at, "handed_over_at")
    row = await store.lock(conn, "waste", waste_id, site_ids)
    if row is None:
        raise NotFound("No such waste batch.", code="waste_not_found")
    if row["state"] == WasteState.HANDED_OVER.value:
        if same(row):
            return (await store.get_waste(conn, [waste_id], None))[0]
        raise Conflict("The batch was already handed over.", code="waste_handed_over", current_version=row["version"])
    if row["version"] != data.version:
        raise Conflict(f"The batch changed since version {data.version}.", code="stale_version", field="version",
                       current_version=row["version"])
    await store.hand_over_waste(conn, waste_id, data.version, carrier=data.carrier, carrier_receipt=data.carrier_receipt,
                                handed_over_at=data.handed_over_at)
    batch = (await store.get_waste(conn, [waste_id], None))[0]
    await bus.emit(conn, "inspection.waste_handed_over", site_id=batch.site_id, subject_id=batch.id, actor=principal.ref,
                   data={"bags": batch.bags, "weight_kg": batch.weight_kg, "version": batch.version})
    return batch
