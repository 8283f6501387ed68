"""The cross-site walk: another site's real ids answer exactly like random ones, leak nothing, write nothing.

The demo seed fills two sites with one of everything (rooms, residents, stays, check-ins,
samples, alerts, exposure reviews, transfers, items, movements, replenishments, staff);
a webhook and an API client of the second site are added. Every REST route and GraphQL
field (read from the app and the schema; GraphQL selections expanded into nested fields)
is called by every site-scoped role of the first site, once per id slot (path, query,
body, input, argument), with the second site's real id and with a random one, the other
slots holding the first site's own ids so that the request reaches the check on that slot:

- the two answers must be equal (status and body, request id aside);
- no answer may hold an id of the second site's records;
- the second site's rows are the same before and after the walk.

A client-chosen ``id`` (or a tube ``barcode``) that the other site already uses cannot answer
like a random one (that would create a duplicate): it must answer exactly like one of the
caller's own ids reused for other content.
"""

from __future__ import annotations

import base64
import os
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg
import msgspec
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLUnionType,
    Undefined,
)
from litestar.testing import AsyncTestClient

from service.access import service as access
from service.access.model import ApiClientCreate, Role
from service.access.service import issue_access_token
from service.api import demo
from service.api.graphql import build_schema
from service.app import create_app
from service.cache import Cache
from service.db import Database, create_pool
from service.gql import Context
from service.pagination import encode_cursor
from service.settings import generate_secrets, load_settings
from service.supplies import webhooks
from service.supplies.model import WebhookCreate
from tests.conftest import make_principal, with_database
from tests.security.expected import EXPECTED
from tests.security.walk import ROLES, graphql_fields, is_one_of, rest_operations

SCOPED = [r for r in ROLES if r is not Role.COMMAND]  # the command role sees every site by design
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# The kinds of record an id may name, and one of each at a site ($1). Shared kinds belong to
# no site (the same record for everyone): they are filled, never varied.
# The stay the others hang off: active, with an open alert and a swab, no open transfer.
STAY = ("SELECT s.id FROM stays s WHERE s.site_id = $1 AND s.status = 'active'"
        " AND EXISTS (SELECT 1 FROM alerts a WHERE a.stay_id = s.id AND a.state = 'open')"
        " AND EXISTS (SELECT 1 FROM samples x WHERE x.stay_id = s.id)"
        " AND NOT EXISTS (SELECT 1 FROM transfers t WHERE t.stay_id = s.id AND t.state NOT IN ('arrived', 'rejected', 'cancelled'))"
        " ORDER BY s.admitted_at, s.id LIMIT 1")
SITE_KINDS: dict[str, str] = {
    "site": "SELECT $1::uuid",
    "room": "SELECT id FROM rooms WHERE site_id = $1 AND status = 'ready' ORDER BY number LIMIT 1",
    "stay": STAY,
    "resident": f"SELECT resident_id FROM stays WHERE id = ({STAY})",
    "checkin": "SELECT id FROM checkins WHERE site_id = $1 ORDER BY recorded_at DESC, id LIMIT 1",
    "sample": f"SELECT id FROM samples WHERE stay_id = ({STAY}) ORDER BY collected_at DESC, id LIMIT 1",
    "barcode": f"SELECT barcode FROM samples WHERE stay_id = ({STAY}) ORDER BY collected_at DESC, id LIMIT 1",
    "pool": "SELECT id FROM samples WHERE site_id = $1 ORDER BY collected_at DESC, id LIMIT 1",
    "alert": f"SELECT id FROM alerts WHERE stay_id = ({STAY}) AND state = 'open' ORDER BY raised_at, id LIMIT 1",
    "review": "SELECT id FROM exposure_reviews WHERE site_id = $1 AND state = 'open' ORDER BY id LIMIT 1",
    "transfer": "SELECT id FROM transfers WHERE site_id = $1 ORDER BY requested_at DESC, id LIMIT 1",
    "movement": "SELECT id FROM supply_movements WHERE site_id = $1 ORDER BY created_at DESC, id LIMIT 1",
    "replenishment": "SELECT id FROM supply_replenishments WHERE site_id = $1 ORDER BY created_at DESC, id LIMIT 1",
    "webhook": "SELECT id FROM webhooks WHERE $1 = ANY(site_ids) ORDER BY id LIMIT 1",
    "staff": "SELECT staff_id FROM staff_sites WHERE site_id = $1 ORDER BY staff_id LIMIT 1",
    "care_request": "SELECT id FROM care_requests WHERE site_id = $1 AND state IN ('open', 'in_progress') ORDER BY due_at, id LIMIT 1",
    "worker": "SELECT id FROM site_workers WHERE site_id = $1 ORDER BY post, name, id LIMIT 1",
    "shift": "SELECT id FROM staff_shifts WHERE site_id = $1 ORDER BY starts_at, id LIMIT 1",
    "staff_sample": "SELECT id FROM staff_samples WHERE site_id = $1 AND result = 'pending' ORDER BY collected_at, id LIMIT 1",
    "staff_exposure": "SELECT id FROM staff_exposures WHERE site_id = $1 AND state = 'open' ORDER BY opened_at, id LIMIT 1",
    "inspection": "SELECT id FROM inspections WHERE site_id = $1 ORDER BY inspected_at, id LIMIT 1",
    "finding": "SELECT id FROM inspection_findings WHERE site_id = $1 AND state = 'open' ORDER BY due_on, id LIMIT 1",
    "environmental_sample": "SELECT id FROM environmental_samples WHERE site_id = $1 AND result = 'pending' ORDER BY collected_at, id LIMIT 1",
    "waste": "SELECT id FROM medical_waste WHERE site_id = $1 AND state = 'sealed' ORDER BY sealed_at, id LIMIT 1",
    "referral": "SELECT id FROM referrals WHERE site_id = $1 AND state = 'pending' ORDER BY identified_at, id LIMIT 1",
    "bed": "SELECT b.id FROM beds b JOIN rooms r ON r.id = b.room_id WHERE b.site_id = $1 AND r.status = 'ready' ORDER BY r.number, b.number LIMIT 1",
    "manifest": "SELECT id FROM arrival_manifests WHERE site_id = $1 AND state = 'announced' ORDER BY expected_at, id LIMIT 1",
    # The site's street: each demo site has its own, which the other site's staff do not see.
    "region": "SELECT region_id FROM region_sites WHERE site_id = $1",
    "client": "SELECT s.client_id FROM api_client_sites s WHERE s.site_id = $1 AND NOT EXISTS"
    " (SELECT 1 FROM api_client_sites o WHERE o.client_id = s.client_id AND o.site_id <> $1) ORDER BY 1 LIMIT 1",
}
SHARED_KINDS: dict[str, str] = {
    "item": "SELECT id FROM supply_items ORDER BY sku LIMIT 1",
    "facility": "SELECT id FROM facilities ORDER BY code LIMIT 1",
    "regime": "SELECT id FROM regimes ORDER BY code LIMIT 1",
}
# Names of id slots -> kind, where the noun in the name is not the kind itself.
ALIASES = {"rep": "replenishment", "destination": "facility", "source_stay": "stay", "counterpart": "movement",
           "staff_member": "staff", "api_client": "client", "exposure_review": "review", "subject": "stay",
           "from_site": "site", "to_site": "site", "target_room": "room", "to_room": "room", "member": "sample",
           "parent": "region"}
