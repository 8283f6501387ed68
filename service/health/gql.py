"""GraphQL for the staff apps: record check-ins and samples, worklists, timelines, alerts, exposure reviews."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import strawberry

from service import policy
from service.access.model import Principal
from service.gql import Connection, Context, Ctx, OfflineWrite, Prepared, UserError, Write, connection_of, fields_from, input_struct, mutate, perform, to_gql
from service.health import model as m
from service.health import service
from service.pagination import Page
from service.stays import service as stays
from service.stays.gql import Stay, stay_gql

strawberry.enum(m.Symptom, name="Symptom")  # registers m.Symptom itself
SymptomGQL = m.Symptom
strawberry.enum(m.SampleKind, name="SampleKind")  # registers m.SampleKind itself
SampleKindGQL = m.SampleKind
strawberry.enum(m.SampleResult, name="SampleResult")  # registers m.SampleResult itself
SampleResultGQL = m.SampleResult
strawberry.enum(m.AlertKind, name="HealthAlertKind")  # registers m.AlertKind itself
AlertKindGQL = m.AlertKind
strawberry.enum(m.AlertState, name="HealthAlertState")  # registers m.AlertState itself
AlertStateGQL = m.AlertState
strawberry.enum(m.ReviewState, name="ExposureReviewState")  # registers m.ReviewState itself
ReviewStateGQL = m.ReviewState
strawberry.enum(m.Relation, name="ExposureRelation")  # registers m.Relation itself
RelationGQL = m.Relation
strawberry.enum(m.ExposureSource, name="ExposureSource")  # registers m.ExposureSource itself
SourceGQL = m.ExposureSource
strawberry.enum(m.ItemStatus, name="HealthItemStatus")  # registers m.ItemStatus itself
ItemStatusGQL = m.ItemStatus


def _stay_loader(info: Ctx) -> Any:
    """Stays by id, one statement per batch (nested ``stay`` fields of lists never go N+1)."""
    ctx = info.context
    principal = ctx.require_principal()

    async def load(ids: list[UUID]) -> list[Any]:
        async with ctx.db.connection() as conn:
            found = await stays.get_stays(conn, principal, ids)
        return [found.get(i) for i in ids]

    return ctx.loader("health.stays", load)


async def _stay(info: Ctx, stay_id: UUID) -> Stay | None:
    found = await _stay_loader(info).load(stay_id)
    return stay_gql(found) if found else None


@strawberry.type(description="A health check-in (append-only).")
@fields_from(m.Checkin)
class Checkin:
    recorded_at: datetime = strawberry.field(description="Device clock.")
    received_at: datetime = strawberry.field(description="Server clock.")


@strawberry.type(name="HealthSample", description="A swab in its own tube, a pool tube, or a swab pooled into one.")
@fields_from(m.Sample)
class Sample:
    pass


@strawberry.type(name="HealthAlert", description="Raised by a rule; open -> acknowledged -> resolved (by a medic, with a note).")
@fields_from(m.Alert)
class Alert:
    stay_id: UUID
    detail: strawberry.scalars.JSON

    @strawberry.field(permission_classes=[policy.gql("stays.read")])
    async def stay(self, info: Ctx) -> Stay | None:
        return await _stay(info, self.stay_id)


@strawberry.type(description="A contact of a positive case or transferred resident, to confirm (extends the stay) or dismiss.")
@fields_from(m.ExposureReview, leave_out=("opened_by",))
class ExposureReview:
    stay_id: UUID

    @strawberry.field(permission_classes=[policy.gql("stays.read")])
    async def stay(self, info: Ctx) -> Stay | None:
        return await _stay(info, self.stay_id)


@strawberry.type(description="A resident whose check-in for the current slot is not in yet.")
@fields_from(m.CheckinDue)
class CheckinDue:
    stay_id: UUID
    overdue: bool = strawberry.field(description="The previous slot was missed too.")

    @strawberry.field(permission_classes=[policy.gql("stays.read")])
    async def stay(self, info: Ctx) -> Stay | None:
        return await _stay(info, self.stay_id)


@strawberry.type(
    description="A resident to swab: a test day of the regime so far without a usable swab (today's, or an earlier one missed), "
    "or an open retest. The same rule blocks release."
)
@fields_from(m.SwabDue)
class SwabDue:
    stay_id: UUID
    overdue_days: list[int] = strawberry.field(description="Earlier test days still without a usable swab (today's not included).")

    @strawberry.field(permission_classes=[policy.gql("stays.read")])
    async def stay(self, info: Ctx) -> Stay | None:
        return await _stay(info, self.stay_id)


@strawberry.type(description="A stay's check-ins, samples and alerts, newest first.")
class HealthTimeline:
    stay_id: UUID
    checkins: list[Checkin]
    samples: list[Sample]
    alerts: list[Alert]


def alert_gql(alert: m.Alert) -> Alert:
    return to_gql(Alert, alert)


def timeline_gql(t: m.Timeline) -> HealthTimeline:
    return HealthTimeline(
        stay_id=t.stay_id,
        checkins=[to_gql(Checkin, c) for c in t.checkins],
        samples=[to_gql(Sample, s) for s in t.samples],
        alerts=[alert_gql(a) for a in t.alerts],
    )


# --- inputs and payloads ------------------------------------------------------------------------


@strawberry.input(description="A check-in; give `id` (made on the phone) so a replay is a no-op.")
class RecordCheckinInput:
    stay_id: UUID
    recorded_at: datetime
    id: UUID | None = None
    temperature_c: float | None = None
    spo2: int | None = None
    pulse: int | None = None
    symptoms: list[SymptomGQL] = strawberry.field(default_factory=list)
    note: str = ""


@strawberry.input
class RecordSampleInput:
    stay_id: UUID
    barcode: str
    collected_at: datetime
    id: UUID | None = None
    kind: SampleKindGQL = m.SampleKind.PCR
    scheduled_day: int | None = None


@strawberry.input
class PoolMemberInput:
    stay_id: UUID
    id: UUID | None = None


@strawberry.input(description="Up to 10 residents' swabs in one tube.")
class RecordPoolInput:
    site_id: UUID
    barcode: str
    collected_at: datetime
    members: list[PoolMemberInput]
    id: UUID | None = None
    kind: SampleKindGQL = m.SampleKind.PCR


@strawberry.input
class AlertActionInput:
    id: UUID
    version: int
    note: str = ""


@strawberry.input
class DecideExposureReviewInput:
    id: UUID
    version: int
    confirm: bool
    note: str = ""


@strawberry.type
class CheckinPayload:
    checkin: Checkin | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(description="One item of a batch: its position in the input, what happened, the record or the error.")
class HealthBatchItem:
    index: int
    status: ItemStatusGQL
    checkin: Checkin | None = None
    sample: Sample | None = None
    error: UserError | None = None


@strawberry.type
class HealthBatchPayload:
    created: int = 0
    replayed: int = 0
    failed: int = 0
    items: list[HealthBatchItem] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SamplePayload:
    sample: Sample | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AlertPayload:
    alert: Alert | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ExposureReviewPayload:
    review: ExposureReview | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _error(index: int, e: m.ItemError | None) -> UserError | None:
    """An item's error; its field is under the item (``input.1.spo2``)."""
    return UserError(field=f"[{index}].{e.field}" if e.field else None, code=e.code, message=e.message) if e else None


