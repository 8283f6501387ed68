"""Intake rules: referrals from contact tracing, the pending-admission queue, risk areas.

A referral moves ``pending -> assigned -> arrived | cancelled | no_show`` (a pending referral may
also be admitted or cancelled directly). One person has at most one open referral: a second
submission merges into it. Admission from a referral opens the stay through the stays domain and
links it; the time from identification to isolation is measured from the earliest identification.

Arrival manifests announce a vehicle and the referrals on board; the beds reserved for them (by the
stays domain's allocation rules) are consumed on arrival and freed by a no-show or a cancellation.

Functions other domains call (connection inside the caller's transaction, the caller's Principal):

- ``risk_level_of(conn, area_code, at)``   the level of a risk area at a moment (None: not a risk area)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg

from service import bus, policy
from service.access import crypto
from service.access.model import Principal
from service.errors import Conflict, Forbidden, InvalidInput, NotFound
from service.fields import BACKDATE_LIMIT, CLOCK_SKEW
from service.intake import store
from service.intake.model import (
    OPEN_STATES,
    Assignment,
    Closing,
    IsolationTimes,
    Manifest,
    ManifestArrival,
    ManifestCreate,
    ManifestState,
    MemberState,
    Referral,
    ReferralAdmission,
    ReferralCreate,
    ReferralState,
    ReferralSubmitted,
    RiskArea,
    RiskAreaCreate,
)
from service.pagination import Page, check_limit, decode_cursor, page_of
from service.settings import Settings
from service.sites import service as sites
from service.stays import service as stays
from service.stays.model import Admission, BedRequest, ResidentCreate, RiskLevel, Stay

_RANK = {None: 0, RiskLevel.LOW: 1, RiskLevel.MEDIUM: 2, RiskLevel.HIGH: 3}
MAX_TIMES_DAYS = 93


def _now() -> datetime:
    return datetime.now(UTC)


def _require(principal: Principal, operation: str) -> None:
    if principal.role not in policy.roles(operation):
        raise Forbidden(f"The role {principal.role} may not do this.", code="role_not_allowed")


# --- risk areas -------------------------------------------------------------------


async def declare_risk_area(conn: asyncpg.Connection, principal: Principal, data: RiskAreaCreate) -> RiskArea:
    """A risk area at a level over a period; 409 ``risk_area_overlap`` when a period of the area overlaps."""
    _require(principal, "risk_areas.manage")
    await store.lock_risk_area_code(conn, data.code)
    if await store.overlapping_risk_area(conn, data.code, data.valid_from, data.valid_to):
        raise Conflict("The area already has a level for part of this period; end that period first.", code="risk_area_overlap")
    area = await store.insert_risk_area(
        conn, code=data.code, name=data.name, level=data.level, valid_from=data.valid_from, valid_to=data.valid_to, actor=principal.ref
    )
    await bus.emit(conn, "intake.risk_area_declared", site_id=None, subject_id=area.id, actor=principal.ref,
                   data={"code": area.code, "level": area.level.value})
    return area


async def list_risk_areas(conn: asyncpg.Connection, *, code: str | None = None, at: datetime | None = None) -> list[RiskArea]:
    return await store.list_risk_areas(conn, code, at)


async def risk_level_of(conn: asyncpg.Connection, area_code: str | None, at: datetime) -> RiskLevel | None:
    if not area_code:
        return None
    level = await store.risk_level_at(conn, area_code, at)
    return None if level is None else RiskLevel(level)


# --- referrals --------------------------------------------------------------------


async def get_referral(conn: asyncpg.Connection, principal: Principal, referral_id: UUID) -> Referral:
    found = await store.get_referrals(conn, [referral_id], principal.site_scope)
    if not found:
        raise NotFound("No such referral.", code="referral_not_found")
    return found[0]


async def get_referrals(conn: asyncpg.Connection, principal: Principal, ids: list[UUID]) -> dict[UUID, Referral]:
    return {r.id: r for r in await store.get_referrals(conn, ids, principal.site_scope)}


async def submit(conn: asyncpg.Connection, principal: Principal, settings: Settings, data: ReferralCreate) -> ReferralSubmitted:
    """Queue a person at a site, or merge the submission into their open referral.

    - a caller-chosen ``id`` already used answers the stored referral when it is the caller's
      (a replay), else 409 ``referral_exists``;
    - a person in isolation now: 409 ``already_isolated``;
    - a person whose open referral is at a site the caller does not reach: 409
      ``referral_open_elsewhere`` (nothing is merged; the command centre sees both sites).
    """
    _require(principal, "referrals.submit")
    if data.identified_at > _now() + CLOCK_SKEW:
        raise InvalidInput("identified_at is in the future.", code="identified_in_future", field="identified_at")
    if data.identified_at < _now() - BACKDATE_LIMIT:
        raise InvalidInput(f"identified_at is more than {BACKDATE_LIMIT.days} days ago.", code="identified_too_early", field="identified_at")
    await sites.get_site(conn, principal, data.site_id)
    person = data.person
    number = crypto.normalise(person.document_number)
    index = crypto.blind_index(settings, number)
    if data.id is not None and (taken := await store.referral_site(conn, data.id)) is not None:
        if principal.can_access_site(taken["site_id"]) and (taken["document_type"], taken["document_index"]) == (str(person.document_type), index):
            return ReferralSubmitted(referral=await get_referral(conn, principal, data.id), merged=False)
        raise Conflict("A referral with this id already exists.", code="referral_exists")
    if await stays.is_isolated(conn, settings, person.document_type, number):
        raise Conflict("The person is in isolation already.", code="already_isolated")
    risk_level = await risk_level_of(conn, data.risk_area_code, data.identified_at)
    regime = await stays.regime_for(conn, data.category, risk_level=risk_level)
    referral_id = data.id or uuid4()
    phone = crypto.normalise(person.phone) if person.phone else None
    record = referral_id.bytes
    inserted = await store.insert_referral(
        conn,
        id=referral_id,
        site_id=data.site_id,
        name=person.name.strip(),
        sex=person.sex,
        birth_date=person.birth_date,
        document_type=person.document_type,
        document_enc=crypto.encrypt(settings, number, record_id=record),
        document_index=index,
        document_tail=number[-4:],
        phone_enc=crypto.encrypt(settings, phone, record_id=record) if phone else None,
        phone_tail=phone[-4:] if phone else None,
        household_key=person.household_key,
        category=data.category,
        index_case_refs=[data.index_case_ref] if data.index_case_ref else [],
        identified_at=data.identified_at,
        origin_area=data.origin_area,
        risk_area_code=data.risk_area_code,
        risk_level=risk_level,
        regime_code=regime.code,
        needs=list(data.needs),
        note=data.note,
        actor=principal.ref,
    )
    merged = inserted is None
    if merged:
        referral_id, site_id = await _merge(conn, principal, data, index, risk_level)
    else:
        site_id = data.site_id
    await store.insert_submission(
        conn, referral_id=referral_id, site_id=site_id, actor=principal.ref, index_case_ref=data.index_case_ref,
        identified_at=data.identified_at, risk_area_code=data.risk_area_code,
    )
    await bus.emit(
        conn,
        "intake.referral_merged" if merged else "intake.referral_submitted",
        site_id=site_id,
        subject_id=referral_id,
        actor=principal.ref,
        data={"category": str(data.category), "risk_level": risk_level, "regime": regime.code, "index_case_ref": data.index_case_ref},
    )
    return ReferralSubmitted(referral=await get_referral(conn, principal, referral_id), merged=merged)


async def _merge(
    conn: asyncpg.Connection, principal: Principal, data: ReferralCreate, index: bytes, risk_level: RiskLevel | None
) -> tuple[UUID, UUID]:
    """Merge a duplicate submission into the person's open referral (row-locked); (its id, its site)."""
    existing = await store.open_referral_of_person(conn, data.person.document_type, index)
    if existing is None:
        # Closed between the insert's conflict and this lock: the caller's retry queues the person anew.
        raise Conflict("The person's open referral just changed; submit again.", code="referral_changed")
    if not principal.can_access_site(existing["site_id"]):
        raise Conflict("The person is already queued at another site.", code="referral_open_elsewhere")
    higher = _RANK[risk_level] > _RANK[RiskLevel(existing["risk_level"]) if existing["risk_level"] else None]
    regime_code = (await stays.regime_for(conn, existing["category"], risk_level=risk_level)).code if higher else None
    await store.merge_referral(
        conn,
        document_type=data.person.document_type,
        document_index=index,
        identified_at=data.identified_at,
        index_case_ref=data.index_case_ref,
        higher_risk=higher,
        risk_area_code=data.risk_area_code,
        risk_level=risk_level,
        regime_code=regime_code,
        needs=list(data.needs),
        household_key=data.person.household_key,
    )
    return existing["id"], existing["site_id"]


