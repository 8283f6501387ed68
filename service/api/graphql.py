"""The Strawberry schema, merged from each domain's gql.py, and the GraphQL edge at ``/graphql``.

HTTP GET and POST are answered by ``GraphQLEdge``, a thin handler around
graphql-core's ``execute`` on Strawberry's schema: documents come prepared
(parsed, limited, validated once: service/api/persisted.py), no thread hop,
no dependency injection, no per-request extension hooks. Strawberry keeps
what it is good at: the schema and types, subscriptions over WebSocket, and
GraphiQL outside production. Both paths share one error policy (domain codes,
masking in production) and one way to log errors (never a document or a
variable value: those carry document numbers and phones).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import traceback
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from typing import Any, cast

import msgspec
import strawberry
from graphql import DocumentNode, ExecutionResult, GraphQLError, OperationType, execute
from litestar import MediaType, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect
from litestar.types import Scope
from strawberry.exceptions import ConnectionRejectionError
from strawberry.execution.is_awaitable import optimized_is_awaitable
from strawberry.extensions import SchemaExtension
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.litestar import make_graphql_controller
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation
from strawberry.tools import merge_types
from strawberry.types.unset import UNSET, UnsetType

from service import live, offline, policy, readpath
from service.access import gql as access
from service.access.service import authenticate, bearer_credential, credential_expiry
from service.api.graphql_errors import document_errors
from service.api.persisted import Documents
from service.changes import gql as changes
from service.errors import DATABASE_ERRORS, DomainError, Unavailable, from_database, graphql_outage, nested_input_error, problem_response
from service.gql import Context
from service.handover import gql as handover
from service.health import gql as health
from service.http import ETAG_HEADER, if_none_match, strong_etag
from service.intake import gql as intake
from service.live_frames import Plans, page_plan
from service.operations.care import gql as care
from service.operations.infection import gql as infection
from service.operations.staffing import gql as staffing
from service.regions import gql as regions
from service.settings import Settings
from service.sites import gql as sites
from service.stays import gql as stays
from service.supplies import gql as supplies
from service.transfers import gql as transfers

log = logging.getLogger("qsite.graphql")


@strawberry.type
class SystemQuery:
    @strawberry.field(description="The API version; lets an app check it talks to qsite.")
    def api_version(self) -> str:
        return "1"


# Query root fields the edge answers by calling the field's function and rendering its value by a plan of
# the selection (service/live_frames.py) instead of executing it field by field: name -> (policy operation,
# function of the context and the field's arguments). Long pages (a catch-up reads 1,000 changes a page).
PLANNED_FIELDS: dict[str, tuple[str, Callable[..., Awaitable[Any]]]] = {"changes": ("changes.read", changes.changes_page)}

# Root fields that are constants (no arguments, the same answer for everyone): a query of only
# these is answered once, when its document is prepared (service/api/persisted.py).
CONSTANT_FIELDS = frozenset({"apiVersion"})


# Add a domain's Query and Mutation here.
QUERIES: tuple[type, ...] = (
    SystemQuery, access.Query, sites.Query, sites.RoomQuery, stays.Query, health.Query, transfers.Query, supplies.Query, changes.Query,
    regions.Query, intake.Query,
)
SUBSCRIPTIONS: tuple[type, ...] = (live.Subscription,)
MUTATIONS: tuple[type, ...] = (
    access.Mutation, sites.Mutation, sites.RoomMutation, stays.Mutation, health.Mutation, transfers.Mutation, supplies.Mutation,
    regions.Mutation, offline.Mutation, intake.Mutation,
)
# Site operations (issue 17).
QUERIES += (care.Query, staffing.Query, infection.Query)
MUTATIONS += (care.Mutation, staffing.Mutation, infection.Mutation, handover.Mutation)

MASKED_MESSAGE = "Unexpected error."


# --- errors: one policy for every path ----------------------------------------------


def _with_code(error: GraphQLError) -> GraphQLError:
    """Top-level errors speak the same language as REST: a DomainError's ``code`` in
    ``extensions``, and expected database errors (a constraint, a bad value) translated."""
    original = error.original_error
    if isinstance(original, DATABASE_ERRORS):
        original = from_database(original) or original
    elif isinstance(original, msgspec.ValidationError):
        original = nested_input_error(original) or original
    if not isinstance(original, DomainError):
        if (error.extensions or {}).get("code"):
            return error
        return GraphQLError(
            error.message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            original_error=error.original_error,
            extensions={**(error.extensions or {}), "code": _request_error_code(error)},
        )
    return GraphQLError(
        original.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=original,
        extensions={**(error.extensions or {}), "code": original.code, **({"field": original.field} if original.field else {})},
    )


def _request_error_code(error: GraphQLError) -> str:
    """A code for graphql-core's own errors, which carry none: the document did not parse or
    validate, a variable did not coerce (e.g. an Int beyond 32 bits, a malformed UUID), or a
    resolver failed unexpectedly (an error with a path)."""
    if error.message.startswith("Syntax Error"):
        return "graphql_parse_failed"
    if error.message.startswith("Variable '$"):
        return "invalid_variables"
    if error.path is not None or error.original_error is not None:
        return "internal_error"
    return "graphql_validation_failed"


def _should_mask(error: GraphQLError) -> bool:
    original = error.original_error
    # Validation and permission errors carry no internals; domain errors are written for users.
    return original is not None and not isinstance(original, DomainError) and "Permission" not in type(original).__name__


def public_errors(errors: list[GraphQLError], *, production: bool) -> list[GraphQLError]:
    """Errors as the client sees them: domain codes attached; in production, internals masked."""
    coded = [_with_code(error) for error in errors]
    if not production:
        return coded
    return [
        GraphQLError(MASKED_MESSAGE, nodes=e.nodes, source=e.source, positions=e.positions, path=e.path) if _should_mask(e) else e
        for e in coded
    ]


def log_errors(errors: list[GraphQLError]) -> None:
    """Log what needs a developer: a resolver that failed unexpectedly. Never the document, a
    variable value or an exception's message (graphql-core puts values in its messages, and
    the library's own logger prints whole documents); the place, the type and the frames do."""
    for error in errors:
        original = error.original_error
        if error.path is None or original is None or isinstance(original, DomainError | GraphQLError):
            continue  # request errors are the client's; domain errors are answers
        if isinstance(original, DATABASE_ERRORS) and from_database(original) is not None:
            continue
        frames = "".join(traceback.format_list(traceback.extract_tb(original.__traceback__)))
        log.error(
            "unexpected error in GraphQL field %s: %s\n%s",
            ".".join(map(str, error.path)),
            type(original).__qualname__,
            frames,
            extra={"event": "graphql_unexpected", "subject": type(original).__qualname__},
        )