def _batch(items: list[Any]) -> HealthBatchPayload:
    out = [
        HealthBatchItem(
            index=i.index,
            status=i.status,
            checkin=to_gql(Checkin, i.checkin) if getattr(i, "checkin", None) else None,
            sample=to_gql(Sample, i.sample) if getattr(i, "sample", None) else None,
            error=_error(i.index, i.error),
        )
        for i in items
    ]
    count = {s: sum(i.status is s for i in items) for s in m.ItemStatus}
    return HealthBatchPayload(created=count[m.ItemStatus.CREATED], replayed=count[m.ItemStatus.REPLAYED], failed=count[m.ItemStatus.FAILED], items=out)


def _raw(items: list[Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in strawberry.asdict(i).items() if v is not None} for i in items]


# --- writes, prepared once for their own mutation and for syncWrites (service/offline.py) ---------


def checkin_write(ctx: Context, principal: Principal, input: RecordCheckinInput) -> Prepared[m.Checkin]:
    data, errors = input_struct(m.CheckinCreate, _raw([input])[0])
    if data is None:
        return errors
    return Write(lambda conn: service.record_checkin_in(conn, principal, data), m.Checkin)


def sample_write(ctx: Context, principal: Principal, input: RecordSampleInput) -> Prepared[m.Sample]:
    data, errors = input_struct(m.SampleCreate, _raw([input])[0])
    if data is None:
        return errors
    return Write(lambda conn: service.record_sample(conn, principal, data), m.Sample)