# Client-chosen ids: the record kind a create route or mutation makes.
CREATES = {"checkin": "checkin", "checkins": "checkin", "sample": "sample", "samples": "sample", "pool": "sample",
           "movements": "movement", "stockmovement": "movement", "transfers": "transfer", "transfer": "transfer",
           "replenishments": "replenishment", "replenishment": "replenishment", "staff": "staff",
           "resident": "stay", "batch": "stay", "facilities": "facility", "destinationfacility": "facility",
           "stock": "movement", "items": "item", "movement": "movement", "facility": "facility",
           "regions": "region", "region": "region", "care": "care_request",
           "worker": "worker", "shift": "shift", "inspection": "inspection", "finding": "finding", "waste": "waste",
           "referral": "referral", "referrals": "referral", "manifest": "manifest", "manifests": "manifest"}
# What a taken client-chosen id may answer (the same whoever holds it): a 409 of this family.
TAKEN = re.compile(r"^[a-z_]*(_id_taken|_id_conflict|_exists|barcode_taken)$")
SEEN: list[tuple[str, str, int, str]] = []  # (route or field, variant, status, code) of every call, for the summary
ONE_OF: set[str] = set()  # fields of @oneOf inputs seen: each names the mutation its value replays (syncWrites)


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def kind_of(name: str) -> str | None:
    """The record kind an id slot names (``alert_id``, ``stayIds``, ``rep_id``, ``revokeApiClientId`` ...); None: not an id."""
    n = snake(name)
    if not (n == "id" or n.endswith("_id") or n.endswith("_ids")):
        return None
    noun = n.removesuffix("_ids").removesuffix("_id")
    words = noun.split("_")
    for i in range(len(words)):  # the longest known tail: revoke_api_client -> api_client -> client
        tail = "_".join(words[i:])
        tail = ALIASES.get(tail, tail)
        if tail in SITE_KINDS or tail in SHARED_KINDS:
            return tail
    return noun


def _masked(text: str) -> str:
    """An answer with every id and generated barcode blanked: the shape of a success, whatever it created."""
    return re.sub(r"WALK-[0-9a-f]+", "<barcode>", UUID_RE.sub("<id>", text))


