"""GraphQL documents, prepared once: parsed, held to the server's limits, validated.

Persisted operations: every ``graphql/operations/*.graphql`` file is one
document, prepared when the app starts. An app sends
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

Any other document is prepared on first sight and kept in a bounded cache, so
a client repeating a document pays for parsing and validation once. Limits
(depth, aliases, tokens, operations per document) are checked with the rest of
validation: once per document, never per request.

A query that asks only for constants (``{ apiVersion }``, ``__typename``: the
schema names them) is answered when it is prepared, and that answer is sent as
it is: the same bytes execution would write, without executing per request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import msgspec
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    ValidationRule,
    execute,
    parse,
    specified_rules,
    validate,
)
from graphql.language import Visitor, visit
from graphql.validation import ASTValidationRule
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from service.settings import Settings

OPERATIONS_DIR = Path(__file__).resolve().parents[2] / "graphql" / "operations"
FRAGMENTS_DIR = OPERATIONS_DIR / "fragments"
AD_HOC_CACHE_SIZE = 256
INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})


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


def requested_hash(extensions: Mapping[str, Any] | None) -> str | None:
    """The document hash a request names in its ``extensions`` (Apollo's or the GraphQL-over-HTTP form)."""
    if not extensions:
        return None
    persisted = extensions.get("persistedQuery")
    if isinstance(persisted, dict) and isinstance(persisted.get("sha256Hash"), str):
        return persisted["sha256Hash"]
    document_id = extensions.get("documentId")
    if isinstance(document_id, str):
        return document_id.removeprefix("sha256:")
    return None


@dataclass(frozen=True, slots=True, eq=False)
class Prepared:
    """One document after parsing and validation. ``sha256`` is set for persisted operations."""

    text: str
    document: DocumentNode | None
    errors: tuple[GraphQLError, ...]
    sha256: str | None = None
    introspects: bool = False  # selects __schema or __type somewhere
    constant: bytes | None = None  # the whole answer, for a query of constants only (never an error)

    def operation(self, name: str | None) -> OperationDefinitionNode | None:
        """The operation to run: the one named, or the first (a document holds at most one)."""
        if self.document is None:
            return None
        for definition in self.document.definitions:
            if isinstance(definition, OperationDefinitionNode) and (name is None or (definition.name and definition.name.value == name)):
                return definition
        return None


def limit_rules(settings: Settings) -> tuple[type[ASTValidationRule], ...]:
    """Depth, alias and operation-count limits as validation rules (tokens are a parse option); the same
    rules (the same objects) for the same limits."""
    return _limit_rules(settings.graphql_max_depth, settings.graphql_max_aliases, settings.graphql_max_operations)


@cache
def _limit_rules(max_depth: int, max_aliases: int, max_operations: int) -> tuple[type[ASTValidationRule], ...]:
    depth = QueryDepthLimiter(max_depth=max_depth).validation_rules
    aliases = MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules
    return (*depth, *aliases, _operation_limit(max_operations))


def _operation_limit(max_operations: int) -> type[ValidationRule]:
    class MaxOperations(ValidationRule):
        def enter_document(self, node: Any, *_: Any) -> None:
            count = sum(isinstance(d, OperationDefinitionNode) for d in node.definitions)
            if count > max_operations:
                self.report_error(GraphQLError(f"At most {max_operations} operation(s) per document."))

    return MaxOperations


class _Introspection(Visitor):
    found = False

    def enter_field(self, node: FieldNode, *_: Any) -> Any:
        if node.name.value in INTROSPECTION_FIELDS:
            self.found = True
            return self.BREAK
        return None


_PREPARED_PERSISTED: dict[tuple[Any, ...], dict[str, Prepared]] = {}


class Documents:
    """The prepared documents of one schema: persisted ones at start-up, others on first sight."""

    def __init__(self, schema: GraphQLSchema, settings: Settings, constant_fields: frozenset[str] = frozenset()) -> None:
        self._schema = schema
        # Root fields whose value never changes (no arguments, no context): see _constant_answer.
        self._constant_fields = constant_fields | {"__typename"}
        self._max_tokens = settings.graphql_max_tokens
        # Production tells nobody which names exist ("Did you mean ...?").
        self.hide_suggestions = settings.is_production
        self.persisted_only = settings.graphql_persisted_only
        self._rules = (*specified_rules, MaybeNullValidationRule, OneOfInputValidationRule)
        self._limits = limit_rules(settings)
        # Every schema of a process is built from the same types, so the persisted operations
        # prepare alike for the same limits: prepared once per process and limits, not per app
        # (133 documents, ~1.3 s; the test suite builds hundreds of apps).
        key = (self._max_tokens, self.hide_suggestions, self._constant_fields, self._limits)
        if key not in _PREPARED_PERSISTED:
            _PREPARED_PERSISTED[key] = {sha256: self._prepare(text, sha256) for sha256, text in documents().items()}
        self.persisted = _PREPARED_PERSISTED[key]
        self._persisted_by_text = {prepared.text: prepared for prepared in self.persisted.values()}
        self._ad_hoc = lru_cache(maxsize=AD_HOC_CACHE_SIZE)(self._prepare)

    def resolve(self, query: str | None, extensions: Mapping[str, Any] | None) -> Prepared | None:
        """The document a request asks for: by hash when it names one, else its text (None: neither).
        Raises GraphQLError for an unknown hash, or ad-hoc text when only persisted operations run."""
        wanted = requested_hash(extensions)
        if wanted is not None:
            prepared = self.persisted.get(wanted)
            if prepared is None:
                raise GraphQLError("PersistedQueryNotFound", extensions={"code": "persisted_query_not_found"})
            return prepared
        if not query:
            return None
        if self.persisted_only and query not in self._persisted_by_text:
            raise GraphQLError("Only persisted operations are accepted.", extensions={"code": "persisted_only"})
        return self.by_text(query)

    def by_text(self, text: str) -> Prepared:
        """The text of a persisted operation is that operation; anything else is prepared (once) here."""
        return self._persisted_by_text.get(text) or self._ad_hoc(text)

    def _prepare(self, text: str, sha256: str | None = None) -> Prepared:
        try:
            document = parse(text, max_tokens=self._max_tokens)
        except GraphQLError as error:
            return Prepared(text, None, (error,), sha256)
        errors = validate(self._schema, document, self._rules, hide_suggestions=self.hide_suggestions)
        if not errors:  # the limiters walk fragments and types as if the document were valid
            errors = validate(self._schema, document, self._limits, hide_suggestions=self.hide_suggestions)
        finder = _Introspection()
        visit(document, finder)
        constant = None if errors else self._constant_answer(document)
        return Prepared(text, document, tuple(errors), sha256, finder.found, constant)

    def _constant_answer(self, document: DocumentNode) -> bytes | None:
        """The answer of a document that is one query of constant root fields, without arguments,
        variables, directives or fragments; None for any other document."""
        (operation, *others) = document.definitions
        if others or not isinstance(operation, OperationDefinitionNode) or operation.operation is not OperationType.QUERY:
            return None
        if operation.variable_definitions or operation.directives:
            return None
        for selection in operation.selection_set.selections:
            if not isinstance(selection, FieldNode) or selection.name.value not in self._constant_fields:
                return None
            if selection.arguments or selection.directives or selection.selection_set is not None:
                return None
        result = execute(self._schema, document)
        if not isinstance(result, ExecutionResult) or result.errors:
            return None
        return msgspec.json.encode({"data": result.data})
