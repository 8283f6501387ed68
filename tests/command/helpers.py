"""Shared helpers of the command dashboard tests: the login form as a browser fills it."""

from __future__ import annotations

import re
from typing import Any

CSRF_INPUT = re.compile(r'name="_csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    found = CSRF_INPUT.search(html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


async def login_form(client: Any) -> str:
    """Open the login page (which sets the CSRF cookie); its form's token."""
    page = await client.get("/command/login", follow_redirects=False)
    assert page.status_code == 200, page.text
    return csrf_token(page.text)


async def log_in(client: Any, username: str, password: str, *, token: str | None = None) -> Any:
    """Submit the login form; the answer (not followed)."""
    token = token if token is not None else await login_form(client)
    return await client.post(
        "/command/login", data={"username": username, "password": password, "_csrf_token": token}, follow_redirects=False
    )


def figure(html: str, name: str) -> int:
    found = re.search(rf'data-figure="{name}">(\d+)<', html)
    assert found, f"no figure {name} on the page"
    return int(found.group(1))


def set_cookie_headers(response: Any) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}