# --- the world ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def world(server_dsn: str, template_db: str, redis_url: str, tmp_path_factory) -> AsyncIterator[SimpleNamespace]:
    name = f"qsite_xsite_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}" STRATEGY FILE_COPY')
    settings = load_settings(
        {},
        env="test",
        database_url=with_database(server_dsn, name),
        redis_url=redis_url,
        redis_prefix=f"test:{uuid.uuid4().hex[:12]}:",
        data_dir=str(tmp_path_factory.mktemp("xsite")),
        run_background_jobs=False,
        webhook_allow_private=True,
        **generate_secrets(),
    )
    db = Database(await create_pool(settings, settings.database_url), Cache(redis_url, prefix=settings.redis_prefix, timeout_ms=250))
    try:
        seeded: dict[str, Any] = {"settings": settings}
        async with db.transaction() as conn:
            for step in demo.STEPS:
                await step(conn, seeded)
            own, foreign = seeded["sites"][:2]
            keys = {}
            facility = await conn.fetchval(SHARED_KINDS["facility"])
            for site in (own, foreign):  # what the demo does not make: keys of this site only, a webhook
                for role in (Role.LOGISTICS, Role.LAB, Role.HOSPITAL, Role.TRACING, Role.CARRIER):
                    body = {"name": f"{role} {site}", "role": role.value, "site_ids": [str(site)]}
                    body |= {"facility_id": str(facility)} if role is Role.HOSPITAL else {}
                    client = await access.create_client(conn, access.SYSTEM_PRINCIPAL, msgspec.convert(body, ApiClientCreate))
                    if site == own:
                        keys[role] = client.api_key
                    if role is Role.LOGISTICS:
                        logistics = make_principal(Role.LOGISTICS, [site], id=client.id)
                        await webhooks.register(conn, logistics, settings, msgspec.convert({"url": "https://127.0.0.1:9/hook", "events": ["low_stock"]}, WebhookCreate))
            await _seed_missing(conn, own, foreign)
        app = create_app(settings)
        async with AsyncTestClient(app=app) as client, db.connection() as conn:
            ids = {site: {k: await conn.fetchval(q, site) for k, q in SITE_KINDS.items()} for site in (own, foreign)}
            shared = {k: await conn.fetchval(q) for k, q in SHARED_KINDS.items()}
            missing = [f"{k} at the {label} site" for label, site in (("own", own), ("other", foreign)) for k, v in ids[site].items() if v is None]
            assert not missing, f"the seed lacks {missing}"
            yield SimpleNamespace(
                app=app, client=client, db=db, settings=settings, own=own, foreign=foreign, ids=ids, shared=shared,
                schema=build_schema(settings), markers=await _foreign_markers(conn, foreign), keys=keys,
            )
    finally:
        await db.pool.close()
        await db.cache.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _seed_missing(conn: asyncpg.Connection, own: uuid.UUID, foreign: uuid.UUID) -> None:
    """Open alerts, exposure reviews and replenishments at both sites when the demo made none."""
    from service.health import service as health
    from service.health.model import ExposureSource
    from service.stays import service as stays
    from service.supplies import service as supplies
    from service.supplies.model import ReplenishmentCreate

    for site in (own, foreign):
        principal = make_principal(Role.SITE_MANAGER, [site])
        stay_ids = [r["id"] for r in await conn.fetch(
            STAY.replace(" AND EXISTS (SELECT 1 FROM alerts a WHERE a.stay_id = s.id AND a.state = 'open')", "").replace("LIMIT 1", "LIMIT 3"),
            site)]
        found = await stays.get_stays(conn, principal, stay_ids)
        if not await conn.fetchval(f"SELECT count(*) FROM ({STAY}) x", site):
            await health.raise_alert(conn, principal, found[stay_ids[0]], "fever", dedup_key="walk", detail={"temperature_c": 38.2})
        if not await conn.fetchval("SELECT count(*) FROM exposure_reviews WHERE site_id = $1 AND state = 'open'", site):
            await health.open_exposure_review(conn, principal, stay_ids[0], reason="walk", source=ExposureSource.TRANSFER)
        if not await conn.fetchval("SELECT count(*) FROM supply_replenishments WHERE site_id = $1", site):
            item = await conn.fetchval("SELECT id FROM supply_items ORDER BY sku LIMIT 1")
            await supplies.raise_replenishment(
                conn, principal, msgspec.convert({"site_id": str(site), "lines": [{"item_id": str(item), "quantity": 10}]}, ReplenishmentCreate)
            )


async def _foreign_markers(conn: asyncpg.Connection, site: uuid.UUID) -> frozenset[str]:
    """Every id of the other site's records (and its code): none may appear in an answer to the first site."""
    tables = await conn.fetch(
        "SELECT table_name::text AS t FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'site_id'"
        " AND table_name::text IN (SELECT table_name FROM information_schema.columns WHERE column_name = 'id' AND table_schema = 'public')"
    )
    markers = {str(site)}
    for row in tables:
        if row["t"] in ("events", "audit_log"):
            continue
        markers |= {str(r["id"]) for r in await conn.fetch(f'SELECT id FROM "{row["t"]}" WHERE site_id = $1', site)}
    markers |= {str(r[0]) for r in await conn.fetch("SELECT staff_id FROM staff_sites WHERE site_id = $1", site)}
    markers |= {str(r[0]) for r in await conn.fetch(SITE_KINDS["client"], site)}
    markers |= {str(r[0]) for r in await conn.fetch(SITE_KINDS["webhook"].replace(" LIMIT 1", ""), site)}
    # Staff and clients working at both sites are the first site's too.
    markers -= {str(r[0]) for r in await conn.fetch("SELECT staff_id FROM staff_sites WHERE site_id <> $1", site)}
    return frozenset(markers)


async def site_checksums(db: Database, site: uuid.UUID) -> dict[str, str]:
    """A digest of every row that belongs to ``site`` (directly or through a link table)."""
    async with db.connection() as conn:
        tables = [r["t"] for r in await conn.fetch(
            "SELECT table_name::text AS t FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'site_id'"
            " AND table_name::text IN (SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE') ORDER BY 1"
        )]
        out = {}
        for t in tables:
            out[t] = await conn.fetchval(f'SELECT md5(coalesce(string_agg(x::text, \'|\' ORDER BY x::text), \'\')) FROM "{t}" x WHERE site_id = $1', site)
        linked = {
            "staff": "SELECT x FROM staff x JOIN staff_sites s ON s.staff_id = x.id WHERE s.site_id = $1",
            "api_clients": "SELECT x FROM api_clients x JOIN api_client_sites s ON s.client_id = x.id WHERE s.site_id = $1",
            "webhooks": "SELECT x FROM webhooks x WHERE $1 = ANY(x.site_ids)",
            "supply_replenishment_lines": "SELECT x FROM supply_replenishment_lines x JOIN supply_replenishments r ON r.id = x.replenishment_id WHERE r.site_id = $1",
        }
        for t, q in linked.items():
            out[t] = await conn.fetchval(f"SELECT md5(coalesce(string_agg(q.x::text, '|' ORDER BY q.x::text), '')) FROM ({q}) q", site)
        return out


