"""Staff closed-loop rules: the roster, each worker's test schedule, staff check-ins and swabs, the
closed-loop status, and the exposure of staff to a resident who turns positive.

The roster (workers, shifts) is read by every staff role of the site. Everything else is staff
health data: only medics and site managers of the site read or write it (``staff_health.*``; the
command centre is not granted it). Staff check-ins go through the residents' alert rules
(``health.service.reading_alerts``); a flagged check-in emits ``staff.checkin_flagged``. A positive
staff swab puts the worker in isolation. ``open_exposure_reviews`` is called by the health domain
when a resident's result is positive: every worker of a shift on that floor in the last days gets
an open review, which a medic clears or turns into isolation.

Functions other domains call: ``open_exposure_reviews(conn, principal, stay)``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import asyncpg

from service import bus, policy
from service.access import audit
from service.access.model import Principal, Role
from service.errors import Conflict, Forbidden, InvalidInput, NotFound
from service.fields import CLOCK_SKEW
from service.health import service as health
from service.health.model import LabItemStatus, LabOutcome, LabUpload, LabUploadResult, SampleKind
from service.operations.staffing import store
from service.operations.staffing.model import (
    EXPOSURE_LOOKBACK_DAYS,
    POSITIVE_ISOLATION_DAYS,
    ExposureDecision,
    ExposureState,
    LoopStatus,
    Post,
    Shift,
    ShiftCreate,
    StaffCheckin,
    StaffCheckinCreate,
    StaffExposure,
    StaffResult,
    StaffResultEntry,
    StaffSample,
    StaffSampleCreate,
    StaffTestDue,
    StatusChange,
    Worker,
    WorkerCreate,
    WorkerLoop,
    test_interval,
)
from service.pagination import Page, check_limit, decode_cursor, page_of
from service.sites import service as sites
from service.stays.model import Stay

ROSTER_READ = policy.roles("roster.read")
ROSTER_MANAGE = policy.roles("roster.manage")
HEALTH_READ = policy.roles("staff_health.read")
HEALTH_WRITE = policy.roles("staff_health.write")
LAB_ROLES = policy.roles("lab.results")
MAX_ROSTER_PERIOD = timedelta(days=31)


def _require(principal: Principal, roles: tuple[Role, ...], what: str) -> None:
    if principal.role not in roles:
        raise Forbidden(f"The role {principal.role} may not {what}.", code="role_not_allowed")


def _scope(principal: Principal, operation: str) -> list[UUID] | None:
    """The sites a read reaches: staff health data is granted by site only (never every site)."""
    return policy.site_filter(principal, operation)


def _now() -> datetime:
    return datetime.now(UTC)


# --- workers and the roster -----------------------------------------------------------


async def get_workers(conn: asyncpg.Connection, principal: Principal, ids: list[UUID]) -> dict[UUID, Worker]:
    if principal.role not in ROSTER_READ or not ids:
        return {}
    return {w.id: w for w in await store.get_workers(conn, ids, principal.site_scope)}


async def _worker(conn: asyncpg.Connection, principal: Principal, worker_id: UUID, operation: str) -> asyncpg.Record:
    """The worker's row locked, within the sites ``operation`` reaches (404 otherwise)."""
    row = await store.lock_worker(conn, worker_id, _scope(principal, operation))
    if row is None:
        raise NotFound("No such worker.", code="worker_not_found", field="worker_id")
    return row


async def list_workers(conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, cursor: str | None, limit: int) -> Page[Worker]:
    """A site's workers by post and name."""
    _require(principal, ROSTER_READ, "read the roster")
    check_limit(limit)
    await sites.get_site(conn, principal, site_id)
    after = decode_cursor(cursor, [str, str, UUID])
    rows = await store.site_workers(conn, site_id, principal.site_scope, after=(after[0], after[1], after[2]) if after else None, limit=limit + 1)
    return page_of(rows, limit, worker_key)


def worker_key(w: Worker) -> list[object]:
    return [w.post.value, w.name, str(w.id)]


