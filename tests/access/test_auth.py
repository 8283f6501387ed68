import asyncio
import time

import jwt
import pytest

from service.access.model import Role
from tests.conftest import make_principal
from tests.access.helpers import PASSWORD, make_site, make_staff

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"


async def _login(client, username, password=PASSWORD, **kw):
    return await client.post(LOGIN, json={"username": username, "password": password}, **kw)


async def test_login_issues_claims_token_and_refresh_rotates(client, auth, db, settings):
    site = await make_site(client, auth)
    await make_staff(db, settings, "li.na", "site_staff", [site])
    response = await _login(client, "li.na")
    assert response.status_code == 200, response.text
    pair = response.json()
    claims = jwt.decode(pair["access_token"], settings.jwt_secret, algorithms=["HS256"])
    assert claims["role"] == "site_staff" and claims["sites"] == [str(site)]
    assert claims["exp"] - claims["iat"] == 15 * 60
    listed = await client.get("/api/v1/sites", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert [s["id"] for s in listed.json()["items"]] == [str(site)]
    # the refresh token is stored hashed only
    async with db.connection() as conn:
        stored = await conn.fetch("SELECT token_hash FROM refresh_tokens")
    assert all(pair["refresh_token"].encode() not in bytes(r["token_hash"]) for r in stored)

    rotated = await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != pair["refresh_token"]
    # the next rotation works...
    third = await client.post(REFRESH, json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 200
    # ...but presenting the first (rotated) token again revokes the whole family
    reused = await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
    assert reused.status_code == 401 and reused.json()["code"] == "refresh_token_reused"
    latest = await client.post(REFRESH, json={"refresh_token": third.json()["refresh_token"]})
    assert latest.status_code == 401 and latest.json()["code"] == "refresh_token_revoked"
    # another login (another family) is unaffected
    other = await _login(client, "li.na")
    assert (await client.post(REFRESH, json={"refresh_token": other.json()["refresh_token"]})).status_code == 200


async def test_concurrent_refresh_of_one_token_rotates_once(client, auth, db, settings):
    await make_staff(db, settings, "cmd", "command")
    pair = (await _login(client, "cmd")).json()
    results = await asyncio.gather(*(client.post(REFRESH, json={"refresh_token": pair["refresh_token"]}) for _ in range(4)))
    assert sorted(r.status_code for r in results).count(200) == 1
    async with db.connection() as conn:
        live = await conn.fetchval("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL AND rotated_at IS NULL")
    assert live == 0  # the reuse revoked the family, including the token the winner got


async def test_logout_revokes(client, db, settings):
    await make_staff(db, settings, "cmd", "command")
    pair = (await _login(client, "cmd")).json()
    assert (await client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})).status_code == 204
    after = await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
    assert after.status_code == 401 and after.json()["code"] == "refresh_token_revoked"


async def test_wrong_password_and_unknown_user_look_the_same(client, db, settings):
    await make_staff(db, settings, "cmd", "command")
    wrong = await _login(client, "cmd", "nope-nope-nope")
    unknown = await _login(client, "nobody", "nope-nope-nope")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["code"] == unknown.json()["code"] == "invalid_credentials"


async def test_disabled_account_cannot_log_in_or_refresh(client, auth, db, settings):
    site = await make_site(client, auth)
    staff = await make_staff(db, settings, "wang", "medic", [site])
    pair = (await _login(client, "wang")).json()
    patched = await client.patch(
        f"/api/v1/staff/{staff.id}", json={"version": staff.version, "active": False}, headers=auth(make_principal_cmd())
    )
    assert patched.status_code == 200, patched.text
    assert (await _login(client, "wang")).status_code == 401
    assert (await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})).status_code == 401


def make_principal_cmd():
    from tests.conftest import make_principal

    return make_principal(Role.COMMAND)


async def test_account_rate_limit_429_with_retry_after_and_other_account_not_blocked(client, db, settings):
    await make_staff(db, settings, "victim", "command")
    await make_staff(db, settings, "colleague", "command")
    limit = settings.login_attempts_per_minute
    statuses = [(await _login(client, "victim", "wrong-password")).status_code for _ in range(limit)]
    assert statuses == [401] * limit
    blocked = await _login(client, "victim")  # even the right password, until the window ends
    assert blocked.status_code == 429 and blocked.json()["code"] == "rate_limited"
    assert int(blocked.headers["retry-after"]) >= 1
    # same client address, another account: not blocked
    assert (await _login(client, "colleague")).status_code == 200


async def test_concurrent_guesses_cannot_pass_the_limit(client, db, settings):
    await make_staff(db, settings, "victim", "command")
    results = await asyncio.gather(*(_login(client, "victim", f"guess-{i}") for i in range(settings.login_attempts_per_minute + 5)))
    codes = [r.status_code for r in results]
    assert codes.count(401) == settings.login_attempts_per_minute and codes.count(429) == 5


