"""The logistics poll's ETag and cached body, from the site data versions (service/versions.py).

Every change of a site's stock moves that site's ``stock`` version in the same
transaction (trigger, db/migrations/0008). The poll's strong ETag is derived
from the versions of the sites it covers, the kind of query and the hour (the
forecast's bucket), so ``If-None-Match`` is answered without PostgreSQL while
this instance's copy of the versions is trusted, and with one small query when
it is not (after a gap in its notifications). The 200 body is kept in the shared
response cache under the ETag, so a poll without ``If-None-Match`` skips the
stock query too.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from service.db import Database
from service.readpath import ResponseCache, cache_key, responses, versions_of
from service.settings import Settings

# Bump when the poll's JSON shape changes: old ETags must not match new bodies.
SHAPE_VERSION = "2"


async def etag_for(db: Database, sites: Iterable[UUID] | None, *, query: str, bucket: str) -> str:
    """Strong ETag of a poll over ``sites`` (None: every site)."""
    return f'"s{cache_key(SHAPE_VERSION, query, bucket, await versions_of(db, sites, ("stock",)))}"'


def bodies(db: Database, settings: Settings) -> ResponseCache:
    return responses(db, settings)