async def queue(
    conn: asyncpg.Connection,
    principal: Principal,
    *,
    site_id: UUID | None = None,
    region: str | None = None,
    states: list[ReferralState] | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Referral]:
    """The pending-admission queue of one site, the sites under a region path, or all the caller's sites;
    open referrals (pending and assigned) unless ``states`` says otherwise, longest waiting first."""
    check_limit(limit)
    if site_id is not None:
        await sites.get_site(conn, principal, site_id)
    after = decode_cursor(cursor, [datetime, UUID])
    rows = await store.list_queue(
        conn,
        site_id=site_id,
        region=region.strip("/") if region else None,
        site_ids=principal.site_scope,
        states=[str(s) for s in (states or OPEN_STATES)],
        after=(after[0], after[1]) if after else None,
        limit=limit + 1,
    )
    return page_of(rows, limit, lambda r: [r.identified_at.isoformat(), str(r.id)])


async def _lock(conn: asyncpg.Connection, principal: Principal, referral_id: UUID) -> Referral:
    if not await store.lock_referral(conn, referral_id, principal.site_scope):
        raise NotFound("No such referral.", code="referral_not_found")
    return (await store.get_referrals(conn, [referral_id], None))[0]


async def _move(
    conn: asyncpg.Connection,
    principal: Principal,
    referral: Referral,
    version: int,
    to: ReferralState,
    from_: tuple[ReferralState, ...],
    **values: object,
) -> Referral:
    if referral.state not in from_:
        raise Conflict(f"The referral is {referral.state}.", code="invalid_referral_state", state=referral.state.value)
    moved = await store.set_state(
        conn, id=referral.id, version=version, state=to, from_states=[s.value for s in from_], actor=principal.ref, **values
    )
    if not moved:
        raise Conflict(
            f"The referral changed since version {version}; it is now at version {referral.version}.",
            code="stale_version",
            current_version=referral.version,
        )
    after = (await store.get_referrals(conn, [referral.id], None))[0]
    await bus.emit(
        conn,
        f"intake.referral_{to.value}",
        site_id=after.site_id,
        subject_id=after.id,
        actor=principal.ref,
        data={"from": referral.state.value, "site_id": str(after.site_id), "stay_id": str(after.stay_id) if after.stay_id else None},
    )
    return after


