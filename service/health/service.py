"""Health rules: check-ins, samples and pools, lab results, alerts, exposure reviews, release.

Functions other domains call (connection inside the caller's transaction, caller's Principal):

- ``open_exposure_review(conn, principal, stay_id, reason=..., source=...)``  roommates, household,
  floor neighbours of ``stay_id`` marked for review (transfers call it when a transfer departs)
- ``release_blockers(conn, stay, now=...)``   test results that block a release (stays calls it)
- ``swabs_scheduled(conn, site_ids, days)``   swabs due per site over the next days (supplies forecast)

Check-ins are the hot path: ``record_checkin`` is ONE statement in autocommit (scope check,
insert, alert rules, audit row and outbox event together, see
db/queries/health.sql ``record_checkins``); a batch runs the same statement over all its items.
"""

from __future__ import annotations

import uuid
import weakref
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg
import msgspec

from service import bus, policy
from service.access.model import Principal, PrincipalKind, Role
from service.db import Database
from service.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound, nested_input_error
from service.groupcommit import GroupCommit
from service.health import store
from service.health.model import (
    CLOCK_SKEW,
    MAX_BATCH,
    Alert,
    AlertAction,
    AlertKind,
    AlertState,
    Checkin,
    CheckinBatch,
    CheckinCreate,
    CheckinDue,
    CheckinOutcome,
    ExposureReview,
    ExposureSource,
    ItemError,
    ItemStatus,
    LabItemStatus,
    LabOutcome,
    LabUpload,
    LabUploadResult,
    PoolCreate,
    Relation,
    ReviewDecision,
    ReviewState,
    Sample,
    SampleCreate,
    SampleOutcome,
    SampleResult,
    SwabDue,
    Symptom,
    Timeline,
)
from service.observability import current_request_id
from service.pagination import Page, check_limit, decode_cursor, page_of
from service.settings import Settings
from service.sites import service as sites
from service.stays import service as stays
from service.stays.model import Blocker, Extension, Stay, StayStatus

# --- alert rules (the SQL of record_checkins applies them; values are parameters) ---------
FEVER_C = 37.3  # >= raises "fever"
LOW_SPO2 = 94  # < raises "low_spo2"
# Two or more of these in one check-in raise "symptoms".
ALARM_SYMPTOMS = [Symptom.FEVER, Symptom.COUGH, Symptom.SORE_THROAT, Symptom.LOSS_OF_TASTE_OR_SMELL, Symptom.SHORTNESS_OF_BREATH]
ALARM_SYMPTOM_COUNT = 2



def reading_alerts(temperature_c: float | None, spo2: int | None, symptoms: Sequence[str]) -> list[AlertKind]:
    """The check-in alert rules on one reading: the thresholds above, as record_checkins applies them in
    SQL to residents. Other readers of these rules (the staff closed loop) call this, never a copy."""
    found = []
    if temperature_c is not None and round(temperature_c, 1) >= FEVER_C:
        found.append(AlertKind.FEVER)
    if spo2 is not None and spo2 < LOW_SPO2:
        found.append(AlertKind.LOW_SPO2)
    if len(set(symptoms) & set(ALARM_SYMPTOMS)) >= ALARM_SYMPTOM_COUNT:
        found.append(AlertKind.SYMPTOMS)
    return found


RECORD_ROLES = policy.roles("health.record")
READ_ROLES = policy.roles("health.read")
ALERT_ROLES = policy.roles("alerts.acknowledge")
RESOLVE_ROLES = policy.roles("alerts.resolve")
REVIEW_ROLES = policy.roles("reviews.decide")
LAB_ROLES = policy.roles("lab.results")
CHECKIN_FIELDS = ["temperature_c", "spo2", "pulse", "symptoms", "note"]


def _require(principal: Principal, roles: Sequence[Role], what: str) -> None:
    if principal.role not in roles:
        raise Forbidden(f"The role {principal.role} may not {what}.", code="role_not_allowed")


def _now() -> datetime:
    return datetime.now(UTC)


def _field_of(exc: msgspec.ValidationError) -> str | None:
    message = str(exc)
    if message.startswith("Object missing required field `"):
        return message.split("`")[1]
    return message.rsplit("$.", 1)[-1].rstrip("`").split("[")[0] if "$." in message else None


def parse_item(struct_type: type[Any], raw: Any) -> Any:
    """One item of a batch into its input Struct; InvalidInput naming the field otherwise."""
    try:
        return msgspec.convert(raw, struct_type)
    except msgspec.ValidationError as exc:
        raise nested_input_error(exc) or InvalidInput(str(exc).split(" - at ")[0], code="invalid_input", field=_field_of(exc)) from None


