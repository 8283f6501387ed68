"""Which ASGI server: uvicorn vs granian on a bare route and on a one-query DB route."""

from __future__ import annotations

import asyncio
import uuid

from bench.context import BenchContext
from bench.harness import serve, wrk
from service.access.model import Role
from service.sites import service as sites
from service.sites.model import SiteCreate
from tests.conftest import make_principal


def run(ctx: BenchContext) -> None:
    command = make_principal(Role.COMMAND)

    async def make_site(db):  # noqa: ANN001
        async with db.transaction() as conn:
            return await sites.create_site(conn, command, SiteCreate(code=f"B-{uuid.uuid4().hex[:6]}", name="bench"))

    site = asyncio.run(ctx.with_db(make_site))
    headers = {"Authorization": f"Bearer {ctx.token(command)}"}
    for server in ("uvicorn", "granian"):
        with serve(ctx.server_env, server) as base:
            wrk("warm-up", f"{base}/bench/bare", seconds=1)
            bare = wrk(f"{server}: bare route", f"{base}/bench/bare")
            db_route = wrk(f"{server}: GET /api/v1/sites/{{id}}", f"{base}/api/v1/sites/{site.id}", headers=headers)
            print(bare.line(), flush=True)
            print(db_route.line(bare.rps), flush=True)