async def assign(conn: asyncpg.Connection, principal: Principal, referral_id: UUID, data: Assignment) -> Referral:
    """Place the referral at a site (its own, or another the caller reaches): ``assigned``."""
    _require(principal, "referrals.assign")
    referral = await _lock(conn, principal, referral_id)
    if data.site_id is not None and data.site_id != referral.site_id:
        await sites.get_site(conn, principal, data.site_id)
    return await _move(conn, principal, referral, data.version, ReferralState.ASSIGNED, OPEN_STATES, site_id=data.site_id)


async def cancel(conn: asyncpg.Connection, principal: Principal, referral_id: UUID, data: Closing) -> Referral:
    """No longer to isolate (misidentified, isolated elsewhere): ``cancelled``."""
    _require(principal, "referrals.cancel")
    referral = await _lock(conn, principal, referral_id)
    return await _move(conn, principal, referral, data.version, ReferralState.CANCELLED, OPEN_STATES, reason=data.reason)


async def no_show(conn: asyncpg.Connection, principal: Principal, referral_id: UUID, data: Closing) -> Referral:
    """The assigned person did not arrive: ``no_show``; a new referral may queue them again."""
    _require(principal, "referrals.assign")
    referral = await _lock(conn, principal, referral_id)
    return await _move(conn, principal, referral, data.version, ReferralState.NO_SHOW, (ReferralState.ASSIGNED,), reason=data.reason)