async def add_worker(conn: asyncpg.Connection, principal: Principal, data: WorkerCreate) -> Worker:
    """A worker of the site (command, site manager). A replayed client ``id`` answers the stored worker."""
    _require(principal, ROSTER_MANAGE, "manage the roster")
    site = await sites.get_site(conn, principal, data.site_id)
    worker_id = data.id or uuid4()
    if not await store.insert_worker(
        conn, id=worker_id, site_id=site.id, name=data.name.strip(), post=Post(data.post).value, red_zone=data.red_zone
    ):
        found = await store.get_workers(conn, [worker_id], None)
        stored = found[0] if found else None
        if stored is None or stored.site_id != site.id or stored.name != data.name.strip() or not principal.can_access_site(stored.site_id):
            raise Conflict("Another worker already has this id.", code="worker_id_taken", field="id")
        return stored
    worker = (await store.get_workers(conn, [worker_id], None))[0]
    await bus.emit(conn, "staff.worker_added", site_id=site.id, subject_id=worker.id, actor=principal.ref,
                   data={"post": worker.post.value, "red_zone": worker.red_zone})
    return worker


async def list_shifts(
    conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, since: datetime, until: datetime
) -> list[Shift]:
    """The roster: a site's shifts overlapping [since, until) (at most 31 days), by start."""
    _require(principal, ROSTER_READ, "read the roster")
    if until <= since or until - since > MAX_ROSTER_PERIOD:
        raise InvalidInput("The period must be positive and at most 31 days.", code="invalid_period", field="until")
    await sites.get_site(conn, principal, site_id)
    return await store.site_shifts(conn, site_id, principal.site_scope, since, until)


async def add_shift(conn: asyncpg.Connection, principal: Principal, data: ShiftCreate) -> Shift:
    """A shift of a worker; post and zone default to the worker's. No worker works two overlapping shifts."""
    _require(principal, ROSTER_MANAGE, "manage the roster")
    if data.ends_at <= data.starts_at or data.ends_at - data.starts_at > timedelta(hours=24):
        raise InvalidInput("A shift ends after it starts, within 24 hours.", code="invalid_shift", field="ends_at")
    worker = await _worker(conn, principal, data.worker_id, "roster.manage")
    shift_id = data.id or uuid4()
    if data.id is not None and (stored := await store.get_shifts(conn, [data.id], None)):
        if stored[0].worker_id != worker["id"] or stored[0].starts_at != data.starts_at:
            raise Conflict("Another shift already has this id.", code="shift_id_taken", field="id")
        return stored[0]
    if await store.overlapping_shift(conn, worker["id"], shift_id, data.starts_at, data.ends_at):
        raise Conflict("The worker already has a shift in this time.", code="shift_overlap", field="starts_at")
    await store.insert_shift(
        conn, id=shift_id, site_id=worker["site_id"], worker_id=worker["id"], post=Post(data.post or worker["post"]).value,
        red_zone=worker["red_zone"] if data.red_zone is None else data.red_zone, floor=data.floor,
        starts_at=data.starts_at, ends_at=data.ends_at, actor=principal.ref,
    )
    shift = (await store.get_shifts(conn, [shift_id], None))[0]
    await bus.emit(conn, "staff.shift_planned", site_id=shift.site_id, subject_id=shift.id, actor=principal.ref,
                   data={"worker_id": str(shift.worker_id), "post": shift.post.value, "red_zone": shift.red_zone,
                         "starts_at": shift.starts_at.isoformat(), "ends_at": shift.ends_at.isoformat()})
    return shift


# --- closed-loop status (staff health data) -----------------------------------------------


async def loops(conn: asyncpg.Connection, principal: Principal, worker_ids: list[UUID]) -> dict[UUID, WorkerLoop]:
    """Each worker's status, last swab and next test date (medics and site managers of the site)."""
    if principal.role not in HEALTH_READ or not worker_ids:
        return {}
    out = {}
    for row in await store.loops(conn, worker_ids, _scope(principal, "staff_health.read")):
        every = test_interval(Post(row["post"]), row["red_zone"])
        last = row["last_swab_at"]
        out[row["worker_id"]] = WorkerLoop(
            worker_id=row["worker_id"], site_id=row["site_id"], status=LoopStatus(row["status"]), isolation_until=row["isolation_until"],
            version=row["version"], last_swab_at=last, last_result=StaffResult(row["last_result"]) if row["last_result"] else None,
            # In UTC days: the worklist (tests_due) answers in the site's time zone.
            next_test_due=(last.astimezone(UTC).date() + timedelta(days=every)) if last else _now().date(),
        )
    return out