class _Scrub(logging.Filter):
    """Strawberry's own loggers (WebSocket tasks, execution) may format exceptions whose text holds
    variable values: keep the logger, the level and the exception's type, drop the text."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        detail = f": {type(exc).__qualname__}" if exc is not None else ""
        record.msg, record.args, record.exc_info, record.exc_text = f"{record.name} reported an error{detail}", (), None, None
        return True


for _name in ("strawberry.execution", "strawberry.ws", "strawberry.ws.task"):
    if not any(isinstance(f, _Scrub) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_Scrub())


# --- schema --------------------------------------------------------------------------


class Schema(strawberry.Schema):
    """Strawberry's schema with qsite's documents and error logging (used as is by subscriptions)."""

    documents: Documents
    production: bool
    shared_frames: bool
    frame_plans: Plans

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        log_errors(errors)  # instead of strawberry.execution's, which logs documents and values


class PreparedDocument(SchemaExtension):
    """Strawberry's own execution (WebSocket subscriptions, ``schema.execute``) uses the same
    prepared documents, persisted lookup and limits as the HTTP edge."""

    def on_operation(self) -> Iterator[None]:
        ctx = self.execution_context
        schema: Schema = ctx.schema  # type: ignore[assignment]
        prepared = schema.documents.resolve(ctx.query, ctx.operation_extensions)
        if prepared is not None:
            if prepared.document is None:
                raise prepared.errors[0]
            ctx.query, ctx.graphql_document, ctx.pre_execution_errors = prepared.text, prepared.document, list(prepared.errors)
        yield
        result = ctx.result
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            result.errors = public_errors(errors, production=schema.production)


def build_schema(settings: Settings) -> Schema:
    query = merge_types("Query", QUERIES)
    mutation = merge_types("Mutation", MUTATIONS) if MUTATIONS else None
    subscription = merge_types("Subscription", SUBSCRIPTIONS) if SUBSCRIPTIONS else None
    schema = Schema(query=query, mutation=mutation, subscription=subscription, extensions=[PreparedDocument])
    document_errors(schema)
    schema.production = settings.is_production
    schema.documents = Documents(schema._schema, settings, CONSTANT_FIELDS)
    schema.shared_frames = settings.live_shared_frames
    schema.frame_plans = Plans(
        schema._schema, live.site_event, live.SITE_EVENT_FIELDS, lambda errors: [e.formatted for e in public_errors(errors, production=schema.production)],
        hide_suggestions=settings.is_production,
    )
    return schema


# --- context -------------------------------------------------------------------------


class GraphQLContext(Context, kw_only=True):
    # Set by strawberry from a WebSocket's connection_init payload (graphql-transport-ws).
    connection_params: dict[str, Any] | None = None


async def _context(headers: Mapping[str, str], state: State, request: Request[Any, Any, Any] | None = None) -> GraphQLContext:
    """A bad credential raises Unauthorized (401 problem+json); no credential is anonymous."""
    credential = bearer_credential(headers.get("authorization"), headers.get("x-api-key"))
    principal = await authenticate(state.db, state.settings, credential) if credential else None
    expires_at = credential_expiry(state.settings, credential) if credential else None
    return GraphQLContext(
        db=state.db, cache=state.cache, settings=state.settings, principal=principal, expires_at=expires_at, request=request
    )


async def graphql_context(scope: Scope, state: State) -> GraphQLContext:
    """One context per WebSocket connection; a socket may instead authenticate in its
    ``connection_init`` payload (browsers cannot set headers on the upgrade): see ``on_ws_connect``."""
    return await _context(ASGIConnection(scope).headers, state)


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


# --- subscriptions: shared frames -----------------------------------------------------


class LiveTransportWSHandler(BaseGraphQLTransportWSHandler[GraphQLContext, None]):
    """graphql-transport-ws as Strawberry speaks it, except ``siteEvents`` subscriptions a frame plan
    covers (service/live_frames.py): their events arrive rendered (once per plan and visibility class,
    shared by every such subscriber) and are written as they are. Any other operation, and any
    subscription refused before it starts (no credential, a role without live updates), runs on
    Strawberry's per-subscriber path, whose answers the shared frames equal."""

    schema: Schema

    async def run_operation(self, operation: Operation[GraphQLContext, None]) -> None:
        frames = self._frames(operation)
        if frames is None:
            await super().run_operation(operation)
            return
        head = '{"id":' + json.dumps(operation.id) + ',"type":"next","payload":'
        socket = self.websocket.ws  # type: ignore[attr-defined]  # LitestarWebSocketAdapter's Litestar WebSocket
        try:
            async with contextlib.aclosing(frames):
                try:
                    async for frame in frames:
                        await socket.send_data(head + cast(str, frame) + "}")
                except (WebSocketDisconnect, asyncio.CancelledError):
                    raise
                except Exception as exc:  # noqa: BLE001  # as Strawberry answers an error raised by the stream: one `next`, then `complete`
                    error = exc if isinstance(exc, GraphQLError) else GraphQLError(str(exc), original_error=exc)
                    log_errors([error])
                    shown = public_errors([error], production=self.schema.production)
                    message = {"id": operation.id, "type": "next", "payload": {"data": None, "errors": [e.formatted for e in shown]}}
                    await operation.send_operation_message(message)  # type: ignore[arg-type]
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except (WebSocketDisconnect, WebSocketDisconnected):
            self.operations.pop(operation.id, None)  # the socket is gone: the connection's handler ends

    def _frames(self, operation: Operation[GraphQLContext, None]) -> AsyncGenerator[Any, None] | None:
        schema = self.schema
        if not schema.shared_frames:
            return None
        try:
            prepared = schema.documents.resolve(operation.query, None)
        except GraphQLError:
            return None
        if prepared is None or prepared.document is None or prepared.errors:
            return None
        compiled = schema.frame_plans.compile(prepared.document, operation.operation_name, operation.variables)
        if compiled is None or not policy.allows(self.context.principal, "events.subscribe"):
            return None
        plan, arguments = compiled
        return live.site_event_frames(self.context, plan, arguments.get("siteIds"), arguments.get("types"), arguments.get("after"))