# --- check-ins ------------------------------------------------------------------------------


_RULES: dict[str, Any] = {
    "fever_c": FEVER_C,
    "low_spo2": LOW_SPO2,
    "alarm_symptoms": list(ALARM_SYMPTOMS),
    "alarm_count": ALARM_SYMPTOM_COUNT,
    "clock_skew_s": CLOCK_SKEW.total_seconds(),
}


class _Item(NamedTuple):
    """One check-in of a record_checkins statement: its position in the caller's request, its input, its caller."""

    position: int
    data: CheckinCreate
    caller: store.Caller


async def _record(conn: asyncpg.Connection, items: Sequence[_Item], *, records: bool = True) -> tuple[list[CheckinOutcome], list[bus.Event]]:
    """Run record_checkins over ``items`` (of one caller or several); one outcome per item, in order, and the events.

    ``records``: the outcomes carry the stored check-ins (otherwise ids and outcomes only).
    """
    ids = [item.data.id or uuid.uuid4() for item in items]
    callers: list[store.Caller] = []
    numbered: list[tuple[UUID, CheckinCreate, int]] = []
    for checkin_id, item in zip(ids, items, strict=True):
        # A batch's items share one Caller object, a group's each have their own: no hashing needed.
        if not callers or callers[-1] is not item.caller:
            callers.append(item.caller)
        numbered.append((checkin_id, item.data, len(callers) - 1))
    rows = await store.record_checkins(conn, numbered, callers, records=records, **_RULES)
    created = {c.id: c for c in rows.created}
    stored = {c.id: c for c in rows.stored}
    # Accepted but neither inserted nor seen before: a concurrent request with the same id won
    # the insert (ON CONFLICT waited for its commit). Read it now; rare, so a second round trip.
    raced = [i for n, i in enumerate(ids) if n not in rows.rejected and i not in rows.created_ids and i not in stored]
    if raced:
        for c in await store.get_checkins(conn, raced, None):
            stored[c.id] = c
    # The item that inserted each new id: its first acceptable one (the statement's DISTINCT ON).
    creator: dict[UUID, int] = {}
    for n, checkin_id in enumerate(ids):
        if n not in rows.rejected and checkin_id in rows.created_ids:
            creator.setdefault(checkin_id, n)
    outcomes: list[CheckinOutcome] = []
    for n, (checkin_id, item) in enumerate(zip(ids, items, strict=True)):
        code = rows.rejected.get(n)
        if code is None and checkin_id in creator:
            first = creator[checkin_id]
            if first == n:
                outcomes.append(CheckinOutcome(index=item.position, status=ItemStatus.CREATED, id=checkin_id, checkin=created.get(checkin_id)))
                continue
            # Inserted by another item of this statement: the same stay (whose site both callers may see) replays it.
            if items[first].data.stay_id == item.data.stay_id:
                outcomes.append(CheckinOutcome(index=item.position, status=ItemStatus.REPLAYED, id=checkin_id, checkin=created.get(checkin_id)))
                continue
            code = "checkin_id_conflict"
        elif code is None:
            record = stored.get(checkin_id)
            if record is not None and record.stay_id == item.data.stay_id and item.caller.principal.can_access_site(record.site_id):
                outcomes.append(CheckinOutcome(index=item.position, status=ItemStatus.REPLAYED, id=checkin_id, checkin=record if records else None))
                continue
            code = "checkin_id_conflict"
        message, field = _REJECTED[code]
        outcomes.append(CheckinOutcome(index=item.position, status=ItemStatus.FAILED, id=checkin_id, error=ItemError(code=code, message=message, field=field)))
    return outcomes, rows.events


# Verdicts that refuse an item: (message, field).
_REJECTED = {
    "stay_not_found": ("No such stay.", "stay_id"),
    "stay_closed": ("The stay ended before this check-in was recorded.", "stay_id"),
    "recorded_before_admission": ("recorded_at is before the resident was admitted.", "recorded_at"),
    "checkin_id_conflict": ("This id belongs to another check-in.", "id"),
}


def _raise_for(outcome: CheckinOutcome) -> Checkin:
    if outcome.checkin is not None:
        return outcome.checkin
    error = outcome.error or ItemError(code="failed", message="Not recorded.")
    cls = {"stay_not_found": NotFound, "recorded_before_admission": InvalidInput}.get(error.code, Conflict)
    raise cls(error.message, code=error.code, field=error.field)


async def _record_group(db: Database, items: list[_Item]) -> list[CheckinOutcome]:
    """Check-ins of concurrent callers in ONE autocommit statement; their events published together."""
    async with db.connection() as conn:
        outcomes, events = await _record(conn, items)
    if db.versions is not None:
        db.versions.committed()
    if events:
        await bus.publish(db.cache, events)
    return outcomes


