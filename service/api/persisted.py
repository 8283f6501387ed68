"""Persisted operations: the apps' GraphQL documents, known to the server by hash.

Every ``graphql/operations/*.graphql`` file is one document. An app sends
``{"extensions": {"persistedQuery": {"sha256Hash": "<hex>"}}}`` (or
``"documentId": "sha256:<hex>"``) instead of the text: smaller requests on poor
networks, and with ``QSITE_GRAPHQL_PERSISTED_ONLY`` production accepts nothing
else, so a stolen token cannot run arbitrary queries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

OPERATIONS_DIR = Path(__file__).resolve().parents[2] / "graphql" / "operations"


@cache
def documents() -> dict[str, str]:
    """sha256 hex of each operation file's text -> the text."""
    found = {}
    for path in sorted(OPERATIONS_DIR.glob("*.graphql")):
        text = path.read_text()
        found[hashlib.sha256(text.encode()).hexdigest()] = text
    return found


def requested_hash(extensions: dict | None) -> str | None:
    if not extensions:
        return None
    persisted = extensions.get("persistedQuery")
    if isinstance(persisted, dict) and isinstance(persisted.get("sha256Hash"), str):
        return persisted["sha256Hash"]
    document_id = extensions.get("documentId")
    if isinstance(document_id, str):
        return document_id.removeprefix("sha256:")
    return None


def persisted_operations(*, only: bool) -> type[SchemaExtension]:
    class PersistedOperations(SchemaExtension):
        def on_operation(self) -> Iterator[None]:
            ctx = self.execution_context
            wanted = requested_hash(ctx.operation_extensions)
            if wanted is not None:
                if wanted not in documents():
                    raise GraphQLError("PersistedQueryNotFound", extensions={"code": "persisted_query_not_found"})
                ctx.query = documents()[wanted]
            elif only and ctx.query and ctx.query not in documents().values():
                raise GraphQLError("Only persisted operations are accepted.", extensions={"code": "persisted_only"})
            yield

    return PersistedOperations
