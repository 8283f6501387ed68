"""The Strawberry schema, merged from each domain's gql.py, and its Litestar controller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import strawberry
from graphql import GraphQLError, ValidationRule
from graphql.language import OperationDefinitionNode
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.types import Scope
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.litestar import make_graphql_controller
from strawberry.tools import merge_types
from strawberry.types.unset import UNSET, UnsetType

from service import live, readpath
from service.access import gql as access
from service.access.service import authenticate, bearer_credential, credential_expiry
from service.api.persisted import persisted_operations, requested_hash
from service.errors import DATABASE_ERRORS, DomainError, Unavailable, from_database, graphql_outage, unavailable
from service.gql import Context
from service.http import ETAG_HEADER, if_none_match
from service.health import gql as health
from service.settings import Settings
from service.sites import gql as sites
from service.stays import gql as stays
from service.supplies import gql as supplies
from service.transfers import gql as transfers


@strawberry.type
class SystemQuery:
    @strawberry.field(description="The API version; lets an app check it talks to qsite.")
    def api_version(self) -> str:
        return "1"


# Add a domain's Query and Mutation here.
QUERIES: tuple[type, ...] = (SystemQuery, access.Query, sites.Query, sites.RoomQuery, stays.Query, health.Query, transfers.Query, supplies.Query)
SUBSCRIPTIONS: tuple[type, ...] = (live.Subscription,)
MUTATIONS: tuple[type, ...] = (access.Mutation, sites.Mutation, sites.RoomMutation, stays.Mutation, health.Mutation, transfers.Mutation, supplies.Mutation)


def _operation_limit(max_operations: int) -> type[ValidationRule]:
    class MaxOperations(ValidationRule):
        def enter_document(self, node: Any, *_: Any) -> None:
            count = sum(isinstance(d, OperationDefinitionNode) for d in node.definitions)
            if count > max_operations:
                self.report_error(GraphQLError(f"At most {max_operations} operation(s) per document."))

    return MaxOperations


class DomainErrorCodes(SchemaExtension):
    """Top-level errors speak the same language as REST: a DomainError's ``code`` in
    ``extensions``, and expected database errors (a constraint, a bad value) translated."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not getattr(result, "errors", None):
            return
        result.errors = [_with_code(error) for error in result.errors]
        outage = graphql_outage(result.data, result.errors)
        response = getattr(self.execution_context.context, "response", None)
        if outage is not None and response is not None:  # nothing served: 503 + Retry-After, as REST
            response.status_code = outage.status
            response.headers.update(outage.headers)