_groups: weakref.WeakKeyDictionary[Database, GroupCommit[_Item, CheckinOutcome]] = weakref.WeakKeyDictionary()


def _group_of(db: Database) -> GroupCommit[_Item, CheckinOutcome]:
    group = _groups.get(db)
    if group is None:
        # One group in flight: the statement's fixed cost (~1.7 ms of PostgreSQL CPU: the commit, the
        # version trigger, executor start-up) dominates a small group, and with two in flight groups
        # held 2.5 check-ins on average under load, with one 4 (CPU per check-in -20 %, bench health).
        group = _groups[db] = GroupCommit(lambda items: _record_group(db, items), max_items=MAX_BATCH, flights=1)
    return group


async def record_checkin(db: Database, principal: Principal, data: CheckinCreate) -> Checkin:
    """One check-in, answered with the stored record (a replay answers the record stored before).

    The fast path for a request without an Idempotency-Key (the phone's ``id`` makes a replay
    a no-op): check-ins arriving at the same time on this instance share ONE autocommit
    statement (service/groupcommit.py), each caller answered with its own outcome. With a key,
    REST runs ``record_checkin_in`` through service/idempotency.py.
    """
    _require(principal, RECORD_ROLES, "record check-ins")
    if data.id is None:  # fixed before grouping: a group retried item by item must not insert it twice
        data = msgspec.structs.replace(data, id=uuid.uuid4())
    outcome = await _group_of(db).submit(_Item(0, data, store.Caller(principal, current_request_id())))
    return _raise_for(outcome)


async def record_checkin_in(conn: asyncpg.Connection, principal: Principal, data: CheckinCreate) -> Checkin:
    """One check-in inside the caller's transaction (GraphQL through gql.mutate)."""
    _require(principal, RECORD_ROLES, "record check-ins")
    outcomes, events = await _record(conn, [_Item(0, data, store.Caller(principal, current_request_id()))])
    bus.track(events)
    return _raise_for(outcomes[0])


async def record_checkin_batch(conn: asyncpg.Connection, principal: Principal, raw_items: Sequence[Any], *, records: bool = True) -> CheckinBatch:
    """Check-ins recorded offline: each item succeeds or fails on its own; the answer says which.

    Invalid items are named (index, field, code); the valid ones go in ONE statement. Items
    stored before (same id) answer their stored record and are not duplicated. ``records``:
    each outcome carries the stored check-in (otherwise ids and outcomes only).
    """
    _require(principal, RECORD_ROLES, "record check-ins")
    if not 1 <= len(raw_items) <= MAX_BATCH:
        raise InvalidInput(f"Send 1-{MAX_BATCH} check-ins at once.", code="invalid_batch_size", field="checkins")
    caller = store.Caller(principal, current_request_id())
    valid: list[_Item] = []
    failed: list[CheckinOutcome] = []
    try:
        # Usually every item is valid: one conversion of the whole list (C) instead of one call per item.
        parsed = msgspec.convert(raw_items, list[CheckinCreate]) if all(type(raw) is dict for raw in raw_items) else None
    except (msgspec.ValidationError, DomainError):
        parsed = None  # some item is not: judged item by item below, each failing alone
    if parsed is not None:
        valid = [_Item(index, data, caller) for index, data in enumerate(parsed)]
    else:
        for index, raw in enumerate(raw_items):
            try:
                valid.append(_Item(index, raw if isinstance(raw, CheckinCreate) else parse_item(CheckinCreate, raw), caller))
            except DomainError as exc:
                failed.append(CheckinOutcome(index=index, status=ItemStatus.FAILED, error=ItemError(code=exc.code, message=exc.message, field=exc.field)))
    outcomes: list[CheckinOutcome] = []
    if valid:
        outcomes, events = await _record(conn, valid, records=records)
        bus.track(events)
    items = sorted(outcomes + failed, key=lambda o: o.index) if failed else outcomes
    count = Counter(o.status for o in items)
    return CheckinBatch(created=count[ItemStatus.CREATED], replayed=count[ItemStatus.REPLAYED], failed=count[ItemStatus.FAILED], items=items)


# --- samples and pools ----------------------------------------------------------------------


def _day_of(stay: asyncpg.Record, at: datetime) -> int:
    return (stays.local_date(at, stay["time_zone"]) - stay["day_one"]).days + 1


