"""GraphQL: sites."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import strawberry

from service import policy
from service.access.model import Principal
from service.errors import NotFound
from service.gql import Connection, Context, Ctx, OfflineWrite, Prepared, UserError, Write, connection_of, mutate_input, perform, to_gql
from service.pagination import Page
from service.sites import service
from service.sites.model import DisinfectionState, FloorCreate, RoomAction, RoomPatch, RoomStatus, SiteCreate, SiteKind, SitePatch, SiteStatus
from service.sites.model import DisinfectionTask as RoomModelTask
from service.sites.model import Room as RoomModel
from service.sites.model import RoomStatusChange as RoomModelChange
from service.sites.model import Site as SiteModel

strawberry.enum(SiteKind, name="SiteKind")  # registers SiteKind itself
SiteKindGQL = SiteKind
strawberry.enum(SiteStatus, name="SiteStatus")  # registers SiteStatus itself
SiteStatusGQL = SiteStatus


@strawberry.type(description="An isolation site: the unit of access.")
class Site:
    id: UUID
    code: str
    name: str
    region_path: str
    kind: SiteKindGQL
    status: SiteStatusGQL
    time_zone: str
    address: str
    contact: str
    version: int
    created_at: datetime
    updated_at: datetime


def site_gql(model: SiteModel) -> Site:
    return to_gql(Site, model)


@strawberry.input
class CreateSiteInput:
    code: str
    name: str
    region_path: str = ""
    kind: SiteKindGQL = SiteKind.HOTEL
    status: SiteStatusGQL = SiteStatus.ACTIVE
    time_zone: str = "Asia/Shanghai"
    address: str = ""
    contact: str = ""


@strawberry.input
class UpdateSiteInput:
    id: UUID
    version: int
    name: str | None = None
    region_path: str | None = None
    kind: SiteKindGQL | None = None
    status: SiteStatusGQL | None = None
    time_zone: str | None = None
    address: str | None = None
    contact: str | None = None


@strawberry.type
class SitePayload:
    site: Site | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[policy.gql("sites.read")], description="Sites the caller may see, ordered by code.")
    async def sites(self, info: Ctx, first: int = 50, after: str | None = None) -> Connection[Site]:
        ctx = info.context
        async with ctx.db.connection() as conn:
            page = await service.list_sites(conn, ctx.require_principal(), cursor=after, limit=first)
        return connection_of(page, site_gql, lambda s: [s.code])

    @strawberry.field(permission_classes=[policy.gql("sites.read")], description="One site; null when it is not one of the caller's.")
    async def site(self, info: Ctx, id: UUID) -> Site | None:
        ctx = info.context
        async with ctx.db.connection() as conn:
            found = await service.get_sites(conn, ctx.require_principal(), [id])
        return site_gql(found[id]) if id in found else None


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[policy.gql("sites.create")])
    async def create_site(self, info: Ctx, input: CreateSiteInput) -> SitePayload:
        principal = info.context.require_principal()
        site, errors = await mutate_input(info, input, SiteCreate, SiteModel, lambda conn, data: service.create_site(conn, principal, data))
        return SitePayload(site=site_gql(site) if site else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("sites.update")])
    async def update_site(self, info: Ctx, input: UpdateSiteInput) -> SitePayload:
        principal = info.context.require_principal()
        site, errors = await mutate_input(
            info, input, SitePatch, SiteModel, lambda conn, data: service.update_site(conn, principal, input.id, data), leave_out=("id",), omit_null=True
        )
        return SitePayload(site=site_gql(site) if site else None, user_errors=errors)


# --- rooms and turnover -------------------------------------------------------

strawberry.enum(RoomStatus, name="RoomStatus")  # registers RoomStatus itself
RoomStatusGQL = RoomStatus
strawberry.enum(RoomAction, name="RoomAction", description="An edge of the room turnover graph.")  # registers RoomAction itself
RoomActionGQL = RoomAction
strawberry.enum(DisinfectionState, name="DisinfectionState")  # registers DisinfectionState itself
DisinfectionStateGQL = DisinfectionState


@strawberry.type(description="Terminal disinfection of a room: opened when it empties, started, finished, aired, inspected.")
class DisinfectionTask:
    id: UUID
    room_id: UUID
    state: DisinfectionStateGQL
    opened_at: datetime
    opened_by: str | None
    started_at: datetime | None
    started_by: str | None
    finished_at: datetime | None
    finished_by: str | None
    airing_until: datetime | None
    inspected_at: datetime | None
    inspected_by: str | None
    failed_inspections: int
    notes: str


@strawberry.type(description="One status change of a room: who, when, why.")
class RoomStatusChange:
    from_status: RoomStatusGQL | None
    to_status: RoomStatusGQL
    action: str
    actor: str | None
    reason: str
    at: datetime


def room_tasks_loader(ctx: Any) -> Any:
    """Latest disinfection task per room id, batched (one statement per batch)."""
    principal = ctx.require_principal()

    async def load(room_ids: list[UUID]) -> list[RoomModelTask | None]:
        async with ctx.db.connection() as conn:
            found = await service.room_tasks(conn, principal, room_ids)
        return [found.get(r) for r in room_ids]

    return ctx.loader("sites.room_tasks", load)


def room_histories_loader(ctx: Any, last: int) -> Any:
    """The latest ``last`` status changes per room id, batched (one statement per batch)."""
    principal = ctx.require_principal()

    async def load(room_ids: list[UUID]) -> list[list[RoomModelChange]]:
        async with ctx.db.connection() as conn:
            found = await service.room_histories(conn, principal, room_ids, last=last)
        return [found.get(r, []) for r in room_ids]

    return ctx.loader(("sites.room_histories", last), load)


@strawberry.type(description="A room of a site, with its turnover status.")
class Room:
    id: UUID
    site_id: UUID
    number: str
    floor: int
    beds: int
    occupied: int
    free_beds: int
    notes: str
    status: RoomStatusGQL
    status_since: datetime
    status_by: str | None
    status_reason: str
    version: int

    @strawberry.field(description="The room's latest disinfection task, if any.")
    async def disinfection(self, info: Ctx) -> DisinfectionTask | None:
        task = await room_tasks_loader(info.context).load(self.id)
        return to_gql(DisinfectionTask, task) if task else None

    @strawberry.field(description="The latest `last` status changes (1-200), oldest first.")
    async def history(self, info: Ctx, last: int = service.HISTORY_DEFAULT) -> list[RoomStatusChange]:
        changes = await room_histories_loader(info.context, last).load(self.id)
        return [to_gql(RoomStatusChange, c) for c in changes]


def room_gql(model: RoomModel) -> Room:
    return to_gql(Room, model, free_beds=model.free_beds)


@strawberry.input(description="Rooms first..last of one floor (e.g. 301-330), each with `beds` beds.")
class CreateFloorInput:
    site_id: UUID
    floor: int
    first: int
    last: int
    beds: int = 1
    prefix: str = ""
    notes: str = ""


@strawberry.input
class UpdateRoomInput:
    id: UUID
    version: int
    beds: int | None = None
    notes: str | None = None


@strawberry.input(description="Move a room along the turnover graph (start/finish disinfection, inspect, out of service, seal).")
class TurnOverRoomInput:
    room_id: UUID
    action: RoomActionGQL
    reason: str = ""
    version: int | None = strawberry.field(
        default=None, description="The room version you read; when given and stale: userError stale_version (queued offline steps)."
    )


@strawberry.type
class RoomPayload:
    room: Room | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RoomsPayload:
    rooms: list[Room] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RoomQuery:
    @strawberry.field(permission_classes=[policy.gql("rooms.read")], description="One room; null when it is not at one of the caller's sites.")
    async def room(self, info: Ctx, id: UUID) -> Room | None:
        ctx = info.context
        async with ctx.db.connection() as conn:
            found = await service.get_rooms(conn, ctx.require_principal(), [id])
        return room_gql(found[id]) if id in found else None

    @strawberry.field(permission_classes=[policy.gql("rooms.read")], description="A site's rooms by floor and number; empty for another site.")
    async def rooms(
        self, info: Ctx, site_id: UUID, floor: int | None = None, status: RoomStatusGQL | None = None, first: int = 50, after: str | None = None
    ) -> Connection[Room]:
        ctx = info.context
        principal = ctx.require_principal()
        if not principal.can_access_site(site_id):
            return connection_of(Page(items=[], next_cursor=None), room_gql, lambda r: [r.floor, r.number])
        try:
            async with ctx.db.connection() as conn:
                page = await service.list_rooms(conn, principal, site_id, floor=floor, status=status, cursor=after, limit=first)
        except NotFound:  # an unknown site: nothing to list
            page = Page(items=[], next_cursor=None)
        return connection_of(page, room_gql, lambda r: [r.floor, r.number])


@strawberry.type
class RoomMutation:
    @strawberry.mutation(permission_classes=[policy.gql("rooms.manage")], description="Create a floor's rooms at once.")
    async def create_floor(self, info: Ctx, input: CreateFloorInput) -> RoomsPayload:
        principal = info.context.require_principal()
        rooms, errors = await mutate_input(
            info, input, FloorCreate, list[RoomModel], lambda conn, data: service.create_floor(conn, principal, input.site_id, data), leave_out=("site_id",)
        )
        return RoomsPayload(rooms=[room_gql(r) for r in rooms or []], user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("rooms.manage")])
    async def update_room(self, info: Ctx, input: UpdateRoomInput) -> RoomPayload:
        principal = info.context.require_principal()
        room, errors = await mutate_input(
            info, input, RoomPatch, RoomModel, lambda conn, data: service.update_room(conn, principal, input.id, data), leave_out=("id",), omit_null=True
        )
        return RoomPayload(room=room_gql(room) if room else None, user_errors=errors)

    @strawberry.mutation(permission_classes=[policy.gql("rooms.turn_over")])
    async def turn_over_room(self, info: Ctx, input: TurnOverRoomInput) -> RoomPayload:
        room, errors = await perform(info, turn_over_write(info.context, info.context.require_principal(), input))
        return RoomPayload(room=room_gql(room) if room else None, user_errors=errors)


# --- writes, prepared once for their own mutation and for syncWrites (service/offline.py) ---------


def turn_over_write(ctx: Context, principal: Principal, input: TurnOverRoomInput) -> Prepared[RoomModel]:
    if len(input.reason) > 500:
        return [UserError(field="reason", code="invalid_input", message="At most 500 characters.")]
    action = RoomAction(input.action)
    return Write(
        lambda conn: service.turn_over(
            conn, principal, input.room_id, action, reason=input.reason, airing_minutes=ctx.settings.room_airing_minutes, version=input.version
        ),
        RoomModel,
    )


async def _room_now(conn: asyncpg.Connection, ctx: Context, principal: Principal, input: TurnOverRoomInput) -> Room | None:
    found = await service.get_rooms(conn, principal, [input.room_id])
    return room_gql(found[input.room_id]) if input.room_id in found else None


OFFLINE_WRITES = {"turn_over_room": OfflineWrite("rooms.turn_over", turn_over_write, room_gql, _room_now)}
