"""Persisted operations: the apps' GraphQL documents, known to the server by hash.

Every ``graphql/operations/*.graphql`` file is one document. An app sends
``{"extensions": {"persistedQuery": {"sha256Hash": "<hex>"}}}`` (or
``"documentId": "sha256:<hex>"``) instead of the text: smaller requests on poor
networks, and with ``QSITE_GRAPHQL_PERSISTED_ONLY`` production accepts nothing
else, so a stolen token cannot run arbitrary queries.

Selections the apps use in several places are fragments, one per file in
``graphql/operations/fragments/`` (``fragment StayFields on Stay`` in
``StayFields.graphql``). An operation file spreads them without defining
them; the document sent (and hashed) is the operation file's text followed by
each fragment it uses, directly or through another fragment, in name order,
each preceded by a newline: ``operation_document(path)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from graphql import FragmentDefinitionNode, FragmentSpreadNode, GraphQLError, parse, visit
from graphql.language import Visitor
from strawberry.extensions import SchemaExtension

OPERATIONS_DIR = Path(__file__).resolve().parents[2] / "graphql" / "operations"
FRAGMENTS_DIR = OPERATIONS_DIR / "fragments"


def _spreads_and_definitions(text: str) -> tuple[set[str], set[str]]:
    spread: set[str] = set()

    class Spreads(Visitor):
        def enter_fragment_spread(self, node: FragmentSpreadNode, *_: object) -> None:
            spread.add(node.name.value)

    document = parse(text)
    visit(document, Spreads())
    return spread, {d.name.value for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def operation_document(path: Path) -> str:
    """The full document of an operation file: its text, then the shared fragments it uses."""
    text = path.read_text()
    wanted, defined = _spreads_and_definitions(text)
    fragments: dict[str, str] = {}
    pending = sorted(wanted - defined)
    while pending:
        name = pending.pop()
        if name in fragments:
            continue
        fragments[name] = (FRAGMENTS_DIR / f"{name}.graphql").read_text()
        pending.extend(sorted(_spreads_and_definitions(fragments[name])[0] - fragments.keys()))
    return text + "".join("\n" + fragments[name] for name in sorted(fragments))


def operation_files() -> list[Path]:
    return sorted(OPERATIONS_DIR.glob("*.graphql"))


@cache
def documents() -> dict[str, str]:
    """sha256 hex of each operation's full document -> the document."""
    found = {}
    for path in operation_files():
        text = operation_document(path)
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