async def _insert_samples(conn: asyncpg.Connection, principal: Principal, rows: list[dict[str, Any]]) -> set[UUID]:
    inserted = await store.insert_samples(conn, principal.ref, rows)
    new = [r for r in rows if r["id"] in inserted]
    await store.fulfil_retests(conn, [(r["stay_id"], r["id"]) for r in new if r["stay_id"] is not None and r["pool_id"] is None])
    subjects = [(r["site_id"], r["stay_id"] or r["id"]) for r in new]
    await store.insert_audit(conn, principal.ref, principal.role.value, "sample.record", subjects, ["barcode", "kind"])
    events = await store.insert_events(
        conn,
        principal.ref,
        [
            (
                r["site_id"],
                "health.sample_recorded",
                r["id"],
                {"stay_id": str(r["stay_id"]) if r["stay_id"] else None, "pool": r["members"] > 0, "kind": r["kind"]},
            )
            for r in new
            if r["pool_id"] is None
        ],
    )
    bus.track(events)
    return inserted


async def record_samples(conn: asyncpg.Connection, principal: Principal, raw_items: Sequence[Any]) -> list[SampleOutcome]:
    """Individual swabs; each item succeeds or fails on its own. A replayed id answers the stored sample."""
    _require(principal, RECORD_ROLES, "record samples")
    if not 1 <= len(raw_items) <= MAX_BATCH:
        raise InvalidInput(f"Send 1-{MAX_BATCH} samples at once.", code="invalid_batch_size", field="samples")
    outcomes: dict[int, SampleOutcome] = {}
    valid: list[tuple[int, SampleCreate]] = []
    for index, raw in enumerate(raw_items):
        try:
            valid.append((index, raw if isinstance(raw, SampleCreate) else parse_item(SampleCreate, raw)))
        except DomainError as exc:
            outcomes[index] = SampleOutcome(index=index, status=ItemStatus.FAILED, error=ItemError(code=exc.code, message=exc.message, field=exc.field))
    found = await store.stays_for_samples(conn, list({s.stay_id for _, s in valid}), principal.site_scope)
    rows: list[dict[str, Any]] = []
    for index, item in valid:
        stay = found.get(item.stay_id)
        error = None
        if stay is None:
            error = ItemError(code="stay_not_found", message="No such stay.", field="stay_id")
        elif stay["status"] != StayStatus.ACTIVE:
            error = ItemError(code="stay_closed", message="The stay has ended.", field="stay_id")
        day = item.scheduled_day or (_day_of(stay, item.collected_at) if stay else 0)
        if error is None and not 1 <= day <= 90:
            error = ItemError(code="invalid_scheduled_day", message="The swab is outside the stay's quarantine days.", field="collected_at")
        if error is not None or stay is None:
            outcomes[index] = SampleOutcome(index=index, status=ItemStatus.FAILED, error=error)
            continue
        rows.append(
            {
                "index": index,
                "id": item.id or uuid.uuid4(),
                "site_id": stay["site_id"],
                "stay_id": item.stay_id,
                "pool_id": None,
                "barcode": item.barcode,
                "kind": item.kind.value,
                "scheduled_day": day,
                "members": 0,
                "collected_at": item.collected_at,
            }
        )
    inserted = await _insert_samples(conn, principal, rows)
    stored = {s.id: s for s in await store.get_samples(conn, [r["id"] for r in rows], principal.site_scope)}
    for r in rows:
        sample = stored.get(r["id"])
        if r["id"] in inserted and sample:
            outcomes[r["index"]] = SampleOutcome(index=r["index"], status=ItemStatus.CREATED, sample=sample)
        elif sample and sample.barcode == r["barcode"] and sample.stay_id == r["stay_id"]:
            outcomes[r["index"]] = SampleOutcome(index=r["index"], status=ItemStatus.REPLAYED, sample=sample)
        elif sample or r["id"] in inserted:
            outcomes[r["index"]] = SampleOutcome(
                index=r["index"], status=ItemStatus.FAILED, error=ItemError(code="sample_id_conflict", message="This id belongs to another sample.", field="id")
            )
        else:
            outcomes[r["index"]] = SampleOutcome(
                index=r["index"],
                status=ItemStatus.FAILED,
                error=ItemError(code="barcode_taken", message="This barcode is already on another tube.", field="barcode"),
            )
    return [outcomes[i] for i in sorted(outcomes)]


async def record_sample(conn: asyncpg.Connection, principal: Principal, data: SampleCreate) -> Sample:
    outcome = (await record_samples(conn, principal, [data]))[0]
    if outcome.sample is None:
        error = outcome.error or ItemError(code="failed", message="Not recorded.")
        raise (NotFound if error.code == "stay_not_found" else Conflict)(error.message, code=error.code, field=error.field)
    return outcome.sample


