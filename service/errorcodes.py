"""Which error codes a piece of code can answer, found by reading it.

The contracts list, per REST route and per GraphQL field, the ``code`` values a
client may receive. They are derived from the code rather than written beside
it, so they cannot drift: every call of a DomainError subclass (its literal
``code=`` or the class default) in a function, in the ``service`` functions it
reaches, and in the ``__post_init__`` of the Structs it builds. A store module's
registered database constraints count for every function of that module (a
violation answers their code).

Codes chosen at run time (``code=variable``) are not seen; the contract tests
check every code actually answered against the documented list.
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
import textwrap
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from service.errors import DomainError

Codes = dict[int, set[str]]  # HTTP status -> codes

_PACKAGE = "service."

# What a read can meet from the database: a value it cannot take, e.g. a NUL in
# text (``service.errors.from_database``). Writes meet every code it answers.
READ_DATABASE_CODES: Codes = {422: {"invalid_value"}}


def merge(*parts: Codes) -> Codes:
    merged: Codes = defaultdict(set)
    for part in parts:
        for status, codes in part.items():
            merged[status] |= codes
    return dict(merged)


def raised_by(*roots: Any, writes: bool = True, barriers: Iterable[Callable[..., Any]] = ()) -> Codes:
    """Codes the ``roots`` (functions, methods, Struct types) can raise.

    ``writes``: whether the roots may write (reads cannot violate a constraint).
    A call of a ``barrier`` (e.g. GraphQL's ``mutate``, which turns errors into
    userErrors) is not followed, nor are its arguments.
    """
    key = (frozenset(_unwrap(b) for b in barriers), writes)
    reader = _READERS.get(key) or _READERS.setdefault(key, _Reader(*key))
    return merge(*(reader.codes_of(root) for root in roots))


_READERS: dict[tuple[frozenset[Any], bool], _Reader] = {}


def reaches(root: Any, target: Callable[..., Any]) -> bool:
    """Whether ``root`` calls ``target``, directly or through functions of ours (e.g. ``if_none_match``: answers 304)."""
    reader = _READERS.get((frozenset(), True)) or _READERS.setdefault((frozenset(), True), _Reader(frozenset(), True))
    reader.codes_of(root)
    target, seen, pending = _unwrap(target), set(), [_unwrap(root)]
    while pending:
        fn = pending.pop()
        if fn is target:
            return True
        if fn not in seen:
            seen.add(fn)
            pending.extend(reader.refs.get(fn, ()))
    return False


def _unwrap(obj: Any) -> Any:
    obj = getattr(obj, "__func__", obj)
    return inspect.unwrap(obj) if callable(obj) else obj


def _ours(obj: Any) -> bool:
    return (getattr(obj, "__module__", None) or "").startswith(_PACKAGE)


@functools.cache
def _module_constraints(module_name: str) -> frozenset[str]:
    """Codes of ``register_constraint("name", "code", ...)`` calls at a module's top level."""
    module = sys.modules.get(module_name)
    try:
        tree = ast.parse(inspect.getsource(module)) if module else None
    except (OSError, TypeError):
        tree = None
    codes = set()
    for node in ast.walk(tree) if tree else ():
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "register_constraint"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            codes.add(node.args[1].value)
    return frozenset(codes)


class _Reader:
    """Reads functions once per process (apps are built many times in tests)."""

    def __init__(self, barriers: frozenset[Any], writes: bool) -> None:
        self.barriers = barriers
        self.writes = writes
        self.seen: dict[Any, Codes] = {}
        self.refs: dict[Any, set[Any]] = defaultdict(set)  # function -> functions it references

    def codes_of(self, root: Any) -> Codes:
        root = _unwrap(root)
        if isinstance(root, type):
            post_init = root.__dict__.get("__post_init__")
            return self.codes_of(post_init) if post_init is not None else {}
        if not inspect.isfunction(root) or not _ours(root):
            return {}
        if root in self.seen:
            return self.seen[root]  # also ends recursion: a cycle adds nothing new
        self.seen[root] = {}
        found: Codes = defaultdict(set)
        constraints = _module_constraints(root.__module__) if self.writes else frozenset()
        if constraints:
            found[409] |= constraints
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(root)))
        except (OSError, TypeError, SyntaxError):
            tree = None
        if tree is not None:
            self._visit(tree, root, found)
        self.seen[root] = dict(found)
        return self.seen[root]

    def _visit(self, node: ast.AST, fn: Any, found: Codes) -> None:
        if isinstance(node, ast.Call):
            target = self._resolve(node.func, fn)
            if target is not None and _unwrap(target) in self.barriers:
                return
            if isinstance(target, type) and issubclass(target, DomainError):
                given = next((k.value for k in node.keywords if k.arg == "code"), None)
                code = target.default_code if given is None else given.value if isinstance(given, ast.Constant) else None
                if isinstance(code, str):
                    found[target.status].add(code)
        elif isinstance(node, ast.Name | ast.Attribute) and isinstance(node.ctx, ast.Load):
            target = self._resolve(node, fn)
            if target is not None and (inspect.isfunction(_unwrap(target)) or isinstance(target, type)):
                self.refs[fn].add(_unwrap(target))
                for status, codes in self.codes_of(target).items():
                    found[status] |= codes
            if isinstance(node, ast.Attribute):
                return  # the chain's base names a module or class already followed
        for child in ast.iter_child_nodes(node):
            self._visit(child, fn, found)

    def _resolve(self, node: ast.expr, fn: Any) -> Any:
        if isinstance(node, ast.Name):
            if node.id in fn.__code__.co_freevars and fn.__closure__:
                cell = fn.__closure__[fn.__code__.co_freevars.index(node.id)]
                try:
                    return cell.cell_contents
                except ValueError:
                    return None
            return fn.__globals__.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self._resolve(node.value, fn)
            if base is None:
                # A method of an instance: any class of ours the function can see that has it.
                methods = [
                    getattr(cls, node.attr)
                    for cls in list(fn.__globals__.values())
                    if isinstance(cls, type) and _ours(cls) and inspect.isfunction(cls.__dict__.get(node.attr))
                ]
                return methods[0] if len(methods) == 1 else None
            if not (inspect.ismodule(base) or isinstance(base, type)):
                return None
            return getattr(base, node.attr, None)
        return None
