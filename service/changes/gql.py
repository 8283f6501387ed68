"""GraphQL: changes by cursor (the apps' catch-up after being offline)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import strawberry
from strawberry.scalars import JSON

from service import policy
from service.changes import model as m
from service.changes import service
from service.gql import Connection, Context, Ctx, Edge, PageInfo


@strawberry.type(description="One committed change, as the outbox recorded it.")
class Change:
    cursor: str = strawberry.field(description="Resumes just after this change (opaque).")
    id: int = strawberry.field(description="The outbox event id: unique; skip a change whose id was already applied.")
    type: str = strawberry.field(description="`<domain>.<what_happened>`, e.g. `transfers.approved`.")
    entity: str = strawberry.field(description="The kind of record changed: `room`, `stay`, `checkin`, `alert`, `transfer`, `stock` ...")
    entity_id: UUID | None = strawberry.field(description="The record changed (null for a change of many records: see entityIds).")
    entity_ids: list[UUID] = strawberry.field(description="Every record this change names (one, or the records of a batch).")
    site_id: UUID | None = strawberry.field(description="Null for records of no one site (regimes, facilities, the catalogue).")
    version: int | None = strawberry.field(
        description="The record's version after this change (what mutations take back as `version`), when the record has one."
    )
    tombstone: bool = strawberry.field(description="The record is gone (deleted or deactivated): drop it.")
    data: JSON = strawberry.field(description="A compact payload: what changed; never personal data.")
    at: datetime


def change_gql(change: m.Change) -> Change:
    return Change(
        cursor=change.cursor, id=change.id, type=change.type, entity=change.entity, entity_id=change.entity_id,
        entity_ids=change.entity_ids, site_id=change.site_id, version=change.version, tombstone=change.tombstone,
        data=JSON(change.data), at=change.at,
    )


@strawberry.type
class Query:
    @strawberry.field(
        permission_classes=[policy.gql("changes.read")],
        description=(
            "Every committed change the caller may read at `siteIds` (default: all its sites) after the cursor "
            "`after` (none: from the start), oldest first; `types`: only these event types or domains. "
            "`pageInfo.endCursor` resumes (also when the page is empty); `hasNextPage`: another page is ready now. "
            f"`first`: 1-{service.MAX_LIMIT}. The feed never skips a commit, even one that committed late."
        ),
    )
    async def changes(
        self,
        info: Ctx,
        site_ids: list[UUID] | None = None,
        after: str | None = None,
        types: list[str] | None = None,
        first: int = service.DEFAULT_LIMIT,
    ) -> Connection[Change]:
        return await changes_page(info.context, site_ids=site_ids, after=after, types=types, first=first)


async def changes_page(
    ctx: Context, *, site_ids: list[UUID] | None = None, after: str | None = None, types: list[str] | None = None,
    first: int = service.DEFAULT_LIMIT,
) -> Connection[Change]:
    """``changes``: also called by the GraphQL edge directly, its answer rendered by a plan (service/live_frames.py)."""
    async with ctx.db.connection() as conn:
        page = await service.changes(conn, ctx.require_principal(), site_ids=site_ids, after=after, types=types, limit=first, site_field="siteIds")
    return Connection(
        edges=[Edge(node=change_gql(c), cursor=c.cursor) for c in page.changes],
        page_info=PageInfo(has_next_page=page.has_more, end_cursor=page.next_cursor),
    )
