"""The application factory: ``create_app(settings) -> Litestar``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import msgspec
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Reference, Schema, SecurityScheme

from service import jobs
from service.access.rest import auth_middleware, provide_principal
from service.api.graphql import graphql_controller
from service.api.jobs import JOBS
from service.api.rest import api_v1
from service.cache import Cache
from service.db import Database, DeadlineMiddleware, create_pool
from service.errors import EXCEPTION_HANDLERS
from service.http import BodyLimits
from service.observability import PROBES, MetricsController, RequestIdMiddleware, early_exit_problems, prometheus
from service.settings import Settings
from service.versions import SiteVersions

log = logging.getLogger("qsite.app")

API_DESCRIPTION = """\
REST API of qsite for integrations: logistics systems, labs and hospitals.
Errors are RFC 9457 problem+json with a stable `code`. Every POST accepts an
`Idempotency-Key` header. Staff apps use GraphQL at `/graphql`.
"""


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="qsite",
        version="1.0.0",
        description=API_DESCRIPTION,
        path="/docs",
        render_plugins=[SwaggerRenderPlugin(path="/")],
        components=Components(
            security_schemes={
                "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
                "ApiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header"),
            }
        ),
        security=[{"BearerToken": []}, {"ApiKey": []}],
        use_handler_docstrings=True,
    )


# Every operation may answer these with problem+json; documenting them lets
# contract tests hold the API to its word.
_PROBLEM_STATUSES = {
    "400": "Malformed request",
    "401": "Missing or invalid credentials",
    "403": "The caller's role may not do this",
    "404": "Not found, or not one of the caller's sites",
    "409": "Conflict with the current state (stale version, taken resource, request in flight)",
    "422": "Well-formed but refused by a rule or validation",
    "429": "Too many requests; see Retry-After",
    "503": "The database is unavailable or busy (codes database_unavailable, busy); see Retry-After",
}


def _strict_struct_names() -> set[str]:
    """Input Structs declared ``forbid_unknown_fields``: their schemas must say so too."""
    names, pending = set(), [msgspec.Struct]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("service.") and cls.__struct_config__.forbid_unknown_fields:
            names.add(cls.__name__)
    return names


def _document_problems(app: Litestar) -> None:
    schema = app.openapi_schema
    schema.components.schemas["Problem"] = Schema(
        type=OpenAPIType.OBJECT,
        required=["type", "title", "status", "code"],
        properties={
            "type": Schema(type=OpenAPIType.STRING),
            "title": Schema(type=OpenAPIType.STRING),
            "status": Schema(type=OpenAPIType.INTEGER),
            "code": Schema(type=OpenAPIType.STRING, description="Stable machine-readable error code"),
            "detail": Schema(type=OpenAPIType.STRING),
            "field": Schema(type=OpenAPIType.STRING, description="The input at fault, if one"),
            "request_id": Schema(type=OpenAPIType.STRING),
            "errors": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.OBJECT)),
            "extra": Schema(type=OpenAPIType.OBJECT),
        },
    )
    for name in _strict_struct_names():
        for key, component in schema.components.schemas.items():
            if key == name or key.endswith(f"_{name}"):
                component.additional_properties = False
    problem = {"application/problem+json": OpenAPIMediaType(schema=Reference("#/components/schemas/Problem"))}
    for path_item in (schema.paths or {}).values():
        for method in ("get", "post", "put", "patch", "delete"):
            operation = getattr(path_item, method, None)
            if operation is None:
                continue
            responses = operation.responses or {}
            for status, description in _PROBLEM_STATUSES.items():
                responses[status] = OpenAPIResponse(description=description, content=problem)
            if method == "get":
                responses.setdefault("304", OpenAPIResponse(description="Not modified (If-None-Match matched the ETag)"))
            operation.responses = responses


def _provide_db(state: State) -> Database:
    return state.db


def _provide_cache(state: State) -> Cache:
    return state.cache


def _provide_settings(state: State) -> Settings:
    return state.settings


def create_app(settings: Settings) -> Litestar:
    """Build the app. ``settings.database_url`` and ``redis_url`` must be resolved (see service.__main__)."""
    if not settings.database_url or not settings.redis_url:
        raise ValueError("create_app needs resolved DATABASE_URL and REDIS_URL")

    @contextlib.asynccontextmanager
    async def resources(app: Litestar) -> AsyncIterator[None]:
        cache = Cache(settings.redis_url, prefix=settings.redis_prefix, timeout_ms=settings.redis_timeout_ms)
        pool = await create_pool(settings, settings.database_url)
        versions = SiteVersions(settings.database_url)
        versions.start()
        app.state.settings = settings
        app.state.cache = cache
        app.state.db = Database.for_settings(pool, cache, settings, versions)
        background = asyncio.create_task(jobs.run_forever(app.state.db, settings, JOBS)) if settings.run_background_jobs else None
        try:
            yield
        finally:
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
            await versions.close()
            await pool.close()
            await cache.close()

    app = Litestar(
        route_handlers=[*PROBES, MetricsController, api_v1, graphql_controller(settings)],
        lifespan=[resources],
        dependencies={
            "db": Provide(_provide_db, sync_to_thread=False),
            "cache": Provide(_provide_cache, sync_to_thread=False),
            "settings": Provide(_provide_settings, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        # Outermost first. Early exits (401, 403, 413, json_too_deep) become problem+json inside the
        # request id and metrics middleware, so the log and /metrics see what the client got.
        # The database deadline starts before anything (auth included) may touch PostgreSQL.
        middleware=[RequestIdMiddleware, DeadlineMiddleware, prometheus.middleware, early_exit_problems, auth_middleware, BodyLimits],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=openapi_config(),
        cors_config=CORSConfig(allow_origins=settings.cors_origins) if settings.cors_origins else None,
        debug=False,
        logging_config=None,  # logging is ours (JSON, service/observability.py)
    )
    _document_problems(app)
    return app
