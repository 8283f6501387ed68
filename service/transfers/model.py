"""Transfers: destination facilities, the transfer state machine, read models and inputs."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

import msgspec

from service.fields import Version


class FacilityKind(StrEnum):
    DESIGNATED_HOSPITAL = "designated_hospital"
    MAKESHIFT_HOSPITAL = "makeshift_hospital"


class TransferReason(StrEnum):
    POSITIVE_TEST = "positive_test"
    SYMPTOMS = "symptoms"
    OTHER_MEDICAL = "other_medical"
    FAMILY_REQUEST = "family_request"
    OTHER = "other"


# Reasons that make the room suspect: it is sealed when the resident leaves (the DB's generated
# column ``transfers.infectious`` says the same).
INFECTIOUS_REASONS = frozenset({TransferReason.POSITIVE_TEST, TransferReason.SYMPTOMS})


class Urgency(StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class TransferState(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    # The destination accepted (facilities with ``requires_acceptance`` must, before dispatch).
    DESTINATION_APPROVED = "destination_approved"
    DISPATCHED = "dispatched"
    DEPARTED = "departed"
    ARRIVED = "arrived"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


ACTIVE_STATES = (
    TransferState.REQUESTED,
    TransferState.APPROVED,
    TransferState.DESTINATION_APPROVED,
    TransferState.DISPATCHED,
    TransferState.DEPARTED,
)


class TransferAction(StrEnum):
    """An edge of the transfer graph (DESIGN.md, "Transfer lifecycle")."""

    APPROVE = "approve"
    REJECT = "reject"
    DISPATCH = "dispatch"
    DEPART = "depart"
    ARRIVE = "arrive"
    CANCEL = "cancel"
    # The hospital refused the resident at the door: back to approved for a new destination.
    REFUSE_AT_DOOR = "refuse_at_door"
    # The destination accepts the transfer before dispatch, or declines it (back to approved, no destination).
    # Hospitals answer over REST; a medic may record an answer given by phone.
    ACCEPT = "accept"
    DECLINE = "decline"
    # Choose another destination before dispatch (the new one accepts again if it must).
    REDIRECT = "redirect"


T, A = TransferState, TransferAction
# (action) -> (states it may start from, state it leads to). The trigger in 0006_transfers.sql
# enforces the same graph in the database.
TRANSITIONS: dict[TransferAction, tuple[frozenset[TransferState], TransferState]] = {
    A.APPROVE: (frozenset({T.REQUESTED}), T.APPROVED),
    A.REJECT: (frozenset({T.REQUESTED}), T.REJECTED),
    A.DISPATCH: (frozenset({T.APPROVED, T.DESTINATION_APPROVED}), T.DISPATCHED),
    A.DEPART: (frozenset({T.DISPATCHED}), T.DEPARTED),
    A.ARRIVE: (frozenset({T.DEPARTED}), T.ARRIVED),
    A.CANCEL: (frozenset({T.REQUESTED, T.APPROVED, T.DESTINATION_APPROVED, T.DISPATCHED}), T.CANCELLED),
    A.REFUSE_AT_DOOR: (frozenset({T.DISPATCHED, T.DEPARTED}), T.APPROVED),
    A.ACCEPT: (frozenset({T.APPROVED}), T.DESTINATION_APPROVED),
    A.DECLINE: (frozenset({T.APPROVED, T.DESTINATION_APPROVED}), T.APPROVED),
    A.REDIRECT: (frozenset({T.APPROVED, T.DESTINATION_APPROVED}), T.APPROVED),
}
del T, A


class TransferOutcome(StrEnum):
    """What became of the resident at the hospital, reported after arrival."""

    ADMITTED = "admitted"
    DISCHARGED = "discharged"
    DECEASED = "deceased"
    RETURNED = "returned"  # back to a quarantine site: a new stay there


# (outcome) -> the outcomes that may follow it; the trigger in 0042 enforces the same.
OUTCOME_NEXT: dict[TransferOutcome | None, frozenset[TransferOutcome]] = {
    None: frozenset(TransferOutcome),
    TransferOutcome.ADMITTED: frozenset({TransferOutcome.DISCHARGED, TransferOutcome.DECEASED, TransferOutcome.RETURNED}),
}


class VehicleKind(StrEnum):
    NEGATIVE_PRESSURE_AMBULANCE = "negative_pressure_ambulance"
    ORDINARY_AMBULANCE = "ordinary_ambulance"
    DEDICATED_VEHICLE = "dedicated_vehicle"


Code = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{2,32}$", description="Short unique facility code, e.g. CQ-PHC")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
RegionPath = Annotated[str, msgspec.Meta(max_length=300, description="district/street, e.g. 两江新区")]
Contact = Annotated[str, msgspec.Meta(max_length=200)]
CapacityNote = Annotated[str, msgspec.Meta(max_length=500)]
Note = Annotated[str, msgspec.Meta(max_length=2000)]
ReasonNote = Annotated[str, msgspec.Meta(max_length=1000)]
RequiredReason = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
Plate = Annotated[str, msgspec.Meta(min_length=1, max_length=16, description="Vehicle plate, e.g. 渝A12345")]
PersonName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Escort = Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="Escorting medic(s)")]


class Facility(msgspec.Struct, kw_only=True):
    id: UUID
    code: str
    name: str
    kind: FacilityKind
    region_path: str
    contact: str
    capacity_note: str
    active: bool
    requires_acceptance: bool
    version: int
    created_at: datetime
    updated_at: datetime


class FacilityCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    code: Code
    name: Name
    kind: FacilityKind
    region_path: RegionPath = ""
    contact: Contact = ""
    capacity_note: CapacityNote = ""
    requires_acceptance: bool = False
    id: UUID | None = None


class FacilityPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields to change; ``version`` must be the version the caller read (409 if stale)."""

    version: Version
    name: Name | msgspec.UnsetType = msgspec.UNSET
    kind: FacilityKind | msgspec.UnsetType = msgspec.UNSET
    region_path: RegionPath | msgspec.UnsetType = msgspec.UNSET
    contact: Contact | msgspec.UnsetType = msgspec.UNSET
    capacity_note: CapacityNote | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    requires_acceptance: bool | msgspec.UnsetType = msgspec.UNSET

    def changes(self) -> dict[str, object]:
        return {f: v for f in self.__struct_fields__ if f != "version" and (v := getattr(self, f)) is not msgspec.UNSET}