async def record_pool(conn: asyncpg.Connection, principal: Principal, data: PoolCreate) -> Sample:
    """Up to 10 residents' swabs in one tube. A replay (same id and barcode) answers the stored pool."""
    _require(principal, RECORD_ROLES, "record samples")
    await sites.get_site(conn, principal, data.site_id)
    if len({m.stay_id for m in data.members}) != len(data.members):
        raise InvalidInput("A resident appears twice in the pool.", code="duplicate_member", field="members")
    pool_id = data.id or uuid.uuid4()
    found = await store.stays_for_samples(conn, [m.stay_id for m in data.members], principal.site_scope)
    rows: list[dict[str, Any]] = [
        {
            "id": pool_id,
            "site_id": data.site_id,
            "stay_id": None,
            "pool_id": None,
            "barcode": data.barcode,
            "kind": data.kind.value,
            "scheduled_day": None,
            "members": len(data.members),
            "collected_at": data.collected_at,
        }
    ]
    for i, member in enumerate(data.members):
        stay = found.get(member.stay_id)
        if stay is None or stay["site_id"] != data.site_id:
            raise NotFound("No such stay at this site.", code="stay_not_found", field=f"members.{i}.stay_id")
        if stay["status"] != StayStatus.ACTIVE:
            raise Conflict("The stay has ended.", code="stay_closed", field=f"members.{i}.stay_id")
        rows.append(
            {
                "id": member.id or uuid.uuid5(pool_id, str(member.stay_id)),
                "site_id": data.site_id,
                "stay_id": member.stay_id,
                "pool_id": pool_id,
                "barcode": None,
                "kind": data.kind.value,
                "scheduled_day": _day_of(stay, data.collected_at),
                "members": 0,
                "collected_at": data.collected_at,
            }
        )
    inserted = await _insert_samples(conn, principal, rows)
    stored = await store.get_samples(conn, [pool_id], principal.site_scope)
    if pool_id not in inserted and not (stored and stored[0].barcode == data.barcode):
        # Whose the id is (another site's, too) shows no more than that it is taken.
        if stored or await store.get_samples(conn, [pool_id], None):
            raise Conflict("This id belongs to another sample.", code="sample_id_conflict", field="id")
        raise Conflict("This barcode is already on another tube.", code="barcode_taken", field="barcode")
    if pool_id in inserted and any(r["id"] not in inserted for r in rows[1:]):
        # A member's swab id already used (here or at another site): refuse the pool rather than drop that swab.
        raise Conflict("This id belongs to another sample.", code="sample_id_conflict", field="members")
    return stored[0]


# --- lab results ----------------------------------------------------------------------------


def _acting_for(principal: Principal) -> Principal:
    """Health rules act on a lab's result (seal the room, open reviews) within the lab's sites."""
    return Principal(kind=PrincipalKind.SYSTEM, id=principal.id, role=Role.MEDIC, site_ids=principal.site_ids, name="health rules")


async def upload_results(conn: asyncpg.Connection, principal: Principal, data: LabUpload) -> LabUploadResult:
    """Results by barcode, idempotent: the same result again is ``unchanged``; an unknown barcode
    (or one of another site) is reported per item; a different result for a resulted tube is a
    per-item ``conflict``. A positive pool opens individual retests of its members; a positive
    swab raises an alert, seals the room and opens an exposure review."""
    _require(principal, LAB_ROLES, "upload results")
    tubes = {r["barcode"]: dict(r) for r in await store.lock_samples_by_barcode(conn, sorted({r.barcode for r in data.results}), principal.site_scope)}
    items: list[LabOutcome] = []
    updates: list[tuple[UUID, str, list[float], datetime]] = []
    for index, result in enumerate(data.results):
        tube = tubes.get(result.barcode)
        if tube is None:
            items.append(LabOutcome(index=index, barcode=result.barcode, status=LabItemStatus.UNKNOWN_BARCODE))
            continue
        if tube["result"] == SampleResult.PENDING:
            tube["result"] = result.result.value
            updates.append((tube["id"], result.result.value, list(result.ct_values), result.resulted_at))
            status = LabItemStatus.RECORDED
        else:
            status = LabItemStatus.UNCHANGED if tube["result"] == result.result.value else LabItemStatus.CONFLICT
        items.append(LabOutcome(index=index, barcode=result.barcode, status=status, sample_id=tube["id"]))
    members = await store.set_results(conn, principal.ref, updates)
    await store.open_retests(conn, [m for m in members if m["result"] == SampleResult.RETEST])
    per_pool: dict[UUID, int] = {}
    for m in members:
        if m["result"] == SampleResult.RETEST:
            per_pool[m["pool_id"]] = per_pool.get(m["pool_id"], 0) + 1
    for item in items:
        if item.status is LabItemStatus.RECORDED and item.sample_id in per_pool:
            item.retests_opened = per_pool[item.sample_id]
    by_id = {t["id"]: t for t in tubes.values()}
    changed = [by_id[u[0]] for u in updates]
    await store.insert_audit(
        conn,
        principal.ref,
        principal.role.value,
        "sample.result",
        [(t["site_id"], t["stay_id"] or t["id"]) for t in changed] + [(m["site_id"], m["stay_id"]) for m in members],
        ["result", "ct_values"],
    )
    events = [
        (
            t["site_id"],
            "health.sample_resulted",
            t["id"],
            {"stay_id": str(t["stay_id"]) if t["stay_id"] else None, "result": t["result"], "pool": t["stay_id"] is None},
        )
        for t in changed
    ]
    events += [(by_id[p]["site_id"], "health.retests_opened", p, {"count": n}) for p, n in per_pool.items() if p in by_id]
    bus.track(await store.insert_events(conn, principal.ref, events))
    actor = _acting_for(principal)
    for tube in changed:
        if tube["result"] == SampleResult.POSITIVE and tube["stay_id"] is not None:
            await _positive(conn, actor, tube)
    return LabUploadResult.of(items)