# --- the HTTP edge -------------------------------------------------------------------


class BadRequest(Exception):
    """A request GraphQL cannot even start on: 400 with a plain-text reason (as GraphQL-over-HTTP servers do)."""


_ALLOWED = {"GET": frozenset({OperationType.QUERY}), "POST": frozenset({OperationType.QUERY, OperationType.MUTATION})}
_PLURAL = {OperationType.QUERY: "queries", OperationType.MUTATION: "mutations", OperationType.SUBSCRIPTION: "subscriptions"}


class GraphQLEdge:
    def __init__(self, schema: Schema, settings: Settings) -> None:
        self.schema = schema._schema
        self.executor_class = schema.execution_context_class
        self.documents = schema.documents
        self.production = settings.is_production

    @staticmethod
    def _request_data(params: Mapping[str, Any]) -> tuple[str | None, dict[str, Any] | None, str | None, dict[str, Any] | None]:
        query, variables, name, extensions = (params.get(k) for k in ("query", "variables", "operationName", "extensions"))
        if not isinstance(query, str | None):
            raise BadRequest("The GraphQL operation's `query` must be a string or null, if provided.")
        if not isinstance(variables, dict | None):
            raise BadRequest("The GraphQL operation's `variables` must be an object or null, if provided.")
        if not isinstance(extensions, dict | None):
            raise BadRequest("The GraphQL operation's `extensions` must be an object or null, if provided.")
        if not isinstance(name, str | None):
            raise BadRequest("The GraphQL operation's `operationName` must be a string or null, if provided.")
        return query or None, variables, name, extensions

    @staticmethod
    def _decode(raw: str | bytes) -> Any:
        try:
            return msgspec.json.decode(raw)
        except (msgspec.DecodeError, RecursionError):  # RecursionError: JSON nested too deeply
            raise BadRequest("Unable to parse request body as JSON") from None

    async def _params(self, request: Request[Any, Any, Any]) -> Mapping[str, Any]:
        if request.method == "GET":
            params: dict[str, Any] = dict(request.query_params)
            for key in ("variables", "extensions"):
                if params.get(key):
                    params[key] = self._decode(params[key])
            return params
        if "application/json" not in request.headers.get("content-type", ""):
            raise BadRequest("Unsupported content type")
        data = self._decode(await request.body())
        if isinstance(data, list):
            raise BadRequest("Batching is not enabled")
        if not isinstance(data, dict):
            raise BadRequest("The GraphQL request must be a JSON object.")
        return data

    async def answer(self, request: Request[Any, Any, Any]) -> Response[Any]:
        context = await _context(request.headers, request.app.state, request)
        try:
            query, variables, name, extensions = self._request_data(await self._params(request))
            return await self._run(request, context, query, variables, name, extensions)
        except BadRequest as refused:
            # A request that never reached execution: problem+json like every other 400, its
            # reason also as a coded GraphQL error for clients that only read `errors`.
            code = "invalid_request"
            errors = [{"message": str(refused), "extensions": {"code": code}}]
            return problem_response(400, code, "Invalid request", str(refused), errors=errors)

    async def _run(
        self,
        request: Request[Any, Any, Any],
        context: GraphQLContext,
        query: str | None,
        variables: dict[str, Any] | None,
        name: str | None,
        extensions: dict[str, Any] | None,
    ) -> Response[Any]:
        try:
            prepared = self.documents.resolve(query, extensions)
        except GraphQLError as error:
            return self._respond(request, [error])
        if prepared is None:
            raise BadRequest("No GraphQL query found in the request")
        if prepared.document is None:
            return self._respond(request, list(prepared.errors))
        operation = prepared.operation(name)
        if operation is None:
            raise BadRequest("Can't get GraphQL operation type" if name is None else f'Unknown operation named "{name}".')
        if operation.operation not in _ALLOWED[request.method]:
            raise BadRequest(f"{_PLURAL[operation.operation]} are not allowed when using {request.method}")
        if prepared.errors:
            return self._respond(request, list(prepared.errors))
        if prepared.introspects and self.production and context.principal is None:
            refused = GraphQLError("Introspection requires authentication.", extensions={"code": "unauthenticated"})
            return self._respond(request, [refused])
        digest = prepared.sha256 if operation.operation is OperationType.QUERY else None
        cacheable = digest is not None
        if prepared.constant is not None:
            return self._body(request, prepared.constant, cacheable=cacheable)
        if digest is not None:
            # The compiled read path answers first when it can (same authorisation and scoping).
            try:
                found = await readpath.answer(context, digest, variables, operation_name=name)
            except Unavailable as outage:  # PostgreSQL down or hung: no second attempt, the same 503
                return self._respond(request, [GraphQLError(outage.message, original_error=outage)])
            if found is not None:
                return self._body(request, found.body, cacheable=True, etag=found.etag)
        if operation.operation is OperationType.QUERY and context.principal is not None:
            try:
                planned = await self._planned(context, prepared.document, variables, name)
            except Unavailable as outage:  # as for compiled reads: no second attempt, the same 503
                return self._respond(request, [GraphQLError(outage.message, original_error=outage)])
            if planned is not None:
                return self._body(request, planned, cacheable=cacheable)
        result = execute(
            self.schema,
            prepared.document,
            context_value=context,
            variable_values=variables,
            operation_name=name,
            executor_class=self.executor_class,
            is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]  # strawberry's is a TypeGuard in all but its annotation
            hide_suggestions=self.production,
            operation_extensions=extensions,
        )
        if not isinstance(result, ExecutionResult):
            result = await result
        return self._respond(request, result.errors or [], result.data, cacheable=cacheable)

    async def _planned(self, context: GraphQLContext, document: DocumentNode, variables: dict[str, Any] | None, name: str | None) -> bytes | None:
        """The body of a query of one of PLANNED_FIELDS, rendered by its plan; None (execute it) for any other
        query, a caller the field's policy refuses, and any error: execution answers those, as always."""
        plan = page_plan(self.schema, document, name, variables, PLANNED_FIELDS, hide_suggestions=self.production)
        if plan is None:
            return None
        operation, function = PLANNED_FIELDS[plan.field]
        if not policy.allows(context.principal, operation):
            return None
        try:
            value = await function(context, **plan.arguments)
        except Unavailable:
            raise
        except DomainError:  # refused (a site, a cursor, a page size): execution answers it in its own words
            return None
        return plan.render(value)

    def _respond(
        self, request: Request[Any, Any, Any], errors: list[GraphQLError], data: dict[str, Any] | None = None, *, cacheable: bool = False
    ) -> Response[Any]:
        if not errors:
            return self._body(request, msgspec.json.encode({"data": data}), cacheable=cacheable)
        log_errors(errors)
        shown = public_errors(errors, production=self.production)
        body = msgspec.json.encode({"data": data, "errors": [e.formatted for e in shown]})
        outage = graphql_outage(data, shown)
        if outage is not None:  # nothing served and only outages: 503 with Retry-After, as REST answers
            return Response(body, status_code=outage.status, media_type=MediaType.JSON, headers=outage.headers)
        return self._body(request, body, cacheable=False)

    @staticmethod
    def _body(request: Request[Any, Any, Any], body: bytes, *, cacheable: bool, etag: str | None = None) -> Response[Any]:
        """A persisted query read by GET, answered without errors, carries a strong ETag (304 on a match)."""
        if cacheable and request.method == "GET":
            etag = etag or strong_etag(body)
            if if_none_match(request, etag):
                return Response(b"", status_code=304, headers={ETAG_HEADER: etag})
            return Response(body, media_type=MediaType.JSON, headers={ETAG_HEADER: etag})
        return Response(body, media_type=MediaType.JSON)