# --- values for the generated requests -------------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=0)
# Field values that pass the domain's own checks, by field name (snake_case); everything else by type.
VALUES: dict[str, Any] = {
    "temperature_c": 36.6, "spo2": 98, "pulse": 80, "recorded_at": (NOW - timedelta(minutes=1)).isoformat(),
    "collected_at": (NOW - timedelta(minutes=1)).isoformat(), "since": (NOW - timedelta(days=30)).isoformat(),
    "until": NOW.isoformat(), "quantity": 1, "delta": 1, "version": 1, "reason": "walk", "note": "walk", "purpose": "security walk",
    "url": "https://127.0.0.1:9/hook", "password": "a-long-password", "username": "walk-user", "phone": "13800000099",
    "document_number": "110101199003074477", "document_type": "mainland_id", "barcode": "WALK-0001", "code": "WALK",
    "plate": "渝A12345", "handover_note": "ok", "shipment_ref": "S-1", "limit": 10, "first": 10, "floor": 3,
}


class Filler:
    """Values for a request: ids by kind from one site, the varied slot from ``variant``."""

    def __init__(self, w: SimpleNamespace, vary: str | None, variant: str, kind: str | None = None):
        self.w, self.vary, self.variant, self.kind = w, vary, variant, kind
        self.random: dict[str, Any] = {}
        self.sent: str | None = None  # the value put in the varied slot

    def normalise(self, text: str) -> str:
        """The answer with the varied value itself (echoed back, e.g. a barcode) blanked out."""
        return text.replace(self.sent, "<varied>") if self.sent else text

    def id_for(self, slot: str, kind: str | None) -> str:
        if self.vary == "*" and kind in SITE_KINDS:  # every slot the other site's
            return str(self.w.ids[self.w.foreign][kind])
        if slot == self.vary:
            kind = self.kind or kind
            if self.variant == "foreign":
                self.sent = str(self.w.ids[self.w.foreign][kind])
            elif self.variant == "taken":
                self.sent = str(self.w.ids[self.w.own][kind])
            else:
                self.sent = str(self.random.setdefault(slot, uuid.uuid4()))
            return self.sent
        if kind in SHARED_KINDS:
            return str(self.w.shared[kind])
        if kind in SITE_KINDS:
            return str(self.w.ids[self.w.own][kind])
        return str(uuid.uuid4())


# --- REST ---------------------------------------------------------------------------------------


def _schema_value(schema: dict[str, Any], defs: dict[str, Any], path: str, name: str, fill: Filler, slots: list[tuple[str, str | None]], collect: bool) -> Any:
    if "$ref" in schema:
        return _schema_value(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, path, name, fill, slots, collect)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"]
            return _schema_value(options[0], defs, path, name, fill, slots, collect) if options else None
    if "enum" in schema:
        # A role that any admin may grant and that needs no facility; else the first value.
        return next((v for v in ("site_staff", "hospital") if v in schema["enum"]), schema["enum"][0])
    if (alternatives := re.fullmatch(r"\^\(([a-z_|]+)\)\$", schema.get("pattern", ""))) is not None:
        return alternatives.group(1).split("|")[0]
    t = schema.get("type")
    if t == "object":
        out = {}
        for prop, sub in schema.get("properties", {}).items():
            kind = kind_of(prop)
            if prop in schema.get("required", []) or kind is not None or prop in ("barcode", "quantity", "recorded_at", "note"):
                out[prop] = _schema_value(sub, defs, f"{path}.{prop}", prop, fill, slots, collect)
        return out
    if t == "array":
        return [_schema_value(schema.get("items", {}), defs, f"{path}[0]", name.removesuffix("s"), fill, slots, collect)]
    kind = kind_of(name)
    if schema.get("format") == "uuid" or (kind is not None and t == "string"):
        if collect:
            slots.append((path, kind))
        return fill.id_for(path, kind)
    if name == "barcode":
        if collect:
            slots.append((path, "barcode"))
        return fill.id_for(path, "barcode") if fill.vary == path else f"WALK-{uuid.uuid4().hex[:12]}"
    if name in VALUES:
        return VALUES[name]
    if name.endswith("_at"):
        return (NOW - timedelta(minutes=1)).isoformat()
    if t == "integer":
        return max(int(schema.get("minimum", 1)), min(1, int(schema.get("maximum", 1))))
    if t == "number":
        lo, hi = schema.get("minimum", 1), schema.get("maximum", 1)
        return (lo + hi) / 2
    if t == "boolean":
        return False
    if schema.get("format") == "date-time":
        return NOW.isoformat()
    if schema.get("format") == "date":
        return NOW.date().isoformat()
    return "walk" if schema.get("minLength", 0) <= 4 else "walk" * schema["minLength"]


