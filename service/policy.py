"""The one authorisation policy: operation x role x scope, as data.

Every REST route names its operation (``opt=policy.rest("alerts.read")``, enforced in
``service.access.rest.AuthMiddleware``) and every GraphQL field its permission
(``permission_classes=[policy.gql("alerts.read")]``); service functions check the same
roles through ``policy.require`` / ``policy.roles``. A route or field that names no
operation is refused (REST) or fails the policy test (GraphQL).

Scope says which records a granted role reaches:

- ``sites``: records of the caller's sites (the command role: every site). A caller
  with no sites (an integration key or account without any) reaches nothing.
- ``facility``: hospital clients: transfers heading to their own facility (from the
  sites the key names, or from every site); a key linked to no facility reaches nothing.
- ``any``: data that belongs to no site (the item catalogue, regimes, facilities).

Compiled reads and anything else that builds its own SQL call ``site_filter`` to get
the value for a query's ``:site_ids`` parameter (None = every site, [] = none).
The README's role matrix is generated from ``POLICY`` (``python -m tests.security.walk``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

from strawberry.permission import BasePermission

from service.access.model import Principal, Role
from service.errors import Forbidden, Unauthorized


class Scope(StrEnum):
    SITES = "sites"
    FACILITY = "facility"
    ANY = "any"


@dataclass(frozen=True)
class Rule:
    """Who may perform one operation, each role with its scope; ``public``: no credential at all."""

    summary: str
    grants: dict[Role, Scope]
    public: bool = False

    @property
    def roles(self) -> frozenset[Role]:
        return frozenset(self.grants)


CMD, MGR, STAFF, MEDIC = Role.COMMAND, Role.SITE_MANAGER, Role.SITE_STAFF, Role.MEDIC
LOGISTICS, LAB, HOSPITAL, TRACING, CARRIER = Role.LOGISTICS, Role.LAB, Role.HOSPITAL, Role.TRACING, Role.CARRIER
PEOPLE = (CMD, MGR, STAFF, MEDIC)
ADMINS = (CMD, MGR)
FLOOR = (CMD, MGR, STAFF)  # admit, move, stock


def _grant(roles: Iterable[Role], scope: Scope = Scope.SITES, **more: Scope) -> dict[Role, Scope]:
    grants = dict.fromkeys(roles, scope)
    grants.update({Role(r): s for r, s in more.items()})
    return grants


def _rule(summary: str, roles: Iterable[Role], scope: Scope = Scope.SITES, **more: Scope) -> Rule:
    return Rule(summary, _grant(roles, scope, **more))


POLICY: dict[str, Rule] = {
    # access
    "auth.session": Rule("Log in, refresh, log out (no credential)", {}, public=True),
    "api.version": Rule("API version (no credential)", {}, public=True),
    "staff.self": _rule("The caller's own account", PEOPLE),
    "staff.read": _rule("Staff accounts (phones masked unless a purpose is given)", ADMINS),
    "staff.manage": _rule("Create and change staff accounts", ADMINS),
    "clients.manage": _rule("Integration clients: list, create, revoke", ADMINS),
    "audit.read": _rule("The audit log", [CMD]),
    # sites and rooms
    "sites.read": _rule("Sites", PEOPLE + (LOGISTICS,)),
    "sites.create": _rule("Create a site", [CMD], Scope.ANY),
    "sites.update": _rule("Change a site", ADMINS),
    "rooms.read": _rule("Rooms, their status and history", PEOPLE),
    "rooms.manage": _rule("Create floors, change rooms and their beds' attributes", ADMINS),
    "rooms.turn_over": _rule("Room turnover (in/out of service: command, site manager)", PEOPLE),
    # stays and residents
    "occupancy.read": _rule("Occupancy (beds, releases due)", PEOPLE + (LOGISTICS,)),
    "stays.read": _rule("Stays, the room board, contacts", PEOPLE),
    "stays.admit": _rule("Admit, suggest rooms, move stays", FLOOR),
    "stays.close": _rule("Release or extend stays", PEOPLE),
    "handovers.read": _rule("Hand-overs of released stays and their release certificates (contact masked unless a purpose is given)", PEOPLE + (TRACING,)),
    "handovers.revoke": _rule("Revoke a release certificate", ADMINS),
    "certificates.verify": Rule("Check a release certificate's code (no credential; answers no personal data)", {}, public=True),
    "regimes.read": _rule("Regimes", PEOPLE, Scope.ANY),
    "regimes.update": _rule("Create a regime, add a version, set regime rules", [CMD], Scope.ANY),
    "residents.find": _rule("Residents by document number (masked)", PEOPLE),
    "residents.reveal": _rule("Unmask a resident (audited)", [CMD, MGR, MEDIC]),
    # health
    "health.record": _rule("Record check-ins and swabs", PEOPLE),
    "health.read": _rule("Alerts, worklists, health timelines, exposure reviews", PEOPLE),
    "alerts.acknowledge": _rule("Acknowledge an alert", PEOPLE),
    "alerts.resolve": _rule("Resolve an alert", [MEDIC]),
    "reviews.decide": _rule("Decide an exposure review", [CMD, MGR, MEDIC]),
    "lab.results": _rule("Upload results by tube barcode (residents' and staff swabs)", [LAB]),
    # transfers
    "facilities.read": _rule("Destination facilities (a hospital: its own)", PEOPLE, Scope.ANY, hospital=Scope.FACILITY),
    "facilities.manage": _rule("Create and change facilities", [CMD], Scope.ANY),
    "transfers.read": _rule("Transfers, boards, transitions, response times", PEOPLE),
    "transfers.request": _rule("Request a transfer", PEOPLE),
    "transfers.move": _rule("Move a transfer along its state machine", [CMD, MEDIC]),
    "hospital.transfers": _rule("Transfers heading to the hospital: read, confirm arrival, refuse", [HOSPITAL], Scope.FACILITY),
    # supplies
    "supplies.items.read": _rule("The item catalogue", PEOPLE + (LOGISTICS,), Scope.ANY),
    "supplies.items.create": _rule("Add catalogue items", [CMD], Scope.ANY),
    "supplies.stock.read": _rule("Stock levels, the ledger, the change feed", PEOPLE + (LOGISTICS,)),
    "supplies.stock.write": _rule("Stock movements and transfers between sites", FLOOR),
    "supplies.levels": _rule("Reorder and target levels", ADMINS),
    "replenishments.read": _rule("Replenishment requests", PEOPLE + (LOGISTICS,)),
    "replenishments.raise": _rule("Raise or receive a replenishment", FLOOR),
    "replenishments.ship": _rule("Acknowledge or dispatch a replenishment", [CMD, LOGISTICS]),
    "replenishments.cancel": _rule("Cancel a replenishment", FLOOR + (LOGISTICS,)),
    "supplies.webhooks": _rule("Logistics webhooks for low stock and replenishments", [CMD, LOGISTICS]),
    # webhooks of every integration (service/webhooks): they hear what the owner's change feed shows
    # tracing: the community side's integration hears the hand-overs of its sites (stays.handed_over)
    "webhooks.manage": _rule(
        "Webhooks for the events the caller may read (as its change feed shows them)", [CMD, LOGISTICS, TRACING], hospital=Scope.FACILITY
    ),
    # regions and the command centre (service/regions); region-scoped staff reach their subtree's sites
    "regions.read": _rule("The region tree (for site-scoped roles: the regions above their sites)", PEOPLE),
    "regions.manage": _rule("Create, rename and move regions; place sites in them (within the caller's regions)", [CMD]),
    "regions.figures": _rule("Roll-ups, daily series and daily reports of the caller's sites", PEOPLE),
    # site operations: resident care (flags are health data)
    "care.read": _rule("Care requests, their deadlines and stock issued; whether a resident is flagged", PEOPLE),
    "care.request": _rule("Take, start, complete or decline care requests", PEOPLE),
    "care.issue": _rule("Issue stock against a care request", FLOOR),
    "care.flags.read": _rule("Residents' vulnerability flags (health data)", [CMD, MGR, MEDIC]),
    "care.flags.write": _rule("Set vulnerability flags (health data, audited)", [CMD, MGR, MEDIC]),
    # site operations: the staff closed loop (staff health data: medics and managers of the site, not command)
    "roster.read": _rule("Site workers and their shifts", PEOPLE),
    "roster.manage": _rule("Add workers and plan shifts", ADMINS),
    "staff_health.read": _rule("Staff check-ins, swabs, closed-loop status, tests due, exposure reviews", [MGR, MEDIC]),
    "staff_health.write": _rule("Record staff check-ins, swabs and results; set status; decide exposure", [MGR, MEDIC]),
    # site operations: infection control
    "infection.read": _rule("Inspections, findings, environmental swabs, the medical-waste log", PEOPLE),
    "infection.inspect": _rule("Record inspections, findings and their resolution, environmental swabs and results", [CMD, MGR, MEDIC]),
    "waste.record": _rule("Log sealed medical waste and its handover to the carrier", FLOOR),
    "waste.carrier": _rule("The carrier: waste batches of the sites it serves (no other record), confirm receipt", [CARRIER]),
    # intake: referrals, the admission queue, risk areas
    "referrals.submit": _rule("Refer people to isolate (tracing teams, command, site manager)", ADMINS + (TRACING,)),
    "referrals.read": _rule("Referrals, the pending-admission queue, identification -> isolation times", PEOPLE + (TRACING,)),
    "referrals.assign": _rule("Assign a referral to a site, mark a no-show", ADMINS),
    "referrals.cancel": _rule("Cancel a referral", ADMINS + (TRACING,)),
    "manifests.read": _rule("Arrival manifests and the beds reserved for them", PEOPLE),
    "manifests.manage": _rule("Announce arrival manifests (reserving beds), mark no-shows, cancel", ADMINS),
    "risk_areas.read": _rule("Risk areas", PEOPLE + (TRACING,), Scope.ANY),
    "risk_areas.manage": _rule("Declare risk areas", [CMD], Scope.ANY),
    # command centre
    "command.dashboard": _rule("The command dashboard page /command (browser session; the caller's sites)", [CMD]),
    # live updates and the change feed (which events each role sees: EVENT_READS below)
    "events.subscribe": _rule("Live site events (GraphQL subscription)", PEOPLE),
    "changes.read": _rule(
        "Changes by cursor: what the caller may read, in commit order (a hospital: its facility's transfers)",
        PEOPLE + (LOGISTICS,), hospital=Scope.FACILITY,
    ),
    # offline replay: the batch itself; each item also needs its own write's operation
    "sync.write": _rule("Replay writes queued offline (each item: its own operation)", PEOPLE),
}

# Which read operation governs the record each outbox event type describes. The change feed and
# the live subscription show an event only to a caller granted that operation, with its scope: an
# event of a site when the caller reaches that site, an event of no site (regimes, facilities, the
# catalogue, webhooks) only when the operation reaches every site for the caller (``site_filter``
# is None: Scope.ANY, or the command role). None: shown to no one (sessions, demo seeding: not
# records an app shows). A type missing here is shown to no one either, and fails
# tests/changes/test_visibility.py until someone classifies it.
EVENT_READS: dict[str, str | None] = {
    **dict.fromkeys(["sites.site_created", "sites.site_updated"], "sites.read"),
    **dict.fromkeys(["sites.rooms_created", "sites.room_updated", "sites.room_status_changed", "sites.disinfection_opened"], "rooms.read"),
    **dict.fromkeys(
        ["stays.admitted", "stays.batch_admitted", "stays.released", "stays.transferred", "stays.moved", "stays.extended",
         "stays.release_replanned"],
        "stays.read",
    ),
    **dict.fromkeys(["stays.regime_created", "stays.regime_updated", "stays.regime_rule_set"], "regimes.read"),
    **dict.fromkeys(["stays.handed_over", "stays.certificate_revoked"], "handovers.read"),
    "stays.bed_updated": "rooms.read",
    **dict.fromkeys(
        [f"intake.referral_{s}" for s in ("submitted", "merged", "assigned", "arrived", "cancelled", "no_show")], "referrals.read"
    ),
    "intake.risk_area_declared": "risk_areas.read",
    **dict.fromkeys(
        [f"intake.manifest_{s}" for s in ("announced", "arrived", "member_no_show", "cancelled")], "manifests.read"
    ),
    **dict.fromkeys(
        ["health.checkin_recorded", "health.alert_raised", "health.alert_acknowledged", "health.alert_resolved",
         "health.sample_recorded", "health.sample_resulted", "health.retests_opened", "health.exposure_review_opened",
         "health.exposure_review_confirmed", "health.exposure_review_dismissed"],
        "health.read",
    ),
    **dict.fromkeys(
        ["transfers.requested", "transfers.approved", "transfers.rejected", "transfers.dispatched", "transfers.departed",
         "transfers.arrived", "transfers.cancelled", "transfers.refused_at_door", "transfers.destination_accepted",
         "transfers.destination_declined", "transfers.redirected", "transfers.outcome_reported"],
        "transfers.read",
    ),
    **dict.fromkeys(["transfers.facility_created", "transfers.facility_updated"], "facilities.read"),
    **dict.fromkeys(
        ["care.request_opened", "care.request_started", "care.request_done", "care.request_declined", "care.stock_issued"], "care.read"
    ),
    "care.profile_updated": "care.flags.read",
    **dict.fromkeys(["staff.worker_added", "staff.shift_planned"], "roster.read"),
    **dict.fromkeys(
        ["staff.status_changed", "staff.checkin_recorded", "staff.checkin_flagged", "staff.sample_recorded", "staff.sample_resulted",
         "staff.exposure_review_opened", "staff.exposure_cleared", "staff.exposure_isolated"],
        "staff_health.read",
    ),
    **dict.fromkeys(
        ["inspection.recorded", "inspection.finding_recorded", "inspection.finding_resolved", "inspection.swab_recorded",
         "inspection.swab_resulted", "inspection.waste_sealed", "inspection.waste_handed_over"],
        "infection.read",
    ),
    **dict.fromkeys(
        ["supplies.stock_moved", "supplies.stock_levels_set", "supplies.low_stock", "supplies.stock_recovered", "supplies.stock_seeded"],
        "supplies.stock.read",
    ),
    **dict.fromkeys([f"supplies.replenishment_{s}" for s in ("requested", "acknowledged", "dispatched", "received", "cancelled")], "replenishments.read"),
    "supplies.item_created": "supplies.items.read",
    **dict.fromkeys(
        ["supplies.webhook_registered", "supplies.webhook_removed", "webhooks.webhook_registered", "webhooks.webhook_removed"],
        "webhooks.manage",
    ),
    **dict.fromkeys(["regions.region_created", "regions.region_updated", "regions.site_placed"], "regions.read"),
    **dict.fromkeys(["access.staff_created", "access.staff_updated"], "staff.read"),
    **dict.fromkeys(["access.client_created", "access.client_revoked"], "clients.manage"),
    **dict.fromkeys(
        ["access.staff_logged_in", "access.staff_logged_out", "access.token_refreshed", "access.refresh_token_reused",
         "command.session_started", "command.session_ended", "system.demo_seeded", "stays.demo_seeded", "health.demo_seeded"],
        None,
    ),
}


# Events of no site: the records of data shared by every site (regimes, facilities, the catalogue, risk
# areas: read with Scope.ANY) and webhooks. A caller whose read of them is limited to sites never sees
# them, so they are not among its types at all (a webhook cannot subscribe to what it would never hear).
NO_SITE_EVENTS = frozenset(
    t for t, op in EVENT_READS.items() if op is not None and Scope.ANY in POLICY[op].grants.values()
) | {"supplies.webhook_registered", "supplies.webhook_removed", "webhooks.webhook_registered", "webhooks.webhook_removed"}

# What a facility-scoped caller (a hospital) sees of the outbox, and the operation granting it: the
# events of transfers and facility records that name its facility (``FACILITY_KEYS``, or the event's
# subject: the facility itself), at the sites its key names (every site when it names none). Grants of
# facility scope in EVENT_READS above show nothing by themselves (facilities.read would otherwise show
# every facility's changes): this table is the whole of what such a caller sees.
FACILITY_EVENT_READS: dict[str, str] = {
    **dict.fromkeys([t for t, op in EVENT_READS.items() if op == "transfers.read"], "hospital.transfers"),
    **dict.fromkeys([t for t, op in EVENT_READS.items() if op == "facilities.read"], "facilities.read"),
}
# The data keys by which an event names a facility: where the transfer heads, the facility that
# refused or declined it, the one it was redirected away from.
FACILITY_KEYS = ("destination_id", "refused_by", "previous_destination_id")


@dataclass(frozen=True)
class EventScope:
    """The event types a caller may see: at its sites, and among the events of no site.

    ``facility_id``: for a facility-scoped caller, every one of these types shows only when the
    event names that facility (``FACILITY_KEYS`` or its subject).
    """

    site_types: frozenset[str]
    global_types: frozenset[str]
    facility_id: UUID | None = None


# The operations that show events: the change feed, live updates, webhooks (all through ``event_scope``).
FEED_OPERATIONS = ("changes.read", "events.subscribe", "webhooks.manage")


def _facility_scoped(principal: Principal) -> bool:
    return any(rule(op).grants.get(principal.role) is Scope.FACILITY for op in FEED_OPERATIONS)


def event_scope(principal: Principal) -> EventScope:
    """What ``principal`` sees of the outbox (nothing for a role granted neither feed nor live updates)."""
    site_types: set[str] = set()
    global_types: set[str] = set()
    if not any(allows(principal, op) for op in FEED_OPERATIONS):
        return EventScope(frozenset(), frozenset())
    if _facility_scoped(principal):
        if principal.facility_id is None:  # a key linked to no facility reaches nothing
            return EventScope(frozenset(), frozenset())
        shown = frozenset(t for t, op in FACILITY_EVENT_READS.items() if rule(op).grants.get(principal.role) is Scope.FACILITY)
        return EventScope(shown, shown, principal.facility_id)
    for event_type, operation in EVENT_READS.items():
        if operation is None or rule(operation).grants.get(principal.role) in (None, Scope.FACILITY):
            continue
        everywhere = site_filter(principal, operation) is None
        if event_type in NO_SITE_EVENTS and not everywhere:
            continue
        site_types.add(event_type)
        if everywhere:
            global_types.add(event_type)
    return EventScope(frozenset(site_types), frozenset(global_types))


def event_facility(principal: Principal) -> UUID | None:
    """The facility whose events a facility-scoped caller sees (None for every other caller)."""
    return principal.facility_id if _facility_scoped(principal) else None


def event_sites(principal: Principal) -> list[UUID] | None:
    """The sites whose events the caller reads by default (None: every site, [] none): its sites, or for
    a facility-scoped caller the sites its key names (every site when it names none)."""
    if _facility_scoped(principal):
        return None if principal.site_ids is None else sorted(principal.site_ids)
    return principal.site_scope


def rule(operation: str) -> Rule:
    try:
        return POLICY[operation]
    except KeyError:
        raise KeyError(f"{operation!r} is not an operation of service/policy.py") from None


def roles(operation: str) -> tuple[Role, ...]:
    """The roles granted ``operation``, in Role order (for service-level checks)."""
    granted = rule(operation).grants
    return tuple(r for r in Role if r in granted)


def allows(principal: Principal | None, operation: str) -> bool:
    r = rule(operation)
    return r.public or (principal is not None and principal.role in r.grants)


def require(principal: Principal | None, operation: str) -> Principal | None:
    """The principal, if it may perform ``operation``: 401 without one, 403 ``role_not_allowed`` otherwise."""
    r = rule(operation)
    if r.public:
        return principal
    if principal is None:
        raise Unauthorized("Authentication required.", code="unauthenticated")
    if principal.role not in r.grants:
        raise Forbidden(f"Not allowed for the role {principal.role}.", code="role_not_allowed")
    return principal


def site_filter(principal: Principal, operation: str) -> list[UUID] | None:
    """The ``:site_ids`` value a query for ``operation`` must bind: None = every site, [] = nothing.

    A role not granted the operation reaches no site's data. For a facility scope it is the
    sites the key names (None: every site), to be applied together with ``facility_filter``.
    """
    scope = rule(operation).grants.get(principal.role)
    if scope is Scope.ANY:
        return None
    if scope is Scope.FACILITY:
        return None if principal.site_ids is None else list(principal.site_ids)
    if scope is Scope.SITES:
        return principal.site_scope
    return []


def facility_filter(principal: Principal, operation: str) -> UUID | None:
    """The facility a facility-scoped caller reaches (None: none; such a caller sees nothing)."""
    return principal.facility_id if rule(operation).grants.get(principal.role) is Scope.FACILITY else None


# --- wiring into REST and GraphQL ---------------------------------------------------

OPERATION_OPT = "operation"


def rest(operation: str) -> dict[str, str]:
    """Route option naming the route's operation; AuthMiddleware enforces it."""
    rule(operation)
    return {OPERATION_OPT: operation}


_permissions: dict[str, type] = {}


def gql(operation: str) -> type:
    """The Strawberry permission class of ``operation`` (one class per operation).

    Denials raise coded DomainErrors rather than set ``message``: the permission
    instance is shared by every request, and the error then carries its code.
    On a nullable nested field a denial answers null plus an error.
    """
    if operation in _permissions:
        return _permissions[operation]
    rule(operation)

    class Allowed(BasePermission):
        def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
            require(info.context.principal, operation)
            return True

    Allowed.operation = operation  # type: ignore[attr-defined]
    Allowed.__name__ = "Allowed_" + operation.replace(".", "_")
    _permissions[operation] = Allowed
    return Allowed


def operation_of(permission_classes: Iterable[type]) -> str | None:
    """The operation a GraphQL field's permission classes enforce (None: none declared)."""
    return next((getattr(p, "operation", None) for p in permission_classes if getattr(p, "operation", None)), None)
