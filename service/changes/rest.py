"""REST: changes by cursor, for integrations and apps that catch up after being offline."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, get
from litestar.params import Parameter

from service import policy
from service.access.model import Principal
from service.changes import service
from service.changes.model import ChangePage
from service.db import Database


class ChangeController(Controller):
    path = "/changes"
    tags = ["changes"]

    @get("/", opt=policy.rest("changes.read"))
    async def list_changes(
        self,
        db: Database,
        principal: Principal,
        site_id: Annotated[
            list[UUID] | None,
            Parameter(query="site_id", default=None, max_items=service.MAX_SITES, description="Sites (repeatable); default: all of the caller's."),
        ] = None,
        after: Annotated[
            str | None, Parameter(query="after", default=None, max_length=512, description="The cursor of the last change applied; none: from the start.")
        ] = None,
        types: Annotated[
            list[str] | None,
            Parameter(
                query="types", default=None, max_items=service.MAX_TYPES,
                description="Only these event types (`transfers.approved`) or domains (`transfers`), repeatable.",
            ),
        ] = None,
        limit: Annotated[int, Parameter(query="limit", ge=1, le=service.MAX_LIMIT, default=service.DEFAULT_LIMIT, description="Page size.")] = (
            service.DEFAULT_LIMIT
        ),
    ) -> ChangePage:
        """Every committed change the caller may read, oldest first, each with the record it names.

        Resume with ``next_cursor`` (also each change's ``cursor``); ``has_more``: another page is
        ready now. The feed never skips a commit, even one that committed late. A change may be
        seen again (after a retry, or in the live stream): skip an ``id`` already applied.
        """
        async with db.connection() as conn:
            return await service.changes(conn, principal, site_ids=site_id, after=after, types=types, limit=limit)


ROUTES = [ChangeController]