def rest_request(w: SimpleNamespace, op: Any, fill: Filler, *, collect: bool = False) -> tuple[str, dict[str, Any], Any, list[tuple[str, str | None]]]:
    """(url, query params, json body, id slots) of one call of ``op``."""
    slots: list[tuple[str, str | None]] = []
    values = {}
    for name, kind in op.path_params:
        slot = f"path:{name}"
        if kind == "uuid":
            if collect:
                slots.append((slot, kind_of(name)))
            values[name] = fill.id_for(slot, kind_of(name))
        else:
            values[name] = 1
    url = op.url(lambda name, _: values[name])
    params = {}
    for name in op.query_params:
        k = kind_of(name)
        if k is not None:
            slot = f"query:{name}"
            if collect:
                slots.append((slot, k))
            params[name] = fill.id_for(slot, k)
        elif name in ("since", "until"):
            params[name] = VALUES[name]
    body = None
    if op.body is not None:
        schema = msgspec.json.schema(op.body)
        defs = schema.pop("$defs", {})
        body = _schema_value(schema, defs, "body", "body", fill, slots, collect)
    return url, params, body, slots


def credentials(w: SimpleNamespace, role: Role) -> dict[str, str]:
    """Integration roles call with their real API key (of the first site); people with an access token."""
    if role in w.keys:
        return {"X-API-Key": w.keys[role]}
    return {"Authorization": f"Bearer {issue_access_token(w.settings, make_principal(role, [w.own]))}"}


def _strip(text: str) -> str:
    return re.sub(r'"request_id":"[^"]*"', '"request_id":""', text)


def _leaks(w: SimpleNamespace, text: str) -> list[str]:
    return [m for m in UUID_RE.findall(text) if m in w.markers]


async def _rest_call(w: SimpleNamespace, op: Any, role: Role, fill: Filler) -> tuple[int, str]:
    url, params, body, _ = rest_request(w, op, fill)
    headers = credentials(w, role)
    response = await w.client.request(op.method, url, params=params, headers=headers, **({"json": body} if body is not None else {}))
    code = response.json().get("code", "") if response.headers.get("content-type", "").endswith("json") and response.text.startswith("{") else ""
    SEEN.append((op.label, fill.variant, response.status_code, code or ""))
    return response.status_code, fill.normalise(_strip(response.text))


def _created_kind(label: str) -> str | None:
    words = re.split(r"[/ _-]", label.lower())
    for word in reversed(words):
        if word in CREATES:
            return CREATES[word]
    return None


async def test_rest_foreign_ids_answer_like_random_ones(world):
    w = world
    before = await site_checksums(w.db, w.foreign)
    failures, calls, compared = [], 0, 0
    for op in rest_operations(w.app):
        if op.public:
            continue
        _, _, _, slots = rest_request(w, op, Filler(w, None, "own"), collect=True)
        for slot, kind in slots:
            if kind in SHARED_KINDS:
                continue
            if kind is None or (kind not in SITE_KINDS and kind != "barcode" and not slot.endswith(".id")):
                failures.append(f"{op.label}: slot {slot} names no known kind ({kind}): add it to SITE_KINDS/ALIASES")
                continue
            client_chosen = slot.endswith(".id") or (kind == "barcode" and "result" not in slot)
            created = _created_kind(op.label) if slot.endswith(".id") else kind
            if client_chosen and created is None:
                failures.append(f"{op.label}: {slot} is client-chosen but the record kind is unknown: add it to CREATES")
                continue
            if client_chosen and created not in SITE_KINDS:
                continue  # a shared record (facility): no other site to hide it from
            for role in SCOPED:
                if client_chosen:
                    a = await _rest_call(w, op, role, Filler(w, slot, "foreign", created))
                    b = await _rest_call(w, op, role, Filler(w, slot, "taken", created))
                else:
                    a = await _rest_call(w, op, role, Filler(w, slot, "foreign"))
                    b = await _rest_call(w, op, role, Filler(w, slot, "random"))
                calls += 2
                compared += 1
                if client_chosen and 200 <= b[0] < 300:
                    # The caller's own id answered as a replay: the other site's must be a plain "taken".
                    code = msgspec.json.decode(a[1]).get("code", "") if a[0] == 409 else ""
                    if not TAKEN.match(code):
                        failures.append(f"{op.label} as {role}, {slot}: other site's id {a[0]} {a[1][:200]}")
                elif a != b:
                    failures.append(f"{op.label} as {role}, {slot}: other site {a[0]} {a[1][:160]} | {'own taken' if client_chosen else 'random'} {b[0]} {b[1][:160]}")
                if leaked := _leaks(w, a[1]):
                    failures.append(f"{op.label} as {role}, {slot}: the answer holds the other site's ids {leaked[:3]}")
    failures += await _rest_cursors(w)
    after = await site_checksums(w.db, w.foreign)
    changed = sorted(t for t in before if before[t] != after[t])
    _summary("REST")
    print(f"REST cross-site walk: {compared} comparisons, {calls} calls, {len(failures)} failures, writes to the other site: {changed}")
    assert not changed, f"the walk wrote to the other site's {changed}"
    assert not failures, f"{len(failures)} leaks:\n" + "\n".join(failures)


