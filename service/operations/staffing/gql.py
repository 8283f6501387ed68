"""GraphQL: the staff closed loop for the site app (roster for every staff role; staff health data
for medics and site managers of the site)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg
import strawberry

from service import policy
from service.access.model import Principal
from service.gql import (
    Connection,
    Context,
    Ctx,
    OfflineWrite,
    Prepared,
    UserError,
    fields_from,
    mutate_input,
    perform,
    prepare,
    scoped_loader,
    site_connection,
    site_list,
    to_gql,
)
from service.health.gql import SampleKindGQL, SymptomGQL
from service.operations.staffing import model as m
from service.operations.staffing import service

strawberry.enum(m.Post, name="StaffPost")
PostGQL = m.Post
strawberry.enum(m.LoopStatus, name="StaffLoopStatus", description="on duty, resting in the staff area, or isolating until a date")
LoopStatusGQL = m.LoopStatus
strawberry.enum(m.StaffResult, name="StaffSwabResult")
StaffResultGQL = m.StaffResult
strawberry.enum(m.ExposureState, name="StaffExposureState")
ExposureStateGQL = m.ExposureState


@strawberry.type(description="A worker's closed-loop status, last swab and next test (staff health data).")
@fields_from(m.WorkerLoop)
class WorkerLoop:
    pass


@strawberry.type(description="A worker's check-in; `findings` are what the residents' alert rules found.")
@fields_from(m.StaffCheckin, leave_out=("site_id", "received_at"))
class StaffCheckin:
    pass


@strawberry.type(description="A worker's swab.")
@fields_from(m.StaffSample, leave_out=("site_id",))
class StaffSample:
    pass


@strawberry.type(description="Someone who works at a site (with or without a qsite account), by post.")
@fields_from(m.Worker, leave_out=("created_at",))
class Worker:
    id: UUID
    red_zone: bool = strawberry.field(description="Works in the red zone: tested every day whatever the post.")

    @strawberry.field(permission_classes=[policy.gql("staff_health.read")], description="Closed-loop status (medics, site managers).")
    async def loop(self, info: Ctx) -> WorkerLoop | None:
        found = await scoped_loader(info, "staffing.loops", service.loops).load(self.id)
        return to_gql(WorkerLoop, found) if found else None

    @strawberry.field(permission_classes=[policy.gql("staff_health.read")], description="Check-ins, newest first.")
    async def checkins(self, info: Ctx) -> list[StaffCheckin] | None:
        found = await scoped_loader(info, "staffing.checkins", service.checkins, []).load(self.id)
        return [to_gql(StaffCheckin, c) for c in found]

    @strawberry.field(permission_classes=[policy.gql("staff_health.read")], description="Swabs, newest first.")
    async def samples(self, info: Ctx) -> list[StaffSample] | None:
        found = await scoped_loader(info, "staffing.samples", service.samples, []).load(self.id)
        return [to_gql(StaffSample, s) for s in found]


def worker_gql(model: m.Worker) -> Worker:
    return to_gql(Worker, model)


async def _worker_of(info: Ctx, worker_id: UUID) -> Worker | None:
    found = await scoped_loader(info, "staffing.workers", service.get_workers).load(worker_id)
    return worker_gql(found) if found else None


@strawberry.type(description="A shift of the roster.")
@fields_from(m.Shift, leave_out=("created_at",))
class Shift:
    worker_id: UUID

    @strawberry.field
    async def worker(self, info: Ctx) -> Worker | None:
        return await _worker_of(info, self.worker_id)


@strawberry.type(description="A worker whose next swab is due today or earlier.")
@fields_from(m.StaffTestDue)
class StaffTestDue:
    pass


@strawberry.type(description="A worker exposed to a resident who turned positive on a floor they worked.")
@fields_from(m.StaffExposure)
class StaffExposure:
    worker_id: UUID

    @strawberry.field
    async def worker(self, info: Ctx) -> Worker | None:
        return await _worker_of(info, self.worker_id)


@strawberry.input
class CreateSiteWorkerInput:
    site_id: UUID
    name: str
    post: PostGQL
    red_zone: bool = False
    id: UUID | None = strawberry.field(default=None, description="Client-generated id: a replay answers the stored worker.")


@strawberry.input
class CreateStaffShiftInput:
    worker_id: UUID
    starts_at: datetime
    ends_at: datetime
    floor: int | None = None
    post: PostGQL | None = strawberry.field(default=None, description="Default: the worker's post.")
    red_zone: bool | None = strawberry.field(default=None, description="Default: the worker's zone.")
    id: UUID | None = None


@strawberry.input
class SetWorkerStatusInput:
    worker_id: UUID
    status: LoopStatusGQL
    version: int
    isolation_until: date | None = strawberry.field(default=None, description="isolating: required.")


@strawberry.input
class RecordStaffCheckinInput:
    worker_id: UUID
    temperature_c: float
    recorded_at: datetime
    spo2: int | None = None
    symptoms: list[SymptomGQL] = strawberry.field(default_factory=list)
    note: str = ""
    id: UUID | None = None


@strawberry.input
class RecordStaffSampleInput:
    worker_id: UUID
    barcode: str
    collected_at: datetime
    kind: SampleKindGQL = m.SampleKind.PCR
    id: UUID | None = None


@strawberry.input
class RecordStaffResultInput:
    staff_sample_id: UUID
    result: StaffResultGQL


@strawberry.input(description="CLEARED, or ISOLATED until a date (the worker's status becomes isolating).")
class DecideStaffExposureInput:
    id: UUID
    state: ExposureStateGQL
    version: int
    isolation_until: date | None = None
    note: str = ""


@strawberry.type
class WorkerPayload:
    worker: Worker | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ShiftPayload:
    shift: Shift | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WorkerLoopPayload:
    loop: WorkerLoop | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class StaffCheckinPayload:
    checkin: StaffCheckin | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class StaffSamplePayload:
    sample: StaffSample | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class StaffExposurePayload:
    exposure: StaffExposure | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[policy.gql("roster.read")], description="One worker; null when not at one of the caller's sites.")
    async def site_worker(self, info: Ctx, id: UUID) -> Worker | None:
        return await _worker_of(info, id)

    @strawberry.field(permission_classes=[policy.gql("roster.read")], description="A site's workers by post and name.")
    async def site_workers(self, info: Ctx, site_id: UUID, first: int = 50, after: str | None = None) -> Connection[Worker]:
        return await site_connection(
            info, site_id, lambda conn, p: service.list_workers(conn, p, site_id, cursor=after, limit=first), worker_gql, service.worker_key
        )

    @strawberry.field(permission_classes=[policy.gql("roster.read")], description="A site's shifts overlapping [since, until), at most 31 days.")
    async def roster(self, info: Ctx, site_id: UUID, since: datetime, until: datetime) -> list[Shift]:
        found = await site_list(info, site_id, lambda conn, p: service.list_shifts(conn, p, site_id, since=since, until=until))
        return [to_gql(Shift, s) for s in found]

    @strawberry.field(permission_classes=[policy.gql("staff_health.read")], description="Workers whose swab is due today or earlier.")
    async def staff_tests_due(self, info: Ctx, site_id: UUID) -> list[StaffTestDue]:
        found = await site_list(info, site_id, lambda conn, p: service.tests_due(conn, p, site_id))
        return [to_gql(StaffTestDue, d) for d in found]

    @strawberry.field(permission_classes=[policy.gql("staff_health.read")], description="Staff exposure reviews of a site (default: open).")
    async def staff_exposures(self, info: Ctx, site_id: UUID, state: ExposureStateGQL | None = m.ExposureState.OPEN) -> list[StaffExposure]:
        wanted = m.ExposureState(state) if state else None
        found = await site_list(info, site_id, lambda conn, p: service.list_exposures(conn, p, site_id, state=wanted))
        return [to_gql(StaffExposure, e) for e in found]


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[policy.gql("roster.manage")], description="Add a worker to a site's roster.")
    async def create_site_worker(self, info: Ctx, input: CreateSiteWorkerInput) -> WorkerPayload:
        principal = info.context.require_principal()
        worker, errors = await mutate_input(info, input, m.WorkerCreate, m.Worker, lambda conn, data: service.add_worker(conn, principal, data))
        return WorkerPayload(worker=worker_gql(worker) if worker else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("roster.manage")], description="Plan a worker's shift (no overlap).")
    async def create_staff_shift(self, info: Ctx, input: CreateStaffShiftInput) -> ShiftPayload:
        principal = info.context.require_principal()
        shift, errors = await mutate_input(info, input, m.ShiftCreate, m.Shift, lambda conn, data: service.add_shift(conn, principal, data))
        return ShiftPayload(shift=to_gql(Shift, shift) if shift else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("staff_health.write")], description="On duty, resting, or isolating until a date.")
    async def set_worker_status(self, info: Ctx, input: SetWorkerStatusInput) -> WorkerLoopPayload:
        principal = info.context.require_principal()
        loop, errors = await mutate_input(info, input, m.StatusChange, m.WorkerLoop, lambda conn, data: service.set_status(conn, principal, data))
        return WorkerLoopPayload(loop=to_gql(WorkerLoop, loop) if loop else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("staff_health.write")], description="A worker's check-in (residents' alert rules).")
    async def record_staff_checkin(self, info: Ctx, input: RecordStaffCheckinInput) -> StaffCheckinPayload:
        checkin, errors = await perform(info, checkin_write(info.context, info.context.require_principal(), input))
        return StaffCheckinPayload(checkin=to_gql(StaffCheckin, checkin) if checkin else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("staff_health.write")], description="A worker's swab, pending its result.")
    async def record_staff_sample(self, info: Ctx, input: RecordStaffSampleInput) -> StaffSamplePayload:
        sample, errors = await perform(info, sample_write(info.context, info.context.require_principal(), input))
        return StaffSamplePayload(sample=to_gql(StaffSample, sample) if sample else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("staff_health.write")], description="A staff swab's result; positive isolates the worker.")
    async def record_staff_result(self, info: Ctx, input: RecordStaffResultInput) -> StaffSamplePayload:
        principal = info.context.require_principal()
        sample, errors = await mutate_input(info, input, m.StaffResultEntry, m.StaffSample, lambda conn, data: service.record_result(conn, principal, data))
        return StaffSamplePayload(sample=to_gql(StaffSample, sample) if sample else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("staff_health.write")], description="Clear an exposed worker or isolate them.")
    async def decide_staff_exposure(self, info: Ctx, input: DecideStaffExposureInput) -> StaffExposurePayload:
        principal = info.context.require_principal()
        exposure, errors = await mutate_input(
            info, input, m.ExposureDecision, m.StaffExposure, lambda conn, data: service.decide_exposure(conn, principal, input.id, data), leave_out=("id",)
        )
        return StaffExposurePayload(exposure=to_gql(StaffExposure, exposure) if exposure else None, user_errors=errors)


# --- writes, prepared once for their own mutation and for syncWrites (service/offline.py) ---------


def checkin_write(ctx: Context, principal: Principal, input: RecordStaffCheckinInput) -> Prepared[m.StaffCheckin]:
    return prepare(input, m.StaffCheckinCreate, m.StaffCheckin, lambda conn, data: service.record_checkin(conn, principal, data))


def sample_write(ctx: Context, principal: Principal, input: RecordStaffSampleInput) -> Prepared[m.StaffSample]:
    return prepare(input, m.StaffSampleCreate, m.StaffSample, lambda conn, data: service.record_sample(conn, principal, data))


async def _worker_now(conn: asyncpg.Connection, ctx: Context, principal: Principal, input: Any) -> Worker | None:
    """What a worker's check-in or swab conflicts with: the worker (left the roster, its id or barcode taken)."""
    found = await service.get_workers(conn, principal, [input.worker_id])
    return worker_gql(found[input.worker_id]) if input.worker_id in found else None


OFFLINE_WRITES = {
    "record_staff_checkin": OfflineWrite("staff_health.write", checkin_write, lambda c: to_gql(StaffCheckin, c), _worker_now),
    "record_staff_sample": OfflineWrite("staff_health.write", sample_write, lambda s: to_gql(StaffSample, s), _worker_now),
}
