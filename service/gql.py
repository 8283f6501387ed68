"""What every domain's ``gql.py`` builds on: context, permissions, userErrors, mutations, loaders.

- ``Context`` is made once per GraphQL request: pool, Redis, settings, the
  caller's Principal (None when anonymous) and a per-request dataloader cache.
- Permissions come from ``service.policy.gql(operation)``: the one authorisation policy.
- ``mutate`` runs a service function in its own transaction, once per
  Idempotency-Key, and turns DomainErrors into ``userErrors``.
- ``Write`` is a mutation prepared from its input (validated, the work to run: ``prepare``); a
  mutation runs it with ``perform`` (both at once: ``mutate_input``). ``OfflineWrite`` names a write the apps may queue offline: the
  same preparation, run per item by ``syncWrites`` (service/offline.py).
- ``to_gql`` copies a msgspec Struct into a Strawberry type of the same field names; a type may take its
  fields from the Struct (``fields_from``) and be built from it with its nested Structs (``from_struct``).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import re
import types
import typing
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar
from uuid import UUID

import asyncpg
import msgspec
import strawberry
from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, value_from_ast
from strawberry.dataloader import DataLoader
from strawberry.litestar import BaseContext
from strawberry.scalars import JSON
from strawberry.types import Info

from service import idempotency
from service.access.model import Principal
from service.cache import Cache
from service.db import Database
from service.errors import DATABASE_ERRORS, DomainError, NotFound, Unauthorized, Unavailable, from_database, input_error, nested_input_error
from service.pagination import Page, encode_cursor
from service.settings import Settings

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
G = TypeVar("G")


class Context(BaseContext, kw_only=True):
    db: Database
    cache: Cache
    settings: Settings
    principal: Principal | None
    # When the caller's credential expires (Unix time; None: an API key or anonymous).
    # Long-lived streams (subscriptions) end there instead of outliving the token.
    expires_at: float | None = None
    loaders: dict[Hashable, DataLoader[Any, Any]] = msgspec.field(default_factory=dict)

    def require_principal(self) -> Principal:
        if self.principal is None:
            raise Unauthorized("Authentication required.", code="unauthenticated")
        return self.principal

    def loader(self, key: Hashable, load: Callable[[list[Any]], Awaitable[list[Any]]]) -> DataLoader[Any, Any]:
        """The request's DataLoader for ``key``, created on first use.

        ``load`` receives the batched keys and must return results in the same
        order. Each batch acquires its own pooled connection: sibling fields are
        resolved concurrently and one asyncpg connection runs one statement at a time.
        """
        if key not in self.loaders:
            self.loaders[key] = DataLoader(load_fn=load)
        return self.loaders[key]


Ctx = Info[Context, None]


@strawberry.type(description="An expected failure of a mutation: which input, a stable code, a message.")
class UserError:
    # The input at fault as the service names it (``members[0].resident.document_number``);
    # the GraphQL field answers it as the path in this mutation's arguments.
    field: strawberry.Private[str | None]
    code: str
    message: str
    # Why a JSON object: what unblocks an action differs by code (airing_not_finished: airing_until;
    # release_blocked: reasons) and must be data a client can act on, not message text. It is the
    # same object as the REST problem's ``extra``, so both paths say the same thing.
    extra: JSON | None = strawberry.field(
        default=None,
        description="What would unblock the action, as data: the REST problem's `extra` "
        "(airing_not_finished: airing_until; release_blocked: reasons), or null.",
    )

    @strawberry.field(
        name="field",
        description="The input at fault as a path in the mutation's arguments (input.members.0.resident.documentNumber), "
        "a header name (Idempotency-Key), or null.",
    )
    def input_path(self, info: Info[Any, Any]) -> str | None:
        return input_path(self.field, root_arguments(info))


def root_arguments(info: Info[Any, Any]) -> set[str]:
    """Argument names of the root field this value is under (aliases and root fragments allowed)."""
    raw = info._raw_info
    path = raw.path
    while path.prev is not None:
        path = path.prev
    root_type = raw.schema.get_type(path.typename or "") or raw.schema.mutation_type
    pending = list(raw.operation.selection_set.selections)
    while pending:
        node = pending.pop()
        if isinstance(node, FieldNode) and (node.alias or node.name).value == path.key:
            field = getattr(root_type, "fields", {}).get(node.name.value)
            return set(field.args) if field else set()
        if isinstance(node, InlineFragmentNode):
            pending.extend(node.selection_set.selections)
        elif isinstance(node, FragmentSpreadNode) and node.name.value in raw.fragments:
            pending.extend(raw.fragments[node.name.value].selection_set.selections)
    return set()


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def input_path(field: str | None, arguments: set[str]) -> str | None:
    """``temperature_c`` -> ``input.temperatureC``; ``members[0].resident.name`` -> ``input.members.0.resident.name``."""
    if not field or "-" in field:  # nothing, or a header
        return field
    steps = [step if step.isdigit() else camel(step) for step in re.findall(r"[^.\[\]]+", field)]
    if steps and steps[0] not in arguments and "input" in arguments:
        steps.insert(0, "input")
    return ".".join(steps)


def user_errors(exc: DomainError) -> list[UserError]:
    extra = strawberry.scalars.JSON(exc.extra) if exc.extra else None
    return [UserError(field=exc.field, code=exc.code, message=exc.message, extra=extra)]


def call_fingerprint(info: Ctx) -> bytes:
    """The root field and its full argument values after variable substitution.

    Computed from the document, not from what a resolver chooses to pass on: a key
    sent again with any other argument (another site's id, another note) is refused.
    """
    raw = info._raw_info
    given = {node.name.value: node.value for node in raw.field_nodes[0].arguments or ()}
    # A plain dict at run time (strawberry executes it so); graphql-core 3.3 annotates its VariableValues tuple.
    variables: dict[str, Any] = raw.variable_values  # type: ignore[assignment]
    arguments = {
        name: value_from_ast(given[name], argument.type, variables) if name in given else argument.default_value
        for name, argument in raw.parent_type.fields[raw.field_name].args.items()
    }
    call = msgspec.json.encode([raw.field_name, arguments], order="sorted", enc_hook=str)
    return idempotency.request_fingerprint("graphql", call)


async def mutate(
    info: Ctx,
    work: Callable[[asyncpg.Connection], Awaitable[T]],
    *,
    result_type: type[T],
    replay: bool = True,
) -> tuple[T | None, list[UserError]]:
    """Run one mutation's work in its own transaction; (result, []) or (None, userErrors).

    With an ``Idempotency-Key`` header on the GraphQL request, the result is
    stored with the write and replayed on retry (see service/idempotency.py; the
    fingerprint is ``call_fingerprint``); the key is scoped per root field (its
    response name), so one request may carry several mutations.
    """
    ctx = info.context
    principal = ctx.require_principal()
    try:
        key = idempotency.validate_key(ctx.request.headers.get(idempotency.HEADER)) if ctx.request else None
        if key is not None:
            key = f"{key}#{info.path.key}"
        _, body = await idempotency.run_once(
            ctx.db,
            caller=principal.ref,
            key=key,
            fingerprint=call_fingerprint(info) if key is not None else b"",
            work=work,
            replay=replay,
        )
        return msgspec.json.decode(body, type=result_type), []
    except Unavailable:
        raise  # an outage is no userError: a top-level error with its code tells the app to retry later
    except DomainError as exc:
        return None, user_errors(exc)
    except DATABASE_ERRORS as exc:
        mapped = from_database(exc)
        if mapped is None or isinstance(mapped, Unavailable):
            raise
        return None, user_errors(mapped)
    except msgspec.ValidationError as exc:
        nested = nested_input_error(exc)  # input a service converted itself (a validator's error)
        if nested is None:
            raise
        return None, user_errors(nested)


@dataclasses.dataclass(frozen=True)
class Write(Generic[T_co]):
    """A mutation prepared from its input: the work to run in a transaction and its answer's type."""

    work: Callable[[asyncpg.Connection], Awaitable[T_co]]
    result_type: type[T_co]


# What preparing a mutation's input gives: the write to run, or the input's userErrors.
Prepared = Write[T] | list[UserError]


async def perform(info: Ctx, prepared: Prepared[T]) -> tuple[T | None, list[UserError]]:
    """Run a prepared mutation with ``mutate`` (its input errors, if any, as they are)."""
    if isinstance(prepared, list):
        return None, prepared
    return await mutate(info, prepared.work, result_type=prepared.result_type)


S = TypeVar("S")


def prepare(
    input: Any,
    struct_type: type[S],
    result_type: type[T],
    run: Callable[[asyncpg.Connection, S], Awaitable[T]],
    *,
    leave_out: tuple[str, ...] = (),
    omit_null: bool = False,
) -> Prepared[T]:
    """A mutation's input validated into ``struct_type`` and its work ``run(conn, data)``, or the input's userErrors.

    ``leave_out``: input fields the resolver hands ``run`` itself (the id of the record written), not in the Struct.
    ``omit_null``: fields left null are not given to the Struct (a patch: unchanged; otherwise: the Struct's default).
    """
    raw = input if isinstance(input, dict) else strawberry.asdict(input)
    data, errors = input_struct(struct_type, {k: v for k, v in raw.items() if k not in leave_out and not (omit_null and v is None)})
    if data is None:
        return errors
    return Write(lambda conn: run(conn, data), result_type)


async def mutate_input(
    info: Ctx,
    input: Any,
    struct_type: type[S],
    result_type: type[T],
    run: Callable[[asyncpg.Connection, S], Awaitable[T]],
    *,
    leave_out: tuple[str, ...] = (),
    omit_null: bool = False,
) -> tuple[T | None, list[UserError]]:
    """``prepare`` then ``perform``: a mutation's input validated and its work run; (result, []) or (None, userErrors).

    Like ``mutate``, whatever ``run`` raises is a userError, so its codes are not listed as the field's
    top-level errors (service/api/graphql_errors.py).
    """
    return await perform(info, prepare(input, struct_type, result_type, run, leave_out=leave_out, omit_null=omit_null))


@dataclasses.dataclass(frozen=True)
class OfflineWrite:
    """A write the staff apps may queue offline and replay in ``syncWrites`` (service/offline.py).

    - ``operation``: its policy operation (the same as its own mutation's);
    - ``prepare(ctx, principal, input)``: the mutation's own preparation of the same input type;
    - ``record(result)``: the answer as a GraphQL type of the ``SyncRecord`` union;
    - ``current(conn, ctx, principal, input)``: the record a conflict is about (the alert, the room,
      the stay a check-in belongs to...) as the server has it now, or None; its ``version`` is
      what the app compares.
    """

    operation: str
    prepare: Callable[[Context, Principal, Any], Prepared[Any]]
    record: Callable[[Any], Any]
    current: Callable[[asyncpg.Connection, Context, Principal, Any], Awaitable[Any | None]]


def scoped_loader(
    info: Ctx, name: str, fetch: Callable[[asyncpg.Connection, Principal, list[Any]], Awaitable[dict[Any, Any]]], default: Any = None
) -> DataLoader[Any, Any]:
    """The request's loader ``name``: ``fetch(conn, principal, ids) -> {id: record}`` (the caller's scope) per batch,
    one statement per batch on its own connection; ``default`` for an id not found (None, or [] for lists)."""
    ctx = info.context
    principal = ctx.require_principal()

    async def load(ids: list[Any]) -> list[Any]:
        async with ctx.db.connection() as conn:
            found = await fetch(conn, principal, ids)
        return [found.get(i, default) for i in ids]

    return ctx.loader(name, load)


async def site_list(info: Ctx, site_id: UUID, read: Callable[[asyncpg.Connection, Principal], Awaitable[list[T]]]) -> list[T]:
    """A site-wide list (``site_read``): empty for another or an unknown site."""
    empty: list[T] = []
    return await site_read(info, site_id, read, empty)


async def site_read(info: Ctx, site_id: UUID, read: Callable[[asyncpg.Connection, Principal], Awaitable[T]], empty: T) -> T:
    """A read of one site's records: ``empty`` for another or an unknown site (its existence is not disclosed)."""
    ctx = info.context
    principal = ctx.require_principal()
    if not principal.can_access_site(site_id):
        return empty
    try:
        async with ctx.db.connection() as conn:
            return await read(conn, principal)
    except NotFound:
        return empty


def to_gql(cls: type[G], obj: Any, **overrides: Any) -> G:
    """Build Strawberry type ``cls`` from a Struct (or any object) with the same attribute names."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    values = {n: overrides[n] if n in overrides else getattr(obj, n) for n in names if n in overrides or hasattr(obj, n)}
    return cls(**values)


# msgspec Struct -> the Strawberry type declared from it (``fields_from``), for nested fields and ``from_struct``.
_GQL_OF: dict[type, type] = {}


def fields_from(struct: type[msgspec.Struct], *, leave_out: tuple[str, ...] = ()) -> Callable[[type[G]], type[G]]:
    """Declare a Strawberry type's fields as ``struct`` declares them (names, order, types), so the two cannot drift.

    Apply it under ``@strawberry.type``. A nested Struct becomes the Strawberry type declared from it (declare
    that one first); a field the class annotates itself (with a description, or another type) keeps its own.
    ``leave_out``: the Struct's fields the type does not show.
    """

    def annotation(tp: Any) -> Any:
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            return _GQL_OF[tp]
        args = typing.get_args(tp)
        if not args:
            return tp
        mapped = tuple(annotation(a) for a in args)
        origin = typing.get_origin(tp)
        return functools.reduce(operator.or_, mapped) if origin in (typing.Union, types.UnionType) else origin[mapped]

    def declare(cls: type[G]) -> type[G]:
        own = cls.__dict__.get("__annotations__", {})
        cls.__annotations__ = {f.name: annotation(f.type) for f in msgspec.structs.fields(struct) if f.name not in leave_out} | own
        _GQL_OF[struct] = cls
        return cls

    return declare


def from_struct(cls: type[G], obj: Any) -> G:
    """Build Strawberry type ``cls`` from a Struct, nested Structs (and lists of them) as their ``fields_from`` types."""

    def value(v: Any) -> Any:
        if isinstance(v, list):
            return [value(item) for item in v]
        gql_type = _GQL_OF.get(type(v))
        return v if gql_type is None else from_struct(gql_type, v)

    return cls(**{f.name: value(getattr(obj, f.name)) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


def input_struct(struct_type: type[T], value: Any) -> tuple[T | None, list[UserError]]:
    """Validate a Strawberry input (or dict) into a msgspec input Struct; userErrors name the bad field."""
    raw = value if isinstance(value, dict) else strawberry.asdict(value)
    try:
        return msgspec.convert(raw, struct_type, strict=False), []
    except msgspec.ValidationError as exc:
        return None, user_errors(input_error(exc))
    except DomainError as exc:
        return None, user_errors(exc)


# --- Relay-style connections -------------------------------------------------


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[G]):
    node: G
    cursor: str


@strawberry.type
class Connection(Generic[G]):
    edges: list[Edge[G]]
    page_info: PageInfo


def connection_of(page: Page[Any], to_node: Callable[[Any], G], sort_key: Callable[[Any], list[Any]]) -> Connection[G]:
    """A GraphQL connection from a service Page (same cursors as REST)."""
    edges = [Edge(node=to_node(item), cursor=encode_cursor(sort_key(item))) for item in page.items]
    return Connection(edges=edges, page_info=PageInfo(has_next_page=page.next_cursor is not None, end_cursor=page.next_cursor))


async def site_connection(
    info: Ctx,
    site_id: UUID,
    read: Callable[[asyncpg.Connection, Principal], Awaitable[Page[Any]]],
    to_node: Callable[[Any], G],
    sort_key: Callable[[Any], list[Any]],
) -> Connection[G]:
    """A connection of one site's records (``site_read``): empty for another or an unknown site."""
    return connection_of(await site_read(info, site_id, read, Page(items=[], next_cursor=None)), to_node, sort_key)
