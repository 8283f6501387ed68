"""The application factory: ``create_app(settings) -> Litestar``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar
from litestar._kwargs.cleanup import DependencyCleanupGroup
from litestar._kwargs.dependencies import resolve_dependency
from litestar._kwargs.kwargs_model import KwargsModel
from litestar.config.cors import CORSConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware

from service import jobs
from service.access.rest import auth_middleware, provide_principal
from service.api import docs
from service.api.graphql import graphql_controller
from service.api.jobs import JOBS
from service.api.openapi import document_contract, fix_options_allow, openapi_config
from service.api.rest import api_v1
from service.cache import Cache
from service.command import rest as command
from service.db import Database, DeadlineMiddleware, close_pool, create_pool
from service.errors import EXCEPTION_HANDLERS
from service.http import BodyLimits, answer_head_as_get
from service.observability import PROBES, MetricsController, RequestIdMiddleware, early_exit_problems, prometheus
from service.proxies import TrustedProxiesMiddleware
from service.settings import Settings
from service.versions import SiteVersions

log = logging.getLogger("qsite.app")

GC_YOUNG_THRESHOLD = 10_000  # Python's default is 700 allocations

def _provide_db(state: State) -> Database:
    return state.db


def _provide_cache(state: State) -> Cache:
    return state.cache


def _provide_settings(state: State) -> Settings:
    return state.settings


async def _resolve_in_order(self: KwargsModel, connection: ASGIConnection, kwargs: dict[str, Any]) -> DependencyCleanupGroup:
    """Litestar resolves a batch of two or more dependencies in an anyio task group, per request:
    task group, tasks and cancel scopes were ~12 % of a one-SELECT read's CPU. qsite's providers
    (``dependencies`` below) are synchronous attribute reads, so nothing runs concurrently anyway;
    one after the other they give the same values and the same first error."""
    cleanup_group = DependencyCleanupGroup()
    for batch in self.dependency_batches:
        for dependency in batch:
            await resolve_dependency(dependency, connection, kwargs, cleanup_group)
    return cleanup_group


KwargsModel.resolve_dependencies = _resolve_in_order  # type: ignore[method-assign]


def tune_collector() -> None:
    """Requests allocate short-lived objects that reference counting frees; what the collector
    keeps finding is the long-lived graph made at start-up. Freeze that graph, and let the
    young generation grow before collecting it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def create_app(settings: Settings) -> Litestar:
    """Build the app. ``settings.database_url`` and ``redis_url`` must be resolved (see service.__main__)."""
    database_url, redis_url = settings.database_url, settings.redis_url
    if not database_url or not redis_url:
        raise ValueError("create_app needs resolved DATABASE_URL and REDIS_URL")

    @contextlib.asynccontextmanager
    async def resources(app: Litestar) -> AsyncIterator[None]:
        cache = Cache(redis_url, prefix=settings.redis_prefix, timeout_ms=settings.redis_timeout_ms)
        pool = await create_pool(settings, database_url)
        versions = SiteVersions(database_url)
        versions.start()
        app.state.settings = settings
        app.state.cache = cache
        app.state.db = Database.for_settings(pool, cache, settings, versions)
        background = asyncio.create_task(jobs.run_forever(app.state.db, settings, JOBS)) if settings.run_background_jobs else None
        if settings.gc_freeze:
            tune_collector()
        try:
            yield
        finally:
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
            await versions.close()
            await close_pool(pool)
            await cache.close()

    app = Litestar(
        route_handlers=[
            *PROBES,
            MetricsController,
            api_v1,
            docs.mount_graphiql(graphql_controller(settings)),
            docs.assets_router,
            command.router(settings),
            command.assets_router,
        ],
        lifespan=[resources],
        dependencies={
            "db": Provide(_provide_db, sync_to_thread=False),
            "cache": Provide(_provide_cache, sync_to_thread=False),
            "settings": Provide(_provide_settings, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        middleware=[
            DefineMiddleware(TrustedProxiesMiddleware, settings=settings),
            RequestIdMiddleware,
            DeadlineMiddleware,  # the database deadline starts before anything (auth included) may touch PostgreSQL
            prometheus.middleware,
            early_exit_problems,
            auth_middleware,
            BodyLimits,
        ],
        request_max_body_size=settings.max_body_bytes,
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=openapi_config(),
        template_config=command.template_config(),
        cors_config=CORSConfig(allow_origins=settings.cors_origins) if settings.cors_origins else None,
        debug=False,
        logging_config=None,  # logging is ours (JSON, service/observability.py)
    )
    document_contract(app)
    fix_options_allow(app)
    app.asgi_handler = answer_head_as_get(app.asgi_handler)
    return app
