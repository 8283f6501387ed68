"""Every /command route against the hand-written table (tests/security/expected.py PAGES), per staff role.

A session is opened straight in the database for an account of each role (the login form
itself refuses roles the dashboard is not for: test_pages.py), so that what is tested here is
the route's own check, the same policy operation the API uses.
"""

from __future__ import annotations

import hashlib
import secrets

from service.access.model import STAFF_ROLES, Role
from service.command import store
from service.command.rest import SESSION_COOKIE
from tests.access.helpers import make_staff
from tests.command.test_pages import _auth
from tests.security.expected import PAGES, PUBLIC
from tests.security.walk import page_operations
from tests.supplies.helpers import make_site


async def _session(db, settings, staff_id) -> str:
    token = secrets.token_urlsafe(32)
    async with db.transaction() as conn:
        await store.insert_session(conn, hashlib.sha256(token.encode()).digest(), staff_id, 1)
    return token


async def test_every_page_is_in_the_hand_written_table(client):
    walked = {op.label for op in page_operations(client.app)}
    assert walked == PAGES.keys()
    assert {op.label for op in page_operations(client.app) if op.public} == {k for k, v in PAGES.items() if v == PUBLIC}


async def test_page_roles(client, db, settings):
    site = await make_site(client, _auth(settings))
    failures = []
    for role in sorted(STAFF_ROLES):
        staff = await make_staff(db, settings, f"walk-{role.value.replace('_', '-')}", role.value, [] if role is Role.COMMAND else [site])
        cookie = {"Cookie": f"{SESSION_COOKIE}={await _session(db, settings, staff.id)}"}
        for op in page_operations(client.app):
            if op.public or op.method != "GET":
                continue
            response = await client.get(op.path, headers=cookie, follow_redirects=False)
            admitted = role.value in PAGES[op.label]
            if admitted and response.status_code != 200:
                failures.append(f"{op.label} as {role}: {response.status_code}, the table admits it")
            if not admitted and not (
                (response.status_code == 303 and response.headers["location"] == "/command/login?m=role")
                or (response.status_code == 403 and response.json()["code"] == "role_not_allowed")
            ):
                failures.append(f"{op.label} as {role}: {response.status_code}, expected a refusal")
    assert not failures, "\n".join(failures)


async def test_public_pages_answer_without_a_session(client):
    assert (await client.get("/command/login")).status_code == 200
    # Login and logout need no session, but they do need the CSRF token (test_pages.py).
    assert (await client.post("/command/logout", follow_redirects=False)).json()["code"] == "csrf_failed"
