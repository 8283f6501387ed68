"""Offline replay: the writes a staff app queued without signal, sent in one ``syncWrites``.

Phones on night shifts lose the network for hours; they queue every write and replay the
queue when they are back, possibly twice (a lost answer), possibly from two devices, in any
order. ``syncWrites(input: {writes: [{key, write: {<kind>: <that mutation's input>}}]})``:

- ``write`` is a ``@oneOf`` input: exactly one field, named after the mutation it replays
  (``acknowledgeAlert``, ``turnOverRoom``...) and holding that mutation's own input type. Each
  kind is declared by its domain as an ``OfflineWrite`` (service/gql.py) next to the mutation,
  and runs the same preparation and service function: there is no second copy of any write.
- ``key`` is the write's Idempotency-Key (service/idempotency.py, the one mechanism), scoped to
  the caller like a header key: the same key with the same arguments answers the first answer
  (``replayed``); with other arguments ``conflict`` ``idempotency_key_reused``. An item whose key
  another instance is running waits for it, then answers its result. (A header key on the call
  itself only binds to the call's arguments, as on every mutation.)
- Each item runs in its own transaction, in the order sent: one refused item leaves the others
  alone. Outcomes: ``created`` (written now), ``replayed`` (nothing new written: the stored answer
  of the same key, or the domain's own replay of a client id), ``conflict`` (a 409: the record
  moved on, e.g. ``stale_version``, ``invalid_room_transition``, ``stay_closed``: with ``record``
  and ``version`` as the server has them NOW), ``failed`` (any other refusal: code and field).
- ``changeIds``: the outbox events the write committed (the changes feed's ids), kept with the
  key's answer, so that a catching-up app can skip the changes it made itself.

Versions: what a conflict reports is the ``version`` column of the record the write acts on
(alert, exposure review, room, stay, transfer, replenishment, stock level, care request or
profile), bumped by every
change of it in the same statement. Check-ins, swabs and stock movements are append-only (never
change), so they have none: their conflicts are about the stay, stock level or worker they belong to,
which report theirs. Disinfection tasks move with their room (its version). No column was added:
every record a queued write can conflict on already carries one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import msgspec
import strawberry

from service import bus, idempotency, policy
from service.access.model import Principal
from service.errors import DATABASE_ERRORS, Busy, DomainError, Forbidden, InvalidInput, Unavailable, from_database
from service.gql import Context, Ctx, OfflineWrite, UserError, Write, camel, mutate
from service.health import gql as health
from service.operations.care import gql as care
from service.operations.staffing import gql as staffing
from service.sites import gql as sites
from service.stays import gql as stays
from service.supplies import gql as supplies
from service.transfers import gql as transfers

MAX_WRITES = 100

# Every kind a phone may queue, by the SyncWrite field that carries it.
KINDS: dict[str, OfflineWrite] = {
    **health.OFFLINE_WRITES,
    **sites.OFFLINE_WRITES,
    **stays.OFFLINE_WRITES,
    **transfers.OFFLINE_WRITES,
    **supplies.OFFLINE_WRITES,
    **care.OFFLINE_WRITES,
    **staffing.OFFLINE_WRITES,
}


@strawberry.input(one_of=True, description="One queued write: exactly one field, the mutation it replays, with that mutation's input.")
class SyncWrite:
    record_checkin: health.RecordCheckinInput | None = strawberry.UNSET
    record_sample: health.RecordSampleInput | None = strawberry.UNSET
    record_pool: health.RecordPoolInput | None = strawberry.UNSET
    acknowledge_alert: health.AlertActionInput | None = strawberry.UNSET
    resolve_alert: health.AlertActionInput | None = strawberry.UNSET
    decide_exposure_review: health.DecideExposureReviewInput | None = strawberry.UNSET
    turn_over_room: sites.TurnOverRoomInput | None = strawberry.UNSET
    admit_resident: stays.AdmitInput | None = strawberry.UNSET
    move_stay: stays.MoveStayInput | None = strawberry.UNSET
    release_stay: stays.ReleaseStayInput | None = strawberry.UNSET
    extend_stay: stays.ExtendStayInput | None = strawberry.UNSET
    request_transfer: transfers.RequestTransferInput | None = strawberry.UNSET
    move_transfer: transfers.MoveTransferInput | None = strawberry.UNSET
    record_stock_movement: supplies.RecordStockMovementInput | None = strawberry.UNSET
    raise_replenishment: supplies.RaiseReplenishmentInput | None = strawberry.UNSET
    receive_replenishment: supplies.ReceiveReplenishmentInput | None = strawberry.UNSET
    set_care_profile: care.SetCareProfileInput | None = strawberry.UNSET
    create_care_request: care.CreateCareRequestInput | None = strawberry.UNSET
    move_care_request: care.MoveCareRequestInput | None = strawberry.UNSET
    record_care_stock_issue: care.RecordCareStockIssueInput | None = strawberry.UNSET
    record_staff_checkin: staffing.RecordStaffCheckinInput | None = strawberry.UNSET
    record_staff_sample: staffing.RecordStaffSampleInput | None = strawberry.UNSET


@strawberry.input(description="A write as the phone queued it.")
class QueuedWrite:
    key: str = strawberry.field(
        description="The write's Idempotency-Key, made on the phone when the write was queued and kept until answered "
        "(1-255 printable ASCII). The same key again answers the first answer."
    )
    write: SyncWrite


@strawberry.input
class SyncWritesInput:
    writes: list[QueuedWrite] = strawberry.field(description=f"1-{MAX_WRITES} queued writes, run one by one in this order.")


class SyncWriteStatus(StrEnum):
    CREATED = "created"
    REPLAYED = "replayed"
    CONFLICT = "conflict"
    FAILED = "failed"


strawberry.enum(SyncWriteStatus, name="SyncWriteStatus", description="created: written now; replayed: written before "
                "(nothing new); conflict: the record moved on (see record and version); failed: refused (see error).")

SyncRecord = Annotated[
    health.Checkin
    | health.Sample
    | health.Alert
    | health.ExposureReview
    | sites.Room
    | stays.Stay
    | transfers.Transfer
    | supplies.StockMovement
    | supplies.SupplyStockLevel
    | supplies.Replenishment
    | care.CareProfile
    | care.CareRequest
    | care.CareIssue
    | staffing.StaffCheckin
    | staffing.StaffSample
    | staffing.Worker,
    strawberry.union("SyncRecord", description="What a queued write wrote, or what its conflict is about."),
]


@strawberry.type(description="What happened to one queued write.")
class SyncWriteOutcome:
    index: int = strawberry.field(description="Its position in `writes`.")
    key: str
    kind: str = strawberry.field(description="The SyncWrite field it carried (`acknowledgeAlert`...).")
    status: SyncWriteStatus
    record: SyncRecord | None = strawberry.field(
        description="created / replayed: the write's answer (the first answer, for a replayed key); "
        "conflict: the record the write acts on as the server has it now (null when the caller cannot see it)."
    )
    version: int | None = strawberry.field(description="`record`'s version (null for append-only records): what the app compares.")
    change_ids: list[int] = strawberry.field(
        description="The changes this write committed, by their id in the changes feed (`changes`, `siteEvents`): "
        "a catching-up app skips them, it made them. The same ids when the key is replayed; empty when nothing was written."
    )
    error: UserError | None = strawberry.field(description="conflict / failed: the code, the field under `writes`, and `extra`.")


@strawberry.type
class SyncWritesPayload:
    created: int = 0
    replayed: int = 0
    conflicts: int = 0
    failed: int = 0
    items: list[SyncWriteOutcome] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _chosen(write: SyncWrite) -> tuple[str, Any]:
    """The one field set (graphql-core enforces @oneOf before any resolver runs)."""
    for name in KINDS:
        value = getattr(write, name, strawberry.UNSET)
        if value is not strawberry.UNSET and value is not None:
            return name, value
    raise InvalidInput("Give exactly one write.", code="invalid_input", field="write")


def _fingerprint(name: str, value: Any) -> bytes:
    """The kind and its full input, canonical: the same write re-serialised still replays."""
    return idempotency.request_fingerprint("sync", name, msgspec.json.encode(strawberry.asdict(value), order="sorted", enc_hook=str))


class _Stored(msgspec.Struct):
    """What an item's key keeps: the write's answer and the ids of the changes (outbox events) it committed."""

    result: msgspec.Raw
    changes: list[int]


class _Item:
    """One queued write being answered: where it is in the input, what it carried."""

    def __init__(self, index: int, queued: QueuedWrite) -> None:
        self.index, self.key = index, queued.key
        self.name, self.value = _chosen(queued.write)
        self.kind = KINDS[self.name]
        self.where = f"writes[{index}].write.{self.name}"

    def outcome(self, status: SyncWriteStatus, record: Any = None, error: UserError | None = None, changes: list[int] | None = None) -> SyncWriteOutcome:
        return SyncWriteOutcome(
            index=self.index, key=self.key, kind=camel(self.name), status=status, record=record,
            version=getattr(record, "version", None), change_ids=changes or [], error=error,
        )

    def error(self, code: str, message: str, field: str | None, extra: Any = None) -> UserError:
        """A userError whose field is the path under this item (``writes[3].write.acknowledgeAlert.version``)."""
        where = f"writes[{self.index}].key" if field == idempotency.HEADER else f"{self.where}.{field}" if field else None
        return UserError(field=where, code=code, message=message, extra=strawberry.scalars.JSON(extra) if extra else None)


async def _run(ctx: Context, principal: Principal, item: _Item) -> SyncWriteOutcome:
    if not policy.allows(principal, item.kind.operation):
        denied = Forbidden(f"The role {principal.role} may not {policy.rule(item.kind.operation).summary.lower()}.", code="role_not_allowed")
        return item.outcome(SyncWriteStatus.FAILED, error=item.error(denied.code, denied.message, None))
    try:
        key = idempotency.validate_key(item.key) or ""
    except InvalidInput as exc:
        return item.outcome(SyncWriteStatus.FAILED, error=item.error(exc.code, exc.message, idempotency.HEADER))
    prepared = item.kind.prepare(ctx, principal, item.value)
    if isinstance(prepared, list):
        first = prepared[0]
        return item.outcome(SyncWriteStatus.FAILED, error=item.error(first.code, first.message, first.field, first.extra))
    write: Write[Any] = prepared

    async def work(conn: Any) -> _Stored:
        before = len(bus.emitted())
        result = await write.work(conn)
        changes = [event.id for event in bus.emitted()[before:]]
        return _Stored(result=msgspec.Raw(msgspec.json.encode(result)), changes=changes)

    try:
        answer = await idempotency.answer_once(
            ctx.db, caller=principal.ref, key=f"sync:{key}", fingerprint=_fingerprint(item.name, item.value), work=work, wait=True
        )
    except Busy as exc:  # this record is hot right now: the item may be sent again, the rest go on
        return item.outcome(SyncWriteStatus.FAILED, error=item.error(exc.code, exc.message, None))
    except Unavailable:
        raise  # the database is gone: a top-level error, the app sends the whole queue again later
    except DomainError as exc:
        return await _refused(ctx, principal, item, exc)
    except DATABASE_ERRORS as exc:
        mapped = from_database(exc)
        if mapped is None or (isinstance(mapped, Unavailable) and not isinstance(mapped, Busy)):
            raise
        return await _refused(ctx, principal, item, mapped)
    stored = msgspec.json.decode(answer.body, type=_Stored)
    record = item.kind.record(msgspec.json.decode(stored.result, type=write.result_type))
    # No event: the domain answered a record it held already (its client id), or nothing changed.
    replayed = answer.replayed or not stored.changes
    return item.outcome(SyncWriteStatus.REPLAYED if replayed else SyncWriteStatus.CREATED, record, changes=stored.changes)


async def _refused(ctx: Context, principal: Principal, item: _Item, exc: DomainError) -> SyncWriteOutcome:
    """A refusal: a conflict (409, or the key reused for other arguments) reports the record now; else failed."""
    error = item.error(exc.code, exc.message, exc.field, exc.extra)
    if exc.status != 409 and exc.code != "idempotency_key_reused":
        return item.outcome(SyncWriteStatus.FAILED, error=error)
    async with ctx.db.connection() as conn:
        current = await item.kind.current(conn, ctx, principal, item.value)
    return item.outcome(SyncWriteStatus.CONFLICT, current, error)


async def sync_writes(ctx: Context, writes: list[QueuedWrite]) -> SyncWritesPayload:
    principal = ctx.require_principal()
    if not 1 <= len(writes) <= MAX_WRITES:
        return SyncWritesPayload(user_errors=[UserError(field="writes", code="invalid_batch_size", message=f"Send 1-{MAX_WRITES} writes at once.")])
    items = [await _run(ctx, principal, _Item(index, queued)) for index, queued in enumerate(writes)]
    count = {s: sum(i.status is s for i in items) for s in SyncWriteStatus}
    return SyncWritesPayload(
        created=count[SyncWriteStatus.CREATED],
        replayed=count[SyncWriteStatus.REPLAYED],
        conflicts=count[SyncWriteStatus.CONFLICT],
        failed=count[SyncWriteStatus.FAILED],
        items=items,
    )


@strawberry.type
class Mutation:
    @strawberry.mutation(
        permission_classes=[policy.gql("sync.write")],
        description="Replay writes queued offline, each on its own (its own transaction, its own key): "
        "created, replayed, conflict (with the record and version now) or failed.",
    )
    async def sync_writes(self, info: Ctx, input: SyncWritesInput) -> SyncWritesPayload:
        # An Idempotency-Key header, like on every mutation, binds to this call's arguments (another call
        # with it: idempotency_key_reused). Nothing is stored under it: each item replays by its own key.
        request = info.context.request
        if request is not None and request.headers.get(idempotency.HEADER) is not None:
            _, errors = await mutate(info, _nothing, result_type=bool, replay=False)
            if errors:
                return SyncWritesPayload(user_errors=errors)
        return await sync_writes(info.context, input.writes)


async def _nothing(conn: Any) -> bool:
    return True