async def test_address_limit_is_looser_and_applies(db, settings):
    from litestar.testing import AsyncTestClient

    import msgspec

    from service.app import create_app

    assert settings.login_attempts_per_address_per_minute > settings.login_attempts_per_minute  # the defaults
    # A lower address limit than the default 60, so every attempt lands in one minute's window even when
    # each slow login takes a second on a loaded machine; still looser than the per-account limit.
    per_address = settings.login_attempts_per_minute + 3
    lowered = msgspec.structs.replace(settings, login_attempts_per_address_per_minute=per_address)
    await make_staff(db, settings, "someone", "command")
    async with AsyncTestClient(app=create_app(lowered)) as client:
        for i in range(per_address):  # different accounts, none over its own limit
            assert (await _login(client, f"user{i}", "wrong-password")).status_code == 401
        blocked = await _login(client, "someone")
        assert blocked.status_code == 429 and "retry-after" in blocked.headers


async def test_rate_limit_fails_open_to_process_memory_when_redis_is_down(client, db, settings, database_url, tmp_path):
    from litestar.testing import AsyncTestClient

    import msgspec

    from service.app import create_app

    dead = msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:1/0", redis_timeout_ms=50)
    await make_staff(db, settings, "victim", "command")
    async with AsyncTestClient(app=create_app(dead)) as offline:
        codes = [(await _login(offline, "victim", "wrong-password")).status_code for _ in range(settings.login_attempts_per_minute + 1)]
        assert codes[-1] == 429 and codes[:-1] == [401] * settings.login_attempts_per_minute
        assert (await _login(offline, "victim")).status_code == 429


async def test_graphql_login_and_refresh(client, db, settings):
    await make_staff(db, settings, "cmd", "command")
    login = """mutation($u: String!, $p: String!) { login(username: $u, password: $p) {
        tokens { accessToken refreshToken expiresIn } retryAfter userErrors { code } } }"""
    wrong = (await client.post("/graphql", json={"query": login, "variables": {"u": "cmd", "p": "bad-password"}})).json()
    assert wrong["data"]["login"]["userErrors"][0]["code"] == "invalid_credentials"
    ok = (await client.post("/graphql", json={"query": login, "variables": {"u": "cmd", "p": PASSWORD}})).json()
    tokens = ok["data"]["login"]["tokens"]
    me = (await client.post("/graphql", json={"query": "{ me { username role } }"}, headers={"Authorization": f"Bearer {tokens['accessToken']}"})).json()
    assert me["data"]["me"] == {"username": "cmd", "role": "COMMAND"}
    refresh = "mutation($t: String!) { refreshToken(refreshToken: $t) { tokens { refreshToken } userErrors { code } } }"
    first = (await client.post("/graphql", json={"query": refresh, "variables": {"t": tokens["refreshToken"]}})).json()
    assert first["data"]["refreshToken"]["tokens"]["refreshToken"]
    again = (await client.post("/graphql", json={"query": refresh, "variables": {"t": tokens["refreshToken"]}})).json()
    assert again["data"]["refreshToken"]["userErrors"][0]["code"] == "refresh_token_reused"


def test_cached_token_is_not_trusted_past_its_expiry(settings, monkeypatch):
    from service.access import service as access_service
    from service.access.service import issue_access_token, principal_from_access_token

    issued = time.time() - settings.access_token_minutes * 60 + 30  # 30 s of life left
    token = issue_access_token(settings, make_principal(Role.MEDIC, []), now=issued)
    assert principal_from_access_token(settings, token).role is Role.MEDIC  # verified, now cached
    verified_again = []
    real_decode = access_service._decode_access_token
    monkeypatch.setattr(access_service, "_decode_access_token", lambda *a: verified_again.append(1) or real_decode(*a))
    principal_from_access_token(settings, token)
    assert verified_again == []  # within its life: served from the cache
    monkeypatch.setattr(access_service.time, "time", lambda: issued + settings.access_token_minutes * 60 + 1)
    principal_from_access_token(settings, token)
    assert verified_again == [1]  # past exp by our clock: checked again (where PyJWT's clock decides)


def test_cached_token_is_bound_to_the_signing_secret(settings):
    import msgspec

    from service.access.service import issue_access_token, principal_from_access_token
    from service.errors import Unauthorized

    token = issue_access_token(settings, make_principal(Role.MEDIC, []))
    principal_from_access_token(settings, token)
    other = msgspec.structs.replace(settings, jwt_secret="another-secret-entirely-" * 2)
    with pytest.raises(Unauthorized):
        principal_from_access_token(other, token)