async def admit(
    conn: asyncpg.Connection,
    principal: Principal,
    settings: Settings,
    referral_id: UUID,
    data: ReferralAdmission,
    *,
    now: datetime | None = None,
    reservation_id: UUID | None = None,
) -> Stay:
    """Admit the referred person at the referral's site and link the stay (``arrived``).

    The risk level is looked up again at the identification time and the regime rules asked
    again: both may have changed since the referral. A referral already admitted answers its
    stay (a replay).
    """
    _require(principal, "stays.admit")
    referral = await _lock(conn, principal, referral_id)
    if referral.state is ReferralState.ARRIVED and referral.stay_id is not None:
        return await stays.get_stay(conn, principal, referral.stay_id)
    if referral.state not in OPEN_STATES:
        raise Conflict(f"The referral is {referral.state}.", code="invalid_referral_state", state=referral.state.value)
    # Admitted on their own while on an announced vehicle: they take the bed reserved for them.
    member = await store.expected_member(conn, referral.id) if reservation_id is None else None
    if member is not None:
        reservation_id = member["reservation_id"]
    secrets = await store.referral_secrets(conn, referral.id)
    record = referral.id.bytes
    person = ResidentCreate(
        name=secrets["name"],
        document_type=referral.person.document_type,
        document_number=crypto.decrypt(settings, secrets["document_enc"], record_id=record),
        sex=referral.person.sex,
        phone=None if secrets["phone_enc"] is None else crypto.decrypt(settings, secrets["phone_enc"], record_id=record),
        household_key=referral.person.household_key,
        birth_date=secrets["birth_date"],
    )
    risk_level = await risk_level_of(conn, referral.risk_area_code, referral.identified_at) or referral.risk_level
    regime = await stays.regime_for(conn, referral.category, risk_level=risk_level)
    stay = await stays.admit(
        conn,
        principal,
        settings,
        Admission(
            site_id=referral.site_id,
            category=referral.category,
            resident=person,
            room_id=data.room_id,
            bed=data.bed,
            floor=data.floor,
            origin_area=referral.origin_area,
            risk_level=risk_level,
            arrival_batch=data.arrival_batch,
            regime_code=regime.code,
            admitted_at=data.admitted_at,
            reservation_id=reservation_id,
            needs=list(referral.needs),
        ),
        now=now,
    )
    await _move(
        conn, principal, referral, referral.version, ReferralState.ARRIVED, OPEN_STATES, stay_id=stay.id, arrived_at=stay.admitted_at
    )
    if member is not None:
        await store.set_member(conn, member["manifest_id"], referral.id, MemberState.ARRIVED, stay.id)
        await store.touch_manifest(conn, member["manifest_id"])
    return stay


async def isolation_times(
    conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, since: datetime | None = None, until: datetime | None = None
) -> list[IsolationTimes]:
    """Identification -> isolation per local day of arrival at a site: arrivals, median and longest hours."""
    await sites.get_site(conn, principal, site_id)
    until = until or _now()
    since = since or until - timedelta(days=14)
    if since.tzinfo is None or until.tzinfo is None:
        raise InvalidInput("since and until need a time zone offset.", code="naive_datetime", field="since")
    if not timedelta(0) < until - since <= timedelta(days=MAX_TIMES_DAYS):
        raise InvalidInput(f"since must be before until, at most {MAX_TIMES_DAYS} days.", code="invalid_period", field="since")
    return await store.isolation_times(conn, site_id, principal.site_scope, since, until)


# --- arrival manifests ------------------------------------------------------------


async def get_manifest(conn: asyncpg.Connection, principal: Principal, manifest_id: UUID) -> Manifest:
    found = await store.get_manifests(conn, [manifest_id], principal.site_scope)
    if not found:
        raise NotFound("No such manifest.", code="manifest_not_found")
    return found[0]


async def get_manifests(conn: asyncpg.Connection, principal: Principal, ids: list[UUID]) -> dict[UUID, Manifest]:
    return {m.id: m for m in await store.get_manifests(conn, ids, principal.site_scope)}


