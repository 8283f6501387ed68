"""Each GraphQL field's description lists the ``extensions.code`` values its top-level errors can carry.

Expected failures of mutations are ``userErrors``; what still reaches
``errors`` (authentication, a role, a cursor or limit out of range, a record
that is not the caller's) carries a DomainError ``code`` in ``extensions``. The
list is read from the resolver and its permission classes by
``service.errorcodes`` (errors inside ``mutate``/``mutate_input``/``input_struct`` become
userErrors and are left out), so it cannot drift from the code.
"""

from __future__ import annotations

import re
from typing import Any

import strawberry
from strawberry.types.base import StrawberryObjectDefinition

from service import errorcodes, gql

ERRORS_LINE = "Errors (`extensions.code`): "
_CODES = re.compile(r"`([a-z0-9_]+)`")


ROOT_TYPES = ("Query", "Mutation", "Subscription")


def field_codes(field: Any, *, root: bool) -> set[str]:
    resolver = field.base_resolver.wrapped_func if field.base_resolver else None
    if resolver is None:
        return set()
    permissions = [cls.has_permission for cls in field.permission_classes]
    found = errorcodes.raised_by(resolver, *permissions, writes=False, barriers=[gql.mutate, gql.mutate_input, gql.input_struct])
    if root:
        # An argument the database cannot take (a NUL in text) is translated too (service/api/graphql.py).
        found = errorcodes.merge(found, errorcodes.READ_DATABASE_CODES)
    return {code for status, codes in found.items() if status < 500 for code in codes}


def listed_codes(description: str | None) -> set[str]:
    """The codes a field's description lists (what clients and the contract tests read)."""
    for line in (description or "").splitlines():
        if line.startswith(ERRORS_LINE):
            return set(_CODES.findall(line))
    return set()


def document_errors(schema: strawberry.Schema) -> None:
    """Append the errors line to every resolved field's description in ``schema``."""
    for definition in schema.schema_converter.type_map.values():
        strawberry_type = definition.definition
        if not isinstance(strawberry_type, StrawberryObjectDefinition):
            continue
        graphql_type: Any = schema._schema.get_type(strawberry_type.name)
        for field in strawberry_type.fields:
            codes = field_codes(field, root=strawberry_type.name in ROOT_TYPES)
            if not codes:
                continue
            target = graphql_type.fields[schema.config.name_converter.get_graphql_name(field)]
            line = ERRORS_LINE + ", ".join(f"`{code}`" for code in sorted(codes)) + "."
            target.description = f"{target.description}\n\n{line}" if target.description else line