def _wants_ide(request: Request[Any, Any, Any]) -> bool:
    """A browser opening /graphql: no operation asked for, HTML acceptable."""
    params = request.query_params
    if params.get("query") is not None or params.get("extensions") is not None:
        return False
    accept = request.headers.get("accept", "")
    return "text/html" in accept or "*/*" in accept


def graphql_controller(settings: Settings) -> type:
    schema = build_schema(settings)
    edge = GraphQLEdge(schema, settings)
    base = make_graphql_controller(
        schema,
        path="/graphql",
        context_getter=graphql_context,
        graphql_ide=None if settings.is_production else "graphiql",
        allow_queries_via_get=True,
    )

    class Controller(base):  # type: ignore[misc, valid-type]
        graphql_transport_ws_handler_class = LiveTransportWSHandler

        # HTTP is ours (the edge); Strawberry's controller keeps the WebSocket and GraphiQL.
        @get()
        async def handle_http_get(self, request: Request[Any, Any, Any]) -> Response[Any]:
            if _wants_ide(request):
                if self.graphql_ide is None:
                    return problem_response(404, "not_found", "Not found", "GraphiQL is off in production.")
                return Response(self.graphql_ide_html, media_type=MediaType.HTML)
            return await edge.answer(request)

        @post(status_code=200)
        async def handle_http_post(self, request: Request[Any, Any, Any]) -> Response[Any]:
            return await edge.answer(request)

        async def on_ws_connect(self, context: GraphQLContext) -> UnsetType:
            await _authenticate_ws(context)
            return UNSET  # a plain connection_ack

    Controller.include_in_schema = False  # GraphQL has its own contract: graphql/schema.graphql
    return Controller
