"""Live frames: a ``siteEvents`` event rendered once per selection and visibility class.

Executing GraphQL per subscriber and event was the cost of live updates (issue 14). What a
subscriber receives for an event depends only on the event as its caller sees it
(``changes.to_change``: the caller's role and sites, its *visibility class*) and on the fields
its subscription selects. So a ``Plan`` is compiled once from a subscription's document and
variables (the fields it selects, in order, with their aliases, after fragments and
``@skip``/``@include``), and each event is rendered once per (plan, visibility class) into the
JSON text of a ``next`` payload; every subscriber sharing both gets the same text
(service/live.py hands it out, service/api/graphql.py writes the frames).

The plan serializes each field with the schema's own scalar (``UUID``, ``DateTime``, ``JSON`` ...)
exactly as graphql-core's execution does; an event it cannot render that way (a value the scalar
refuses, a null where the schema says non-null) is executed by graphql-core instead, so the
answer, errors included, is the one the per-subscriber path gives.
tests/foundation/test_live_frames.py compares both paths on seeded data.

Fields are read from the ``Change`` itself (``readers``: what ``make_event`` would put in the object),
so an event is rendered without building a ``SiteEvent``; the selection compiler (``_Selection``) also
plans queries: ``page_plan`` compiles a query of one root field whose selections are plain attributes
(objects and lists of them too) and the GraphQL edge renders what the field returns by it, in place of
graphql-core completing a 1,000-change ``changes`` page field by field (service/api/graphql.py
PLANNED_FIELDS; tests/changes/test_planned_pages.py compares it with execution byte for byte).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Hashable
from operator import attrgetter
from typing import Any, NamedTuple

import msgspec
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    OperationType,
    is_leaf_type,
    specified_scalar_types,
)
from graphql.execution import Executor
from graphql.execution.collect_fields import collect_fields, collect_subfields
from graphql.execution.values import get_argument_values
from strawberry.schema.schema_converter import GraphQLCoreConverter

from service.access.model import Principal
from service.changes.model import Change

ROOT_FIELD = "siteEvents"
MAX_PLANS = 1024  # distinct selections kept; a new one past this is compiled for its subscriber alone

Serializer = Callable[[Any], Any]
Reader = Callable[[Change], Any]  # one field of the event, from its Change
ErrorFormatter = Callable[[list[GraphQLError]], list[Any]]
_encode = msgspec.json.Encoder().encode
renders = 0  # events rendered since start (in process): subscribers sharing a plan and class share one
pages = 0  # query answers rendered by a PagePlan since start (in process)


class _NotRenderable(Exception):
    """A value the compiled plan will not serialize: graphql-core executes this event instead."""


def visibility_class(principal: Principal) -> Hashable:
    """What a change as ``principal`` sees it depends on (``changes.to_change``: the sites it reaches), with the role."""
    scope = principal.site_scope
    return (principal.role, None if scope is None else frozenset(scope))


class Plan:
    """A subscription's selection on one ``SiteEvent``: render a change into a ``next`` payload's JSON text."""

    __slots__ = ("_executor", "_format_errors", "_make_event", "fields", "key", "root")

    def __init__(
        self,
        key: Hashable,
        root: str,
        fields: list[tuple[str, Reader, Serializer]],
        executor: Executor,
        make_event: Callable[[Change], Any],
        format_errors: ErrorFormatter,
    ) -> None:
        self.key, self.root, self.fields = key, root, fields
        self._executor, self._make_event, self._format_errors = executor, make_event, format_errors

    def render(self, change: Change) -> str:
        global renders
        renders += 1
        try:
            body = {key: serialize(read(change)) for key, read, serialize in self.fields}
            return _encode({"data": {self.root: body}}).decode()
        except _NotRenderable:
            return self._execute(self._make_event(change))

    def _execute(self, event: Any) -> str:
        result = self._executor.build_per_event_executor(event).execute_operation(False)
        if not isinstance(result, ExecutionResult):  # only resolvers that await, which SiteEvent has none of
            raise TypeError("a SiteEvent field awaited")
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = self._format_errors(list(result.errors))
        return _encode(payload).decode()


Field = tuple[str, Reader, Serializer]  # response key, how to read the value, how to complete it


def _serializer(type_: GraphQLOutputType, objects: Callable[[GraphQLObjectType], list[Field] | None] | None = None) -> Serializer | None:
    """graphql-core's completion of a leaf or a list of leaves (with ``objects``, the fields it selects on an object
    type: of objects and lists of them too), as one function; None for anything else."""
    nonnull = isinstance(type_, GraphQLNonNull)
    inner: Any = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    if isinstance(inner, GraphQLList):
        item = _serializer(inner.of_type, objects)
        if item is None:
            return None

        def complete_list(value: Any, item: Serializer = item) -> Any:
            if value is None:
                if nonnull:
                    raise _NotRenderable
                return None
            if isinstance(value, str | bytes | dict) or not hasattr(value, "__iter__"):
                raise _NotRenderable
            return [item(v) for v in value]

        return complete_list
    if isinstance(inner, GraphQLObjectType):
        # A type that checks what it is given (interfaces, casts) is left to execution.
        fields = objects(inner) if objects is not None and inner.is_type_of is None else None
        if fields is None:
            return None

        def complete_object(value: Any, fields: list[Field] = fields) -> Any:
            if value is None:
                if nonnull:
                    raise _NotRenderable
                return None
            return {key: serialize(read(value)) for key, read, serialize in fields}

        return complete_object
    if not is_leaf_type(inner):
        return None
    serialize = inner.serialize
    # What graphql-core's own scalars give back unchanged (a str as String or ID, a bool, an int of 32 bits).
    same = _SAME.get(inner.name) if specified_scalar_types.get(inner.name) is inner else None
    bounded = same is int

    def complete_leaf(value: Any) -> Any:
        if value is None:
            if nonnull:
                raise _NotRenderable
            return None
        if type(value) is same and (not bounded or _int32(value)):
            return value
        try:
            out = serialize(value)
        except Exception as exc:  # the scalar refused it: execution reports the error
            raise _NotRenderable from exc
        if out is None:
            raise _NotRenderable
        return out

    return complete_leaf


_SAME: dict[str, type] = {"String": str, "ID": str, "Boolean": bool, "Int": int}


def _int32(value: Any) -> bool:
    return -(2**31) <= value < 2**31


def _same(value: Any) -> Any:
    return value


def _typename(name: str) -> Reader:
    return lambda _change: name


class Plans:
    """Compiled plans, shared: two subscriptions that select the same fields get the same Plan (and key)."""

    def __init__(
        self, schema: GraphQLSchema, make_event: Callable[[Change], Any], readers: dict[str, Reader], format_errors: ErrorFormatter, *,
        hide_suggestions: bool,
    ) -> None:
        """``make_event`` builds the event object graphql-core executes; ``readers`` give each of its fields
        (by Python name) from the change as ``make_event`` would, without building the object."""
        self._schema, self._make_event, self._readers, self._format_errors = schema, make_event, readers, format_errors
        self._hide = hide_suggestions
        self._plans: dict[Hashable, Plan] = {}
        self._lock = threading.Lock()

    def compile(
        self, document: DocumentNode, operation_name: str | None, variables: dict[str, Any] | None
    ) -> tuple[Plan, dict[str, Any]] | None:
        """The plan of a ``siteEvents`` subscription and its root field's coerced arguments; None for any other
        document, or anything the plan does not cover (the caller then executes per subscriber, as before)."""
        found = _Selection.of(self._schema, document, operation_name, variables, OperationType.SUBSCRIPTION, {ROOT_FIELD}, self._hide)
        if found is None:
            return None
        selection, root, field, details, arguments = found
        event_type = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
        if not isinstance(event_type, GraphQLObjectType):
            return None
        compiled = selection.fields(event_type, details, self._readers)
        if compiled is None:
            return None
        fields, names = compiled
        plan_key = (root, names)  # the selection itself: whatever document or variables led to it
        with self._lock:
            plan = self._plans.get(plan_key)
            if plan is None:
                plan = Plan(plan_key, root, fields, selection.built, self._make_event, self._format_errors)
                if len(self._plans) < MAX_PLANS:
                    self._plans[plan_key] = plan
        return plan, arguments


class _Selection:
    """One operation's selections, compiled field by field into readers and completions (``Field``)."""

    def __init__(self, schema: GraphQLSchema, built: Executor, hide_suggestions: bool) -> None:
        self.schema, self.built, self.hide = schema, built, hide_suggestions

    @classmethod
    def of(
        cls, schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: dict[str, Any] | None,
        kind: OperationType, roots: Collection[str], hide_suggestions: bool,
    ) -> tuple[_Selection, str, GraphQLField, Any, dict[str, Any]] | None:
        """(selection, response key, field, its field details, its coerced arguments) of an operation of ``kind``
        selecting one root field among ``roots``, once; None for anything else."""
        root_type = schema.subscription_type if kind is OperationType.SUBSCRIPTION else schema.query_type
        if root_type is None:
            return None
        built = Executor.build(schema, document, raw_variable_values=variables, operation_name=operation_name, hide_suggestions=hide_suggestions)
        if isinstance(built, list) or built.operation.operation is not kind:
            return None  # variables that do not coerce: execution states the errors
        try:
            collected = collect_fields(schema, built.fragments, built.variable_values, root_type, built.operation, hide_suggestions)
            if collected.new_defer_usages or len(collected.grouped_field_set) != 1:
                return None
            ((root, details),) = collected.grouped_field_set.items()
            node = details[0].node
            field = root_type.fields.get(node.name.value)
            if node.name.value not in roots or field is None:
                return None
            arguments = get_argument_values(field, node, built.variable_values, details[0].fragment_variable_values, hide_suggestions)
        except GraphQLError:
            return None
        return cls(schema, built, hide_suggestions), root, field, details, arguments

    def fields(
        self, type_: GraphQLObjectType, details: Any, readers: dict[str, Reader] | None = None
    ) -> tuple[list[Field], tuple[Hashable, ...]] | None:
        """The fields selected on ``type_`` and a key naming that selection; read by ``readers`` (Python name ->
        reader), else, where the field is a plain attribute (no resolver, permission or extension), by attribute."""
        try:
            sub = collect_subfields(self.schema, self.built.fragments, self.built.variable_values, self.built.operation, type_, details, self.hide)
        except GraphQLError:
            return None
        if sub.new_defer_usages:
            return None
        fields: list[Field] = []
        names: list[Hashable] = []
        for key, subdetails in sub.grouped_field_set.items():
            name = subdetails[0].node.name.value
            if name == "__typename":
                fields.append((key, _typename(type_.name), _same))
                names.append((key, name))
                continue
            definition = type_.fields.get(name)
            backref = definition.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF) if definition else None
            if definition is None or definition.args or backref is None:
                return None
            if readers is not None:
                read = readers.get(backref.python_name)
            elif backref.base_resolver is None and not backref.permission_classes and not backref.extensions:
                read = attrgetter(backref.python_name)
            else:
                read = None
            inner: list[Hashable] = []

            def nested(object_type: GraphQLObjectType, subdetails: Any = subdetails, inner: list[Hashable] = inner) -> list[Field] | None:
                compiled = self.fields(object_type, subdetails)
                if compiled is None:
                    return None
                inner.append(compiled[1])
                return compiled[0]

            serialize = _serializer(definition.type, nested)
            if serialize is None or read is None:
                return None
            fields.append((key, read, serialize))
            names.append((key, name, *inner))
        return fields, tuple(names)


