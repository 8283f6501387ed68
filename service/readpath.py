"""The fast read path for persisted GraphQL reads: compiled operations and the version-keyed cache.

The GraphQL edge calls ``answer(context, document, variables)`` before generic
execution of a persisted query. It returns ``None`` (run it through Strawberry)
or an ``Answer``: the response body bytes and a strong ETag.

Compiled operations live in their domain (``<domain>/compiled.py``, SQL in
``db/queries/<domain>.sql``): one statement builds the whole response JSON.
Each declares the document it answers; at start-up every file in
``graphql/operations/`` is put in a canonical form (fragments inlined, printed
by graphql-core) and matched against them, so a file rewritten with other
fields or aliases simply runs the generic way. Nothing is keyed by a
hard-coded hash. The caller without a principal, a role the field refuses, or
variables outside what the compiler binds all fall back too, so errors come
from the one generic path.

A compiled answer is cached under (document, variables, caller's role and
sites, the site data versions it depends on, a time bucket when it shows
"today"): in process (an LRU bounded in bytes) and in Redis for the other
instances. The key only ever names data that existed, so an entry can never be
stale: a write moves a version and the next read builds a new key.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

import asyncpg
import msgspec
from graphql import FragmentDefinitionNode, FragmentSpreadNode, OperationDefinitionNode, parse, print_ast
from graphql.error import GraphQLSyntaxError
from graphql.language import FieldNode, InlineFragmentNode, SelectionNode, SelectionSetNode

from service import policy
from service.access.model import Principal
from service.api.persisted import documents
from service.errors import DomainError
from service.pagination import MAX_LIMIT, decode_cursor
from service.versions import CATALOG, NIL_SITE, read_versions

if TYPE_CHECKING:
    from service.cache import Cache
    from service.db import Database
    from service.settings import Settings

log = logging.getLogger("qsite.readpath")

INT32 = 2**31 - 1
REDIS_TTL_S = 600
MAX_ANNOUNCED = 20_000  # keys remembered as stored in Redis (~2 MB)
MB = 1024 * 1024


class Answer(NamedTuple):
    body: bytes
    etag: str


# --- variables -----------------------------------------------------------------


class Fallback(Exception):
    """A variable the compiler does not bind as GraphQL would: let the generic path answer."""


def uuid_value(value: Any) -> UUID:
    if not isinstance(value, str):
        raise Fallback
    try:
        return UUID(value)
    except ValueError:
        raise Fallback from None


def int_value(value: Any) -> int:
    if type(value) is not int or not -INT32 - 1 <= value <= INT32:
        raise Fallback
    return value


def enum_value(enum: type[Enum]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or value not in enum.__members__:
            raise Fallback
        return enum.__members__[value].value

    return convert


def str_value(value: Any) -> str:
    if not isinstance(value, str):
        raise Fallback
    return value


def limit_value(value: Any) -> int:
    """A page size the list functions accept (1-100); any other the generic path refuses with its own error."""
    if type(value) is not int or not 1 <= value <= MAX_LIMIT:
        raise Fallback
    return value


def cursor_value(types: list[type]) -> Callable[[Any], list[Any]]:
    def convert(value: Any) -> list[Any]:
        if not isinstance(value, str):
            raise Fallback
        try:
            return decode_cursor(value, types) or []
        except DomainError:
            raise Fallback from None

    return convert


def one_site(args: dict[str, Any], principal: Principal) -> list[UUID]:
    """The versions of the one site asked for; another site's answer is a constant (no version enters the key)."""
    return [args["siteId"]] if principal.can_access_site(args["siteId"]) else []