async def _positive(conn: asyncpg.Connection, actor: Principal, tube: dict[str, Any]) -> None:
    """A positive swab: alert, seal the room, exposure review of the contacts and of the floor's staff."""
    stay = await stays.get_stay(conn, actor, tube["stay_id"])
    await raise_alert(conn, actor, stay, "positive", dedup_key=str(tube["id"]), detail={"sample_id": str(tube["id"]), "barcode": tube["barcode"]})
    if stay.status is StayStatus.ACTIVE:
        try:
            await sites.seal_room(conn, actor, stay.room_id, reason="positive test")
        except Conflict:
            pass  # e.g. the room is being disinfected already: nothing to seal
    await open_exposure_review(conn, actor, stay.id, reason=f"positive sample {tube['barcode']}", source=ExposureSource.POSITIVE)
    # The staff who worked that floor are exposed too (imported here: staffing reads this module's rules).
    from service.operations.staffing import service as staffing

    await staffing.open_exposure_reviews(conn, actor, stay, reason=f"positive sample {tube['barcode']}")


# --- alerts ---------------------------------------------------------------------------------


async def raise_alert(conn: asyncpg.Connection, principal: Principal, stay: Stay, kind: str, *, dedup_key: str, detail: dict[str, Any]) -> UUID | None:
    """Raise one alert (once per dedup_key); the event carries the site so subscribers can route it."""
    alert_id = await store.insert_alert(conn, site_id=stay.site_id, stay_id=stay.id, kind=kind, dedup_key=dedup_key, detail=detail)
    if alert_id is not None:
        await bus.emit(
            conn, "health.alert_raised", site_id=stay.site_id, subject_id=alert_id, actor=principal.ref,
            data={"stay_id": str(stay.id), "kind": kind, "version": 1},  # a new alert's first version (the column's default)
        )
    return alert_id


async def get_alert(conn: asyncpg.Connection, principal: Principal, alert_id: UUID) -> Alert:
    found = await store.get_alerts(conn, [alert_id], principal.site_scope)
    if not found:
        raise NotFound("No such alert.", code="alert_not_found")
    return found[0]


async def get_alerts(conn: asyncpg.Connection, principal: Principal, alert_ids: list[UUID]) -> dict[UUID, Alert]:
    return {a.id: a for a in await store.get_alerts(conn, alert_ids, principal.site_scope)}


async def get_samples(conn: asyncpg.Connection, principal: Principal, sample_ids: list[UUID]) -> dict[UUID, Sample]:
    """Samples among ``sample_ids`` at the caller's sites; others are absent."""
    return {s.id: s for s in await store.get_samples(conn, sample_ids, principal.site_scope)} if sample_ids else {}


async def list_site_alerts(
    conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, states: list[AlertState] | None, cursor: str | None, limit: int
) -> Page[Alert]:
    """A site's alerts, newest first (404 for another site)."""
    check_limit(limit)
    await sites.get_site(conn, principal, site_id)
    after = decode_cursor(cursor, [datetime, UUID])
    rows = await store.list_alerts(
        conn,
        site_id,
        principal.site_scope,
        states=[s.value for s in states] if states else None,
        after=(after[0], after[1]) if after else None,
        limit=limit + 1,
    )
    return page_of(rows, limit, lambda a: [a.raised_at.isoformat(), str(a.id)])


