"""Hand-over on release and the release certificate.

``record`` runs inside the release's transaction (``stays.service.release`` calls it): it checks
the receiving street, encrypts the contact, computes the home phases' dates from the stay's regime
version and draws the certificate's verification code. Rules:

- a regime with a home phase (home isolation or home monitoring days) needs a hand-over
  destination (422 ``handover_required``): the resident is still under control after leaving,
  and the receiving community must know who comes, when and until when; a regime without one
  may still be given a destination (the community is told), or none;
- the destination is a street-level region of the tree (any street: people go home anywhere),
  422 ``unknown_region`` / ``region_not_street``;
- home phases run from the local date of release (day 1), one after the other, each ``days``
  long, with their test days as dates; a late release moves them later, never shortens them.

The certificate's code is 128 random bits in base32 (26 characters), stored as its SHA-256 (the
lookup) and encrypted (to print again). ``verify`` answers anyone holding a code whether it is
valid or revoked, the site, the release date and the phases' dates: never a name, an ID number,
a contact or a record id.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service import bus, policy
from service.access import crypto
from service.access import service as access
from service.access.model import Principal
from service.cache import Cache
from service.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited
from service.handover import store
from service.handover.model import CertificateCheck, Handover, HandoverCreate, HandoverIssued, HomePhase, Revocation
from service.regions import service as regions
from service.regions.model import RegionLevel
from service.settings import Settings
from service.stays.model import PhaseKind, Regime, Stay

CODE_CHARS = 26  # 128 bits in base32, without padding
_CODE = re.compile(r"^[A-Z2-7]{26}$")
MAX_CODE_INPUT = 64  # a code as printed (dashes, spaces) or as typed; anything longer is malformed


def needs_handover(regime: Regime) -> bool:
    """Whether the regime continues at home after the centralized phase."""
    return any(p.phase != PhaseKind.CENTRALIZED and p.days > 0 for p in regime.phases)


def home_phases(regime: Regime, released_on: Any) -> list[HomePhase]:
    """The phases after the centralized one as dates: day 1 of the first is the release date (site's zone)."""
    phases, start = [], released_on
    for p in regime.phases:
        if p.phase == PhaseKind.CENTRALIZED or p.days <= 0:
            continue
        ends = start + timedelta(days=p.days - 1)
        phases.append(HomePhase(phase=p.phase, starts_on=start, ends_on=ends, test_dates=[start + timedelta(days=d - 1) for d in p.test_days]))
        start = ends + timedelta(days=1)
    return phases


# --- the verification code ---------------------------------------------------------------


def new_code() -> str:
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=")


def normalise_code(raw: str) -> str:
    """The code as stored: upper case without dashes or spaces; 422 ``invalid_certificate_code`` otherwise.

    The message never repeats what was sent.
    """
    code = "".join(raw[:MAX_CODE_INPUT + 1].split()).replace("-", "").upper()
    if len(raw) > MAX_CODE_INPUT or not _CODE.match(code):
        raise InvalidInput("Not a certificate code (26 letters A-Z and digits 2-7).", code="invalid_certificate_code", field="code")
    return code


def code_hash(code: str) -> bytes:
    return hashlib.sha256(code.encode()).digest()


def display_code(code: str) -> str:
    """``ABCD-EFGH-...-YZ``: groups of four, easier to read aloud and type."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


# --- recording ----------------------------------------------------------------------------


async def record(
    conn: asyncpg.Connection,
    principal: Principal,
    settings: Settings,
    stay: Stay,
    regime: Regime,
    data: HandoverCreate | None,
    *,
    released_at: datetime,
) -> HandoverIssued:
    """The hand-over of a stay being released (in the release's transaction); see the module's rules."""
    if data is None and needs_handover(regime):
        raise InvalidInput(
            "The regime continues at home: give the receiving street and contact.", code="handover_required", field="handover"
        )
    region = None
    if data is not None:
        region = await regions.region_by_id(conn, data.region_id)
        if region is None:
            raise InvalidInput("No such region.", code="unknown_region", field="handover.region_id")
        if region.level is not RegionLevel.STREET:
            raise InvalidInput("The receiving region must be a street or township.", code="region_not_street", field="handover.region_id")
    from service.stays.service import local_date  # stays imports this module in release

    released_on = local_date(released_at, stay.time_zone)
    phases = home_phases(regime, released_on)
    code = new_code()
    record_id = stay.id.bytes
    phone = crypto.normalise(data.contact_phone) if data else None
    await store.insert_handover(
        conn,
        stay_id=stay.id,
        site_id=stay.site_id,
        resident_id=stay.resident_id,
        regime_id=regime.id,
        released_at=released_at,
        released_on=released_on,
        region_id=region.id if region else None,
        contact_name_enc=crypto.encrypt(settings, data.contact_name, record_id=record_id) if data else None,
        contact_name=data.contact_name if data else None,
        contact_phone_enc=crypto.encrypt(settings, phone, record_id=record_id) if phone else None,
        contact_phone_tail=phone[-4:] if phone else None,
        note=data.note if data else "",
        phases=phases,
        home_ends_on=phases[-1].ends_on if phases else None,
        certificate_hash=code_hash(code),
        certificate_enc=crypto.encrypt(settings, code, record_id=record_id),
        actor=principal.ref,
    )
    handover = (await store.get_handovers(conn, [stay.id], None))[0]
    if region is not None:
        # What the receiving side needs to expect the resident: where, when, until when. No name,
        # ID or phone (the event is in the change feed and webhook deliveries); they read those
        # through GET /api/v1/stays/{id}/handover, audited.
        await bus.emit(conn, "stays.handed_over", site_id=stay.site_id, subject_id=stay.id, actor=principal.ref, data=event_data(handover, regime))
    return HandoverIssued(handover=handover, certificate_code=code)


def event_data(handover: Handover, regime: Regime) -> dict[str, Any]:
    return {
        "region_id": str(handover.region_id),
        "region_code": handover.region_code,
        "region_name": handover.region_name,
        "regime": regime.code,
        "released_on": handover.released_on.isoformat(),
        "home_ends_on": handover.home_ends_on.isoformat() if handover.home_ends_on else None,
        "phases": [{"phase": str(p.phase), "starts_on": p.starts_on.isoformat(), "ends_on": p.ends_on.isoformat()} for p in handover.phases],
        "version": handover.version,
    }


# --- reads ---------------------------------------------------------------------------------


async def get_handovers(conn: asyncpg.Connection, principal: Principal, stay_ids: list[UUID]) -> dict[UUID, Handover]:
    """Hand-overs (contact masked) of these stays at the caller's sites."""
    return {h.stay_id: h for h in await store.get_handovers(conn, stay_ids, principal.site_scope)}


async def get_handover(
    conn: asyncpg.Connection, principal: Principal, settings: Settings, stay_id: UUID, *, purpose: str | None = None
) -> Handover:
    """One hand-over; with ``purpose`` the contact unmasked (command, medic, site manager; audited:
    run it in a transaction). 404 ``handover_not_found`` for another site's stay or one not released."""
    found = await store.get_handovers(conn, [stay_id], principal.site_scope)
    if not found:
        raise NotFound("No hand-over for this stay.", code="handover_not_found")
    handover = found[0]
    if handover.region_id is None or not await access.reveal(
        conn, principal, purpose=purpose, site_id=handover.site_id, subject_id=stay_id, fields=["contact_name", "contact_phone"],
        action="handover.unmask",
    ):
        return handover
    secrets_row = await store.get_secrets(conn, stay_id, principal.site_scope)
    assert secrets_row is not None  # read above under the same scope
    record_id = stay_id.bytes
    return msgspec.structs.replace(
        handover,
        contact_name=crypto.decrypt(settings, secrets_row["contact_name_enc"], record_id=record_id),
        contact_phone=crypto.decrypt(settings, secrets_row["contact_phone_enc"], record_id=record_id),
    )


async def certificate_code(conn: asyncpg.Connection, principal: Principal, settings: Settings, stay_id: UUID) -> str | None:
    """The verification code of a stay's certificate (to print it again); None: no hand-over at the caller's sites."""
    row = await store.get_secrets(conn, stay_id, principal.site_scope)
    return None if row is None else crypto.decrypt(settings, row["certificate_enc"], record_id=stay_id.bytes)


async def revoke(conn: asyncpg.Connection, principal: Principal, stay_id: UUID, data: Revocation) -> Handover:
    """Revoke a release certificate (issued in error, or the person must return): verification then
    answers ``revoked``. 409 ``certificate_revoked`` when it already is."""
    if principal.role not in policy.roles("handovers.revoke"):
        raise Forbidden(f"The role {principal.role} may not revoke certificates.", code="role_not_allowed")
    found = await store.get_handovers(conn, [stay_id], principal.site_scope)
    if not found:
        raise NotFound("No hand-over for this stay.", code="handover_not_found")
    if not await store.revoke(conn, stay_id, principal.site_scope, reason=data.reason.strip(), actor=principal.ref):
        raise Conflict("The certificate is already revoked.", code="certificate_revoked")
    await bus.emit(conn, "stays.certificate_revoked", site_id=found[0].site_id, subject_id=stay_id, actor=principal.ref, data={})
    return (await store.get_handovers(conn, [stay_id], None))[0]


# --- public verification -------------------------------------------------------------------


async def verify(conn: asyncpg.Connection, cache: Cache, settings: Settings, raw: str, *, address: str) -> CertificateCheck:
    """Whether a certificate code is valid: counted per client address (429 ``rate_limited`` past
    ``certificate_checks_per_address_per_minute``), 422 ``invalid_certificate_code`` when malformed,
    404 ``certificate_not_found`` when unknown. Answers no personal data."""
    count, ttl = await access.hit_window(cache, cache.key("certificate", "address", address))
    if count > settings.certificate_checks_per_address_per_minute:
        raise RateLimited("Too many certificate checks from this address; retry later.", retry_after=ttl)
    row = await store.verify(conn, code_hash(normalise_code(raw)))
    if row is None:
        raise NotFound("No certificate with this code.", code="certificate_not_found")
    revoked = row["revoked_at"]
    return CertificateCheck(
        status="revoked" if revoked else "valid",
        site_name=row["site_name"],
        site_code=row["site_code"],
        released_on=row["released_on"],
        phases=msgspec.convert(row["phases"], list[HomePhase]),
        home_ends_on=row["home_ends_on"],
        revoked_on=revoked.date() if revoked else None,
    )


# --- the printable certificate -------------------------------------------------------------


async def certificate(
    conn: asyncpg.Connection, principal: Principal, settings: Settings, stay_id: UUID, *, purpose: str | None = None
) -> dict[str, Any]:
    """What the printable certificate shows: the resident masked, or with ``purpose`` unmasked
    (command, medic, site manager; audited as ``resident.unmask``), the site, the dates, the
    receiving street and the verification code. 404 ``handover_not_found`` as ``get_handover``."""
    from service.sites import service as sites
    from service.stays import service as stays

    handover = await get_handover(conn, principal, settings, stay_id)
    stay = await stays.get_stay(conn, principal, stay_id)
    site = await sites.get_site(conn, principal, stay.site_id)
    resident = (await stays.get_residents(conn, principal, [stay.resident_id]))[stay.resident_id]
    name, document = resident.name, resident.document_number
    if purpose is not None:
        revealed = await stays.reveal_resident(conn, principal, settings, stay.resident_id, purpose)
        name, document = revealed.name, revealed.document_number
    code = await certificate_code(conn, principal, settings, stay_id)
    return {
        "handover": handover,
        "stay": stay,
        "site": site,
        "name": name,
        "document": document,
        "centralized_days": (handover.released_on - stay.day_one).days,
        "code": display_code(code or ""),
    }