def list_of(item: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def convert(value: Any) -> list[Any]:
        # GraphQL coerces a single value into a one-item list.
        return [item(v) for v in value] if isinstance(value, list) else [item(value)]

    return convert


@dataclass(frozen=True)
class Param:
    name: str  # the GraphQL variable
    convert: Callable[[Any], Any]
    required: bool = False
    default: Any = None


# --- compiled operations ----------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """A request the compiler answers: the statement's arguments and what the answer depends on."""

    args: dict[str, Any]
    sites: list[UUID] | None  # the sites whose versions matter (None: every site)


@dataclass(frozen=True)
class Compiled:
    name: str
    document: str  # the operation it answers (compared in canonical form)
    params: tuple[Param, ...]
    # -> the response JSON text, or None when the generic path must answer (e.g. its error for an unknown site)
    run: Callable[[asyncpg.Connection, Principal, dict[str, Any], datetime], Any]
    topics: tuple[str, ...]
    # Which sites the answer depends on, from the bound variables and the caller.
    sites: Callable[[dict[str, Any], Principal], list[UUID] | None]
    # How the answer depends on the clock: 0 not at all; N seconds: only through the N-second period
    # (quarantine day is the site's local date, which turns on a quarter hour in every time zone);
    # None: it moves with the clock (never cached, ETag of the body).
    bucket_s: int | None = 0
    # The policy operation of the root field it answers (service/policy.py): a caller the policy
    # refuses falls back to the generic path, which answers the refusal exactly as always.
    operation: str = ""

    # The statement writes compact JSON itself (format() templates): no reformatting pass here.
    compact: bool = False

    def bind(self, variables: dict[str, Any]) -> dict[str, Any]:
        if set(variables) - {p.name for p in self.params}:
            raise Fallback
        args = {}
        for p in self.params:
            value = variables.get(p.name)
            if value is None:
                # GraphQL: an absent variable takes its default; null or no value for a non-null one is an error.
                if p.required and (p.name in variables or p.default is None):
                    raise Fallback
                args[p.name] = p.default
            else:
                args[p.name] = p.convert(value)
        return args


COMPILED: list[Compiled] = []


def compiled(op: Compiled) -> Compiled:
    """Register a compiled operation (called by the domains' compiled.py at import)."""
    policy.rule(op.operation)  # every compiled read names the operation the policy checks
    COMPILED.append(op)
    return op


def canonical(document: str) -> str | None:
    """The document's one operation with fragments inlined, printed by graphql-core; None if unusable."""
    try:
        tree = parse(document, no_location=True)
    except GraphQLSyntaxError:
        return None
    operations = [d for d in tree.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {d.name.value: d for d in tree.definitions if isinstance(d, FragmentDefinitionNode)}
    if len(operations) != 1:
        return None

    def inline(selection_set: SelectionSetNode, depth: int = 0) -> SelectionSetNode:
        if depth > 20:
            return selection_set
        out: list[SelectionNode] = []
        for sel in selection_set.selections:
            if isinstance(sel, FragmentSpreadNode):
                fragment = fragments.get(sel.name.value)
                if fragment is None or sel.directives:
                    raise ValueError(sel.name.value)
                out.extend(inline(fragment.selection_set, depth + 1).selections)
            elif isinstance(sel, InlineFragmentNode):
                raise ValueError("inline fragment")  # a type condition the compiler does not model
            elif isinstance(sel, FieldNode):
                nested = inline(sel.selection_set, depth + 1) if sel.selection_set is not None else None
                out.append(sel.__class__(**{**{k: getattr(sel, k) for k in sel.keys}, "selection_set": nested}))
        return SelectionSetNode(selections=tuple(out))

    op = operations[0]
    try:
        body = inline(op.selection_set)
    except ValueError:
        return None
    flat = OperationDefinitionNode(
        operation=op.operation, name=op.name, variable_definitions=op.variable_definitions, directives=op.directives, selection_set=body
    )
    return print_ast(flat)


@dataclass
class Registry:
    by_text: dict[str, tuple[str, Compiled]] = field(default_factory=dict)  # document text -> (sha256, op)
    by_hash: dict[str, tuple[str, Compiled]] = field(default_factory=dict)


@cache
def registry() -> Registry:
    """Persisted documents the compiler answers, matched at start-up by canonical form."""
    _import_domains()
    wanted = {canonical(op.document): op for op in COMPILED}
    found = Registry()
    for digest, text in documents().items():
        op = wanted.get(canonical(text))
        if op is not None:
            found.by_text[text] = found.by_hash[digest] = (digest, op)
    missing = {op.name for op in COMPILED} - {op.name for _, op in found.by_text.values()}
    if missing:
        log.info("compiled operations without a matching persisted document", extra={"event": "compiled_unmatched", "subject": ",".join(sorted(missing))})
    return found


def _import_domains() -> None:
    from service.health import compiled as _health  # noqa: F401
    from service.sites import compiled as _sites  # noqa: F401
    from service.stays import compiled as _stays  # noqa: F401
    from service.transfers import compiled as _transfers  # noqa: F401


def compiled_operations() -> list[str]:
    """Names of the persisted operations answered by compiled SQL (for README, tests)."""
    return sorted({op.name for _, op in registry().by_text.values()})


# --- the response cache ----------------------------------------------------------


class ResponseCache:
    """Answers by key: in process (LRU bounded in bytes), then Redis (shared, with a TTL).

    An instance that stores an answer in Redis announces its key on a channel (same round trip);
    every instance notes the keys announced and asks Redis only for those. After a write every
    instance's first read misses, and almost always on a key nobody has built yet: that miss now
    costs no round trip. An announcement not heard (Redis or the subscription down, or not there
    yet) only means this instance builds the answer itself; nothing can go stale, since a key
    names the versions it was built at.
    """

    def __init__(self, cache: Cache, max_bytes: int) -> None:
        self.cache = cache
        self.max_bytes = max_bytes
        self.size = 0
        self.entries: OrderedDict[str, bytes] = OrderedDict()
        self.announced: OrderedDict[str, None] = OrderedDict()  # keys some instance stored in Redis
        self._channel = cache.key("answers")
        self._listening = False

    def _redis_key(self, key: str) -> str:
        return self.cache.key("answer", key)

    async def get(self, key: str) -> bytes | None:
        if not self.max_bytes:
            return None
        body = self.entries.get(key)
        if body is not None:
            self.entries.move_to_end(key)
            return body
        if not self._listening:
            self._listening = True
            await self.cache.hub.join(self, channels=[self._channel])
        if key not in self.announced:
            return None
        body = await self.cache.call("get", self._redis_key(key))
        if body is not None:
            self._keep(key, body)
        return body

    def put(self, key: str, body: bytes) -> None:
        """Keep the answer here; store and announce it in Redis in the background (the answer does
        not wait for a round trip and the body's transfer: 130 kB for a whole-site board)."""
        if not self.max_bytes:
            return
        self._keep(key, body)
        self.cache.send_soon([("set", (self._redis_key(key), body, REDIS_TTL_S)), ("publish", (self._channel, key))])

    def _keep(self, key: str, body: bytes) -> None:
        if len(body) > self.max_bytes // 8:
            return
        old = self.entries.pop(key, None)
        if old is not None:
            self.size -= len(old)
        self.entries[key] = body
        self.size += len(body)
        while self.size > self.max_bytes:
            _, dropped = self.entries.popitem(last=False)
            self.size -= len(dropped)

    # The instance's shared subscription (service.cache.Hub) feeds these.
    def ready(self) -> None:
        pass

    def deliver(self, channel: bytes, data: bytes) -> None:
        self.announced[data.decode()] = None
        if len(self.announced) > MAX_ANNOUNCED:
            self.announced.popitem(last=False)

    def lost(self) -> None:
        pass  # announcements missed meanwhile: those answers are built here instead


def cache_key(*parts: object) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(str(part).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def scope_of(principal: Principal) -> str:
    scope = principal.site_scope  # what the caller's queries bind: a key without sites has none, not all
    return f"{principal.role}:" + ("*" if scope is None else ",".join(sorted(map(str, scope))))


async def versions_of(db: Database, sites: Iterable[UUID] | None, topics: Iterable[str]) -> str:
    """The versions an answer depends on, as one stable string (always with the catalog's)."""
    topics = tuple(topics)
    sites = None if sites is None else [*sites, NIL_SITE]
    found = await (db.versions.current if db.versions is not None else read_versions)(db, sites, (*topics, CATALOG))
    if sites is None:  # every site: the catalog's row is among them
        found.setdefault((NIL_SITE, CATALOG), 0)
    return ";".join(f"{s}:{t}={v}" for (s, t), v in sorted(found.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])))


def responses(db: Database, settings: Settings) -> ResponseCache:
    """The instance's answer cache (one per Database, i.e. per app)."""
    found = getattr(db, "responses", None)
    if found is None:
        found = db.responses = ResponseCache(db.cache, settings.read_cache_mb * MB)  # type: ignore[attr-defined]
    return found


async def answer(context: Any, document: str, variables: dict[str, Any] | None, *, operation_name: str | None = None) -> Answer | None:
    """The persisted read ``document`` answered by compiled SQL (through the cache), or None to run it generically.

    ``document`` is the document text or its sha256 hex. ``context`` is the GraphQL context
    (``db``, ``principal``).
    """
    reg = registry()
    found = reg.by_text.get(document) or reg.by_hash.get(document)
    if found is None:
        return None
    digest, op = found
    if operation_name not in (None, op.name):
        return None
    principal: Principal | None = context.principal
    if principal is None or not policy.allows(principal, op.operation):
        return None
    try:
        args = op.bind(variables or {})
    except Fallback:
        return None
    db: Database = context.db
    now = datetime.now(UTC)
    if op.bucket_s is None:
        body = await _run(db, op, principal, args, now)
        return None if body is None else Answer(body, strong_etag(body))
    bucket = int(now.timestamp()) // op.bucket_s if op.bucket_s else 0
    versions = await versions_of(db, op.sites(args, principal), op.topics)
    key = cache_key(digest, msgspec.json.encode(args), scope_of(principal), versions, bucket)
    store = responses(db, context.settings)
    body = await store.get(key)
    if body is None:
        body = await _run(db, op, principal, args, now)
        if body is None:
            return None
        store.put(key, body)
    return Answer(body, f'"c{key}"')


async def _run(db: Database, op: Compiled, principal: Principal, args: dict[str, Any], now: datetime) -> bytes | None:
    async with db.connection() as conn:
        text = await op.run(conn, principal, args, now)
    if text is None:
        return None
    # json_build_object writes JSON with spaces after ':' and ','; the compact form is ~10 % smaller.
    return text.encode() if op.compact else msgspec.json.format(text.encode(), indent=-1)


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
