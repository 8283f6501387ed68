"""Field types shared by the domains' input Structs.

Integers a client sends that land in a PostgreSQL ``integer`` column carry their range
here, so msgspec refuses 2147483648 with the field named (400) and the OpenAPI
documents the bound, instead of asyncpg overflowing into a 500.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import msgspec

INT32_MAX = 2_147_483_647
# A device clock a little ahead of the server is skew; further ahead is a wrong clock. Every
# client-given instant (recorded, collected, admitted, exposed) may be this far in the future.
CLOCK_SKEW = timedelta(minutes=10)
# How far back an arrival or an identification may be recorded (logged on paper while the app was out of
# reach). A bound at all because an absurd date poisons what is computed from it: year 1 reaches
# PostgreSQL as -infinity, comes back as a naive datetime, and every figure that walks or subtracts it fails.
BACKDATE_LIMIT = timedelta(days=92)

Version = Annotated[
    int, msgspec.Meta(ge=1, le=INT32_MAX, description="The version the caller read; a stale one answers 409")
]
# Any integer column; fields with a tighter domain rule check it in the service (422 naming the field).
Int32 = Annotated[int, msgspec.Meta(ge=-INT32_MAX - 1, le=INT32_MAX)]