async def set_status(conn: asyncpg.Connection, principal: Principal, data: StatusChange) -> WorkerLoop:
    """Move a worker on duty, to rest, or into isolation until a date."""
    _require(principal, HEALTH_WRITE, "change a worker's closed-loop status")
    worker = await _worker(conn, principal, data.worker_id, "staff_health.write")
    status = LoopStatus(data.status)
    if (status is LoopStatus.ISOLATING) != (data.isolation_until is not None):
        raise InvalidInput("Isolation needs its end date (and only isolation has one).", code="isolation_until_required",
                           field="isolation_until")
    if worker["version"] != data.version:
        raise Conflict(f"The worker changed since version {data.version}.", code="stale_version", field="version",
                       current_version=worker["version"])
    await store.set_status(conn, worker["id"], worker["version"], status.value, data.isolation_until)
    await _status_changed(conn, principal, worker, status, data.isolation_until)
    return (await loops(conn, principal, [worker["id"]]))[worker["id"]]


async def _status_changed(conn: asyncpg.Connection, principal: Principal, worker: Any, status: LoopStatus, until: date | None) -> None:
    await audit.record(conn, principal, "staff_loop.status", site_id=worker["site_id"], subject_id=worker["id"], fields=["status"])
    await bus.emit(conn, "staff.status_changed", site_id=worker["site_id"], subject_id=worker["id"], actor=principal.ref,
                   data={"from": worker["status"], "to": status.value, "isolation_until": until.isoformat() if until else None,
                         "version": worker["version"] + 1})


async def tests_due(conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, today: date | None = None) -> list[StaffTestDue]:
    """The staff testing worklist: active workers whose next swab is due today or earlier (site's time zone)."""
    _require(principal, HEALTH_READ, "read staff tests due")
    site = await sites.get_site(conn, principal, site_id)
    local_today = today or _now().astimezone(ZoneInfo(site.time_zone)).date()
    return await store.tests_due(conn, site.id, _scope(principal, "staff_health.read"), today=local_today, time_zone=site.time_zone)


# --- staff check-ins and swabs ----------------------------------------------------------


async def checkins(conn: asyncpg.Connection, principal: Principal, worker_ids: list[UUID]) -> dict[UUID, list[StaffCheckin]]:
    out: dict[UUID, list[StaffCheckin]] = {w: [] for w in worker_ids}
    if principal.role in HEALTH_READ and worker_ids:
        for c in await store.worker_checkins(conn, worker_ids, _scope(principal, "staff_health.read")):
            out[c.worker_id].append(c)
    return out


async def samples(conn: asyncpg.Connection, principal: Principal, worker_ids: list[UUID]) -> dict[UUID, list[StaffSample]]:
    out: dict[UUID, list[StaffSample]] = {w: [] for w in worker_ids}
    if principal.role in HEALTH_READ and worker_ids:
        for s in await store.worker_samples(conn, worker_ids, _scope(principal, "staff_health.read")):
            out[s.worker_id].append(s)
    return out


def _check_instant(value: datetime, name: str) -> None:
    if value.tzinfo is None:
        raise InvalidInput(f"{name} needs a time zone offset.", code="naive_datetime", field=name)
    if value > _now() + CLOCK_SKEW:
        raise InvalidInput(f"{name} is in the future.", code="recorded_in_future", field=name)


async def record_checkin(conn: asyncpg.Connection, principal: Principal, data: StaffCheckinCreate) -> StaffCheckin:
    """A worker's check-in, through the residents' alert rules. A replayed ``id`` answers the stored one."""
    _require(principal, HEALTH_WRITE, "record staff check-ins")
    _check_instant(data.recorded_at, "recorded_at")
    worker = await _worker(conn, principal, data.worker_id, "staff_health.write")
    checkin_id = data.id or uuid4()
    findings = [k.value for k in health.reading_alerts(data.temperature_c, data.spo2, [s.value for s in data.symptoms])]
    if not await store.insert_checkin(
        conn, id=checkin_id, site_id=worker["site_id"], worker_id=worker["id"], recorded_at=data.recorded_at,
        temperature_c=round(data.temperature_c, 1), spo2=data.spo2, symptoms=[s.value for s in data.symptoms], note=data.note,
        findings=findings, actor=principal.ref,
    ):
        stored = await store.get_checkins(conn, [checkin_id], None)
        if not stored or stored[0].worker_id != worker["id"]:
            raise Conflict("Another check-in already has this id.", code="staff_checkin_id_taken", field="id")
        return stored[0]
    checkin = (await store.get_checkins(conn, [checkin_id], None))[0]
    await audit.record(conn, principal, "staff_checkin.record", site_id=checkin.site_id, subject_id=worker["id"],
                       fields=["temperature_c", "spo2", "symptoms", "note"])
    await bus.emit(conn, "staff.checkin_recorded", site_id=checkin.site_id, subject_id=checkin.id, actor=principal.ref,
                   data={"worker_id": str(worker["id"]), "flagged": bool(findings)})
    if findings:
        await bus.emit(conn, "staff.checkin_flagged", site_id=checkin.site_id, subject_id=checkin.id, actor=principal.ref,
                       data={"worker_id": str(worker["id"]), "findings": findings})
    return checkin