def _randomised(cursor: str) -> str:
    """The same cursor with every id in it replaced by a random one."""
    try:
        values = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, msgspec.DecodeError):
        return cursor  # a position that holds no id (the change feed's)
    values = [str(uuid.uuid4()) if isinstance(v, str) and UUID_RE.fullmatch(v) else v for v in values]
    return encode_cursor(values)


async def _rest_cursors(w: SimpleNamespace) -> list[str]:
    """Each list route resumed from a cursor the other site's page gave: same status as from a random
    position, and nothing of the other site in the answer (a cursor is a position, not a grant)."""
    failures, walked = [], []
    command = {"Authorization": f"Bearer {issue_access_token(w.settings, make_principal(Role.COMMAND))}"}
    for op in rest_operations(w.app):
        if op.method != "GET" or "cursor" not in op.query_params:
            continue
        url, params, _, _ = rest_request(w, op, Filler(w, "*", "foreign"))
        page = await w.client.get(url, params={**params, "limit": 1}, headers=command)
        cursor = page.json().get("next_cursor") if page.status_code == 200 else None
        if not cursor:
            continue
        url, params, _, _ = rest_request(w, op, Filler(w, None, "own"))
        for role in SCOPED:
            answers = [await w.client.get(url, params={**params, "cursor": c}, headers=credentials(w, role)) for c in (cursor, _randomised(cursor))]
            if answers[0].status_code != answers[1].status_code:
                failures.append(f"{op.label} as {role}, cursor: other site's {answers[0].status_code} | random {answers[1].status_code}")
            if leaked := _leaks(w, answers[0].text):
                failures.append(f"{op.label} as {role}, cursor: the answer holds the other site's ids {leaked[:3]}")
        walked.append(op.label)
    print(f"REST cursors from the other site's pages: {len(walked)} routes {walked}")
    return failures


def _summary(label: str) -> None:
    """Which answers the walk got, per route: a route only ever refused for bad input was not really walked."""
    per: dict[str, set[str]] = {}
    for name, variant, status, code in SEEN:
        per.setdefault(name, set()).add(f"{status}{':' + code if code else ''}")
    for name in sorted(per):
        print(f"  {label} {name}: {sorted(per[name])}")
    SEEN.clear()


# --- GraphQL ------------------------------------------------------------------------------------

MAX_DEPTH = 3


def _unwrap(t: Any) -> Any:
    while isinstance(t, GraphQLNonNull | GraphQLList):
        t = t.of_type
    return t


def _gql_value(t: Any, path: str, name: str, fill: Filler, slots: list[tuple[str, str | None]], collect: bool) -> Any:
    if isinstance(t, GraphQLNonNull):
        return _gql_value(t.of_type, path, name, fill, slots, collect)
    if isinstance(t, GraphQLList):
        return [_gql_value(t.of_type, f"{path}[0]", name[:-1] if name.endswith("s") else name, fill, slots, collect)]
    if isinstance(t, GraphQLEnumType):
        values = list(t.values)
        return next((v for v in ("SITE_STAFF", "HOSPITAL") if v in values), values[0])
    if is_one_of(t):
        # Exactly one field: each is walked (its slots collected), and the one holding the varied slot is sent.
        chosen: dict[str, Any] | None = None
        for fname, f in t.fields.items():
            ONE_OF.add(fname)
            value = _gql_value(f.type, f"{path}.{fname}", fname, fill, slots, collect)
            if chosen is None or (fill.vary or "").startswith(f"{path}.{fname}."):
                chosen = {fname: value}
        return chosen
    if isinstance(t, GraphQLInputObjectType):
        out = {}
        for fname, f in t.fields.items():
            required = isinstance(f.type, GraphQLNonNull) and f.default_value is Undefined
            if required or kind_of(fname) is not None or snake(fname) in ("barcode", "quantity", "recorded_at", "note"):
                out[fname] = _gql_value(f.type, f"{path}.{fname}", fname, fill, slots, collect)
        return out
    n = snake(name)
    kind = kind_of(name)
    if t.name == "UUID" or (kind is not None and t.name in ("ID", "String")):
        if collect:
            slots.append((path, kind))
        return fill.id_for(path, kind)
    if n == "barcode":
        if collect:
            slots.append((path, "barcode"))
        return fill.id_for(path, "barcode") if fill.vary == path else f"WALK-{uuid.uuid4().hex[:12]}"
    if n in VALUES:
        return VALUES[n]
    if t.name == "DateTime" or n.endswith("_at"):
        return (NOW - timedelta(minutes=1)).isoformat()
    return {"Int": 1, "Float": 1.0, "Boolean": False, "Date": NOW.date().isoformat(), "JSON": {}}.get(t.name, "walk")


def _selection(t: Any, depth: int) -> str:
    """Every scalar, and nested objects down to MAX_DEPTH (fields needing no arguments)."""
    t = _unwrap(t)
    if isinstance(t, GraphQLUnionType):
        # Each member's scalars; a name that members type differently is left out (they cannot be merged).
        types: dict[str, set[str]] = {}
        for member in t.types:
            for n, f in member.fields.items():
                if isinstance(_unwrap(f.type), GraphQLScalarType | GraphQLEnumType) and not f.args:
                    types.setdefault(n, set()).add(str(f.type))
        members = [f"... on {m.name} {{ {' '.join(n for n in m.fields if len(types.get(n, ())) == 1)} }}" for m in t.types]
        return "{ __typename " + " ".join(members) + " }"
    if not isinstance(t, GraphQLObjectType):
        return ""
    parts = ["__typename"]
    for name, f in t.fields.items():
        if any(isinstance(a.type, GraphQLNonNull) and a.default_value is Undefined for a in f.args.values()):
            continue
        inner = _unwrap(f.type)
        if isinstance(inner, GraphQLScalarType | GraphQLEnumType):
            parts.append(name)
        elif depth < MAX_DEPTH or name in ("edges", "node", "pageInfo", "userErrors", "items", "record"):
            parts.append(f"{name} {_selection(inner, depth + 1)}")
    return "{ " + " ".join(parts) + " }"