class Transfer(msgspec.Struct, kw_only=True):
    id: UUID
    site_id: UUID
    stay_id: UUID
    resident_id: UUID
    room_id: UUID
    reason: TransferReason
    infectious: bool
    reason_note: str
    alert_id: UUID | None
    sample_id: UUID | None
    urgency: Urgency
    destination_id: UUID | None
    state: TransferState
    version: int
    requested_by: str
    requested_at: datetime
    approved_at: datetime | None
    dispatched_at: datetime | None
    departed_at: datetime | None
    arrived_at: datetime | None
    closed_at: datetime | None
    vehicle_plate: str | None
    vehicle_kind: VehicleKind | None
    driver: str | None
    escort: str | None
    handover_note: str
    consequences_at: datetime | None
    updated_at: datetime
    # Response times (minutes, one decimal): from the request to the first dispatch / to arrival.
    request_to_dispatch_minutes: float | None
    request_to_arrival_minutes: float | None
    destination_approved_at: datetime | None
    outcome: TransferOutcome | None
    outcome_at: datetime | None
    # A return: where the resident went back to and the stay opened there (null for a caller
    # who does not reach that site).
    return_site_id: UUID | None
    return_stay_id: UUID | None


class TransferTransition(msgspec.Struct, kw_only=True):
    id: int
    transfer_id: UUID
    from_state: TransferState | None
    to_state: TransferState
    action: str
    actor: str
    note: str
    facility_id: UUID | None
    at: datetime


class TransferRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Ask for a resident's transfer. ``id`` may come from the phone: a replay is a no-op."""

    stay_id: UUID
    reason: TransferReason
    urgency: Urgency = Urgency.URGENT
    reason_note: ReasonNote = ""
    alert_id: UUID | None = None
    sample_id: UUID | None = None
    destination_id: UUID | None = None
    id: UUID | None = None


class Vehicle(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    plate: Plate
    kind: VehicleKind
    driver: PersonName
    escort: Escort


class TransferMove(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Move a transfer along one edge. ``version`` is the version the caller read (409 if stale).

    - approve: optional ``destination_id``;
    - redirect: ``destination_id`` required (another destination before dispatch);
    - accept: the destination's acceptance (recorded for it, e.g. given by phone);
    - dispatch: ``vehicle`` required; ``destination_id`` unless already set; a destination that
      requires acceptance must have accepted first;
    - arrive: optional ``note`` = handover note;
    - reject, cancel, refuse_at_door, decline: ``note`` = the reason (required).
    """

    action: TransferAction
    version: Version
    note: Note = ""
    destination_id: UUID | None = None
    vehicle: Vehicle | None = None


class ArrivalConfirmation(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A hospital confirms the resident arrived; a second confirmation changes nothing."""

    handover_note: Note = ""
    version: Version | None = None


class DoorRefusal(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A hospital refuses the resident at the door; the transfer goes back to approved for a new destination."""

    reason: RequiredReason
    version: Version | None = None


class Acceptance(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The destination hospital accepts a transfer before dispatch; accepting again changes nothing."""

    note: Note = ""
    version: Version | None = None


class Decline(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The destination hospital declines a transfer before dispatch: back to approved without a destination."""

    reason: RequiredReason
    version: Version | None = None


class OutcomeReport(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What became of the resident after arrival. ``admitted`` may be followed by a final outcome;
    reporting the current outcome again changes nothing.

    ``returned``: the resident goes back to quarantine at ``return_site_id`` (default: the sending
    site; another site must be one the hospital key names) in a new stay, whose id the caller may
    choose (``return_stay_id``) so that a replay is a no-op.
    """

    outcome: TransferOutcome
    note: Note = ""
    return_site_id: UUID | None = None
    return_stay_id: UUID | None = None
    version: Version | None = None


class MaskedPatient(msgspec.Struct, kw_only=True):
    """The resident as the receiving hospital sees them before handover: masked name, sex, birth year."""

    name: str
    sex: str
    birth_year: int | None


class SendingSite(msgspec.Struct, kw_only=True):
    """The quarantine site a transfer comes from, with whom to call."""

    id: UUID
    code: str
    name: str
    contact: str
    address: str


class IncomingTransfer(msgspec.Struct, kw_only=True):
    """A transfer as its destination hospital sees it: clinical facts, a masked identity and the
    sending site's contact; no site-internal ids (stay, room, alert, sample)."""

    id: UUID
    state: TransferState
    version: int
    reason: TransferReason
    infectious: bool
    reason_note: str
    urgency: Urgency
    destination_id: UUID | None
    patient: MaskedPatient | None
    sending_site: SendingSite | None
    requested_at: datetime
    approved_at: datetime | None
    destination_approved_at: datetime | None
    dispatched_at: datetime | None
    departed_at: datetime | None
    arrived_at: datetime | None
    vehicle_plate: str | None
    vehicle_kind: VehicleKind | None
    escort: str | None
    handover_note: str
    outcome: TransferOutcome | None
    outcome_at: datetime | None
    return_site_id: UUID | None
    return_stay_id: UUID | None


class TransferTimes(msgspec.Struct, kw_only=True):
    """Median response times of a site's transfers requested in [since, until)."""

    site_id: UUID
    since: datetime
    until: datetime
    transfers: int
    dispatched: int
    arrived: int
    median_request_to_dispatch_minutes: float | None
    median_request_to_arrival_minutes: float | None