async def _move_alert(conn: asyncpg.Connection, principal: Principal, alert_id: UUID, data: AlertAction, *, to: AlertState, from_: list[AlertState]) -> Alert:
    current = await get_alert(conn, principal, alert_id)
    if not await store.set_alert_state(
        conn, alert_id, state=to.value, from_states=[s.value for s in from_], version=data.version, note=data.note, actor=principal.ref
    ):
        if current.state not in from_:
            raise Conflict(f"The alert is {current.state}.", code="alert_state_conflict", state=current.state.value)
        raise Conflict(f"The alert changed since version {data.version}.", code="stale_version", current_version=current.version)
    await store.insert_audit(conn, principal.ref, principal.role.value, f"alert.{to.value}", [(current.site_id, current.stay_id)], ["state", "note"])
    moved = await get_alert(conn, principal, alert_id)
    await bus.emit(
        conn,
        f"health.alert_{to.value}",
        site_id=current.site_id,
        subject_id=alert_id,
        actor=principal.ref,
        data={"stay_id": str(current.stay_id), "kind": current.kind.value, "version": moved.version},
    )
    return moved


async def acknowledge_alert(conn: asyncpg.Connection, principal: Principal, alert_id: UUID, data: AlertAction) -> Alert:
    _require(principal, ALERT_ROLES, "acknowledge alerts")
    return await _move_alert(conn, principal, alert_id, data, to=AlertState.ACKNOWLEDGED, from_=[AlertState.OPEN])


async def resolve_alert(conn: asyncpg.Connection, principal: Principal, alert_id: UUID, data: AlertAction) -> Alert:
    """A medic closes an alert, with a note saying what was done."""
    _require(principal, RESOLVE_ROLES, "resolve alerts")
    if len(data.note.strip()) < 3:
        raise InvalidInput("Say what was done (a note of at least 3 characters).", code="note_required", field="note")
    return await _move_alert(conn, principal, alert_id, data, to=AlertState.RESOLVED, from_=[AlertState.OPEN, AlertState.ACKNOWLEDGED])


async def sweep_missed_checkins(db: Database, settings: Settings, *, now: datetime | None = None) -> int:
    """Raise missed_checkin alerts for slots past the grace period (a Job: one instance at a time)."""
    async with db.transaction() as conn:
        events = await store.sweep_missed_checkins(conn, now=now or _now(), grace_minutes=settings.missed_checkin_grace_minutes)
        bus.track(events)
    return len(events)


# --- worklists, timeline, forecast ------------------------------------------------------------


async def checkins_due(
    conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, floor: int | None = None, now: datetime | None = None
) -> list[CheckinDue]:
    """Residents whose check-in for the current slot is not in, by floor and room (404 for another site)."""
    await sites.get_site(conn, principal, site_id)
    return await store.checkins_due(conn, site_id, principal.site_scope, floor=floor, now=now or _now())


async def swabs_due(conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, floor: int | None = None, now: datetime | None = None) -> list[SwabDue]:
    """Residents to swab, by floor and room: a test day so far without a usable swab (today's or one
    missed earlier) or a retest not swabbed yet. The rule is the release check's (stay_test_status)."""
    await sites.get_site(conn, principal, site_id)
    return await store.swabs_due(conn, site_id, principal.site_scope, floor=floor, now=now or _now())


async def timeline(conn: asyncpg.Connection, principal: Principal, stay_id: UUID, *, limit: int = 200) -> Timeline:
    """A stay's check-ins (latest ``limit``), samples and alerts, newest first."""
    await stays.get_stay(conn, principal, stay_id)
    scope = principal.site_scope
    return Timeline(
        stay_id=stay_id,
        checkins=await store.stay_checkins(conn, [stay_id], scope, limit),
        samples=await store.stay_samples(conn, [stay_id], scope),
        alerts=await store.stay_alerts(conn, [stay_id], scope),
    )


async def swabs_scheduled(conn: asyncpg.Connection, site_ids: list[UUID] | None, days: int, *, now: datetime | None = None) -> dict[UUID, int]:
    """Swabs due per site over the next ``days`` days, today included (``site_ids``: principal.site_scope)."""
    if days < 1:
        return {}
    return await store.swabs_scheduled(conn, site_ids, days=days, now=now or _now())


# --- release --------------------------------------------------------------------------------


async def release_blockers(conn: asyncpg.Connection, stay: Stay, *, now: datetime | None = None) -> list[Blocker]:
    """Health's reasons a stay cannot be released, every one that applies: a positive test, an open
    retest, and each scheduled test day so far that is not negative, on its own: ``scheduled_test_not_negative``
    (swabbed: result pending, positive or a pool to retest) or ``scheduled_test_missing`` (overdue: never swabbed, or only invalid results).

    The rule (stay_test_status, migration 0035) is the one the swab worklist reads.
    """
    regime = await stays.regime_of(conn, stay)
    row = await store.release_blockers(
        conn, resident_id=stay.resident_id, day_one=stay.day_one, test_days=regime.test_days, today_day=stays.quarantine_day(stay, now)
    )
    blockers = []
    if row["positive"]:
        blockers.append(Blocker(reason="test_positive"))
    if row["retest_open"]:
        blockers.append(Blocker(reason="retest_pending"))
    missing = set(row["days_unswabbed"])
    for day in row["days_not_negative"]:
        blockers.append(Blocker(reason="scheduled_test_missing" if day in missing else "scheduled_test_not_negative", day=day))
    return blockers


