"""Who is calling: roles and the Principal every service function receives."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import msgspec

from service.fields import Version


class Role(StrEnum):
    # people (GraphQL apps)
    COMMAND = "command"
    SITE_MANAGER = "site_manager"
    SITE_STAFF = "site_staff"
    MEDIC = "medic"
    # integration clients (REST)
    LOGISTICS = "logistics"
    LAB = "lab"
    HOSPITAL = "hospital"
    TRACING = "tracing"
    CARRIER = "carrier"


STAFF_ROLES = frozenset({Role.COMMAND, Role.SITE_MANAGER, Role.SITE_STAFF, Role.MEDIC})
CLIENT_ROLES = frozenset({Role.LOGISTICS, Role.LAB, Role.HOSPITAL, Role.TRACING, Role.CARRIER})


class PrincipalKind(StrEnum):
    STAFF = "staff"
    CLIENT = "client"
    # The CLI and the demo seed: acts with the command role, never authenticates over HTTP.
    SYSTEM = "system"


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated caller.

    ``site_ids`` is the set of sites the caller may see; ``None`` means every
    site (the command role). Store queries take ``principal.site_scope`` so a
    query can never forget the restriction.
    """

    kind: PrincipalKind
    id: UUID
    role: Role
    site_ids: frozenset[UUID] | None
    name: str = ""
    # For hospital clients: the destination facility they speak for.
    facility_id: UUID | None = None
    # Staff scoped to region subtrees (service/regions): the granted regions. Their sites are
    # already expanded into ``site_ids`` when the token is issued; this says which part of
    # the tree they may see and manage. None: not region-scoped.
    region_ids: frozenset[UUID] | None = None

    @property
    def ref(self) -> str:
        """Stable text identity for audit rows, event actors and idempotency scoping."""
        return f"{self.kind}:{self.id}"

    @property
    def site_scope(self) -> list[UUID] | None:
        """The value to bind to a query's ``:site_ids`` (NULL = all sites, [] = none).

        Only the command role has every site. Any other caller without sites (an
        integration key created without any) reaches nothing, and a hospital client
        reaches no site's data at all: its scope is its facility (``service.policy``).
        """
        if self.role is Role.HOSPITAL:
            return []
        if self.site_ids is None:
            return None if self.role is Role.COMMAND else []
        return list(self.site_ids)

    def can_access_site(self, site_id: UUID) -> bool:
        if self.role is Role.HOSPITAL:
            return False
        if self.site_ids is None:
            return self.role is Role.COMMAND
        return site_id in self.site_ids

    @property
    def all_sites(self) -> bool:
        """Every site, unscoped: the command role without a region or site limit."""
        return self.site_scope is None

    def has_role(self, *roles: Role) -> bool:
        return self.role in roles


UNMASK_ROLES = frozenset({Role.COMMAND, Role.MEDIC, Role.SITE_MANAGER})
STAFF_ADMIN_ROLES = (Role.COMMAND, Role.SITE_MANAGER)

Username = Annotated[
    str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9._-]{1,62}$", description="Lower-case login name, 2-63 characters")
]
DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=256, description="At least 8 characters")]
Phone = Annotated[str, msgspec.Meta(pattern=r"^\+?[0-9][0-9 -]{4,30}$", description="Phone number, digits")]
Purpose = Annotated[str, msgspec.Meta(min_length=3, max_length=200, description="Why personal data is unmasked (audited)")]


class StaffRole(StrEnum):
    COMMAND = "command"
    SITE_MANAGER = "site_manager"
    SITE_STAFF = "site_staff"
    MEDIC = "medic"


class ClientRole(StrEnum):
    LOGISTICS = "logistics"
    LAB = "lab"
    HOSPITAL = "hospital"
    # Contact-tracing (流调) teams: submit people to isolate to the sites they serve.
    TRACING = "tracing"
    # Medical-waste carriers: read the waste batches of the sites they serve and confirm receipt.
    CARRIER = "carrier"


class Staff(msgspec.Struct, kw_only=True):
    """A staff account as answered: ``phone`` is masked unless unmasked with a purpose."""

    id: UUID
    username: str
    display_name: str
    phone: str | None
    role: StaffRole
    site_ids: list[UUID]
    # Region subtrees the account is scoped to (its sites there are added to site_ids' reach).
    region_ids: list[UUID] = []
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime


class StaffCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    username: Username
    display_name: DisplayName
    password: Password
    role: StaffRole
    site_ids: list[UUID] = []
    # Region subtrees (service/regions): the account reaches every site under them. A command
    # account given regions is a district's command centre rather than the whole city's.
    region_ids: list[UUID] = []
    phone: Phone | None = None
    # Offline-safe: a replay with the same id is a no-op conflict rather than a second account.
    id: UUID | None = None


class StaffPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields to change; ``version`` must be the version the caller read (409 if stale)."""

    version: Version
    display_name: DisplayName | msgspec.UnsetType = msgspec.UNSET
    phone: Phone | None | msgspec.UnsetType = msgspec.UNSET
    role: StaffRole | msgspec.UnsetType = msgspec.UNSET
    site_ids: list[UUID] | msgspec.UnsetType = msgspec.UNSET
    region_ids: list[UUID] | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    password: Password | msgspec.UnsetType = msgspec.UNSET

    def changes(self) -> dict[str, Any]:  # field -> its new value, whatever its type
        return {f: v for f in self.__struct_fields__ if f != "version" and (v := getattr(self, f)) is not msgspec.UNSET}


class LoginRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class RefreshRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class TokenPair(msgspec.Struct, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    staff_id: UUID
    role: StaffRole
    site_ids: list[UUID] | None


class ApiClient(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    role: ClientRole
    key_prefix: str
    site_ids: list[UUID] | None
    facility_id: UUID | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


class ApiClientCreated(ApiClient, kw_only=True):
    """The new client with its API key: the only time the key is shown."""

    api_key: str | None


class ApiClientCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: DisplayName
    role: ClientRole
    # Logistics, lab and tracing: the sites served (required). Hospital: null = transfers from every
    # site (command centre only), or only those from these sites.
    site_ids: list[UUID] | None
    # Hospital clients only, and required for them: the facility they speak for.
    facility_id: UUID | None = None


class AuditEntry(msgspec.Struct, kw_only=True):
    id: int
    at: datetime
    actor: str
    actor_role: str
    action: str
    site_id: UUID | None
    subject_id: UUID | None
    fields: list[str]
    purpose: str | None
    request_id: str | None
