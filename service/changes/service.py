"""Changes by cursor over the outbox (service/bus.py): scope, visibility, and the record each change names.

A page is what ``bus.read_feed`` reads: commit order, a cursor that never skips a late commit,
bounded by what it returns. Around it, this module decides what the caller may see:

- sites: the caller's sites (or the ones it names, each checked: a foreign id is ``site_not_found``);
- types: the event types ``policy.event_scope`` grants the role (``policy.EVENT_READS``), narrowed by
  the caller's ``types`` (a type such as ``transfers.approved`` or a whole domain such as ``transfers``);
- events of no site (regimes, facilities, the catalogue) only where the role reaches every site.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service import bus, policy
from service.access.model import Principal, Role
from service.changes.model import Change, ChangePage
from service.errors import InvalidInput, NotFound
from service.sites import service as sites

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000  # a catch-up reads many changes: bigger pages than the lists' 100
MAX_SITES = 200
MAX_TYPES = 50
_TYPE_NAME = re.compile(r"^[a-z_]{1,50}(\.[a-z_]{1,50})?$")

# The kind of record each event type describes, and the key of ``data`` that lists the records of a
# batch event (None: the event's subject is the one record). Every type the policy shows is here
# (tests/changes/test_visibility.py).
ENTITY_OF: dict[str, tuple[str, str | None]] = {
    "sites.site_created": ("site", None),
    "sites.site_updated": ("site", None),
    "sites.rooms_created": ("room", "room_ids"),
    "sites.room_updated": ("room", None),
    "sites.room_status_changed": ("room", None),
    "sites.disinfection_opened": ("room", None),
    "stays.admitted": ("stay", None),
    "stays.batch_admitted": ("stay", "stay_ids"),
    "stays.released": ("stay", None),
    "stays.transferred": ("stay", None),
    "stays.moved": ("stay", None),
    "stays.extended": ("stay", None),
    "stays.release_replanned": ("stay", "stay_ids"),
    "stays.handed_over": ("handover", None),  # subject: the released stay
    "stays.certificate_revoked": ("handover", None),
    "stays.regime_created": ("regime", None),
    "stays.bed_updated": ("bed", None),
    "stays.regime_updated": ("regime", None),
    "stays.regime_rule_set": ("regime_rule", None),
    **{f"intake.referral_{s}": ("referral", None) for s in ("submitted", "merged", "assigned", "arrived", "cancelled", "no_show")},
    "intake.risk_area_declared": ("risk_area", None),
    **{f"intake.manifest_{s}": ("manifest", None) for s in ("announced", "arrived", "member_no_show", "cancelled")},
    "health.checkin_recorded": ("checkin", None),
    "health.alert_raised": ("alert", None),
    "health.alert_acknowledged": ("alert", None),
    "health.alert_resolved": ("alert", None),
    "health.sample_recorded": ("sample", None),
    "health.sample_resulted": ("sample", None),
    "health.retests_opened": ("sample", None),
    "health.exposure_review_opened": ("exposure_review", "review_ids"),
    "health.exposure_review_confirmed": ("exposure_review", None),
    "health.exposure_review_dismissed": ("exposure_review", None),
    **{t: ("transfer", None) for t in policy.EVENT_READS if t.startswith("transfers.") and not t.startswith("transfers.facility_")},
    "transfers.facility_created": ("facility", None),
    "transfers.facility_updated": ("facility", None),
    "supplies.stock_moved": ("movement", None),
    "supplies.stock_levels_set": ("stock", None),  # subject: the item, at the event's site
    "supplies.low_stock": ("stock", None),
    "supplies.stock_recovered": ("stock", None),
    "supplies.stock_seeded": ("stock", None),
    **{t: ("replenishment", None) for t in policy.EVENT_READS if t.startswith("supplies.replenishment_")},
    "supplies.item_created": ("item", None),
    "care.profile_updated": ("care_profile", None),  # subject: the stay
    "staff.worker_added": ("worker", None),
    "staff.status_changed": ("worker", None),
    "staff.shift_planned": ("shift", None),
    "staff.checkin_recorded": ("staff_checkin", None),
    "staff.checkin_flagged": ("staff_checkin", None),
    "staff.sample_recorded": ("staff_sample", None),
    "staff.sample_resulted": ("staff_sample", None),
    "staff.exposure_review_opened": ("staff_exposure", "exposure_ids"),  # subject: the positive resident's stay
    "staff.exposure_cleared": ("staff_exposure", None),
    "staff.exposure_isolated": ("staff_exposure", None),
    "inspection.recorded": ("inspection", None),
    "inspection.finding_recorded": ("finding", None),
    "inspection.finding_resolved": ("finding", None),
    "inspection.swab_recorded": ("environmental_sample", None),
    "inspection.swab_resulted": ("environmental_sample", None),
    "inspection.waste_sealed": ("waste", None),
    "inspection.waste_handed_over": ("waste", None),
    **{t: ("care_request", None) for t in policy.EVENT_READS if t.startswith("care.") and t != "care.profile_updated"},
    "supplies.webhook_registered": ("webhook", None),
    "supplies.webhook_removed": ("webhook", None),
    "webhooks.webhook_registered": ("webhook", None),
    "webhooks.webhook_removed": ("webhook", None),
    "regions.region_created": ("region", None),
    "regions.region_updated": ("region", None),
    "regions.site_placed": ("region", None),  # the region a site (the event's site) was placed in
    "access.staff_created": ("staff", None),
    "access.staff_updated": ("staff", None),
    "access.client_created": ("client", None),
    "access.client_revoked": ("client", None),
}
# Changes after which the record is gone for the caller (deleted or deactivated): an app drops it.
TOMBSTONES = frozenset({"supplies.webhook_removed", "webhooks.webhook_removed", "access.client_revoked"})


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}.", code="invalid_limit", field="limit")
    return limit


def wanted_types(names: Sequence[str] | None, *, field: str = "types") -> list[str] | None:
    """Validated ``types``: event types (``transfers.approved``) or domains (``transfers``); None: all."""
    if names is None:
        return None
    if not names or len(names) > MAX_TYPES or not all(_TYPE_NAME.match(n) for n in names):
        raise InvalidInput(
            f"{field}: 1 to {MAX_TYPES} event types (domain.what_happened) or domains.", code="invalid_input", field=field
        )
    return list(dict.fromkeys(names))


def select_types(visible: frozenset[str], names: Sequence[str] | None) -> frozenset[str]:
    """The visible types that ``names`` (types or domains) ask for; all of them when None."""
    if names is None:
        return visible
    return frozenset(t for t in visible if any(t == n or t.startswith(n + ".") for n in names))


async def resolve_sites(conn: asyncpg.Connection, principal: Principal, site_ids: Sequence[UUID] | None, *, field: str) -> list[UUID] | None:
    """The sites to read (None: every site, the command role's default); any id the caller may not see is refused.

    Foreign and unknown ids look alike, as everywhere else; one query checks them all.
    """
    if site_ids is None:
        scope = policy.event_sites(principal)
        if scope is None:
            return None
        if not scope:
            raise InvalidInput("The caller is assigned to no site.", code="no_sites", field=field)
        return sorted(scope)
    wanted = list(dict.fromkeys(site_ids))
    if not wanted:
        raise InvalidInput(f"{field}, when given, names at least one site.", code="invalid_input", field=field)
    if len(wanted) > MAX_SITES:
        raise InvalidInput(f"At most {MAX_SITES} sites at once.", code="invalid_input", field=field)
    if policy.event_facility(principal) is not None:
        # A hospital reads the sites its key names (any site when it names none) as senders of its
        # transfers; it reaches no site's records, so existence is checked on the sites it names.
        named = wanted if principal.site_ids is None else [s for s in wanted if s in principal.site_ids]
        acting = msgspec.structs.replace(principal, role=Role.SITE_STAFF, site_ids=frozenset(named), facility_id=None)
        visible = await sites.get_sites(conn, acting, named) if named else {}
    else:
        visible = await sites.get_sites(conn, principal, wanted)
    if any(site_id not in visible for site_id in wanted):
        raise NotFound("No such site.", code="site_not_found", field=field)
    return wanted


# Data keys that may name another site (a client or staff member of several sites, a move between
# sites). A change shows the sites the caller reaches, and a move to a site it does not reach as
# a move elsewhere: another site's ids never reach the caller, whatever the event recorded.
_SITE_LISTS = ("site_ids",)
_MOVE_KEYS = ("to_site", "to_stay", "to_room")


# What a facility-scoped caller (a hospital) sees of an event's data: the facts its IncomingTransfer shows
# (states, urgency, vehicle kind, outcome; a facility's code and kind), and facility ids only where they
# are its own. No stay, room or resident ids, no other facility's id: whatever the event recorded.
_FACILITY_DATA = frozenset({
    "from", "to", "version", "urgency", "infectious", "reason", "vehicle_kind", "outcome", "previous",
    "returned_to_sending_site", "code", "kind", "fields",
})


def _facility_data(data: dict[str, Any], facility_id: UUID) -> dict[str, Any]:
    own = str(facility_id)
    out = {k: v for k, v in data.items() if k in _FACILITY_DATA}
    for key in policy.FACILITY_KEYS:
        if key in data:
            out[key] = own if data[key] == own else None
    return out


def _scoper(principal: Principal) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """An event's data as ``principal`` may see it, its facility and reachable sites worked out once (a page
    or a replay scopes thousands of events for the same caller)."""
    facility_id = policy.event_facility(principal)
    if facility_id is not None:
        return lambda data: _facility_data(data, facility_id)
    scope = principal.site_scope
    if scope is None:
        return lambda data: data
    reachable = frozenset(str(s) for s in scope)

    def scoped(data: dict[str, Any]) -> dict[str, Any]:
        if not any(k in data for k in (*_SITE_LISTS, "to_site")):
            return data
        out = dict(data)
        for key in _SITE_LISTS:
            if isinstance(out.get(key), list):
                out[key] = [s for s in out[key] if s in reachable]
        if out.get("to_site") is not None and out["to_site"] not in reachable:
            for key in _MOVE_KEYS:
                out.pop(key, None)
        return out

    return scoped


def to_change(row: bus.FeedRow, principal: Principal) -> Change:
    return shown_to(principal)(row)


def shown_to(principal: Principal) -> Callable[[bus.FeedRow], Change]:
    """``to_change`` for one caller, applied to many rows."""
    scoped = _scoper(principal)

    def show(row: bus.FeedRow) -> Change:
        event = row.event
        data = event.data
        entity, ids_key = ENTITY_OF.get(event.type) or (event.type.split(".", 1)[0], None)
        listed = data.get(ids_key) if ids_key else None
        entity_ids = [UUID(i) for i in listed] if isinstance(listed, list) else ([event.subject_id] if event.subject_id else [])
        version = data.get("version") if ids_key is None else None  # a batch names many records: no one version
        return Change(
            cursor=row.cursor,
            id=event.id,
            type=event.type,
            entity=entity,
            entity_id=event.subject_id if ids_key is None else None,
            entity_ids=entity_ids,
            site_id=event.site_id,
            version=version if isinstance(version, int) else None,
            tombstone=event.type in TOMBSTONES,
            data=scoped(data),
            at=event.at,
        )

    return show


async def read_changes(
    conn: asyncpg.Connection, principal: Principal, *, site_ids: list[UUID] | None, after: str | None, types: frozenset[str],
    global_types: frozenset[str], limit: int,
) -> ChangePage:
    """One page of changes of resolved sites and types (see ``changes``)."""
    rows, more = await bus.read_feed(
        conn, cursor=after, limit=limit, site_ids=site_ids, types=types, global_types=global_types, naming=_naming(principal)
    )
    return ChangePage(
        changes=list(map(shown_to(principal), rows)),
        next_cursor=rows[-1].cursor if rows else (after or bus.event_cursor(0, 0)),
        has_more=more,
    )


def visible_types(principal: Principal, names: Sequence[str] | None) -> tuple[frozenset[str], frozenset[str]]:
    """(types at the caller's sites, types of events of no site) the caller may read among ``names`` (None: all)."""
    scope = policy.event_scope(principal)
    return select_types(scope.site_types, names), select_types(scope.global_types, names)


async def read_rows(
    conn: asyncpg.Connection, principal: Principal, *, after: str | None, names: Sequence[str] | None, limit: int
) -> tuple[list[bus.FeedRow], bool]:
    """The events ``principal`` may read at all its sites among ``names``, after ``after``; what a webhook hears.

    The rows are raw events: show them through ``to_change`` (which scopes their data to the caller).
    """
    types, global_types = visible_types(principal, names)
    return await bus.read_feed(
        conn, cursor=after, limit=limit, site_ids=policy.event_sites(principal), types=types, global_types=global_types,
        naming=_naming(principal),
    )


def _naming(principal: Principal) -> tuple[UUID, Sequence[str]] | None:
    """A facility-scoped caller reads only the events naming its facility."""
    facility_id = policy.event_facility(principal)
    return None if facility_id is None else (facility_id, policy.FACILITY_KEYS)


async def changes(
    conn: asyncpg.Connection,
    principal: Principal,
    *,
    site_ids: Sequence[UUID] | None,
    after: str | None,
    types: Sequence[str] | None,
    limit: int,
    site_field: str = "site_id",
) -> ChangePage:
    """Changes the caller may read at ``site_ids`` (default: all its sites) after ``after``, oldest first."""
    policy.require(principal, "changes.read")
    check_limit(limit)
    bus.cursor_position(after)  # a bad cursor is refused before any site is looked up
    names = wanted_types(types)
    scope_sites = await resolve_sites(conn, principal, site_ids, field=site_field)
    shown, shown_global = visible_types(principal, names)
    return await read_changes(conn, principal, site_ids=scope_sites, after=after, types=shown, global_types=shown_global, limit=limit)
