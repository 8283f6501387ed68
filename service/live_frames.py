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
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

import msgspec
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    OperationType,
    is_leaf_type,
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
ErrorFormatter = Callable[[list[GraphQLError]], list[Any]]
_encode = msgspec.json.Encoder().encode
renders = 0  # events rendered since start (in process): subscribers sharing a plan and class share one


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
        fields: list[tuple[str, str | None, Serializer]],
        executor: Executor,
        make_event: Callable[[Change], Any],
        format_errors: ErrorFormatter,
    ) -> None:
        self.key, self.root, self.fields = key, root, fields
        self._executor, self._make_event, self._format_errors = executor, make_event, format_errors

    def render(self, change: Change) -> str:
        global renders
        renders += 1
        event = self._make_event(change)
        try:
            body = {key: serialize(event if attr is None else getattr(event, attr)) for key, attr, serialize in self.fields}
            return _encode({"data": {self.root: body}}).decode()
        except _NotRenderable:
            return self._execute(event)

    def _execute(self, event: Any) -> str:
        result = self._executor.build_per_event_executor(event).execute_operation(False)
        if not isinstance(result, ExecutionResult):  # only resolvers that await, which SiteEvent has none of
            raise TypeError("a SiteEvent field awaited")
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = self._format_errors(list(result.errors))
        return _encode(payload).decode()


def _serializer(type_: GraphQLOutputType) -> Serializer | None:
    """graphql-core's completion of a leaf or a list of leaves, as one function; None for anything else."""
    nonnull = isinstance(type_, GraphQLNonNull)
    inner: Any = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    if isinstance(inner, GraphQLList):
        item = _serializer(inner.of_type)
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
    if not is_leaf_type(inner):
        return None
    serialize = inner.serialize

    def complete_leaf(value: Any) -> Any:
        if value is None:
            if nonnull:
                raise _NotRenderable
            return None
        try:
            out = serialize(value)
        except Exception as exc:  # the scalar refused it: execution reports the error
            raise _NotRenderable from exc
        if out is None:
            raise _NotRenderable
        return out

    return complete_leaf


def _typename(name: str) -> Serializer:
    return lambda _event: name


class Plans:
    """Compiled plans, shared: two subscriptions that select the same fields get the same Plan (and key)."""

    def __init__(self, schema: GraphQLSchema, make_event: Callable[[Change], Any], format_errors: ErrorFormatter, *, hide_suggestions: bool) -> None:
        self._schema, self._make_event, self._format_errors = schema, make_event, format_errors
        self._hide = hide_suggestions
        self._plans: dict[Hashable, Plan] = {}
        self._lock = threading.Lock()

    def compile(
        self, document: DocumentNode, operation_name: str | None, variables: dict[str, Any] | None
    ) -> tuple[Plan, dict[str, Any]] | None:
        """The plan of a ``siteEvents`` subscription and its root field's coerced arguments; None for any other
        document, or anything the plan does not cover (the caller then executes per subscriber, as before)."""
        schema = self._schema
        root_type = schema.subscription_type
        if root_type is None:
            return None
        built = Executor.build(schema, document, raw_variable_values=variables, operation_name=operation_name, hide_suggestions=self._hide)
        if isinstance(built, list) or built.operation.operation is not OperationType.SUBSCRIPTION:
            return None  # variables that do not coerce: execution states the errors
        try:
            collected = collect_fields(schema, built.fragments, built.variable_values, root_type, built.operation, self._hide)
            if collected.new_defer_usages or len(collected.grouped_field_set) != 1:
                return None
            ((root, details),) = collected.grouped_field_set.items()
            node = details[0].node
            field = root_type.fields.get(node.name.value)
            if node.name.value != ROOT_FIELD or field is None:
                return None
            arguments = get_argument_values(field, node, built.variable_values, details[0].fragment_variable_values, self._hide)
            event_type = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
            if not isinstance(event_type, GraphQLObjectType):
                return None
            sub = collect_subfields(schema, built.fragments, built.variable_values, built.operation, event_type, details, self._hide)
        except GraphQLError:
            return None
        if sub.new_defer_usages:
            return None
        fields: list[tuple[str, str | None, Serializer]] = []
        names: list[tuple[str, str]] = []
        for key, subdetails in sub.grouped_field_set.items():
            name = subdetails[0].node.name.value
            names.append((key, name))
            if name == "__typename":
                fields.append((key, None, _typename(event_type.name)))
                continue
            definition = event_type.fields.get(name)
            backref = definition.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF) if definition else None
            serialize = _serializer(definition.type) if definition is not None and not definition.args else None
            if serialize is None or backref is None:
                return None
            fields.append((key, backref.python_name, serialize))
        plan_key = (root, tuple(names))  # the selection itself: whatever document or variables led to it
        with self._lock:
            plan = self._plans.get(plan_key)
            if plan is None:
                plan = Plan(plan_key, root, fields, built, self._make_event, self._format_errors)
                if len(self._plans) < MAX_PLANS:
                    self._plans[plan_key] = plan
        return plan, arguments
