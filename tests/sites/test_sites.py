import asyncio

from service.access.model import Role
from tests.conftest import make_principal

SITE = {"code": "LJ-01", "name": "礼嘉隔离酒店", "region_path": "两江新区/礼嘉街道"}


async def test_command_creates_and_reads_site(client, auth):
    command = make_principal(Role.COMMAND)
    created = await client.post("/api/v1/sites", json=SITE, headers=auth(command))
    assert created.status_code == 201, created.text
    site = created.json()
    assert site["time_zone"] == "Asia/Shanghai" and site["version"] == 1
    got = await client.get(f"/api/v1/sites/{site['id']}", headers=auth(command))
    assert got.json() == site
    etag = got.headers["etag"]
    again = await client.get(f"/api/v1/sites/{site['id']}", headers={**auth(command), "If-None-Match": etag})
    assert again.status_code == 304


async def test_staff_of_another_site_gets_404(client, auth):
    command = make_principal(Role.COMMAND)
    a = (await client.post("/api/v1/sites", json=SITE, headers=auth(command))).json()
    b = (await client.post("/api/v1/sites", json={**SITE, "code": "LJ-02"}, headers=auth(command))).json()
    staff_b = make_principal(Role.SITE_STAFF, [b["id"]])
    missing = await client.get(f"/api/v1/sites/{a['id']}", headers=auth(staff_b))
    assert missing.status_code == 404 and missing.json()["code"] == "site_not_found"
    listed = (await client.get("/api/v1/sites", headers=auth(staff_b))).json()
    assert [s["code"] for s in listed["items"]] == ["LJ-02"]


async def test_site_staff_cannot_create(client, auth):
    response = await client.post("/api/v1/sites", json=SITE, headers=auth(make_principal(Role.SITE_STAFF)))
    assert response.status_code == 403 and response.headers["content-type"].startswith("application/problem+json")


async def test_bad_input_is_a_clear_4xx(client, auth):
    command = make_principal(Role.COMMAND)
    bad_code = await client.post("/api/v1/sites", json={**SITE, "code": "x"}, headers=auth(command))
    assert bad_code.status_code == 400 and bad_code.json()["code"] == "invalid_request"
    bad_zone = await client.post("/api/v1/sites", json={**SITE, "time_zone": "Mars/Base"}, headers=auth(command))
    assert bad_zone.status_code in (400, 422) and bad_zone.json()["field"] == "time_zone"
    await client.post("/api/v1/sites", json=SITE, headers=auth(command))
    duplicate = await client.post("/api/v1/sites", json=SITE, headers=auth(command))
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "site_code_taken"


async def test_stale_version_is_409(client, auth):
    command = make_principal(Role.COMMAND)
    site = (await client.post("/api/v1/sites", json=SITE, headers=auth(command))).json()
    url = f"/api/v1/sites/{site['id']}"
    first = await client.patch(url, json={"version": 1, "name": "A"}, headers=auth(command))
    assert first.status_code == 200 and first.json()["version"] == 2
    stale = await client.patch(url, json={"version": 1, "name": "B"}, headers=auth(command))
    assert stale.status_code == 409 and stale.json()["code"] == "stale_version"


async def test_pagination(client, auth):
    command = make_principal(Role.COMMAND)
    for i in range(5):
        await client.post("/api/v1/sites", json={**SITE, "code": f"S-{i}"}, headers=auth(command))
    codes, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/sites", params=params, headers=auth(command))).json()
        codes += [s["code"] for s in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert codes == [f"S-{i}" for i in range(5)]


async def test_graphql_site_mutation_and_query(client, auth):
    command = make_principal(Role.COMMAND)
    mutation = """mutation($input: CreateSiteInput!) { createSite(input: $input) {
        site { id code timeZone } userErrors { field code message } } }"""
    created = (await client.post("/graphql", json={"query": mutation, "variables": {"input": {"code": "G-1", "name": "G"}}}, headers=auth(command))).json()
    site = created["data"]["createSite"]["site"]
    assert site["code"] == "G-1"
    dup = (await client.post("/graphql", json={"query": mutation, "variables": {"input": {"code": "G-1", "name": "G"}}}, headers=auth(command))).json()
    assert dup["data"]["createSite"]["userErrors"][0]["code"] == "site_code_taken"
    bad = (await client.post("/graphql", json={"query": mutation, "variables": {"input": {"code": "x", "name": "G"}}}, headers=auth(command))).json()
    assert bad["data"]["createSite"]["userErrors"][0]["field"] == "input.code"
    query = "query($id: UUID!) { site(id: $id) { code } sites(first: 10) { edges { node { code } } pageInfo { hasNextPage } } }"
    other_staff = make_principal(Role.SITE_STAFF, [])
    hidden = (await client.post("/graphql", json={"query": query, "variables": {"id": site["id"]}}, headers=auth(other_staff))).json()
    assert hidden["data"]["site"] is None and hidden["data"]["sites"]["edges"] == []


async def test_idempotent_create_replays(client, auth):
    command = make_principal(Role.COMMAND)
    headers = {**auth(command), "Idempotency-Key": "k-1"}
    responses = await asyncio.gather(*(client.post("/api/v1/sites", json=SITE, headers=headers) for _ in range(5)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}
    created = [r.json() for r in responses if r.status_code == 201]
    assert created and all(c == created[0] for c in created)
    replay = await client.post("/api/v1/sites", json=SITE, headers=headers)
    assert replay.status_code == 201 and replay.json() == created[0]
    other_body = await client.post("/api/v1/sites", json={**SITE, "name": "other"}, headers=headers)
    assert other_body.status_code == 422 and other_body.json()["code"] == "idempotency_key_reused"
