"""GraphQL: a released stay's hand-over (``Stay.handover``), its release input, revoking its certificate."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import strawberry

from service import policy
from service.gql import Ctx, UserError, fields_from, input_struct, mutate, scoped_loader, to_gql
from service.handover import model as m
from service.handover import service


@strawberry.type(description="A phase after the centralized one, as dates in the site's time zone (both ends included).")
@fields_from(m.HomePhase)
class HomePhase:
    pass


@strawberry.type(
    description="Hand-over of a released resident to the receiving community: street, contact (masked; unmask with "
    "GET /api/v1/stays/{id}/handover?purpose=), the home phases' dates, and the release certificate."
)
@fields_from(m.Handover, leave_out=("resident_id", "created_by"))
class Handover:
    stay_id: UUID
    region_id: UUID | None = strawberry.field(description="The receiving street or township; null when the regime has no home phase and none was given.")
    contact_name: str | None = strawberry.field(description="Masked (张*).")
    contact_phone: str | None = strawberry.field(description="Masked (*******5678).")
    phases: list[HomePhase]
    home_ends_on: date | None = strawberry.field(description="The last day of the last home phase.")

    @strawberry.field(description="The release certificate, printable HTML (GET, same credential).")
    def certificate_path(self) -> str:
        return f"/api/v1/stays/{self.stay_id}/certificate"

    @strawberry.field(description="The certificate's verification code, as printed; anyone may check it at GET /api/v1/certificates/{code}.")
    async def certificate_code(self, info: Ctx) -> str | None:
        ctx = info.context
        async with ctx.db.connection() as conn:
            code = await service.certificate_code(conn, ctx.require_principal(), ctx.settings, self.stay_id)
        return service.display_code(code) if code else None


def handover_gql(h: m.Handover) -> Handover:
    return to_gql(Handover, h, phases=[to_gql(HomePhase, p) for p in h.phases])


async def load_handover(info: Ctx, stay_id: UUID) -> Handover | None:
    found = await scoped_loader(info, "handover.handovers", service.get_handovers).load(stay_id)
    return handover_gql(found) if found else None


@strawberry.input(description="Where a released resident goes: a street of the region tree and who receives them there.")
class HandoverInput:
    region_id: UUID
    contact_name: str
    contact_phone: str
    note: str = ""


def handover_struct(value: HandoverInput | None) -> tuple[m.HandoverCreate | None, list[UserError]]:
    """The release's hand-over input; errors name ``handover.<field>``."""
    if value is None:
        return None, []
    data, errors = input_struct(m.HandoverCreate, value)
    return data, [UserError(field=f"handover.{e.field}" if e.field else "handover", code=e.code, message=e.message, extra=e.extra) for e in errors]


@strawberry.input
class RevokeReleaseCertificateInput:
    stay_id: UUID
    reason: str


@strawberry.type
class HandoverPayload:
    handover: Handover | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        permission_classes=[policy.gql("handovers.revoke")],
        description="Revoke a release certificate (issued in error, or the person must return): verification answers revoked.",
    )
    async def revoke_release_certificate(self, info: Ctx, input: RevokeReleaseCertificateInput) -> HandoverPayload:
        principal = info.context.require_principal()
        data, errors = input_struct(m.Revocation, {"reason": input.reason})
        if data is None:
            return HandoverPayload(user_errors=errors)
        found, errors = await mutate(info, lambda conn: service.revoke(conn, principal, input.stay_id, data), result_type=m.Handover)
        return HandoverPayload(handover=handover_gql(found) if found else None, user_errors=errors)