async def record_sample(conn: asyncpg.Connection, principal: Principal, data: StaffSampleCreate) -> StaffSample:
    """A worker's swab, pending its result. A replayed ``id`` answers the stored swab."""
    _require(principal, HEALTH_WRITE, "record staff swabs")
    _check_instant(data.collected_at, "collected_at")
    worker = await _worker(conn, principal, data.worker_id, "staff_health.write")
    sample_id = data.id or uuid4()
    if not await store.insert_sample(
        conn, id=sample_id, site_id=worker["site_id"], worker_id=worker["id"], barcode=data.barcode, kind=SampleKind(data.kind).value,
        collected_at=data.collected_at, actor=principal.ref,
    ):
        stored = await store.get_samples(conn, [sample_id], None)
        if not stored or (stored[0].worker_id, stored[0].barcode) != (worker["id"], data.barcode):
            raise Conflict("Another swab already has this id.", code="staff_sample_id_taken", field="id")
        return stored[0]
    sample = (await store.get_samples(conn, [sample_id], None))[0]
    await audit.record(conn, principal, "staff_sample.record", site_id=sample.site_id, subject_id=worker["id"], fields=["barcode", "kind"])
    await bus.emit(conn, "staff.sample_recorded", site_id=sample.site_id, subject_id=sample.id, actor=principal.ref,
                   data={"worker_id": str(worker["id"])})
    return sample


async def record_result(conn: asyncpg.Connection, principal: Principal, data: StaffResultEntry) -> StaffSample:
    """A staff swab's result (medics, site managers). The same result again changes nothing; another
    is 409 ``result_conflict``. A positive one puts the worker in isolation (POSITIVE_ISOLATION_DAYS)."""
    _require(principal, HEALTH_WRITE, "record staff results")
    result = StaffResult(data.result)
    if result is StaffResult.PENDING:
        raise InvalidInput("A result is negative, positive or invalid.", code="invalid_result", field="result")
    sample = await store.lock_sample(conn, data.staff_sample_id, _scope(principal, "staff_health.write"))
    if sample is None:
        raise NotFound("No such staff swab.", code="staff_sample_not_found", field="staff_sample_id")
    if sample.result is not StaffResult.PENDING:
        if sample.result is result:
            return sample
        raise Conflict(f"The swab already has the result {sample.result}.", code="result_conflict", field="result")
    return await _resulted(conn, principal, sample, result, None)


async def upload_results(conn: asyncpg.Connection, principal: Principal, data: LabUpload) -> LabUploadResult:
    """Staff swab results by tube barcode from a lab, item by item as for residents' swabs: ``recorded``,
    ``unchanged`` (the same result again), ``conflict`` (another result is stored) or ``unknown_barcode``
    (also a tube of a site the key does not serve). A positive one isolates the worker, as above."""
    _require(principal, LAB_ROLES, "upload results")
    scope = policy.site_filter(principal, "lab.results")
    tubes = {s.barcode: s for s in await store.lock_samples_by_barcode(conn, sorted({r.barcode for r in data.results}), scope)}
    items: list[LabOutcome] = []
    for index, entry in enumerate(data.results):
        sample = tubes.get(entry.barcode)
        if sample is None:
            items.append(LabOutcome(index=index, barcode=entry.barcode, status=LabItemStatus.UNKNOWN_BARCODE))
            continue
        result = StaffResult(entry.result.value)
        if sample.result is StaffResult.PENDING:
            tubes[entry.barcode] = await _resulted(conn, principal, sample, result, entry.resulted_at)
            status = LabItemStatus.RECORDED
        else:
            status = LabItemStatus.UNCHANGED if sample.result is result else LabItemStatus.CONFLICT
        items.append(LabOutcome(index=index, barcode=entry.barcode, status=status, sample_id=sample.id))
    return LabUploadResult.of(items)