async def site_manifests(
    conn: asyncpg.Connection, principal: Principal, site_id: UUID, *, states: list[ManifestState] | None = None, cursor: str | None = None, limit: int = 50
) -> Page[Manifest]:
    """A site's manifests by expected arrival (default: the announced ones)."""
    check_limit(limit)
    await sites.get_site(conn, principal, site_id)
    after = decode_cursor(cursor, [datetime, UUID])
    ids = await store.list_manifests(
        conn, site_id, principal.site_scope, states=states or [ManifestState.ANNOUNCED], after=(after[0], after[1]) if after else None, limit=limit + 1
    )
    found = {m.id: m for m in await store.get_manifests(conn, ids, None)}
    return page_of([found[i] for i in ids], limit, lambda m: [m.expected_at.isoformat(), str(m.id)])


async def announce(conn: asyncpg.Connection, principal: Principal, data: ManifestCreate) -> Manifest:
    """An inbound vehicle with referrals of the site on board: each gets a bed reserved by the admission
    allocation rules (all or none: 409 ``no_room_available``) and its referral is ``assigned``.

    A referral not open at this site answers 404 ``referral_not_found`` / 409 ``invalid_referral_state``;
    one on another announced manifest 409 ``referral_on_manifest``.
    """
    _require(principal, "manifests.manage")
    await sites.get_site(conn, principal, data.site_id)
    if data.id is not None and (taken := await store.manifest_site(conn, data.id)) is not None:
        if principal.can_access_site(taken):
            found = await get_manifest(conn, principal, data.id)
            if (found.site_id, sorted(m.referral_id for m in found.members)) == (data.site_id, sorted(data.referral_ids)):
                return found
        raise Conflict("A manifest with this id already exists.", code="manifest_exists")
    manifest_id = data.id or uuid4()
    referrals = []
    for referral_id in data.referral_ids:
        referral = await _lock(conn, principal, referral_id)
        if referral.site_id != data.site_id:
            raise NotFound("No such referral at this site.", code="referral_not_found", field="referral_ids")
        if referral.state not in OPEN_STATES:
            raise Conflict(f"A referral on the manifest is {referral.state}.", code="invalid_referral_state", state=referral.state.value)
        if referral.state is ReferralState.PENDING:
            referral = await _move(conn, principal, referral, referral.version, ReferralState.ASSIGNED, OPEN_STATES)
        referrals.append(referral)
    if await store.referrals_on_manifests(conn, data.referral_ids):  # checked under the referrals' row locks
        raise Conflict("A referral is on another announced manifest.", code="referral_on_manifest", field="referral_ids")
    hold_until = data.expected_at + timedelta(minutes=data.hold_minutes)
    requests = [
        BedRequest(subject_id=r.id, category=r.category, household_key=r.person.household_key, arrival_batch=data.vehicle_plate,
                   needs=list(r.needs))
        for r in referrals
    ]
    await store.insert_manifest(
        conn, id=manifest_id, site_id=data.site_id, vehicle_plate=data.vehicle_plate, vehicle_kind=data.vehicle_kind,
        escort=data.escort, expected_at=data.expected_at, hold_until=hold_until, actor=principal.ref,
    )
    reservations = await stays.reserve_beds(conn, principal, data.site_id, requests, holder_id=manifest_id, expires_at=hold_until, floor=data.floor)
    await store.insert_members(conn, manifest_id, data.site_id, [r.id for r in referrals], [r.id for r in reservations])
    await bus.emit(
        conn, "intake.manifest_announced", site_id=data.site_id, subject_id=manifest_id, actor=principal.ref,
        data={"vehicle_plate": data.vehicle_plate, "vehicle_kind": str(data.vehicle_kind), "expected_at": data.expected_at.isoformat(),
              "count": len(referrals), "hold_until": hold_until.isoformat()},
    )
    return await get_manifest(conn, principal, manifest_id)


async def _lock_manifest(conn: asyncpg.Connection, principal: Principal, manifest_id: UUID) -> Manifest:
    if not await store.lock_manifest(conn, manifest_id, principal.site_scope):
        raise NotFound("No such manifest.", code="manifest_not_found")
    manifest = (await store.get_manifests(conn, [manifest_id], None))[0]
    if manifest.state is not ManifestState.ANNOUNCED:
        raise Conflict(f"The manifest is {manifest.state}.", code="invalid_manifest_state", state=manifest.state.value)
    return manifest


def _check_version(manifest: Manifest, version: int) -> None:
    if version != manifest.version:
        raise Conflict(
            f"The manifest changed since version {version}; it is now at version {manifest.version}.",
            code="stale_version",
            current_version=manifest.version,
        )