class PagePlan(NamedTuple):
    """A query of one root field, answered by calling it and rendering what it returns (``render``)."""

    root: str  # the response key
    field: str  # the root field's name
    arguments: dict[str, Any]  # by Python name
    serialize: Serializer

    def render(self, value: Any) -> bytes | None:
        """The response body (as generic execution writes it: ``{"data": ...}``); None when only execution can say
        (a value a scalar refuses, a null where the schema says non-null: execution states the error)."""
        global pages
        try:
            body = _encode({"data": {self.root: self.serialize(value)}})
        except _NotRenderable:
            return None
        pages += 1
        return body


def page_plan(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: dict[str, Any] | None, roots: Collection[str], *,
    hide_suggestions: bool,
) -> PagePlan | None:
    """The plan of a query selecting one of ``roots`` (whose selections are plain attributes); None for anything else."""
    found = _Selection.of(schema, document, operation_name, variables, OperationType.QUERY, roots, hide_suggestions)
    if found is None:
        return None
    selection, root, field, details, arguments = found
    python_names = {}
    for name, argument in field.args.items():
        backref = argument.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
        if backref is None:
            return None
        python_names[name] = backref.python_name
    serialize = _serializer(field.type, lambda object_type: (selection.fields(object_type, details) or (None, None))[0])
    if serialize is None:
        return None
    return PagePlan(root, details[0].node.name.value, {python_names[k]: v for k, v in arguments.items()}, serialize)