def _with_code(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if isinstance(original, DATABASE_ERRORS):
        original = from_database(original) or original
    if not isinstance(original, DomainError):
        return error
    return GraphQLError(
        original.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=original,
        extensions={**(error.extensions or {}), "code": original.code, **({"field": original.field} if original.field else {})},
    )


def _should_mask(error: GraphQLError) -> bool:
    original = error.original_error
    # Validation and permission errors carry no internals; domain errors are written for users.
    return original is not None and not isinstance(original, DomainError) and "Permission" not in type(original).__name__


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # An outage was logged where it happened, as one warning: not as a traceback per failed field.
        errors = [e for e in errors if not (isinstance(e.original_error, Unavailable) or unavailable(e.original_error or Exception()))]
        super().process_errors(errors, execution_context)


def build_schema(settings: Settings) -> strawberry.Schema:
    extensions: list[Any] = [
        ParserCache(maxsize=256),
        ValidationCache(maxsize=256),
        QueryDepthLimiter(max_depth=settings.graphql_max_depth),
        MaxAliasesLimiter(max_alias_count=settings.graphql_max_aliases),
        MaxTokensLimiter(max_token_count=settings.graphql_max_tokens),
        AddValidationRules([_operation_limit(settings.graphql_max_operations)]),
        persisted_operations(only=settings.graphql_persisted_only),
    ]
    if settings.is_production:
        extensions.append(MaskErrors(should_mask_error=_should_mask))
    # Listed last so that it runs first on the way out, before MaskErrors sees the errors.
    extensions.append(DomainErrorCodes)
    query = merge_types("Query", QUERIES)
    mutation = merge_types("Mutation", MUTATIONS) if MUTATIONS else None
    subscription = merge_types("Subscription", SUBSCRIPTIONS) if SUBSCRIPTIONS else None
    return Schema(query=query, mutation=mutation, subscription=subscription, extensions=extensions)


class GraphQLContext(Context, kw_only=True):
    # Set by strawberry from a WebSocket's connection_init payload (graphql-transport-ws).
    connection_params: dict[str, Any] | None = None


async def graphql_context(scope: Scope, state: State) -> GraphQLContext:
    """One context per HTTP request or per WebSocket connection (``scope`` covers both).

    A WebSocket may instead authenticate in its ``connection_init`` payload
    (browsers cannot set headers on the upgrade): see ``on_ws_connect``.
    """
    headers = ASGIConnection(scope).headers
    credential = bearer_credential(headers.get("authorization"), headers.get("x-api-key"))
    principal = await authenticate(state.db, state.settings, credential) if credential else None
    expires_at = credential_expiry(state.settings, credential) if credential else None
    return GraphQLContext(db=state.db, cache=state.cache, settings=state.settings, principal=principal, expires_at=expires_at)


async def _authenticate_ws(context: GraphQLContext) -> None:
    """``connection_init`` payload ``{"Authorization": "Bearer ..."}``: a bad credential closes the socket (4403)."""
    params = {str(k).lower(): v for k, v in (context.connection_params or {}).items()}
    authorization, api_key = params.get("authorization"), params.get("x-api-key")
    if authorization is None and api_key is None:
        return  # anonymous: fields that need a principal answer "Authentication required."
    if not all(v is None or isinstance(v, str) for v in (authorization, api_key)):
        raise ConnectionRejectionError()
    try:
        credential = bearer_credential(authorization, api_key)
        if credential is None:
            raise ConnectionRejectionError()
        context.principal = await authenticate(context.db, context.settings, credential)
        context.expires_at = credential_expiry(context.settings, credential)
    except DomainError:
        raise ConnectionRejectionError() from None


async def compiled_read(request: Request[Any, Any, Any]) -> Response[bytes] | None:
    """A persisted read the compiler answers: its body and strong ETag (GET: 304 on If-None-Match).

    None lets Strawberry answer: anything not a compiled persisted query, any doubt about the request.
    """
    if request.method == "GET":
        params = request.query_params
        raw = {k: params.get(k) for k in ("query", "variables", "extensions", "operationName")}
        try:
            fields = {k: msgspec.json.decode(v) if k in ("variables", "extensions") and v else v for k, v in raw.items()}
        except msgspec.DecodeError:
            return None
    elif request.method == "POST" and request.headers.get("content-type", "").startswith("application/json"):
        try:
            fields = msgspec.json.decode(await request.body())
        except msgspec.DecodeError:
            return None
        if not isinstance(fields, dict):
            return None
    else:
        return None
    variables, extensions = fields.get("variables"), fields.get("extensions")
    if not isinstance(variables, dict | None) or not isinstance(extensions, dict | None):
        return None
    document = requested_hash(extensions) or fields.get("query")
    if not isinstance(document, str):
        return None
    try:
        context = await graphql_context(request.scope, request.app.state)
        found = await readpath.answer(context, document, variables, operation_name=fields.get("operationName"))
    except DomainError:
        return None  # e.g. a bad credential: the generic path words the error
    if found is None:
        return None
    headers = {ETAG_HEADER: found.etag}
    if request.method == "GET" and if_none_match(request, found.etag):
        return Response(b"", status_code=304, headers=headers)
    return Response(found.body, media_type="application/json", headers=headers)


def graphql_controller(settings: Settings) -> type:
    base = make_graphql_controller(
        build_schema(settings),
        path="/graphql",
        context_getter=graphql_context,
        graphql_ide=None if settings.is_production else "graphiql",
        allow_queries_via_get=True,
    )

    class Controller(base):  # type: ignore[misc, valid-type]
        # Compiled persisted reads answer before Strawberry runs (service/readpath.py).
        before_request = compiled_read

        async def on_ws_connect(self, context: GraphQLContext) -> UnsetType:
            await _authenticate_ws(context)
            return UNSET  # a plain connection_ack

    Controller.include_in_schema = False  # GraphQL has its own contract: graphql/schema.graphql
    return Controller