def pool_write(ctx: Context, principal: Principal, input: RecordPoolInput) -> Prepared[m.Sample]:
    raw = _raw([input])[0]
    raw["members"] = [{k: v for k, v in mm.items() if v is not None} for mm in raw["members"]]
    data, errors = input_struct(m.PoolCreate, raw)
    if data is None:
        return errors
    return Write(lambda conn: service.record_pool(conn, principal, data), m.Sample)


def acknowledge_write(ctx: Context, principal: Principal, input: AlertActionInput) -> Prepared[m.Alert]:
    # Validated like REST (a note over 1,000 characters is refused, not cut).
    action, errors = input_struct(m.AlertAction, {"version": input.version, "note": input.note})
    if action is None:
        return errors
    return Write(lambda conn: service.acknowledge_alert(conn, principal, input.id, action), m.Alert)


def resolve_write(ctx: Context, principal: Principal, input: AlertActionInput) -> Prepared[m.Alert]:
    action, errors = input_struct(m.AlertAction, {"version": input.version, "note": input.note})
    if action is None:
        return errors
    return Write(lambda conn: service.resolve_alert(conn, principal, input.id, action), m.Alert)


def decide_review_write(ctx: Context, principal: Principal, input: DecideExposureReviewInput) -> Prepared[m.ExposureReview]:
    decision, errors = input_struct(m.ReviewDecision, {"version": input.version, "confirm": input.confirm, "note": input.note})
    if decision is None:
        return errors
    return Write(lambda conn: service.decide_exposure_review(conn, principal, input.id, decision), m.ExposureReview)


async def _stay_now(conn: asyncpg.Connection, ctx: Context, principal: Principal, input: Any) -> Stay | None:
    """What a check-in or swab conflicts with: its stay (ended, moved)."""
    found = await stays.get_stays(conn, principal, [input.stay_id])
    return stay_gql(found[input.stay_id]) if input.stay_id in found else None


async def _alert_now(conn: asyncpg.Connection, ctx: Context, principal: Principal, input: AlertActionInput) -> Alert | None:
    found = await service.get_alerts(conn, principal, [input.id])
    return alert_gql(found[input.id]) if input.id in found else None


async def _review_now(conn: asyncpg.Connection, ctx: Context, principal: Principal, input: DecideExposureReviewInput) -> ExposureReview | None:
    found = await service.get_exposure_reviews(conn, principal, [input.id])
    return to_gql(ExposureReview, found[input.id]) if input.id in found else None


async def _nothing(conn: asyncpg.Connection, ctx: Context, principal: Principal, input: Any) -> None:
    """A pool belongs to no one record a conflict could be about (its id or barcode is taken)."""
    return None


OFFLINE_WRITES = {
    "record_checkin": OfflineWrite("health.record", checkin_write, lambda c: to_gql(Checkin, c), _stay_now),
    "record_sample": OfflineWrite("health.record", sample_write, lambda s: to_gql(Sample, s), _stay_now),
    "record_pool": OfflineWrite("health.record", pool_write, lambda s: to_gql(Sample, s), _nothing),
    "acknowledge_alert": OfflineWrite("alerts.acknowledge", acknowledge_write, alert_gql, _alert_now),
    "resolve_alert": OfflineWrite("alerts.resolve", resolve_write, alert_gql, _alert_now),
    "decide_exposure_review": OfflineWrite("reviews.decide", decide_review_write, lambda r: to_gql(ExposureReview, r), _review_now),
}