def gql_request(
    field: Any, fill: Filler, *, collect: bool = False, given: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any], list[tuple[str, str | None]]]:
    slots: list[tuple[str, str | None]] = []
    params, args, variables = [], [], {}
    given = given or {}
    for i, (arg_name, arg) in enumerate(field.definition.args.items()):
        required = isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined
        inner = _unwrap(arg.type)
        if arg_name in given:
            variables[f"a{i}"] = given[arg_name]
            params.append(f"$a{i}: {arg.type}")
            args.append(f"{arg_name}: $a{i}")
            continue
        if not (required or kind_of(arg_name) is not None or isinstance(inner, GraphQLInputObjectType) or snake(arg_name) == "purpose"):
            continue
        # A bare `id` argument names the field's own record: `stay(id)`, `revokeApiClient(id)`.
        name = f"{field.name}Id" if arg_name == "id" else arg_name
        variables[f"a{i}"] = _gql_value(arg.type, f"arg:{arg_name}", name, fill, slots, collect)
        params.append(f"$a{i}: {arg.type}")
        args.append(f"{arg_name}: $a{i}")
    head = f"{field.operation} Walk" + (f"({', '.join(params)})" if params else "")
    call = field.name + (f"({', '.join(args)})" if args else "")
    return f"{head} {{ {call} {_selection(field.definition.type, 1)} }}", variables, slots


def _principal(w: SimpleNamespace, role: Role) -> Any:
    """The caller as the app would build it: an integration role as its API key's principal."""
    from service.access.model import Principal, PrincipalKind

    if role in w.keys:
        kind, extra = PrincipalKind.CLIENT, {"facility_id": w.shared["facility"]} if role is Role.HOSPITAL else {}
        return Principal(kind=kind, id=uuid.uuid4(), role=role, site_ids=frozenset([w.own]), **extra)
    return make_principal(role, [w.own])


async def _gql_call(w: SimpleNamespace, field: Any, role: Role, fill: Filler, given: dict[str, Any] | None = None) -> tuple[str, str]:
    query, variables, _ = gql_request(field, fill, given=given)
    context = Context(db=w.db, cache=w.db.cache, settings=w.settings, principal=_principal(w, role))
    result = await w.schema.execute(query, variable_values=variables, context_value=context)
    errors = [{"message": e.message, "path": e.path, "code": (e.extensions or {}).get("code")} for e in result.errors or []]
    codes = sorted({str(e["code"] or e["message"])[:40] for e in errors})
    SEEN.append((field.label, fill.variant, 0 if errors else 200, ",".join(codes)))
    text = msgspec.json.encode({"data": result.data, "errors": errors}).decode()
    # syncWrites' changeIds are outbox positions, different on every call (like a request id): not compared.
    text = re.sub(r'"changeIds":\[[0-9,]*\]', '"changeIds":[]', text)
    return "errors" if errors else "data", fill.normalise(text)


CREATE_VERBS = ("record", "admit", "request", "raise", "create", "transfer", "submit", "announce")


def _acting(field: Any, slot: str) -> str:
    """The mutation a slot belongs to: the @oneOf field it is under (a write queued in syncWrites), else the root field."""
    under = [step for step in re.findall(r"\w+", slot) if step in ONE_OF]
    return under[-1] if under else field.name


def _gql_created_kind(name: str) -> str | None:
    for word in reversed(snake(name).split("_")):
        if word in CREATES:
            return CREATES[word]
    return None