async def _resulted(
    conn: asyncpg.Connection, principal: Principal, sample: StaffSample, result: StaffResult, resulted_at: datetime | None
) -> StaffSample:
    """Store a pending swab's result (locked by the caller, in its scope): audit, event, isolation if positive."""
    await store.set_result(conn, sample.id, result.value, resulted_at)
    after = (await store.get_samples(conn, [sample.id], None))[0]
    await audit.record(conn, principal, "staff_sample.result", site_id=after.site_id, subject_id=after.worker_id, fields=["result"])
    await bus.emit(conn, "staff.sample_resulted", site_id=after.site_id, subject_id=after.id, actor=principal.ref,
                   data={"worker_id": str(after.worker_id), "result": after.result.value})
    if after.result is StaffResult.POSITIVE:
        # The swab was in the caller's scope, so is its worker (a lab key reaches no roster: scope None).
        worker = await store.lock_worker(conn, after.worker_id, None)
        if worker is None:  # a swab's worker is never deleted
            raise NotFound("No such worker.", code="worker_not_found")
        until = _now().date() + timedelta(days=POSITIVE_ISOLATION_DAYS)
        await store.set_status(conn, worker["id"], worker["version"], LoopStatus.ISOLATING.value, until)
        await _status_changed(conn, principal, worker, LoopStatus.ISOLATING, until)
    return after


# --- exposure of staff to a positive resident ---------------------------------------------


async def open_exposure_reviews(conn: asyncpg.Connection, principal: Principal, stay: Stay, *, reason: str = "") -> list[StaffExposure]:
    """A resident of ``stay`` turned positive: every worker of a shift on that floor of the site in the
    last EXPOSURE_LOOKBACK_DAYS days gets an open review (once per worker and case). Called by the
    health domain inside the result's transaction, with its principal (any role that records results)."""
    ids = await store.open_exposures(
        conn, site_id=stay.site_id, source_stay_id=stay.id, floor=stay.floor,
        since=_now() - timedelta(days=EXPOSURE_LOOKBACK_DAYS), note=reason[:1000],
    )
    reviews = await store.get_exposures(conn, ids, None)
    if reviews:
        await bus.emit(conn, "staff.exposure_review_opened", site_id=stay.site_id, subject_id=stay.id, actor=principal.ref,
                       data={"floor": stay.floor, "exposure_ids": [str(r.id) for r in reviews]})
    return reviews


async def list_exposures(
    conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, state: ExposureState | None = ExposureState.OPEN
) -> list[StaffExposure]:
    _require(principal, HEALTH_READ, "read staff exposure reviews")
    await sites.get_site(conn, principal, site_id)
    return await store.site_exposures(conn, site_id, _scope(principal, "staff_health.read"), state.value if state else None)


async def decide_exposure(conn: asyncpg.Connection, principal: Principal, exposure_id: UUID, data: ExposureDecision) -> StaffExposure:
    """Clear an exposed worker, or isolate them until a date (their status becomes isolating)."""
    _require(principal, HEALTH_WRITE, "decide staff exposure reviews")
    state = ExposureState(data.state)
    if state is ExposureState.OPEN:
        raise InvalidInput("Decide cleared or isolated.", code="invalid_decision", field="state")
    if (state is ExposureState.ISOLATED) != (data.isolation_until is not None):
        raise InvalidInput("Isolation needs its end date (and only isolation has one).", code="isolation_until_required",
                           field="isolation_until")
    exposure = await store.lock_exposure(conn, exposure_id, _scope(principal, "staff_health.write"))
    if exposure is None:
        raise NotFound("No such exposure review.", code="staff_exposure_not_found")
    if exposure.state is not ExposureState.OPEN:
        if exposure.state is state:
            return exposure
        raise Conflict(f"The review is already {exposure.state}.", code="review_decided", current_state=exposure.state.value)
    if exposure.version != data.version:
        raise Conflict(f"The review changed since version {data.version}.", code="stale_version", field="version",
                       current_version=exposure.version)
    await store.decide_exposure(conn, exposure, state.value, principal.ref, data.note)
    if state is ExposureState.ISOLATED:
        worker = await _worker(conn, principal, exposure.worker_id, "staff_health.write")
        await store.set_status(conn, worker["id"], worker["version"], LoopStatus.ISOLATING.value, data.isolation_until)
        await _status_changed(conn, principal, worker, LoopStatus.ISOLATING, data.isolation_until)
    after = (await store.get_exposures(conn, [exposure.id], None))[0]
    await audit.record(conn, principal, f"staff_exposure.{after.state.value}", site_id=after.site_id, subject_id=after.worker_id,
                       fields=["exposure"])
    await bus.emit(conn, f"staff.exposure_{after.state.value}", site_id=after.site_id, subject_id=after.id, actor=principal.ref,
                   data={"worker_id": str(after.worker_id), "version": after.version})
    return after

