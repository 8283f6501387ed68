"""Who is calling: roles and the Principal every service function receives."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

import msgspec


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


STAFF_ROLES = frozenset({Role.COMMAND, Role.SITE_MANAGER, Role.SITE_STAFF, Role.MEDIC})
CLIENT_ROLES = frozenset({Role.LOGISTICS, Role.LAB, Role.HOSPITAL})


class PrincipalKind(StrEnum):
    STAFF = "staff"
    CLIENT = "client"


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

    @property
    def ref(self) -> str:
        """Stable text identity for audit rows, event actors and idempotency scoping."""
        return f"{self.kind}:{self.id}"

    @property
    def site_scope(self) -> list[UUID] | None:
        """The value to bind to a query's ``:site_ids`` (NULL = all sites)."""
        return None if self.site_ids is None else list(self.site_ids)

    def can_access_site(self, site_id: UUID) -> bool:
        return self.site_ids is None or site_id in self.site_ids

    def has_role(self, *roles: Role) -> bool:
        return self.role in roles
