"""GraphQL: infection control for the site app (inspections, findings, surface swabs, medical waste)."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

import strawberry

from service import policy
from service.gql import Connection, Ctx, UserError, fields_from, mutate_input, scoped_loader, site_connection, site_list, to_gql
from service.operations.infection import model as m
from service.operations.infection import service

strawberry.enum(m.Area, name="InspectionArea", description="The checklist: zoning, PPE, disinfection records, waste.")
AreaGQL = m.Area
strawberry.enum(m.Severity, name="FindingSeverity")
SeverityGQL = m.Severity
strawberry.enum(m.FindingState, name="FindingState")
FindingStateGQL = m.FindingState
strawberry.enum(m.SwabResult, name="EnvironmentalSwabResult")
SwabResultGQL = m.SwabResult
strawberry.enum(m.WasteState, name="WasteState")
WasteStateGQL = m.WasteState


# The output types take their fields from the model (``fields_from``): only descriptions are declared here.


@strawberry.type(description="A finding of an inspection with its corrective action, due by a date.")
@fields_from(m.Finding)
class Finding:
    overdue: bool = strawberry.field(description="Still open after its due date.")


@strawberry.type(description="An infection-control inspection and its checklist (true = satisfactory).")
@fields_from(m.Inspection)
class Inspection:
    id: UUID

    @strawberry.field(description="Its findings by due date.")
    async def findings(self, info: Ctx) -> list[Finding]:
        return [to_gql(Finding, f) for f in await scoped_loader(info, "infection.findings", service.findings_of, []).load(self.id)]


@strawberry.type(description="An environmental (surface) swab.")
@fields_from(m.EnvironmentalSample)
class EnvironmentalSample:
    pass


@strawberry.type(description="A sealed batch of medical-waste bags, up to the carrier's receipt.")
@fields_from(m.WasteBatch)
class WasteBatch:
    pass


@strawberry.input
class RecordInspectionInput:
    site_id: UUID
    inspected_at: datetime
    zoning_ok: bool
    ppe_ok: bool
    disinfection_records_ok: bool
    waste_ok: bool
    note: str = ""
    id: UUID | None = None


@strawberry.input
class RecordInspectionFindingInput:
    inspection_id: UUID
    area: AreaGQL
    severity: SeverityGQL
    description: str
    corrective_action: str
    due_on: date
    id: UUID | None = None


@strawberry.input
class ResolveFindingInput:
    id: UUID
    version: int
    resolution: str


@strawberry.input
class RecordEnvironmentalSampleInput:
    site_id: UUID
    location: str
    barcode: str
    collected_at: datetime
    floor: int | None = None
    id: UUID | None = None


@strawberry.input
class RecordEnvironmentalResultInput:
    environmental_sample_id: UUID
    result: SwabResultGQL


@strawberry.input
class RecordMedicalWasteInput:
    site_id: UUID
    bags: int
    weight_kg: float
    sealed_by: str
    sealed_at: datetime
    id: UUID | None = None


@strawberry.input(description="The carrier took the batch; its receipt number.")
class HandOverWasteInput:
    id: UUID
    version: int
    carrier: str
    carrier_receipt: str
    handed_over_at: datetime


@strawberry.type
class InspectionPayload:
    inspection: Inspection | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class FindingPayload:
    finding: Finding | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class EnvironmentalSamplePayload:
    sample: EnvironmentalSample | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WastePayload:
    batch: WasteBatch | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _inspection(model: m.Inspection) -> Inspection:
    return to_gql(Inspection, model)


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[policy.gql("infection.read")], description="One inspection; null when not at one of the caller's sites.")
    async def inspection(self, info: Ctx, id: UUID) -> Inspection | None:
        ctx = info.context
        async with ctx.db.connection() as conn:
            found = await service.get_inspections(conn, ctx.require_principal(), [id])
        return _inspection(found[id]) if id in found else None

    @strawberry.field(permission_classes=[policy.gql("infection.read")], description="A site's inspections, newest first.")
    async def inspections(self, info: Ctx, site_id: UUID, first: int = 50, after: str | None = None) -> Connection[Inspection]:
        return await site_connection(
            info, site_id, lambda conn, p: service.list_inspections(conn, p, site_id, cursor=after, limit=first), _inspection, service.inspection_key
        )

    @strawberry.field(permission_classes=[policy.gql("infection.read")], description="Corrective actions still open, by due date then severity.")
    async def open_findings(self, info: Ctx, site_id: UUID) -> list[Finding]:
        return [to_gql(Finding, f) for f in await site_list(info, site_id, lambda conn, p: service.open_findings(conn, p, site_id))]

    @strawberry.field(permission_classes=[policy.gql("infection.read")], description="Surface swabs collected in [since, until), at most 92 days.")
    async def environmental_samples(self, info: Ctx, site_id: UUID, since: datetime, until: datetime) -> list[EnvironmentalSample]:
        found = await site_list(info, site_id, lambda conn, p: service.list_env_samples(conn, p, site_id, since=since, until=until))
        return [to_gql(EnvironmentalSample, s) for s in found]

    @strawberry.field(permission_classes=[policy.gql("infection.read")], description="The medical-waste log: batches sealed in [since, until).")
    async def medical_waste(self, info: Ctx, site_id: UUID, since: datetime, until: datetime) -> list[WasteBatch]:
        found = await site_list(info, site_id, lambda conn, p: service.list_waste(conn, p, site_id, since=since, until=until))
        return [to_gql(WasteBatch, b) for b in found]


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[policy.gql("infection.inspect")], description="Record an inspection and its checklist.")
    async def record_inspection(self, info: Ctx, input: RecordInspectionInput) -> InspectionPayload:
        principal = info.context.require_principal()
        found, errors = await mutate_input(info, input, m.InspectionCreate, m.Inspection, lambda conn, data: service.record_inspection(conn, principal, data))
        return InspectionPayload(inspection=_inspection(found) if found else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("infection.inspect")], description="A finding with its corrective action and due date.")
    async def record_inspection_finding(self, info: Ctx, input: RecordInspectionFindingInput) -> FindingPayload:
        principal = info.context.require_principal()
        found, errors = await mutate_input(info, input, m.FindingCreate, m.Finding, lambda conn, data: service.record_finding(conn, principal, data))
        return FindingPayload(finding=to_gql(Finding, found) if found else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("infection.inspect")], description="The corrective action is done.")
    async def resolve_finding(self, info: Ctx, input: ResolveFindingInput) -> FindingPayload:
        principal = info.context.require_principal()
        found, errors = await mutate_input(
            info, input, m.FindingResolution, m.Finding, lambda conn, data: service.resolve_finding(conn, principal, input.id, data), leave_out=("id",)
        )
        return FindingPayload(finding=to_gql(Finding, found) if found else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("infection.inspect")], description="A surface swab, pending its result.")
    async def record_environmental_sample(self, info: Ctx, input: RecordEnvironmentalSampleInput) -> EnvironmentalSamplePayload:
        principal = info.context.require_principal()
        found, errors = await mutate_input(
            info, input, m.EnvironmentalSampleCreate, m.EnvironmentalSample, lambda conn, data: service.record_env_sample(conn, principal, data)
        )
        return EnvironmentalSamplePayload(sample=to_gql(EnvironmentalSample, found) if found else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("infection.inspect")], description="A surface swab's result.")
    async def record_environmental_result(self, info: Ctx, input: RecordEnvironmentalResultInput) -> EnvironmentalSamplePayload:
        principal = info.context.require_principal()
        found, errors = await mutate_input(
            info, input, m.EnvironmentalResult, m.EnvironmentalSample, lambda conn, data: service.record_env_result(conn, principal, data)
        )
        return EnvironmentalSamplePayload(sample=to_gql(EnvironmentalSample, found) if found else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("waste.record")], description="Sealed medical-waste bags waiting for the carrier.")
    async def record_medical_waste(self, info: Ctx, input: RecordMedicalWasteInput) -> WastePayload:
        principal = info.context.require_principal()
        found, errors = await mutate_input(info, input, m.WasteCreate, m.WasteBatch, lambda conn, data: service.record_waste(conn, principal, data))
        return WastePayload(batch=to_gql(WasteBatch, found) if found else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("waste.record")], description="The carrier took a batch (its receipt number).")
    async def hand_over_waste(self, info: Ctx, input: HandOverWasteInput) -> WastePayload:
        principal = info.context.require_principal()
        found, errors = await mutate_input(
            info, input, m.WasteHandover, m.WasteBatch, lambda conn, data: service.hand_over_waste(conn, principal, input.id, data), leave_out=("id",)
        )
        return WastePayload(batch=to_gql(WasteBatch, found) if found else None, user_errors=errors)