@strawberry.type
class Query:
    @strawberry.field(
        permission_classes=[policy.gql("health.read")],
        description="Residents whose check-in for the current slot is due; null for another site.",
    )
    async def checkins_due(self, info: Ctx, site_id: UUID, floor: int | None = None) -> list[CheckinDue] | None:
        ctx = info.context
        principal = ctx.require_principal()
        if not principal.can_access_site(site_id):
            return None
        async with ctx.db.connection() as conn:
            rows = await service.checkins_due(conn, principal, site_id, floor=floor)
        return [to_gql(CheckinDue, r) for r in rows]

    @strawberry.field(permission_classes=[policy.gql("health.read")], description="Residents to swab today, by floor and room; null for another site.")
    async def swabs_due(self, info: Ctx, site_id: UUID, floor: int | None = None) -> list[SwabDue] | None:
        ctx = info.context
        principal = ctx.require_principal()
        if not principal.can_access_site(site_id):
            return None
        async with ctx.db.connection() as conn:
            rows = await service.swabs_due(conn, principal, site_id, floor=floor)
        return [to_gql(SwabDue, r) for r in rows]

    @strawberry.field(permission_classes=[policy.gql("health.read")], description="A stay's check-ins, samples and alerts; null for another site's stay.")
    async def health_timeline(self, info: Ctx, stay_id: UUID) -> HealthTimeline | None:
        ctx = info.context
        async with ctx.db.connection() as conn:
            found = await stays.get_stays(conn, ctx.require_principal(), [stay_id])
            if stay_id not in found:
                return None
            return timeline_gql(await service.timeline(conn, ctx.require_principal(), stay_id))

    @strawberry.field(
        permission_classes=[policy.gql("health.read")], description="A site's alerts, newest first (open ones by default); empty for another site."
    )
    async def site_alerts(
        self, info: Ctx, site_id: UUID, states: list[AlertStateGQL] | None = None, first: int = 50, after: str | None = None
    ) -> Connection[Alert]:
        ctx = info.context
        principal = ctx.require_principal()
        if not principal.can_access_site(site_id):
            return connection_of(Page(items=[], next_cursor=None), alert_gql, lambda a: [])
        chosen = [m.AlertState(s) for s in states] if states is not None else [m.AlertState.OPEN]
        async with ctx.db.connection() as conn:
            page = await service.list_site_alerts(conn, principal, site_id, states=chosen, cursor=after, limit=first)
        return connection_of(page, alert_gql, lambda a: [a.raised_at.isoformat(), str(a.id)])

    @strawberry.field(permission_classes=[policy.gql("health.read")], description="A site's exposure reviews (open by default); null for another site.")
    async def exposure_reviews(self, info: Ctx, site_id: UUID, state: ReviewStateGQL | None = m.ReviewState.OPEN) -> list[ExposureReview] | None:
        ctx = info.context
        principal = ctx.require_principal()
        if not principal.can_access_site(site_id):
            return None
        async with ctx.db.connection() as conn:
            rows = await service.list_exposure_reviews(conn, principal, site_id, state=m.ReviewState(state) if state else None)
        return [to_gql(ExposureReview, r) for r in rows]


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[policy.gql("health.record")])
    async def record_checkin(self, info: Ctx, input: RecordCheckinInput) -> CheckinPayload:
        found, errors = await perform(info, checkin_write(info.context, info.context.require_principal(), input))
        return CheckinPayload(checkin=to_gql(Checkin, found) if found else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("health.record")], description="Check-ins recorded offline: each item succeeds or fails on its own.")
    async def record_checkins(self, info: Ctx, input: list[RecordCheckinInput]) -> HealthBatchPayload:
        principal = info.context.require_principal()
        raw = _raw(input)
        batch, errors = await mutate(info, lambda conn: service.record_checkin_batch(conn, principal, raw), result_type=m.CheckinBatch)
        return _batch(batch.items) if batch else HealthBatchPayload(user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("health.record")], description="Swabs, each in its own tube; each item succeeds or fails on its own.")
    async def record_samples(self, info: Ctx, input: list[RecordSampleInput]) -> HealthBatchPayload:
        principal = info.context.require_principal()
        raw = _raw(input)
        items, errors = await mutate(info, lambda conn: service.record_samples(conn, principal, raw), result_type=list[m.SampleOutcome])
        return _batch(items) if items is not None else HealthBatchPayload(user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("health.record")])
    async def record_pool(self, info: Ctx, input: RecordPoolInput) -> SamplePayload:
        found, errors = await perform(info, pool_write(info.context, info.context.require_principal(), input))
        return SamplePayload(sample=to_gql(Sample, found) if found else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("alerts.acknowledge")])
    async def acknowledge_alert(self, info: Ctx, input: AlertActionInput) -> AlertPayload:
        found, errors = await perform(info, acknowledge_write(info.context, info.context.require_principal(), input))
        return AlertPayload(alert=alert_gql(found) if found else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("alerts.resolve")], description="A medic resolves an alert, with a note.")
    async def resolve_alert(self, info: Ctx, input: AlertActionInput) -> AlertPayload:
        found, errors = await perform(info, resolve_write(info.context, info.context.require_principal(), input))
        return AlertPayload(alert=alert_gql(found) if found else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("reviews.decide")], description="Confirm (extends the stay) or dismiss an exposure review.")
    async def decide_exposure_review(self, info: Ctx, input: DecideExposureReviewInput) -> ExposureReviewPayload:
        found, errors = await perform(info, decide_review_write(info.context, info.context.require_principal(), input))
        return ExposureReviewPayload(review=to_gql(ExposureReview, found) if found else None, user_errors=errors)
