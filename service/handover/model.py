"""Hand-over on release: the receiving community and contact, the home phases' dates, the release certificate."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from service.errors import InvalidInput
from service.stays.model import Name, PhaseKind, Phone

Note = Annotated[str, msgspec.Meta(max_length=500)]
RevokeReason = Annotated[str, msgspec.Meta(min_length=3, max_length=500)]


class HandoverCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where a released resident goes: a street (or township) of the region tree and who receives them there."""

    region_id: UUID
    contact_name: Name
    contact_phone: Phone
    note: Note = ""

    def __post_init__(self) -> None:
        self.contact_name = self.contact_name.strip()
        if not self.contact_name:
            raise InvalidInput("The contact's name is empty.", code="invalid_name", field="contact_name")


class HomePhase(msgspec.Struct, kw_only=True):
    """A phase after the centralized one, as dates in the site's time zone (both ends included)."""

    phase: PhaseKind
    starts_on: date
    ends_on: date
    test_dates: list[date] = []


class Handover(msgspec.Struct, kw_only=True):
    """The hand-over record of a released stay; the contact masked (see ``reveal``)."""

    stay_id: UUID
    site_id: UUID
    resident_id: UUID
    released_at: datetime
    released_on: date
    region_id: UUID | None
    region_code: str | None
    region_name: str | None
    contact_name: str | None
    contact_phone: str | None
    note: str
    phases: list[HomePhase]
    home_ends_on: date | None
    revoked_at: datetime | None
    revoked_reason: str | None
    version: int
    created_by: str


class HandoverIssued(msgspec.Struct, kw_only=True):
    """What release answers besides the stay: the record and the certificate's code (shown to print it)."""

    handover: Handover
    certificate_code: str


class Revocation(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: RevokeReason


class CertificateCheck(msgspec.Struct, kw_only=True):
    """The public answer to a verification code: no name, ID number, contact or record id."""

    status: Literal["valid", "revoked"]
    site_name: str
    site_code: str
    released_on: date
    phases: list[HomePhase]
    home_ends_on: date | None
    revoked_on: date | None = None