# --- exposure reviews -----------------------------------------------------------------------


async def open_exposure_review(
    conn: asyncpg.Connection, principal: Principal, stay_id: UUID, *, reason: str, source: ExposureSource | str, exposed_at: datetime | None = None
) -> list[ExposureReview]:
    """Mark roommates, household and floor neighbours of ``stay_id`` for exposure review.

    Called when a positive result arrives and when a transfer departs (the stay may be closed).
    A contact already under an open review for this source is not marked twice. Answers the
    reviews opened now.
    """
    source = ExposureSource(source)
    contacts = await stays.contacts(conn, principal, stay_id)
    members: dict[UUID, str] = {}
    for relation, group in (
        (Relation.ROOMMATE, contacts.roommates),
        (Relation.HOUSEHOLD, contacts.household),
        (Relation.FLOOR_NEIGHBOUR, contacts.floor_neighbours),
    ):
        for contact in group:
            members.setdefault(contact.id, relation.value)
    ids = await store.insert_reviews(
        conn,
        source_stay_id=stay_id,
        members=list(members.items()),
        source=source.value,
        reason=reason[:500],
        exposed_at=exposed_at or _now(),
        actor=principal.ref,
    )
    reviews = await store.get_reviews(conn, ids, None)
    await store.insert_audit(conn, principal.ref, principal.role.value, "exposure_review.open", [(r.site_id, r.stay_id) for r in reviews], ["exposure"])
    by_site: dict[UUID, list[str]] = {}
    for r in reviews:
        by_site.setdefault(r.site_id, []).append(str(r.id))
    bus.track(
        await store.insert_events(
            conn,
            principal.ref,
            [(site, "health.exposure_review_opened", stay_id, {"source": source.value, "review_ids": rids}) for site, rids in by_site.items()],
        )
    )
    return reviews


async def list_exposure_reviews(
    conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, state: ReviewState | None = ReviewState.OPEN, limit: int = 100
) -> list[ExposureReview]:
    await sites.get_site(conn, principal, site_id)
    return await store.list_reviews(conn, site_id, principal.site_scope, state=state.value if state else None, limit=check_limit(limit))


async def get_exposure_reviews(conn: asyncpg.Connection, principal: Principal, review_ids: list[UUID]) -> dict[UUID, ExposureReview]:
    """Reviews by id within the caller's sites (another site's: absent)."""
    return {r.id: r for r in await store.get_reviews(conn, review_ids, principal.site_scope)}


async def decide_exposure_review(conn: asyncpg.Connection, principal: Principal, review_id: UUID, data: ReviewDecision) -> ExposureReview:
    """Confirm (the stay is extended as its regime says) or dismiss an open review."""
    _require(principal, REVIEW_ROLES, "decide exposure reviews")
    found = await store.get_reviews(conn, [review_id], principal.site_scope)
    if not found:
        raise NotFound("No such exposure review.", code="review_not_found")
    review = found[0]
    state = ReviewState.CONFIRMED if data.confirm else ReviewState.DISMISSED
    if not await store.decide_review(conn, review_id, state=state.value, version=data.version, note=data.note, actor=principal.ref):
        if review.state is not ReviewState.OPEN:
            raise Conflict(f"The review is already {review.state}.", code="review_decided", state=review.state.value)
        raise Conflict(f"The review changed since version {data.version}.", code="stale_version", current_version=review.version)
    if data.confirm:
        try:
            await stays.extend_stay(conn, principal, review.stay_id, Extension(exposed_at=review.exposed_at, reason=f"exposure review ({review.relation})"))
        except Conflict as exc:
            if exc.code != "stay_closed":
                raise
    await store.insert_audit(conn, principal.ref, principal.role.value, f"exposure_review.{state.value}", [(review.site_id, review.stay_id)], ["exposure"])
    (decided,) = await store.get_reviews(conn, [review_id], None)
    await bus.emit(
        conn,
        f"health.exposure_review_{state.value}",
        site_id=review.site_id,
        subject_id=review_id,
        actor=principal.ref,
        data={"stay_id": str(review.stay_id), "source_stay_id": str(review.source_stay_id), "version": decided.version},
    )
    return decided
