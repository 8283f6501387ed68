"""The only code that runs the health domain's SQL (db/queries/health.sql); rows -> Structs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg
import msgspec

from service.access.model import Principal
from service.bus import Event
from service.db import queries
from service.errors import register_constraint
from service.health.model import Alert, Checkin, CheckinCreate, CheckinDue, ExposureReview, Sample, SwabDue, Symptom
from service.observability import current_request_id

Q = queries("health")

register_constraint("samples_barcode_key", "barcode_taken", "This barcode is already on another tube.")
register_constraint("samples_members_check", "pool_too_large", "A pool holds at most 10 swabs.")


def _structs(cls: type, rows: list[asyncpg.Record]) -> list[Any]:
    return [msgspec.convert(dict(r), cls) for r in rows]


class CheckinRows(msgspec.Struct):
    """What record_checkins answered, decoded."""

    created: list[Checkin]  # empty unless records were asked for
    created_ids: set[UUID]
    stored: list[Checkin]
    rejected: dict[int, str]  # item position (0-based) -> verdict
    events: list[Event]


class Caller(NamedTuple):
    """Who sent some of the items of a record_checkins statement."""

    principal: Principal
    request_id: str | None


_dec_checkins = msgspec.json.Decoder(list[Checkin])
_dec_rejected = msgspec.json.Decoder(dict[int, str])
_dec_data = msgspec.json.Decoder(dict[str, Any])


class _Item(msgspec.Struct, omit_defaults=True):
    """One item as record_checkins reads it (jsonb_to_recordset): defaults are left out, the SQL fills them in."""

    id: UUID
    stay_id: UUID
    recorded_at: datetime
    caller: int  # 1-based
    temperature_c: float | None = None
    spo2: int | None = None
    pulse: int | None = None
    symptoms: list[Symptom] = []
    note: str = ""


async def record_checkins(
    conn: asyncpg.Connection, items: Sequence[tuple[UUID, CheckinCreate, int]], callers: Sequence[Caller], *, records: bool, **rules: Any
) -> CheckinRows:
    """Run record_checkins over ``items`` ((id, input, index into ``callers``)); ``rules`` are the alert thresholds."""
    scope_callers: list[int] = []
    scope_sites: list[UUID] = []
    for number, caller in enumerate(callers, 1):
        sites = caller.principal.site_scope or ()
        scope_callers += [number] * len(sites)
        scope_sites += sites
    row = await Q.record_checkins(
        conn,
        items=[_Item(i, c.stay_id, c.recorded_at, k + 1, c.temperature_c, c.spo2, c.pulse, c.symptoms, c.note) for i, c, k in items],
        actors=[c.principal.ref for c in callers],
        actor_roles=[c.principal.role.value for c in callers],
        request_ids=[c.request_id for c in callers],
        everywhere=[c.principal.site_scope is None for c in callers],
        scope_callers=scope_callers,
        scope_sites=scope_sites,
        records=records,
        **rules,
    )
    return CheckinRows(
        created=_dec_checkins.decode(row["created"]) if row["created"] else [],
        created_ids=set(row["created_ids"]),
        stored=_dec_checkins.decode(row["stored"]) if row["stored"] else [],
        rejected={n - 1: v for n, v in _dec_rejected.decode(row["rejected"]).items()} if row["rejected"] else {},
        # the events as one array per column (see the statement), in insertion order
        events=[
            Event(event_id, site_id, event_type, subject_id, _dec_data.decode(data), actor, at)
            for event_id, site_id, event_type, subject_id, data, actor, at in zip(
                row["event_ids"], row["event_sites"], row["event_types"], row["event_subjects"], row["event_data"], row["event_actors"],
                row["event_at"], strict=True,
            )
        ] if row["event_ids"] else [],
    )


async def get_checkins(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[Checkin]:
    return _structs(Checkin, [r async for r in Q.get_checkins(conn, ids=ids, site_ids=site_ids)])


async def stay_checkins(conn: asyncpg.Connection, stay_ids: list[UUID], site_ids: list[UUID] | None, limit: int) -> list[Checkin]:
    return _structs(Checkin, [r async for r in Q.stay_checkins(conn, stay_ids=stay_ids, site_ids=site_ids, limit=limit)])


async def insert_events(conn: asyncpg.Connection, actor: str, events: list[tuple[UUID | None, str, UUID | None, dict[str, Any]]]) -> list[Event]:
    if not events:
        return []
    rows = [
        r
        async for r in Q.insert_events(
            conn,
            actor=actor,
            request_id=current_request_id(),
            site_ids=[e[0] for e in events],
            types=[e[1] for e in events],
            subject_ids=[e[2] for e in events],
            datas=[msgspec.json.encode(e[3]).decode() for e in events],
        )
    ]
    return [Event(**dict(r)) for r in rows]


async def insert_audit(
    conn: asyncpg.Connection, actor: str, actor_role: str, action: str, rows: list[tuple[UUID | None, UUID | None]], fields: list[str]
) -> None:
    if rows:
        await Q.insert_audit(
            conn,
            actor=actor,
            actor_role=actor_role,
            action=action,
            fields=fields,
            request_id=current_request_id(),
            site_ids=[r[0] for r in rows],
            subject_ids=[r[1] for r in rows],
        )


async def stays_for_samples(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> dict[UUID, asyncpg.Record]:
    return {r["id"]: r async for r in Q.active_stays_for_samples(conn, ids=ids, site_ids=site_ids)}


async def insert_samples(conn: asyncpg.Connection, actor: str, rows: list[dict[str, Any]]) -> set[UUID]:
    if not rows:
        return set()
    cols = ["id", "site_id", "stay_id", "pool_id", "barcode", "kind", "scheduled_day", "members", "collected_at"]
    params = {c if c == "members" else f"{c}s": [r[c] for r in rows] for c in cols}
    return {r["id"] async for r in Q.insert_samples(conn, actor=actor, **params)}


async def get_samples(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[Sample]:
    return _structs(Sample, [r async for r in Q.get_samples(conn, ids=ids, site_ids=site_ids)])


async def samples_by_barcode(conn: asyncpg.Connection, barcodes: list[str]) -> dict[str, tuple[UUID, UUID]]:
    return {r["barcode"]: (r["id"], r["site_id"]) async for r in Q.samples_by_barcode(conn, barcodes=barcodes)}


async def stay_samples(conn: asyncpg.Connection, stay_ids: list[UUID], site_ids: list[UUID] | None) -> list[Sample]:
    return _structs(Sample, [r async for r in Q.stay_samples(conn, stay_ids=stay_ids, site_ids=site_ids)])


async def fulfil_retests(conn: asyncpg.Connection, pairs: list[tuple[UUID, UUID]]) -> None:
    if pairs:
        [r async for r in Q.fulfil_retests(conn, stay_ids=[p[0] for p in pairs], sample_ids=[p[1] for p in pairs])]


async def lock_samples_by_barcode(conn: asyncpg.Connection, barcodes: list[str], site_ids: list[UUID] | None) -> list[asyncpg.Record]:
    return [r async for r in Q.lock_samples_by_barcode(conn, barcodes=barcodes, site_ids=site_ids)]


async def set_results(conn: asyncpg.Connection, actor: str, updates: list[tuple[UUID, str, list[float], datetime]]) -> list[asyncpg.Record]:
    """Set tube results; answers the pool members changed with them."""
    if not updates:
        return []
    return [
        r
        async for r in Q.set_results(
            conn,
            actor=actor,
            ids=[u[0] for u in updates],
            results=[u[1] for u in updates],
            ct_values=["{" + ",".join(repr(float(v)) for v in u[2]) + "}" for u in updates],
            resulted_ats=[u[3] for u in updates],
        )
    ]


async def open_retests(conn: asyncpg.Connection, members: list[asyncpg.Record]) -> list[asyncpg.Record]:
    if not members:
        return []
    return [
        r
        async for r in Q.open_retests(
            conn,
            site_ids=[m["site_id"] for m in members],
            stay_ids=[m["stay_id"] for m in members],
            pool_ids=[m["pool_id"] for m in members],
            scheduled_days=[m["scheduled_day"] for m in members],
        )
    ]


async def release_blockers(conn: asyncpg.Connection, *, resident_id: UUID, day_one: date, test_days: list[int], today_day: int) -> asyncpg.Record:
    return await Q.release_blockers(conn, resident_id=resident_id, day_one=day_one, test_days=test_days, today_day=today_day)


async def insert_alert(conn: asyncpg.Connection, *, site_id: UUID, stay_id: UUID, kind: str, dedup_key: str, detail: dict[str, Any]) -> UUID | None:
    row = await Q.insert_alert(conn, site_id=site_id, stay_id=stay_id, kind=kind, dedup_key=dedup_key, detail=detail)
    return row["id"] if row else None


async def get_alerts(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[Alert]:
    return _structs(Alert, [r async for r in Q.get_alerts(conn, ids=ids, site_ids=site_ids)])


async def stay_alerts(conn: asyncpg.Connection, stay_ids: list[UUID], site_ids: list[UUID] | None) -> list[Alert]:
    return _structs(Alert, [r async for r in Q.stay_alerts(conn, stay_ids=stay_ids, site_ids=site_ids)])


async def list_alerts(
    conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, *, states: list[str] | None, after: tuple[datetime, UUID] | None, limit: int
) -> list[Alert]:
    rows = Q.list_alerts(
        conn, site_id=site_id, site_ids=site_ids, states=states, after_at=after[0] if after else None, after_id=after[1] if after else None, limit=limit
    )
    return _structs(Alert, [r async for r in rows])


async def set_alert_state(
    conn: asyncpg.Connection, alert_id: UUID, *, state: str, from_states: list[str], version: int, note: str, actor: str
) -> bool:
    row = await Q.set_alert_state(conn, id=alert_id, state=state, from_states=from_states, version=version, note=note, actor=actor)
    return row is not None


async def sweep_missed_checkins(conn: asyncpg.Connection, *, now: datetime, grace_minutes: int) -> list[Event]:
    return [Event(**dict(r)) async for r in Q.sweep_missed_checkins(conn, now=now, grace_minutes=grace_minutes)]


async def checkins_due(conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, *, floor: int | None, now: datetime) -> list[CheckinDue]:
    return _structs(CheckinDue, [r async for r in Q.checkins_due(conn, site_id=site_id, site_ids=site_ids, floor=floor, now=now)])


async def swabs_due(conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, *, floor: int | None, now: datetime) -> list[SwabDue]:
    return _structs(SwabDue, [r async for r in Q.swabs_due(conn, site_id=site_id, site_ids=site_ids, floor=floor, now=now)])


async def swabs_scheduled(conn: asyncpg.Connection, site_ids: list[UUID] | None, *, days: int, now: datetime) -> dict[UUID, int]:
    return {r["site_id"]: r["n"] async for r in Q.swabs_scheduled(conn, site_ids=site_ids, days=days, now=now)}


async def insert_reviews(
    conn: asyncpg.Connection, *, source_stay_id: UUID, members: list[tuple[UUID, str]], source: str, reason: str, exposed_at: datetime, actor: str
) -> list[UUID]:
    if not members:
        return []
    rows = Q.insert_reviews(
        conn,
        source_stay_id=source_stay_id,
        stay_ids=[m[0] for m in members],
        relations=[m[1] for m in members],
        source=source,
        reason=reason,
        exposed_at=exposed_at,
        actor=actor,
    )
    return [r["id"] async for r in rows]


async def get_reviews(conn: asyncpg.Connection, ids: list[UUID], site_ids: list[UUID] | None) -> list[ExposureReview]:
    return _structs(ExposureReview, [r async for r in Q.get_reviews(conn, ids=ids, site_ids=site_ids)])


async def list_reviews(conn: asyncpg.Connection, site_id: UUID, site_ids: list[UUID] | None, *, state: str | None, limit: int) -> list[ExposureReview]:
    return _structs(ExposureReview, [r async for r in Q.list_reviews(conn, site_id=site_id, site_ids=site_ids, state=state, limit=limit)])


async def decide_review(conn: asyncpg.Connection, review_id: UUID, *, state: str, version: int, note: str, actor: str) -> bool:
    return await Q.decide_review(conn, id=review_id, state=state, version=version, note=note, actor=actor) is not None