async def test_graphql_foreign_ids_answer_like_random_ones(world):
    w = world
    before = await site_checksums(w.db, w.foreign)
    failures, compared = [], 0
    for field in graphql_fields(w.schema):
        if field.policy_operation is None or field.operation == "subscription":
            continue
        _, _, slots = gql_request(field, Filler(w, None, "own"), collect=True)
        for slot, kind in slots:
            if kind in SHARED_KINDS:
                continue
            if kind is None or (kind not in SITE_KINDS and kind != "barcode" and not slot.endswith(".id")):
                failures.append(f"{field.label}: slot {slot} names no known kind ({kind}): add it to SITE_KINDS/ALIASES")
                continue
            acting = _acting(field, slot)
            creates = field.operation == "mutation" and acting.startswith(CREATE_VERBS)
            client_chosen = (slot.endswith(".id") and creates) or (kind == "barcode" and "result" not in slot)
            created = _gql_created_kind(acting) if slot.endswith(".id") else kind
            if slot.endswith(".id") and not creates:
                # `input.id` of an update names the record it changes: a reference like any other.
                client_chosen, kind = False, kind_of(acting + "Id")
                created = kind if kind in SITE_KINDS or kind in SHARED_KINDS else None
            if (client_chosen or slot.endswith(".id")) and created is None:
                failures.append(f"{field.label}: {slot}: the record kind is unknown: add it to CREATES")
                continue
            if kind in SHARED_KINDS or (client_chosen and created not in SITE_KINDS):
                continue  # a shared record (facility, item): no other site to hide it from
            for role in SCOPED:
                a = await _gql_call(w, field, role, Filler(w, slot, "foreign", kind if not client_chosen else created))
                b = await _gql_call(w, field, role, Filler(w, slot, "taken" if client_chosen else "random", kind if not client_chosen else created))
                compared += 1
                if client_chosen and '"userErrors":[]' in b[1]:
                    # The caller's own id answered as a replay: the other site's must be a plain "taken".
                    codes = re.findall(r'"code":"([a-z_]+)"', a[1])
                    if (not codes or not all(TAKEN.match(c) for c in codes)) and _masked(a[1]) != _masked(b[1]):
                        failures.append(f"{field.label} as {role}, {slot}: other site's id {a[1][:300]}")
                elif a != b:
                    failures.append(f"{field.label} as {role}, {slot}: other site {a[1][:300]} | {'own taken' if client_chosen else 'random'} {b[1][:300]}")
                if leaked := _leaks(w, a[1]):
                    failures.append(f"{field.label} as {role}, {slot}: the answer holds the other site's ids {leaked[:3]}")
    failures += await _gql_cursors(w)
    after = await site_checksums(w.db, w.foreign)
    changed = sorted(t for t in before if before[t] != after[t])
    _summary("GraphQL")
    print(f"GraphQL cross-site walk: {compared} comparisons, {len(failures)} failures, writes to the other site: {changed}")
    assert not changed, f"the walk wrote to the other site's {changed}"
    assert not failures, f"{len(failures)} leaks:\n" + "\n".join(failures)


async def _gql_cursors(w: SimpleNamespace) -> list[str]:
    """Connections resumed (`after`) from the other site's page: same outcome as a random position, nothing leaked."""
    failures, walked = [], []
    for field in graphql_fields(w.schema):
        if field.operation != "query" or "after" not in field.definition.args or field.policy_operation is None:
            continue
        query, variables, _ = gql_request(field, Filler(w, "*", "foreign"), given={"first": 1})
        context = Context(db=w.db, cache=w.db.cache, settings=w.settings, principal=make_principal(Role.COMMAND))
        result = await w.schema.execute(query, variable_values=variables, context_value=context)
        cursor = ((result.data or {}).get(field.name) or {}).get("pageInfo", {}).get("endCursor")
        if not cursor:
            continue
        for role in SCOPED:
            a = await _gql_call(w, field, role, Filler(w, None, "own"), given={"after": cursor})
            b = await _gql_call(w, field, role, Filler(w, None, "own"), given={"after": _randomised(cursor)})
            if a[0] != b[0]:
                failures.append(f"{field.label} as {role}, after: other site's {a[1][:200]} | random {b[1][:200]}")
            if leaked := _leaks(w, a[1]):
                failures.append(f"{field.label} as {role}, after: the answer holds the other site's ids {leaked[:3]}")
        walked.append(field.name)
    print(f"GraphQL cursors from the other site's pages: {len(walked)} fields {walked}")
    return failures


async def test_compiled_reads_apply_the_same_policy(world):
    """Persisted reads answered by compiled SQL (service/readpath.py): refused as the policy says,
    and another site's ids answer like random ones there too."""
    from service import readpath

    w, failures, walked = world, [], []
    for digest, op in readpath.registry().by_hash.values():
        fields = {f.name: f for f in graphql_fields(w.schema)}
        root = re.search(r"\{\s*(\w+)", op.document.split(")", 1)[-1]).group(1)  # the root field it answers
        expected = EXPECTED[f"query {root}"]

        def params(fill: Filler, p=op) -> dict[str, str]:
            variables = {x.name: fill.id_for(f"var:{x.name}", kind_of(x.name)) for x in p.params if kind_of(x.name)}
            variables = {k: [v] if k.endswith("Ids") else v for k, v in variables.items()}
            ext = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
            return {"extensions": msgspec.json.encode(ext).decode(), "variables": msgspec.json.encode(variables).decode()}

        for role in ROLES:
            answer = await w.client.get("/graphql", params=params(Filler(w, None, "own")), headers={**credentials(w, role), "Accept": "application/json"})
            refused = "Not allowed" in answer.text
            if refused == (role in expected):
                failures.append(f"compiled {op.name} as {role}: {'refused' if refused else 'admitted'} {answer.text[:200]}")
        for p in op.params:
            if kind_of(p.name) not in SITE_KINDS:
                continue
            for role in SCOPED:
                answers = []
                for variant in ("foreign", "random"):
                    fill = Filler(w, f"var:{p.name}", variant)
                    response = await w.client.get("/graphql", params=params(fill), headers={**credentials(w, role), "Accept": "application/json"})
                    answers.append((response.status_code, fill.normalise(response.text)))
                if answers[0] != answers[1]:
                    failures.append(f"compiled {op.name} as {role}, {p.name}: other site {answers[0]} | random {answers[1]}")
                if leaked := _leaks(w, answers[0][1]):
                    failures.append(f"compiled {op.name} as {role}, {p.name}: the answer holds the other site's ids {leaked[:3]}")
        walked.append(op.name)
        assert root in fields
    print(f"compiled reads walked: {walked}")
    assert walked, "no compiled read registered: the walk would prove nothing"
    assert not failures, "\n".join(failures)