async def _no_show(conn: asyncpg.Connection, principal: Principal, manifest: Manifest, referral_id: UUID) -> None:
    changed, reservation = await store.set_member(conn, manifest.id, referral_id, MemberState.NO_SHOW)
    if not changed:
        raise NotFound("The referral is not expected on this manifest.", code="member_not_found", field="referral_id")
    if reservation is not None:
        await stays.release_reservations(conn, principal, [reservation])
    referral = (await store.get_referrals(conn, [referral_id], None))[0]
    if referral.state in OPEN_STATES:
        await _move(conn, principal, referral, referral.version, ReferralState.NO_SHOW, OPEN_STATES, reason=f"no-show: {manifest.vehicle_plate}")


async def admit_manifest(
    conn: asyncpg.Connection, principal: Principal, settings: Settings, manifest_id: UUID, data: ManifestArrival
) -> Manifest:
    """The vehicle arrived: everyone expected is admitted into the bed reserved for them (a reservation
    expired and retaken: a bed allocated anew), but those in ``no_show``, whose beds are freed. All or none."""
    _require(principal, "stays.admit")
    manifest = await _lock_manifest(conn, principal, manifest_id)
    _check_version(manifest, data.version)
    expected = {m.referral_id: m for m in manifest.members if m.state is MemberState.EXPECTED}
    if unknown := [r for r in data.no_show if r not in expected]:
        raise InvalidInput(f"{len(unknown)} no-show(s) are not expected on this manifest.", code="not_on_manifest", field="no_show")
    for referral_id, member in expected.items():
        if referral_id in data.no_show:
            await _no_show(conn, principal, manifest, referral_id)
            continue
        stay = await admit(
            conn, principal, settings, referral_id, ReferralAdmission(arrival_batch=manifest.vehicle_plate, admitted_at=data.admitted_at),
            reservation_id=member.reservation_id,
        )
        await store.set_member(conn, manifest.id, referral_id, MemberState.ARRIVED, stay.id)
    await store.close_manifest(conn, manifest.id, manifest.version, ManifestState.ARRIVED, principal.ref)
    await bus.emit(
        conn, "intake.manifest_arrived", site_id=manifest.site_id, subject_id=manifest.id, actor=principal.ref,
        data={"vehicle_plate": manifest.vehicle_plate, "arrived": len(expected) - len(data.no_show), "no_show": len(data.no_show)},
    )
    return await get_manifest(conn, principal, manifest.id)


async def member_no_show(conn: asyncpg.Connection, principal: Principal, manifest_id: UUID, referral_id: UUID) -> Manifest:
    """One person on the manifest will not come: the referral is a no-show and the bed is freed at once."""
    _require(principal, "manifests.manage")
    manifest = await _lock_manifest(conn, principal, manifest_id)
    await _no_show(conn, principal, manifest, referral_id)
    await store.touch_manifest(conn, manifest.id)
    await bus.emit(conn, "intake.manifest_member_no_show", site_id=manifest.site_id, subject_id=manifest.id, actor=principal.ref,
                   data={"referral_id": str(referral_id)})
    return await get_manifest(conn, principal, manifest.id)


async def cancel_manifest(conn: asyncpg.Connection, principal: Principal, manifest_id: UUID, data: Closing) -> Manifest:
    """The vehicle will not come: every reservation is freed; the referrals stay assigned for another vehicle."""
    _require(principal, "manifests.manage")
    manifest = await _lock_manifest(conn, principal, manifest_id)
    _check_version(manifest, data.version)
    held = []
    for member in manifest.members:
        if member.state is MemberState.EXPECTED:
            _, reservation = await store.set_member(conn, manifest.id, member.referral_id, MemberState.CANCELLED)
            held += [reservation] if reservation else []
    await stays.release_reservations(conn, principal, held)
    await store.close_manifest(conn, manifest.id, manifest.version, ManifestState.CANCELLED, principal.ref)
    await bus.emit(conn, "intake.manifest_cancelled", site_id=manifest.site_id, subject_id=manifest.id, actor=principal.ref,
                   data={"reason": data.reason, "released": len(held)})
    return await get_manifest(conn, principal, manifest.id)
